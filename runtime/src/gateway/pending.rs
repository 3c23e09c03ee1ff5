//! Routing agent answers to the HTTP requests that wait for them.
//!
//! Every request the gateway sends gets an id that is also the last level
//! of its reply topics; `Pending` maps that id to the channel of the waiting
//! handler. `TaskIndex` remembers which user and agent each task belongs to,
//! so `GET /api/v1/tasks/{id}` and cancel can check ownership and know where
//! to ask, without trusting the client.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GatewayInner, links};
use crate::a2a::jsonrpc::{Response, RpcError};
use crate::a2a::{StreamResult, Task};
use crate::broker::{Incoming, Message};
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

/// A handler waiting for answers, and the agent its request went to.
struct Waiter {
    tx: mpsc::UnboundedSender<Event>,
    agent: String,
}

#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(&self, id: &str, agent: &str) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let agent = agent.to_string();
        self.lock().insert(id.to_string(), Waiter { tx, agent });
        rx
    }

    /// The agent request `id` went to, while someone waits for it.
    fn agent_of(&self, id: &str) -> Option<String> {
        self.lock().get(id).map(|w| w.agent.clone())
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn deliver(&self, id: &str, event: Event, last: bool) {
        let mut waiting = self.lock();
        let sent = match waiting.get(id) {
            Some(waiter) => waiter.tx.send(event).is_ok(),
            None => {
                tracing::debug!(id, "answer for a request nobody waits for");
                return;
            }
        };
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

/// How many tasks the gateway remembers for ownership checks.
const TASKS_KEPT: usize = 100_000;

#[derive(Clone, Debug)]
pub(crate) struct TaskRecord {
    pub agent: String,
    pub user_id: String,
    pub last: Option<Task>,
}

#[derive(Default)]
pub(crate) struct TaskIndex {
    inner: Mutex<(HashMap<String, TaskRecord>, VecDeque<String>)>,
}

impl TaskIndex {
    fn lock(&self) -> MutexGuard<'_, (HashMap<String, TaskRecord>, VecDeque<String>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, task_id: &str, agent: &str, user_id: &str) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        map.insert(
            task_id.to_string(),
            TaskRecord {
                agent: agent.to_string(),
                user_id: user_id.to_string(),
                last: None,
            },
        );
        order.push_back(task_id.to_string());
        while order.len() > TASKS_KEPT {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    pub(crate) fn update(&self, task: &Task) {
        if let Some(rec) = self.lock().0.get_mut(&task.id) {
            rec.last = Some(task.clone());
        }
    }

    /// The record, only if it belongs to `user_id`.
    pub(crate) fn get(&self, task_id: &str, user_id: &str) -> Option<TaskRecord> {
        self.lock()
            .0
            .get(task_id)
            .filter(|r| r.user_id == user_id)
            .cloned()
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
            // Only a card signed by the agent's own account counts.
            if let Some(card) = inner.trust.accept_agent_card(&msg) {
                inner.agents.observe(card);
            }
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
                if let StreamResult::Task(t) = &r {
                    inner.tasks.update(t);
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
    inner.pending.deliver(id, event, on_response_topic);
}
