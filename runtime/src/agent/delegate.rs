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

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::AgentInner;
use super::handler::Caller;
use crate::a2a::client::{CallError, Envelope, SendError};
use crate::a2a::{Message, MessageSendParams, Part, StreamResult, TaskState, methods};
use crate::topics;
use crate::trust_manager::{DelegationPermit, policy_allows};

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

/// Why a delegation did not give an answer. The model reads it as the
/// tool's error (and may ask another peer); a task without a model ends
/// `failed` with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DelegateError {
    #[error("delegate: argument `{0}` is required")]
    MissingArgument(&'static str),
    #[error("delegate: `{0}` is not a valid agent name")]
    InvalidName(String),
    #[error("delegate: agent {from} may not call agent {to} (inter_agent_communication)")]
    NotPermitted { from: String, to: String },
    #[error("delegate: no agent named {0} is known (no agent card seen)")]
    UnknownPeer(String),
    #[error(
        "delegate: agent {0} is not connected: none of its replicas has a session on the broker"
    )]
    NotConnected(String),
    #[error("delegate to {peer}: {source}")]
    Identity {
        peer: String,
        source: crate::trust_manager::DelegationError,
    },
    #[error("delegate to {peer}: {source}")]
    Send { peer: String, source: SendError },
    #[error("delegate to {0}: agent stopped waiting")]
    Abandoned(String),
    #[error("delegate to {peer}: no answer within {seconds}s")]
    Timeout { peer: String, seconds: u64 },
    #[error("agent {peer} refused: {message} (code {code})")]
    Refused {
        peer: String,
        code: i64,
        message: String,
    },
    #[error("agent {peer} ended the task {state:?}: {why}")]
    Ended {
        peer: String,
        state: TaskState,
        why: String,
    },
    #[error("delegate to {0}: final response was not a task")]
    NotATask(String),
}

/// The `delegate` tool: arguments `{agent, text}` or `{agent, data}`.
pub(crate) async fn call(
    inner: &Arc<AgentInner>,
    caller: &Caller,
    args: &Value,
) -> Result<Vec<Part>, DelegateError> {
    let peer = args
        .get("agent")
        .and_then(Value::as_str)
        .ok_or(DelegateError::MissingArgument("agent"))?;
    if !topics::valid_level(peer) {
        return Err(DelegateError::InvalidName(peer.to_owned()));
    }
    let policy = &inner.cfg.inter_agent_communication;
    let Some(permit) = DelegationPermit::check(policy, peer) else {
        return Err(DelegateError::NotPermitted {
            from: inner.name.clone(),
            to: peer.to_owned(),
        });
    };
    if inner.cfg.agent_discovery.enabled && inner.peers.get(peer).is_none() {
        return Err(DelegateError::UnknownPeer(peer.to_owned()));
    }
    if inner.presence.gone(peer) {
        return Err(DelegateError::NotConnected(peer.to_owned()));
    }
    let mut message = Message::user_text("");
    message.parts = match (args.get("data"), args.get("text").and_then(Value::as_str)) {
        (Some(data), _) => vec![Part::data(data.clone())],
        (None, Some(text)) => vec![Part::text(text)],
        (None, None) => return Err(DelegateError::MissingArgument("text` or `data")),
    };

    let token = inner
        .trust
        .delegate(&caller.identity, caller.auth_token.as_deref(), &permit)
        .map_err(|source| DelegateError::Identity {
            peer: peer.to_owned(),
            source,
        })?;
    let envelope = Envelope {
        to: peer,
        user_id: &caller.user_id,
        token,
        call_depth: caller.call_depth + 1,
        budget: inner.cfg.max_message_size_bytes,
    };
    let params = MessageSendParams {
        message,
        configuration: None,
        metadata: None,
    };
    let sub_task = uuid::Uuid::new_v4().to_string();
    let call = inner
        .client
        .send(envelope, sub_task, methods::SEND, params)
        .await
        .map_err(|source| DelegateError::Send {
            peer: peer.to_owned(),
            source,
        })?;
    let timeout = Duration::from_secs(policy.request_timeout_seconds);
    let result = match call.final_answer(timeout).await {
        Ok(result) => result,
        Err(CallError::Refused { error, .. }) => {
            return Err(DelegateError::Refused {
                peer: peer.to_owned(),
                code: error.code,
                message: error.message,
            });
        }
        Err(CallError::Closed(_)) => return Err(DelegateError::Abandoned(peer.to_owned())),
        Err(CallError::TimedOut { wait, .. }) => {
            return Err(DelegateError::Timeout {
                peer: peer.to_owned(),
                seconds: wait.as_secs(),
            });
        }
    };
    match result {
        StreamResult::Task(task) if task.status.state == TaskState::Completed => {
            Ok(task.artifacts.into_iter().flat_map(|a| a.parts).collect())
        }
        StreamResult::Task(task) => Err(DelegateError::Ended {
            peer: peer.to_owned(),
            state: task.status.state,
            why: task.status.message.map(|m| m.text()).unwrap_or_default(),
        }),
        StreamResult::Message(m) => Ok(m.parts),
        _ => Err(DelegateError::NotATask(peer.to_owned())),
    }
}
