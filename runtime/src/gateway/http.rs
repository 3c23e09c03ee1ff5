//! The gateway's HTTP surface. Every route is declared in [`router`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{AuthError, User};
use super::pending::{Event, EventRx, PendingGuard};
use super::{
    GatewayInner, auth_routes, body, connections, conversation_routes, page, site, sso, stream,
    throttle, tool_callback,
};
use crate::a2a::jsonrpc::{self, Request, RpcError};
use crate::a2a::{
    Message, MessageSendParams, Part, Role, TaskIdParams, TaskQueryParams, methods, props,
};
use crate::broker::{PublishError, UserProperties};
use crate::topics;

pub(crate) fn router(inner: Arc<GatewayInner>) -> Router {
    let limit = inner.cfg.max_message_size_bytes;
    let body_rules = body::BodyRules {
        idle_timeout: Duration::from_secs(inner.cfg.limits.idle_timeout_seconds.max(1)),
        max_bytes: limit,
    };
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{file}", get(page::asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::telemetry::endpoint::scrape))
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/message:stream", post(stream::message_stream))
        .route("/api/v1/message:send", post(message_send))
        .route("/api/v1/tasks", get(stream::list_tasks))
        .route("/api/v1/tasks/{id}", get(get_task).post(task_action))
        .route("/api/v1/tasks/{id}/events", get(stream::task_events))
        .route(
            "/api/v1/conversations",
            get(conversation_routes::list).post(conversation_routes::create),
        )
        .route(
            "/api/v1/conversations/{id}",
            get(conversation_routes::get)
                .patch(conversation_routes::rename)
                .delete(conversation_routes::delete),
        )
        .route("/api/v1/connections", get(connections::list))
        .route(
            "/api/v1/connections/{agent}/{tool}",
            post(connections::connect).delete(connections::disconnect),
        )
        .route(
            "/api/v1/auth/login",
            get(sso::login).post(auth_routes::login),
        )
        .route("/api/v1/auth/callback", get(sso::callback))
        .route("/api/v1/auth/config", get(auth_routes::config))
        .route("/api/v1/auth/logout", post(auth_routes::logout))
        .route("/api/v1/auth/me", get(auth_routes::me))
        .route("/api/v1/auth/tool/callback", get(tool_callback::callback))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            body_rules,
            body::timely_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            site::guard,
        ))
        .layer(axum::middleware::from_fn(page::security_headers))
        .with_state(inner)
}

/// An error answered as `{"error": message}` (plus the JSON-RPC code when
/// an agent refused).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub code: Option<i64>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            code: None,
            retry_after: None,
        }
    }

    /// 429 for a client address that must wait after failed authentications.
    pub(crate) fn throttled(wait: Duration) -> Self {
        let secs = throttle::retry_after_secs(wait);
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins or refused tokens from this address; \
                     try again in {secs} s"
                ),
            )
        }
    }

    /// Maps an agent's JSON-RPC refusal to the closest HTTP status.
    fn from_rpc(e: RpcError) -> Self {
        let status = match e.code {
            jsonrpc::INVALID_PARAMS | jsonrpc::INVALID_REQUEST | jsonrpc::METHOD_NOT_FOUND => {
                StatusCode::BAD_REQUEST
            }
            jsonrpc::CALL_DEPTH_EXCEEDED => StatusCode::BAD_REQUEST,
            jsonrpc::TASK_NOT_FOUND => StatusCode::NOT_FOUND,
            jsonrpc::TASK_NOT_CANCELABLE => StatusCode::CONFLICT,
            jsonrpc::UNAUTHENTICATED => StatusCode::FORBIDDEN,
            jsonrpc::MESSAGE_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError {
            status,
            message: e.message,
            code: Some(e.code),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(code) = self.code {
            body["code"] = json!(code);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

/// The address a request came from (set by the accept loop), if known.
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The authenticated user of a request; rejects with 401 otherwise, and
/// with 429 while the client's address must wait after failed attempts.
pub(crate) struct AuthUser(pub User);

impl FromRequestParts<Arc<GatewayInner>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<GatewayInner>,
    ) -> Result<Self, ApiError> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        if let Some(ip) = ip {
            state
                .throttle
                .check(ip, Instant::now())
                .map_err(ApiError::throttled)?;
        }
        match state.auth.authenticate(&parts.headers) {
            Ok(user) => Ok(AuthUser(user)),
            Err(e) => {
                // A wrong token or forged cookie is a guess; a missing,
                // expired or logged-out one is not.
                if e == AuthError::Invalid
                    && let Some(ip) = ip
                {
                    state.throttle.failed(ip, Instant::now());
                }
                Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
            }
        }
    }
}

async fn healthz(State(inner): State<Arc<GatewayInner>>) -> Json<Value> {
    Json(json!({ "status": "ok", "gateway_id": inner.id }))
}

async fn list_agents(State(inner): State<Arc<GatewayInner>>, _user: AuthUser) -> Json<Value> {
    Json(json!({ "agents": inner.agents.list() }))
}

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

/// A request on its way: the task id and the channel its answers arrive on.
pub(crate) struct Sent {
    pub(crate) task_id: String,
    pub(crate) agent: String,
    pub(crate) rx: EventRx,
    /// Unregisters the reply channel when the request is done or abandoned.
    _guard: PendingGuard,
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
) -> Result<Sent, ApiError> {
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
) -> Result<Sent, ApiError> {
    let payload = serde_json::to_vec(&Request::new(id.clone(), method, params))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if payload.len() > inner.cfg.max_message_size_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request of {} bytes exceeds max_message_size_bytes ({})",
                payload.len(),
                inner.cfg.max_message_size_bytes
            ),
        ));
    }
    let token = token.map_err(|e| {
        tracing::error!(gateway = %inner.id, error = %e, "cannot sign identity token");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot sign the identity token",
        )
    })?;
    let mut user_props = UserProperties::new()
        .with(
            props::REPLY_TO,
            topics::gateway_response(&inner.ns, &inner.id, &id),
        )
        .with(
            props::STATUS_TOPIC,
            topics::gateway_status(&inner.ns, &inner.id, &id),
        )
        .with(props::USER_ID, user.id.clone())
        .with(props::CLIENT_ID, inner.id.clone())
        .with(props::TIMESTAMP, crate::cards::now_millis().to_string());
    if let Some(token) = token {
        user_props.push(props::AUTH_TOKEN, token);
    }
    let rx = inner
        .pending
        .register(&id, agent, method, inner.cfg.limits.stream_queue_bytes);
    let guard = PendingGuard {
        inner: inner.clone(),
        id: id.clone(),
    };
    inner
        .broker
        .publish(
            &topics::agent_request(&inner.ns, agent),
            payload,
            user_props,
            false,
        )
        .await
        .map_err(|e| {
            let status = match e {
                PublishError::Disconnected(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(gateway = %inner.id, agent, error = %e, "request not delivered");
            ApiError::new(status, format!("could not send to agent {agent}: {e}"))
        })?;
    Ok(Sent {
        task_id: id,
        agent: agent.to_string(),
        rx,
        _guard: guard,
    })
}

/// Sends a new task to an agent.
pub(crate) async fn start_task(
    inner: &Arc<GatewayInner>,
    user: &User,
    body: SendBody,
    method: &str,
) -> Result<Sent, ApiError> {
    let (agent, message) = body.into_message()?;
    if !topics::valid_level(&agent) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{agent}` is not a valid agent name"),
        ));
    }
    if inner.agents.get(&agent).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown agent {agent}: no agent card seen (GET /api/v1/agents lists the live ones)"
            ),
        ));
    }
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
    send(inner, user, &agent, task_id, method, params).await
}

pub(crate) fn timeout(inner: &GatewayInner) -> Duration {
    Duration::from_secs(inner.cfg.request_timeout_seconds.max(1))
}

async fn message_send(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Json(body): Json<SendBody>,
) -> Result<Json<Value>, ApiError> {
    let mut sent = start_task(&inner, &user, body, methods::SEND).await?;
    let deadline = tokio::time::Instant::now() + timeout(&inner);
    loop {
        match tokio::time::timeout_at(deadline, sent.rx.recv()).await {
            Ok(Some(Event::Final(result))) => {
                return Ok(Json(serde_json::to_value(result).unwrap_or(Value::Null)));
            }
            Ok(Some(Event::Error(e))) => return Err(ApiError::from_rpc(e)),
            Ok(Some(Event::Update(_))) => continue,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "answer channel closed",
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "agent {} gave no answer for task {} within {:?}",
                        sent.agent,
                        sent.task_id,
                        timeout(&inner)
                    ),
                ));
            }
        }
    }
}

/// Sends a one-shot request about an existing task and waits for the answer.
async fn ask_agent(
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
    let mut sent = send(inner, user, agent, id, method, params).await?;
    Ok(tokio::time::timeout(wait, sent.rx.recv())
        .await
        .ok()
        .flatten())
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
    let mut sent = send_with(inner, user, agent, id, method, params, token).await?;
    Ok(tokio::time::timeout(wait, sent.rx.recv())
        .await
        .ok()
        .flatten())
}

async fn get_task(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = inner
        .tasks
        .get(&id, &user.id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("task {id} not found")))?;
    let params = TaskQueryParams {
        id: id.clone(),
        history_length: None,
    };
    match ask_agent(&inner, &user, &rec.agent, methods::GET, params).await? {
        Some(Event::Final(r)) => Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null))),
        Some(Event::Error(e)) => Err(ApiError::from_rpc(e)),
        // The agent is gone or slow (or forgot the task): the last state the
        // gateway saw is still useful. The gateway keeps no task content.
        _ => match rec.state {
            Some(state) => {
                let mut task = crate::a2a::Task::new(&id, "", state);
                task.metadata = Some(serde_json::Map::from_iter([(
                    "amesh_note".to_string(),
                    json!("the agent did not answer; this is the last state the gateway saw"),
                )]));
                Ok(Json(serde_json::to_value(task).unwrap_or(Value::Null)))
            }
            None => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("agent {} did not answer about task {id}", rec.agent),
            )),
        },
    }
}

/// `POST /api/v1/tasks/{id}:cancel` (the action is a suffix of the id
/// segment, Google API style).
async fn task_action(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id_action): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(id) = id_action.strip_suffix(":cancel") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown task action; use POST /api/v1/tasks/{id}:cancel",
        ));
    };
    let rec = inner
        .tasks
        .get(id, &user.id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("task {id} not found")))?;
    let params = TaskIdParams { id: id.to_string() };
    match ask_agent(&inner, &user, &rec.agent, methods::CANCEL, params).await? {
        Some(Event::Final(r)) => Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null))),
        Some(Event::Error(e)) => Err(ApiError::from_rpc(e)),
        _ => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("agent {} did not answer the cancel of task {id}", rec.agent),
        )),
    }
}
