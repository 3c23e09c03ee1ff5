//! Agent-to-agent delegation: a sub-task sent to a peer's request topic,
//! answered on this agent's response topic.
//!
//! The user's identity goes on as a delegation chain: the token this agent
//! was sent, extended by a hop it signs for the peer — made only with a
//! [`DelegationPermit`], i.e. when `inter_agent_communication` allows the
//! peer (see [`crate::trust_manager::TrustManager::delegate`]). The peer's
//! answer counts only if signed by the peer's account. `callDepth` grows by
//! one per hop, so a loop of delegations ends at `max_call_depth` with an
//! error instead of running forever.

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
use crate::broker::{Message as BrokerMessage, UserProperties};
use crate::topics;
use crate::trust_manager::{DelegationPermit, TrustManager, policy_allows};

/// A sub-task waiting for its final response, and the peer it was sent to.
struct Waiting {
    tx: oneshot::Sender<Bytes>,
    peer: String,
}

/// Sub-tasks waiting for their final response, by sub-task id.
#[derive(Default)]
pub(crate) struct Delegations {
    pending: Mutex<HashMap<String, Waiting>>,
}

impl Delegations {
    fn register(&self, id: &str, peer: &str) -> oneshot::Receiver<Bytes> {
        let (tx, rx) = oneshot::channel();
        let peer = peer.to_string();
        self.lock().insert(id.to_string(), Waiting { tx, peer });
        rx
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Called by the pump with a message from our response topic. Only the
    /// peer the sub-task went to may answer it; anything else is dropped
    /// and the sub-task keeps waiting.
    pub(crate) fn on_response(&self, sub_task: &str, msg: BrokerMessage, trust: &TrustManager) {
        let mut pending = self.lock();
        let Some(waiting) = pending.get(sub_task) else {
            tracing::debug!(sub_task, "response for an unknown or finished sub-task");
            return;
        };
        if let Err(why) = trust.check_answer(&msg, &waiting.peer) {
            tracing::warn!(sub_task, peer = %waiting.peer, reason = %why,
                "sub-task answer ignored: not from the agent that was asked");
            return;
        }
        if let Some(waiting) = pending.remove(sub_task) {
            let _ = waiting.tx.send(msg.payload);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
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
    DelegationPermit::check(&inner.cfg.inter_agent_communication, peer).is_some()
}

/// Admission of a delegated request: each hop of its chain must be allowed
/// by the policy the delegating agent publishes in its card, where we hold
/// that card. (A card we do not hold, or one without a policy, cannot be
/// checked; the delegating agent checked its own policy before signing, and
/// the broker ACL bounds where it may publish.)
pub(crate) fn hops_permitted(
    inner: &AgentInner,
    identity: &amesh_trust::VerifiedIdentity,
) -> Result<(), amesh_trust::VerifyError> {
    let actors = identity.actors();
    for (i, from) in actors.iter().enumerate() {
        let to = actors.get(i + 1).unwrap_or(&inner.name);
        let policy = inner
            .peers
            .get(from)
            .and_then(|card| super::card::published_policy(&card));
        if let Some((allow, deny)) = policy
            && !policy_allows(&allow, &deny, to)
        {
            return Err(amesh_trust::VerifyError::HopNotPermitted {
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    Ok(())
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
    let Some(permit) = DelegationPermit::check(policy, peer) else {
        return Err(format!(
            "delegate: agent {} may not call agent {peer} (inter_agent_communication)",
            inner.name
        ));
    };
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
    let token = inner
        .trust
        .delegate(&caller.identity, caller.auth_token.as_deref(), &permit)
        .map_err(|e| format!("delegate to {peer}: {e}"))?;
    if let Some(token) = token {
        user_props.push(props::AUTH_TOKEN, token);
    }

    let rx = inner.delegations.register(&sub_task, peer);
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
