//! Routing agent answers to the HTTP requests that wait for them.
//!
//! Every request the gateway sends gets an id that is also the last level
//! of its reply topics; `Pending` maps that id to the channel of the waiting
//! handler. `TaskIndex` (in `task_index.rs`) remembers which user and agent
//! each task belongs to, so `GET /api/v1/tasks/{id}` and cancel can check
//! ownership and know where to ask, without trusting the client.
//!
//! The pump never waits for a handler: answers queue up per request. A
//! queue may hold only so many bytes while its reader (an SSE client that
//! reads slowly, or not at all) falls behind; past that the request's
//! registration is dropped and its reader gets one error instead of the
//! rest, so a slow consumer costs a bounded amount of memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GatewayInner, links};
use crate::a2a::StreamResult;
use crate::a2a::jsonrpc::{Response, RpcError};
use crate::broker::{Incoming, Message};
use crate::telemetry::metrics;
use crate::topics;

/// One thing an agent said about a request.
#[derive(Debug, Clone)]
pub enum Event {
    /// A status or artifact update (streaming).
    Update(StreamResult),
    /// The final answer: a task (or another result for tasks/get etc.).
    Final(StreamResult),
    /// The agent refused the request.
    Error(RpcError),
}

/// Bytes an answer counts for at least (its parsed form and queue slot),
/// so many tiny answers are bounded too.
const MIN_EVENT_BYTES: usize = 256;

/// A handler waiting for answers, and the agent its request went to.
struct Waiter {
    tx: mpsc::UnboundedSender<(Event, usize)>,
    agent: String,
    /// The A2A method (`message/send`, `tasks/get`, ...), for the metrics.
    method: String,
    queue: Arc<Queue>,
    /// When the request was sent: the round trip ends at its final answer.
    sent: Instant,
}

/// What one request's queue holds, shared by the pump and the reader.
struct Queue {
    budget: usize,
    /// Bytes sent and not yet taken by the reader.
    bytes: AtomicUsize,
    /// Set when the reader fell more than `budget` behind.
    overflowed: AtomicBool,
}

/// The receiving end of one request's answers.
pub(crate) struct EventRx {
    rx: mpsc::UnboundedReceiver<(Event, usize)>,
    queue: Arc<Queue>,
}

impl EventRx {
    /// The next answer; `None` once the request is over. After the reader
    /// fell too far behind: one error, then `None`.
    pub(crate) async fn recv(&mut self) -> Option<Event> {
        if self.queue.overflowed.swap(false, Ordering::AcqRel) {
            self.rx.close();
            while self.rx.try_recv().is_ok() {}
            self.queue.bytes.store(0, Ordering::Release);
            return Some(Event::Error(RpcError::new(
                crate::a2a::jsonrpc::INTERNAL_ERROR,
                format!(
                    "the stream was closed because the client read too slowly: more than {} \
                     bytes of the agent's answers were waiting (the task goes on; \
                     GET /api/v1/tasks/{{id}} tells how it ends)",
                    self.queue.budget
                ),
            )));
        }
        let (event, bytes) = self.rx.recv().await?;
        self.queue.bytes.fetch_sub(bytes, Ordering::AcqRel);
        Some(event)
    }
}

#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request; at most `budget` bytes of its answers may wait
    /// for the handler to take them.
    pub(crate) fn register(&self, id: &str, agent: &str, method: &str, budget: usize) -> EventRx {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            budget,
            bytes: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
        });
        let waiter = Waiter {
            tx,
            agent: agent.to_string(),
            method: method.to_string(),
            queue: queue.clone(),
            sent: Instant::now(),
        };
        self.lock().insert(id.to_string(), waiter);
        EventRx { rx, queue }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The agent request `id` went to, while someone waits for it.
    fn agent_of(&self, id: &str) -> Option<String> {
        self.lock().get(id).map(|w| w.agent.clone())
    }

    /// Counts `event`, the final answer to request `id`, and its round
    /// trip (for the metrics; nothing when nobody waits for it any more).
    fn observe_final(&self, gateway: &str, id: &str, event: &Event) {
        let Some((agent, method, sent)) = self
            .lock()
            .get(id)
            .map(|w| (w.agent.clone(), w.method.clone(), w.sent))
        else {
            return;
        };
        let state = match event {
            Event::Final(StreamResult::Task(t)) => metrics::state_name(t.status.state),
            Event::Final(_) | Event::Update(_) => "message",
            Event::Error(_) => "error",
        };
        metrics::gateway_answer(gateway, &agent, &method, state, sent);
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Queues `event` (`bytes` long on the wire) for the request `id`.
    fn deliver(&self, id: &str, event: Event, last: bool, bytes: usize) {
        let mut waiting = self.lock();
        let Some(waiter) = waiting.get(id) else {
            tracing::debug!(id, "answer for a request nobody waits for");
            return;
        };
        let bytes = bytes.max(MIN_EVENT_BYTES);
        let queue = &waiter.queue;
        let queued = queue.bytes.load(Ordering::Acquire);
        // An answer always fits a queue the reader has emptied, however big.
        if queued > 0 && queued + bytes > queue.budget {
            tracing::info!(
                id,
                agent = %waiter.agent,
                queued,
                budget = queue.budget,
                "client reads too slowly; closing its stream"
            );
            queue.overflowed.store(true, Ordering::Release);
            // Dropping the sender wakes a reader that waits.
            waiting.remove(id);
            return;
        }
        queue.bytes.fetch_add(bytes, Ordering::AcqRel);
        let sent = waiter.tx.send((event, bytes)).is_ok();
        if last || !sent {
            waiting.remove(id);
        }
    }
}

/// Removes a pending registration when the waiting handler goes away (the
/// HTTP client hung up, or the wait timed out).
pub(crate) struct PendingGuard {
    pub(crate) inner: Arc<GatewayInner>,
    pub(crate) id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.inner.pending.remove(&self.id);
    }
}

/// Reads the gateway's broker connection until `stop`.
pub(crate) async fn pump(
    inner: Arc<GatewayInner>,
    mut incoming: Incoming,
    stop: CancellationToken,
) {
    let response_prefix = topics::gateway_response(&inner.ns, &inner.id, "");
    let status_prefix = topics::gateway_status(&inner.ns, &inner.id, "");
    let discovery = topics::agent_discovery(&inner.ns);
    loop {
        let msg: Message = tokio::select! {
            _ = stop.cancelled() => break,
            m = incoming.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        if inner.trust.on_message(&msg) {
            continue;
        }
        if let Some(id) = msg.topic.strip_prefix(&response_prefix) {
            if from_the_agent_asked(&inner, id, &msg) {
                on_answer(&inner, id, &msg.payload, true);
            }
        } else if let Some(id) = msg.topic.strip_prefix(&status_prefix) {
            if from_the_agent_asked(&inner, id, &msg) {
                on_answer(&inner, id, &msg.payload, false);
            }
        } else if msg.topic == discovery {
            // Only a card signed by the agent's own account counts; refused
            // cards (too large, too many names, not the agent's) are logged there.
            let _ = inner.agents.observe_checked(&msg.payload, || {
                inner
                    .trust
                    .accept_agent_card(&msg)
                    .ok_or(crate::discovery::CardRefused::NotAccepted)
            });
        } else {
            tracing::debug!(topic = %msg.topic, "message on unexpected topic ignored");
        }
    }
}

/// Whether an answer to request `id` comes from the agent the request went
/// to (see `trust_manager::origin`). Any agent may publish on our reply
/// topics, so anything else — or an answer nobody waits for, whose sender
/// cannot be checked — is dropped, and the real answer is still awaited.
fn from_the_agent_asked(inner: &GatewayInner, id: &str, msg: &Message) -> bool {
    let Some(agent) = inner.pending.agent_of(id) else {
        tracing::debug!(id, "answer for a request nobody waits for");
        return false;
    };
    match inner.trust.check_answer(msg, &agent) {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(gateway = %inner.id, %agent, request = %id, reason = %why,
                "answer ignored: not from the agent that was asked");
            false
        }
    }
}

fn on_answer(inner: &GatewayInner, id: &str, payload: &Bytes, on_response_topic: bool) {
    let response: Response = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(id, error = %e, "malformed answer from agent");
            inner.pending.deliver(
                id,
                Event::Error(RpcError::new(
                    crate::a2a::jsonrpc::INTERNAL_ERROR,
                    format!("agent sent a malformed answer: {e}"),
                )),
                on_response_topic,
                payload.len(),
            );
            return;
        }
    };
    let event = match (response.error, response.result) {
        (Some(err), _) => Event::Error(err),
        (None, Some(result)) => match serde_json::from_value::<StreamResult>(result) {
            Ok(mut r) => {
                // Before anything keeps or relays it (see `links`).
                if let Some(problem) = links::scrub(&mut r) {
                    let agent = inner.pending.agent_of(id);
                    tracing::warn!(
                        gateway = %inner.id,
                        agent = %agent.as_deref().unwrap_or("unknown"),
                        request = %id,
                        %problem,
                        "refused an authorization link from the agent; the user gets an error text instead"
                    );
                }
                match &r {
                    StreamResult::Task(t) => inner.tasks.update(t),
                    StreamResult::Status(s) => inner.tasks.set_state(&s.task_id, s.status.state),
                    _ => {}
                }
                if on_response_topic {
                    Event::Final(r)
                } else {
                    Event::Update(r)
                }
            }
            Err(e) => Event::Error(RpcError::new(
                crate::a2a::jsonrpc::INTERNAL_ERROR,
                format!("agent sent an unexpected result: {e}"),
            )),
        },
        (None, None) => Event::Final(StreamResult::Message(crate::a2a::Message::agent(
            vec![crate::a2a::Part::data(Value::Null)],
            id,
            "",
        ))),
    };
    if on_response_topic {
        inner.pending.observe_final(&inner.id, id, &event);
    }
    inner
        .pending
        .deliver(id, event, on_response_topic, payload.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::{Message, Part};

    fn update() -> Event {
        Event::Update(StreamResult::Message(Message::agent(
            vec![Part::text("x")],
            "t",
            "c",
        )))
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_gets_an_error_and_nothing_more_is_kept() {
        let pending = Pending::default();
        let mut rx = pending.register("t", "echo", "message/stream", 1000);
        for _ in 0..10 {
            pending.deliver("t", update(), false, 600);
        }
        // The registration is gone: later answers are dropped at once.
        assert_eq!(pending.len(), 0);
        match rx.recv().await {
            Some(Event::Error(e)) => assert!(e.message.contains("too slowly"), "{}", e.message),
            other => panic!("expected an error event, got {other:?}"),
        }
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_gets_everything_even_one_big_answer() {
        let pending = Pending::default();
        let mut rx = pending.register("t", "echo", "message/stream", 1000);
        for _ in 0..5 {
            pending.deliver("t", update(), false, 600);
            assert!(matches!(rx.recv().await, Some(Event::Update(_))));
        }
        // An answer bigger than the budget still goes through to a reader
        // that has nothing waiting.
        pending.deliver("t", update(), true, 5000);
        assert!(matches!(rx.recv().await, Some(Event::Update(_))));
        assert!(rx.recv().await.is_none());
    }
}
