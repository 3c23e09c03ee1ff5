//! The gateway's requests to agents, made for a signed-in user through the
//! gateway's [`crate::a2a::client::A2aClient`]: new tasks, one-shot
//! questions, and callbacks forwarded with a token of their own.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::GatewayInner;
use super::api_error::ApiError;
use super::auth::User;
use crate::a2a::client::{Call, Envelope, Event, SendError};
use crate::a2a::{Message, MessageSendParams, Part, Role, TaskState, liveness};
use crate::broker::PublishError;
use crate::topics;

/// Body of `POST /api/v1/message:send` and `:stream`. Either a full A2A
/// `message` (its `messageId` may be left out) or the `text` / `data`
/// shorthand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendBody {
    #[serde(alias = "agent")]
    agent_name: String,
    #[serde(default)]
    message: Option<InputMessage>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default, rename = "contextId", alias = "context_id")]
    context_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputMessage {
    #[serde(default)]
    message_id: Option<String>,
    parts: Vec<Part>,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

impl SendBody {
    /// The conversation the request continues, if it names one.
    pub(crate) fn context_id(&self) -> Option<&str> {
        self.context_id
            .as_deref()
            .or_else(|| self.message.as_ref().and_then(|m| m.context_id.as_deref()))
    }

    /// What the user said, as text for a conversation's turn: the text
    /// parts, or the data as JSON.
    pub(crate) fn prompt_text(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        for part in self.message.iter().flat_map(|m| &m.parts) {
            match part {
                Part::Text { text, .. } => out.push(text.clone()),
                Part::Data { data, .. } => out.push(data.to_string()),
                Part::File { .. } => out.push("(file)".to_owned()),
            }
        }
        out.extend(self.text.clone());
        out.extend(self.data.as_ref().map(Value::to_string));
        out.join("\n")
    }

    fn into_message(self) -> Result<(String, Message), ApiError> {
        let mut parts = Vec::new();
        let mut context_id = self.context_id;
        let mut message_id = None;
        let mut metadata = None;
        if let Some(m) = self.message {
            parts = m.parts;
            context_id = context_id.or(m.context_id);
            message_id = m.message_id;
            metadata = m.metadata;
        }
        if let Some(text) = self.text {
            parts.push(Part::text(text));
        }
        if let Some(data) = self.data {
            parts.push(Part::data(data));
        }
        if parts.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the request needs `message`, `text` or `data`",
            ));
        }
        let message = Message {
            kind: "message".into(),
            message_id: message_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            role: Role::User,
            parts,
            context_id,
            task_id: None,
            reference_task_ids: Vec::new(),
            metadata,
        };
        Ok((self.agent_name, message))
    }
}

/// Publishes an A2A request to `agent` for `user`, with reply topics named
/// after `id`, and the user's identity token for that agent.
async fn send(
    inner: &Arc<GatewayInner>,
    user: &User,
    agent: &str,
    id: String,
    method: &str,
    params: impl serde::Serialize,
) -> Result<Call, ApiError> {
    let ttl = Duration::from_secs(inner.cfg.trust_manager.jwt_default_ttl_seconds);
    let token = inner.tokens.token_for(&inner.trust, user, agent, ttl);
    send_with(inner, user, agent, id, method, params, token).await
}

/// [`send`] with the token given (or the reason it could not be signed).
async fn send_with(
    inner: &Arc<GatewayInner>,
    user: &User,
    agent: &str,
    id: String,
    method: &str,
    params: impl serde::Serialize,
    token: anyhow::Result<Option<String>>,
) -> Result<Call, ApiError> {
    let token = token.map_err(|e| {
        tracing::error!(gateway = %inner.id, error = %e, "cannot sign identity token");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot sign the identity token",
        )
    })?;
    let envelope = Envelope {
        to: agent,
        user_id: &user.id,
        token,
        call_depth: 0,
        budget: inner.cfg.limits.stream_queue_bytes,
    };
    let id_sent = id.clone();
    inner
        .client
        .send(envelope, id, method, params)
        .await
        .inspect_err(|_| {
            // Never sent: the task is over, and no longer counts as running.
            inner.tasks.set_state(&id_sent, TaskState::Failed);
        })
        .map_err(|e| match e {
            SendError::Encode(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            SendError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            SendError::Publish(e) => {
                let status = match e {
                    PublishError::Disconnected(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                };
                tracing::warn!(gateway = %inner.id, agent, error = %e, "request not delivered");
                ApiError::new(status, format!("could not send to agent {agent}: {e}"))
            }
        })
}

/// Sends a new task to an agent. Returns the call and how long the task
/// may stay silent while it runs (`a2a::liveness`; `None` when the
/// agent's card promises no heartbeats).
pub(crate) async fn start_task(
    inner: &Arc<GatewayInner>,
    user: &User,
    body: SendBody,
    method: &str,
) -> Result<(Call, Option<Duration>), ApiError> {
    let (agent, message) = body.into_message()?;
    if !topics::valid_level(&agent) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{agent}` is not a valid agent name"),
        ));
    }
    let Some(card) = inner.agents.get(&agent) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown agent {agent}: no agent card seen (GET /api/v1/agents lists the live ones)"
            ),
        ));
    };
    if inner.presence.gone(&agent) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "agent {agent} is not connected: none of its replicas has a session on the \
                 broker, so nobody would receive the task (it was not sent); ask again once \
                 the agent is back"
            ),
        ));
    }
    let silence = liveness::silence_limit(&card);
    let task_id = format!("task-{}", uuid::Uuid::new_v4().simple());
    inner.tasks.start(&task_id, &agent, &user.id).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{e}: wait for one to end, or cancel one"),
        )
    })?;
    let params = MessageSendParams {
        message,
        configuration: None,
        metadata: None,
    };
    let call = send(inner, user, &agent, task_id, method, params).await?;
    Ok((call, silence))
}

pub(crate) fn timeout(inner: &GatewayInner) -> Duration {
    Duration::from_secs(inner.cfg.request_timeout_seconds.max(1))
}

/// Sends a one-shot request about an existing task and waits for the answer.
pub(crate) async fn ask_agent(
    inner: &Arc<GatewayInner>,
    user: &User,
    agent: &str,
    method: &str,
    params: impl serde::Serialize,
) -> Result<Option<Event>, ApiError> {
    let wait = Duration::from_secs(10).min(timeout(inner));
    ask_agent_for(inner, user, agent, method, params, wait).await
}

/// Sends a one-shot request to `agent` and waits up to `wait` for the
/// answer (`None` when none came).
pub(crate) async fn ask_agent_for(
    inner: &Arc<GatewayInner>,
    user: &User,
    agent: &str,
    method: &str,
    params: impl serde::Serialize,
    wait: Duration,
) -> Result<Option<Event>, ApiError> {
    let id = format!("req-{}", uuid::Uuid::new_v4().simple());
    let call = send(inner, user, agent, id, method, params).await?;
    Ok(call.first_answer(wait).await)
}

/// [`ask_agent_for`] with a token of the caller's making (the assertion
/// scoped to one tool authorization callback).
pub(crate) async fn ask_agent_with_token(
    inner: &Arc<GatewayInner>,
    user: &User,
    agent: &str,
    method: &str,
    params: impl serde::Serialize,
    wait: Duration,
    token: anyhow::Result<Option<String>>,
) -> Result<Option<Event>, ApiError> {
    let id = format!("req-{}", uuid::Uuid::new_v4().simple());
    let call = send_with(inner, user, agent, id, method, params, token).await?;
    Ok(call.first_answer(wait).await)
}
