//! The gateway's broker pump: one task reads the connection and routes
//! each message — trust cards, answers to the gateway's requests (through
//! its [`crate::a2a::client::A2aClient`]), agent cards.
//!
//! `TaskIndex` (in `task_index.rs`) remembers which user and agent each task
//! belongs to, so `GET /api/v1/tasks/{id}` and cancel can check ownership
//! and know where to ask, without trusting the client; the pump keeps it
//! current from the answers that pass.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{GatewayInner, links};
use crate::a2a::StreamResult;
use crate::a2a::client::Event;
use crate::a2a::waiters::Asked;
use crate::broker::{Incoming, Message};
use crate::telemetry::metrics;
use crate::topics;

/// Reads the gateway's broker connection until `stop`.
pub(crate) async fn pump(
    inner: Arc<GatewayInner>,
    mut incoming: Incoming,
    stop: CancellationToken,
) {
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
        if inner
            .client
            .on_reply(&msg, &inner.trust, |asked, id, last, event| {
                if last {
                    count(&inner, asked, event);
                }
                inspect(&inner, &asked.peer, id, event)
            })
        {
            continue;
        }
        if inner.presence.observe(&msg.topic, &msg.payload) {
            continue;
        }
        if msg.topic == discovery {
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

/// Counts a final answer and its round trip (the metrics).
fn count(inner: &GatewayInner, asked: &Asked, event: &Event) {
    let state = match event {
        Event::Final(StreamResult::Task(t)) => metrics::state_name(t.status.state),
        Event::Final(_) | Event::Update(_) => "message",
        Event::Error(_) => "error",
    };
    metrics::gateway_answer(&inner.id, &asked.peer, &asked.method, state, asked.sent);
}

/// What the gateway does with an agent's answer before anything keeps or
/// relays it: refuses authorization links it cannot vouch for (see
/// `links`), and notes the task's state in the ownership index.
fn inspect(inner: &GatewayInner, agent: &str, id: &str, event: &mut Event) {
    let (Event::Update(r) | Event::Final(r)) = event else {
        return;
    };
    if let Some(problem) = links::scrub(r) {
        tracing::warn!(
            gateway = %inner.id,
            %agent,
            request = %id,
            %problem,
            "refused an authorization link from the agent; the user gets an error text instead"
        );
    }
    match r {
        StreamResult::Task(t) => inner.tasks.update(t),
        StreamResult::Status(s) => inner.tasks.set_state(&s.task_id, s.status.state),
        _ => {}
    }
}
