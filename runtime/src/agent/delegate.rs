//! Agent-to-agent delegation: a sub-task sent to a peer's request topic,
//! answered on this agent's response topic.
//!
//! The user's identity token is forwarded unchanged (a peer verifies it just
//! like a gateway request) and `callDepth` grows by one per hop, so a loop of
//! delegations ends at `max_call_depth` with an error instead of running
//! forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::AgentInner;
use super::handler::Caller;
use crate::a2a::jsonrpc::{Request, Response};
use crate::a2a::{Message, MessageSendParams, Part, StreamResult, TaskState, methods, props};
use crate::broker::UserProperties;
use crate::topics;

/// Sub-tasks waiting for their final response, by sub-task id.
#[derive(Default)]
pub(crate) struct Delegations {
    pending: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
}

impl Delegations {
    fn register(&self, id: &str) -> oneshot::Receiver<Bytes> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.to_string(), tx);
        rx
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Called by the pump with a payload from our response topic.
    pub(crate) fn on_response(&self, sub_task: &str, payload: Bytes) {
        match self.lock().remove(sub_task) {
            Some(tx) => {
                let _ = tx.send(payload);
            }
            None => tracing::debug!(sub_task, "response for an unknown or finished sub-task"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Bytes>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes the pending entry however the call ends (answer, timeout, cancel).
struct PendingGuard<'a> {
    delegations: &'a Delegations,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.delegations.forget(&self.id);
    }
}

/// Whether `inter_agent_communication` lets this agent call `peer`
/// (allow list minus deny list, globs as in Solace Agent Mesh).
pub(crate) fn may_call(inner: &AgentInner, peer: &str) -> bool {
    let policy = &inner.cfg.inter_agent_communication;
    policy
        .allow_list
        .iter()
        .any(|p| crate::glob::matches(p, peer))
        && !policy
            .deny_list
            .iter()
            .any(|p| crate::glob::matches(p, peer))
}

/// The `delegate` tool: arguments `{agent, text}` or `{agent, data}`.
pub(crate) async fn call(
    inner: &Arc<AgentInner>,
    caller: &Caller,
    args: &Value,
) -> Result<Vec<Part>, String> {
    let peer = args
        .get("agent")
        .and_then(Value::as_str)
        .ok_or("delegate: argument `agent` (string) is required")?;
    if !topics::valid_level(peer) {
        return Err(format!("delegate: `{peer}` is not a valid agent name"));
    }
    let policy = &inner.cfg.inter_agent_communication;
    if !may_call(inner, peer) {
        return Err(format!(
            "delegate: agent {} may not call agent {peer} (inter_agent_communication)",
            inner.name
        ));
    }
    if inner.cfg.agent_discovery.enabled && inner.peers.get(peer).is_none() {
        return Err(format!(
            "delegate: no agent named {peer} is known (no agent card seen)"
        ));
    }
    let mut message = Message::user_text("");
    message.parts = match (args.get("data"), args.get("text").and_then(Value::as_str)) {
        (Some(data), _) => vec![Part::data(data.clone())],
        (None, Some(text)) => vec![Part::text(text)],
        (None, None) => return Err("delegate: argument `text` or `data` is required".into()),
    };

    let sub_task = uuid::Uuid::new_v4().to_string();
    let request = Request::new(
        sub_task.clone(),
        methods::SEND,
        MessageSendParams {
            message,
            configuration: None,
            metadata: None,
        },
    );
    let mut user_props = UserProperties::new()
        .with(
            props::REPLY_TO,
            topics::agent_response(&inner.ns, &inner.name, &sub_task),
        )
        .with(
            props::STATUS_TOPIC,
            topics::agent_status(&inner.ns, &inner.name, &sub_task),
        )
        .with(props::USER_ID, caller.user_id.clone())
        .with(props::CLIENT_ID, inner.name.clone())
        .with(props::DELEGATING_AGENT, inner.name.clone())
        .with(props::CALL_DEPTH, (caller.call_depth + 1).to_string())
        .with(props::TIMESTAMP, crate::cards::now_millis().to_string());
    if let Some(token) = &caller.auth_token {
        user_props.push(props::AUTH_TOKEN, token.clone());
    }

    let rx = inner.delegations.register(&sub_task);
    let _guard = PendingGuard {
        delegations: &inner.delegations,
        id: sub_task.clone(),
    };
    let payload = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    inner
        .broker
        .publish(
            &topics::agent_request(&inner.ns, peer),
            payload,
            user_props,
            false,
        )
        .await
        .map_err(|e| format!("delegate to {peer}: {e}"))?;
    let timeout = Duration::from_secs(policy.request_timeout_seconds);
    let payload = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(format!("delegate to {peer}: agent stopped waiting")),
        Err(_) => {
            return Err(format!(
                "delegate to {peer}: no answer within {}s",
                timeout.as_secs()
            ));
        }
    };
    let response: Response = serde_json::from_slice(&payload)
        .map_err(|e| format!("delegate to {peer}: malformed response: {e}"))?;
    if let Some(err) = response.error {
        return Err(format!(
            "agent {peer} refused: {} (code {})",
            err.message, err.code
        ));
    }
    let result: StreamResult = serde_json::from_value(response.result.unwrap_or(Value::Null))
        .map_err(|e| format!("delegate to {peer}: unexpected result: {e}"))?;
    match result {
        StreamResult::Task(task) if task.status.state == TaskState::Completed => {
            Ok(task.artifacts.into_iter().flat_map(|a| a.parts).collect())
        }
        StreamResult::Task(task) => {
            let why = task.status.message.map(|m| m.text()).unwrap_or_default();
            Err(format!(
                "agent {peer} ended the task {:?}: {why}",
                task.status.state
            ))
        }
        StreamResult::Message(m) => Ok(m.parts),
        _ => Err(format!("delegate to {peer}: final response was not a task")),
    }
}
