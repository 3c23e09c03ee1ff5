//! The A2A request client: the one way a gateway or an agent asks an agent
//! something over the broker and waits for the answer.
//!
//! The gateway's `message:send` / `message:stream`, its one-shot questions
//! (`tasks/get`, cancel, connected accounts, conversations), its forwarding
//! of a tool authorization callback, and an agent's delegation to a peer all
//! go through [`A2aClient::send`]; the owner's pump hands every message on
//! the client's reply topics to [`A2aClient::on_reply`].
//!
//! A waiter's lifecycle:
//! 1. **Registered before publish.** The request id is the last level of
//!    the reply topics, and the waiter is in the map before the request
//!    leaves, so even an instant answer finds it.
//! 2. **Answered only by the peer asked.** Anyone may publish on a reply
//!    topic; [`A2aClient::on_reply`] drops an answer the trust manager does
//!    not attribute to the peer the request went to, and keeps waiting.
//! 3. **Removed by a drop guard on every exit path.** The [`Call`] holds a
//!    [`WaiterGuard`]; answered, timed out, failed to publish, or dropped
//!    because the HTTP client hung up or the delegating task was canceled,
//!    the registration goes with it. The final answer also removes it.
//! 4. **Bounded.** One entry per call in flight (each held by a caller that
//!    is bounded itself: an HTTP connection, a running task), and each
//!    entry's queue by a byte budget (see [`super::waiters`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::jsonrpc::{self, Request, Response, RpcError};
use super::waiters::{Asked, EventRx, WaiterGuard, Waiters};
use super::{Message as A2aMessage, Part, StreamResult, props};
use crate::broker::{Broker, BrokerError, Message, PublishError, UserProperties};
use crate::telemetry::{propagation, spans};
use crate::topics;
use crate::trust_manager::TrustManager;
use tracing::Instrument as _;

pub(crate) use super::waiters::Event;

/// Which family of reply topics a client's requests name: a gateway's
/// (`gateway/response/{id}/…`) or an agent's (`agent/response/{name}/…`).
/// An agent's requests are delegations and carry the delegation properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requester {
    Gateway,
    Agent,
}

/// Sends A2A requests for one component (gateway or agent) and routes the
/// answers back to the callers waiting for them. Held by the component's
/// shared state; the pump and every caller use the same one.
pub(crate) struct A2aClient {
    broker: Broker,
    ns: String,
    /// The gateway id or agent name: `clientId`, and a level of the reply topics.
    me: String,
    requester: Requester,
    max_message_size: usize,
    waiters: Arc<Waiters>,
    /// The reply topics with an empty last level: their common prefixes.
    response_prefix: String,
    status_prefix: String,
}

/// Who one request is for and with what identity: the user properties that
/// differ from call to call.
pub(crate) struct Envelope<'a> {
    /// The agent the request goes to.
    pub to: &'a str,
    pub user_id: &'a str,
    /// The identity token (or delegation chain) for `to`, if trust is on.
    pub token: Option<String>,
    /// For a delegation: the `callDepth` the peer sees.
    pub call_depth: u32,
    /// Bytes of answers that may wait for the reader before the stream is
    /// closed with an error.
    pub budget: usize,
}

/// Why a request did not leave.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("request of {bytes} bytes exceeds max_message_size_bytes ({max})")]
    TooLarge { bytes: usize, max: usize },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Why a call gave no final answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("agent {peer} refused: {} (code {})", .error.message, .error.code)]
    Refused { peer: String, error: RpcError },
    #[error("the answer channel of the request to agent {0} closed")]
    Closed(String),
    #[error("agent {peer} gave no answer within {wait:?}")]
    TimedOut { peer: String, wait: Duration },
}

/// A request on its way: its id, the peer asked, and the answers as they
/// come. Dropping it unregisters the waiter.
pub(crate) struct Call {
    pub(crate) id: String,
    pub(crate) peer: String,
    rx: EventRx,
    _guard: WaiterGuard,
}

impl A2aClient {
    pub(crate) fn new(
        broker: Broker,
        ns: &str,
        me: &str,
        requester: Requester,
        max_message_size: usize,
    ) -> Self {
        let (response_prefix, status_prefix) = match requester {
            Requester::Gateway => (
                topics::gateway_response(ns, me, ""),
                topics::gateway_status(ns, me, ""),
            ),
            Requester::Agent => (
                topics::agent_response(ns, me, ""),
                topics::agent_status(ns, me, ""),
            ),
        };
        A2aClient {
            broker,
            ns: ns.to_owned(),
            me: me.to_owned(),
            requester,
            max_message_size,
            waiters: Arc::default(),
            response_prefix,
            status_prefix,
        }
    }

    /// Subscribes to this client's reply and status topics. Done before any
    /// request is sent, so no answer can be missed.
    pub(crate) async fn subscribe(&self) -> Result<(), BrokerError> {
        for prefix in [&self.response_prefix, &self.status_prefix] {
            self.broker
                .subscribe(&topics::wildcard_last(&format!("{prefix}x")))
                .await?;
        }
        Ok(())
    }

    /// Publishes `method` with `params` to `envelope.to` under the request
    /// id `id`, with reply topics named after it, and registers the waiter
    /// (before the publish).
    pub(crate) async fn send(
        &self,
        envelope: Envelope<'_>,
        id: String,
        method: &str,
        params: impl serde::Serialize,
    ) -> Result<Call, SendError> {
        let payload = serde_json::to_vec(&Request::new(id.clone(), method, params))
            .map_err(SendError::Encode)?;
        if payload.len() > self.max_message_size {
            return Err(SendError::TooLarge {
                bytes: payload.len(),
                max: self.max_message_size,
            });
        }
        let topic = topics::agent_request(&self.ns, envelope.to);
        let span = spans::a2a_send(method, &topic, &id, envelope.to);
        let mut user_props = self.user_properties(&envelope, &id);
        span.in_scope(|| propagation::inject_user_properties(&mut user_props));
        let rx = self
            .waiters
            .register(&id, envelope.to, method, envelope.budget);
        let guard = WaiterGuard {
            waiters: self.waiters.clone(),
            id: id.clone(),
        };
        let published = self
            .broker
            .publish(&topic, payload, user_props, false)
            .instrument(span.clone())
            .await;
        if let Err(e) = &published {
            spans::failed(&span, e.kind());
        }
        published?;
        Ok(Call {
            id,
            peer: envelope.to.to_owned(),
            rx,
            _guard: guard,
        })
    }

    /// The user properties of request `id` (names as in Solace Agent Mesh).
    fn user_properties(&self, envelope: &Envelope<'_>, id: &str) -> UserProperties {
        let mut user_props = UserProperties::new()
            .with(props::REPLY_TO, format!("{}{id}", self.response_prefix))
            .with(props::STATUS_TOPIC, format!("{}{id}", self.status_prefix))
            .with(props::USER_ID, envelope.user_id.to_owned())
            .with(props::CLIENT_ID, self.me.clone());
        if self.requester == Requester::Agent {
            user_props = user_props
                .with(props::DELEGATING_AGENT, self.me.clone())
                .with(props::CALL_DEPTH, envelope.call_depth.to_string());
        }
        user_props = user_props.with(props::TIMESTAMP, amesh_trust::now_unix_millis().to_string());
        if let Some(token) = &envelope.token {
            user_props.push(props::AUTH_TOKEN, token.clone());
        }
        user_props
    }

    /// Takes a message from the pump. Returns `false` when it is not on one
    /// of this client's reply topics (the pump routes it elsewhere).
    ///
    /// An answer counts only when the trust manager attributes it to the
    /// peer the request went to (see `trust_manager::origin`); anything else,
    /// or an answer nobody waits for (whose sender cannot be checked), is
    /// dropped, and the real answer is still awaited. `inspect` sees each
    /// accepted answer before it is queued, with what was asked and whether
    /// it is the final one (the gateway scrubs links, notes task states and
    /// counts round trips there).
    pub(crate) fn on_reply(
        &self,
        msg: &Message,
        trust: &TrustManager,
        inspect: impl FnOnce(&Asked, &str, bool, &mut Event),
    ) -> bool {
        let (id, last) = if let Some(id) = msg.topic.strip_prefix(&self.response_prefix) {
            (id, true)
        } else if let Some(id) = msg.topic.strip_prefix(&self.status_prefix) {
            (id, false)
        } else {
            return false;
        };
        let Some(asked) = self.waiters.asked(id) else {
            tracing::debug!(request = id, "answer for a request nobody waits for");
            return true;
        };
        let peer = &asked.peer;
        if let Err(why) = trust.check_answer(msg, peer) {
            tracing::warn!(me = %self.me, %peer, request = %id, reason = %why,
                "answer ignored: not from the agent that was asked");
            return true;
        }
        let mut event = parse_answer(id, &msg.payload, last);
        inspect(&asked, id, last, &mut event);
        self.waiters.deliver(id, event, last, msg.payload.len());
        true
    }
}

/// An answer's JSON-RPC envelope as an [`Event`]: on the response topic the
/// final one, on the status topic an update. A malformed answer becomes an
/// internal error, so the caller hears of it instead of waiting on.
fn parse_answer(id: &str, payload: &Bytes, last: bool) -> Event {
    let response: Response = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(request = id, error = %e, "malformed answer from agent");
            return Event::Error(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!("agent sent a malformed answer: {e}"),
            ));
        }
    };
    match (response.error, response.result) {
        (Some(err), _) => Event::Error(err),
        (None, Some(result)) => match serde_json::from_value::<StreamResult>(result) {
            Ok(r) if last => Event::Final(r),
            Ok(r) => Event::Update(r),
            Err(e) => Event::Error(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!("agent sent an unexpected result: {e}"),
            )),
        },
        (None, None) => Event::Final(StreamResult::Message(A2aMessage::agent(
            vec![Part::data(Value::Null)],
            id,
            "",
        ))),
    }
}

impl Call {
    /// The next answer; `None` once the request is over (see
    /// [`EventRx::recv`] for a reader that fell behind).
    pub(crate) async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The first answer within `wait`, `None` when none came: for requests
    /// answered once (`tasks/get`, cancel, the `amesh/…` methods).
    pub(crate) async fn first_answer(mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The final answer within `wait`, passing over status updates.
    pub(crate) async fn final_answer(mut self, wait: Duration) -> Result<StreamResult, CallError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Event::Final(result))) => return Ok(result),
                Ok(Some(Event::Error(error))) => {
                    return Err(CallError::Refused {
                        peer: self.peer,
                        error,
                    });
                }
                Ok(Some(Event::Update(_))) => continue,
                Ok(None) => return Err(CallError::Closed(self.peer)),
                Err(_) => {
                    return Err(CallError::TimedOut {
                        peer: self.peer,
                        wait,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::{Task, TaskState};
    use crate::broker::{DevBus, Incoming};
    use crate::config::TrustManagerConfig;

    const NS: &str = "test";

    /// A trust manager that takes every answer (trust off), so these tests
    /// are about the waiter; who may answer is proven in `trust_e2e`.
    fn trust_off() -> Arc<TrustManager> {
        let cfg = TrustManagerConfig {
            enabled: false,
            ..TrustManagerConfig::default()
        };
        TrustManager::new(
            &cfg,
            amesh_trust::ComponentKind::Gateway,
            "gw",
            NS,
            "gw",
            Default::default(),
        )
        .expect("trust manager")
    }

    /// A client on the dev bus, subscribed to its reply topics, and the
    /// connection its answers arrive on.
    async fn client(bus: &DevBus, me: &str, requester: Requester) -> (A2aClient, Incoming) {
        let (conn, incoming) = bus.client(me, None);
        let client = A2aClient::new(Broker::Dev(conn), NS, me, requester, 1 << 20);
        client.subscribe().await.expect("subscribe");
        (client, incoming)
    }

    fn envelope(to: &str) -> Envelope<'_> {
        Envelope {
            to,
            user_id: "alice",
            token: Some("tok".into()),
            call_depth: 2,
            budget: 1 << 16,
        }
    }

    /// An agent that answers every request at once with a completed task,
    /// and hands back the request it saw.
    async fn instant_agent(bus: &DevBus, name: &str) -> tokio::task::JoinHandle<Message> {
        let (conn, mut incoming) = bus.client(name, None);
        conn.subscribe(&topics::agent_request(NS, name))
            .await
            .expect("subscribe");
        tokio::spawn(async move {
            let request = incoming.recv().await.expect("a request");
            let reply_to = request.props.get(props::REPLY_TO).expect("replyTo");
            let task = Task::new("t", "c", TaskState::Completed);
            let answer = Response::ok(Value::from("t"), task).to_bytes();
            conn.publish(reply_to, answer, UserProperties::new(), false)
                .await
                .expect("publish answer");
            request
        })
    }

    /// Feeds the client's connection to `on_reply`, as a pump does.
    fn pump(client: Arc<A2aClient>, mut incoming: Incoming) -> tokio::task::JoinHandle<()> {
        let trust = trust_off();
        tokio::spawn(async move {
            while let Some(msg) = incoming.recv().await {
                assert!(client.on_reply(&msg, &trust, |_, _, _, _| {}));
            }
        })
    }

    #[tokio::test]
    async fn an_instant_answer_reaches_the_waiter_registered_before_publish() {
        let bus = DevBus::new();
        let agent = instant_agent(&bus, "echo").await;
        let (client, incoming) = client(&bus, "gw", Requester::Gateway).await;
        let client = Arc::new(client);
        let _pump = pump(client.clone(), incoming);
        let call = client
            .send(envelope("echo"), "t".into(), "message/send", json_params())
            .await
            .expect("sent");
        let answer = call.final_answer(Duration::from_secs(5)).await;
        assert!(
            matches!(answer, Ok(StreamResult::Task(ref t)) if t.status.state == TaskState::Completed),
            "{answer:?}"
        );
        let request = agent.await.expect("agent");
        assert_eq!(request.props.get(props::USER_ID), Some("alice"));
        assert_eq!(request.props.get(props::CLIENT_ID), Some("gw"));
        assert_eq!(request.props.get(props::AUTH_TOKEN), Some("tok"));
        assert_eq!(
            request.props.get(props::REPLY_TO),
            Some(topics::gateway_response(NS, "gw", "t").as_str())
        );
        assert!(request.props.get(props::TIMESTAMP).is_some());
        // A gateway's request is no delegation.
        assert_eq!(request.props.get(props::CALL_DEPTH), None);
        assert_eq!(client.waiters.len(), 0, "the final answer unregisters");
    }

    #[tokio::test]
    async fn a_delegation_names_the_delegating_agent_and_the_call_depth() {
        let bus = DevBus::new();
        let agent = instant_agent(&bus, "peer").await;
        let (client, incoming) = client(&bus, "planner", Requester::Agent).await;
        let client = Arc::new(client);
        let _pump = pump(client.clone(), incoming);
        let call = client
            .send(
                envelope("peer"),
                "sub-1".into(),
                "message/send",
                json_params(),
            )
            .await
            .expect("sent");
        call.final_answer(Duration::from_secs(5))
            .await
            .expect("answered");
        let request = agent.await.expect("agent");
        assert_eq!(request.props.get(props::DELEGATING_AGENT), Some("planner"));
        assert_eq!(request.props.get(props::CALL_DEPTH), Some("2"));
        assert_eq!(
            request.props.get(props::REPLY_TO),
            Some(topics::agent_response(NS, "planner", "sub-1").as_str())
        );
    }

    #[tokio::test]
    async fn every_exit_path_unregisters_the_waiter() {
        let bus = DevBus::new();
        let (client, _incoming) = client(&bus, "gw", Requester::Gateway).await;
        // Timed out: nobody answers.
        let call = client
            .send(envelope("nobody"), "a".into(), "tasks/get", json_params())
            .await
            .expect("sent");
        assert_eq!(client.waiters.len(), 1, "registered while in flight");
        let waited = call.final_answer(Duration::from_millis(20)).await;
        assert!(
            matches!(waited, Err(CallError::TimedOut { .. })),
            "{waited:?}"
        );
        assert_eq!(client.waiters.len(), 0);
        // Abandoned: the caller goes away (an HTTP client hung up).
        let call = client
            .send(envelope("nobody"), "b".into(), "tasks/get", json_params())
            .await
            .expect("sent");
        drop(call);
        assert_eq!(client.waiters.len(), 0);
        // Refused before publishing: too large.
        let big = "x".repeat(2 << 20);
        let refused = client
            .send(envelope("nobody"), "c".into(), "tasks/get", big)
            .await;
        assert!(matches!(refused, Err(SendError::TooLarge { .. })));
        // Failed to publish: the connection is gone.
        client.broker.disconnect().await;
        let failed = client
            .send(envelope("nobody"), "d".into(), "tasks/get", json_params())
            .await;
        assert!(matches!(failed, Err(SendError::Publish(_))));
        assert_eq!(client.waiters.len(), 0);
    }

    fn json_params() -> Value {
        serde_json::json!({ "id": "t" })
    }
}
