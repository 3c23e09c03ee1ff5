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
    #[error("delegate to {peer}: {source}")]
    Identity {
        peer: String,
        source: crate::trust_manager::DelegationError,
    },
    #[error("delegate to {peer}: {source}")]
    Publish {
        peer: String,
        source: crate::broker::PublishError,
    },
    #[error("delegate to {0}: agent stopped waiting")]
    Abandoned(String),
    #[error("delegate to {peer}: no answer within {seconds}s")]
    Timeout { peer: String, seconds: u64 },
    #[error("delegate to {peer}: malformed response: {source}")]
    Malformed {
        peer: String,
        source: serde_json::Error,
    },
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
    let mut message = Message::user_text("");
    message.parts = match (args.get("data"), args.get("text").and_then(Value::as_str)) {
        (Some(data), _) => vec![Part::data(data.clone())],
        (None, Some(text)) => vec![Part::text(text)],
        (None, None) => return Err(DelegateError::MissingArgument("text` or `data")),
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
        .map_err(|source| DelegateError::Identity {
            peer: peer.to_owned(),
            source,
        })?;
    if let Some(token) = token {
        user_props.push(props::AUTH_TOKEN, token);
    }

    let rx = inner.delegations.register(&sub_task, peer);
    let _guard = PendingGuard {
        delegations: &inner.delegations,
        id: sub_task.clone(),
    };
    let payload = serde_json::to_vec(&request).map_err(|source| DelegateError::Malformed {
        peer: peer.to_owned(),
        source,
    })?;
    inner
        .broker
        .publish(
            &topics::agent_request(&inner.ns, peer),
            payload,
            user_props,
            false,
        )
        .await
        .map_err(|source| DelegateError::Publish {
            peer: peer.to_owned(),
            source,
        })?;
    let timeout = Duration::from_secs(policy.request_timeout_seconds);
    let payload = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(DelegateError::Abandoned(peer.to_owned())),
        Err(_) => {
            return Err(DelegateError::Timeout {
                peer: peer.to_owned(),
                seconds: timeout.as_secs(),
            });
        }
    };
    let malformed = |source| DelegateError::Malformed {
        peer: peer.to_owned(),
        source,
    };
    let response: Response = serde_json::from_slice(&payload).map_err(malformed)?;
    if let Some(err) = response.error {
        return Err(DelegateError::Refused {
            peer: peer.to_owned(),
            code: err.code,
            message: err.message,
        });
    }
    let result: StreamResult =
        serde_json::from_value(response.result.unwrap_or(Value::Null)).map_err(malformed)?;
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
