//! The demo's MCP endpoints: the bearer-token layer and both transports.
//!
//! Every MCP route sits behind [`require_bearer`], a middleware layer (not
//! code in each handler) that turns the token into a [`Caller`] request
//! extension or answers 401 with the RFC 9728 `resource_metadata` challenge
//! the OAuth client starts from. Transports:
//! - Streamable HTTP at `/mcp`: one JSON-RPC message per POST, answered as
//!   `application/json` (the spec lets the server pick JSON over SSE);
//!   notifications get 202; GET is 405 (no server-initiated stream).
//! - HTTP+SSE (protocol 2024-11-05) at `/sse`: the stream's first event
//!   names `/messages?session_id=…`, where the client POSTs; answers travel
//!   back on the stream as `message` events. A session is bound to the user
//!   who opened it, so one user's token cannot post into another's stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::App;
use super::store::{Caller, DemoState, random_token};
use super::tools::{self, Outcome};

/// Which MCP endpoint a guard protects: `/mcp` or `/sse` (the resource path).
#[derive(Clone)]
pub(crate) struct Guard {
    pub state: Arc<DemoState>,
    pub endpoint: &'static str,
}

/// Open SSE sessions by id.
#[derive(Default)]
pub(crate) struct SseSessions(Mutex<HashMap<String, SseSession>>);

#[derive(Clone)]
struct SseSession {
    user: String,
    tx: mpsc::Sender<Value>,
}

impl SseSessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, SseSession>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes the session when its stream is dropped (client gone).
struct SessionGuard {
    sessions: Arc<SseSessions>,
    id: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.map().remove(&self.id);
    }
}

/// The bearer-token layer of every MCP route.
pub(crate) async fn require_bearer(
    State(guard): State<Guard>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let resource = guard.state.resource_of(guard.endpoint);
    match token
        .as_deref()
        .and_then(|t| guard.state.check_access(t, &resource))
    {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => unauthorized(&guard.state, guard.endpoint, token.is_some()),
    }
}

fn metadata_url(state: &DemoState, endpoint: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource{endpoint}",
        state.base
    )
}

fn unauthorized(state: &DemoState, endpoint: &str, had_token: bool) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}\"",
        metadata_url(state, endpoint)
    );
    if had_token {
        challenge.push_str(", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"");
    }
    with_challenge(StatusCode::UNAUTHORIZED, &challenge, "invalid_token")
}

fn insufficient_scope(state: &DemoState, endpoint: &str, scope: &str) -> Response {
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{}\", error_description=\"this tool needs scope {scope}\"",
        metadata_url(state, endpoint)
    );
    with_challenge(StatusCode::FORBIDDEN, &challenge, "insufficient_scope")
}

fn with_challenge(status: StatusCode, challenge: &str, error: &str) -> Response {
    let mut response = (status, Json(json!({"error": error}))).into_response();
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Parses one JSON-RPC message; batches are not part of MCP 2025-06-18.
/// The error is a 400 carrying the JSON-RPC error reply.
fn parse_message(body: &[u8]) -> Result<Value, (StatusCode, Json<Value>)> {
    let message: Value = serde_json::from_slice(body).map_err(|e| {
        let reply = tools::error(Value::Null, -32700, &format!("parse error: {e}"));
        (StatusCode::BAD_REQUEST, Json(reply))
    })?;
    if message.is_array() {
        let reply = tools::error(Value::Null, -32600, "JSON-RPC batches are not supported");
        return Err((StatusCode::BAD_REQUEST, Json(reply)));
    }
    Ok(message)
}

/// `POST /mcp`
pub(crate) async fn streamable_post(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let message = match parse_message(&body) {
        Ok(message) => message,
        Err(refusal) => return refusal.into_response(),
    };
    app.state.observe_call(&message);
    match tools::handle(&message, &caller, app.page_size) {
        Outcome::Reply(reply) => {
            let mut response = Json(reply).into_response();
            if message.get("method").and_then(Value::as_str) == Some("initialize")
                && let Ok(id) = HeaderValue::from_str(&random_token(16))
            {
                response.headers_mut().insert("mcp-session-id", id);
            }
            response
        }
        Outcome::NoReply => StatusCode::ACCEPTED.into_response(),
        Outcome::InsufficientScope(scope) => insufficient_scope(&app.state, "/mcp", scope),
    }
}

/// `GET /mcp`: the demo never pushes server-initiated messages.
pub(crate) async fn streamable_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, DELETE")],
    )
        .into_response()
}

/// `DELETE /mcp`: sessions hold no state, so ending one is a no-op.
pub(crate) async fn streamable_delete() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `GET /sse`: opens a legacy SSE session.
pub(crate) async fn sse_open(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = random_token(16);
    let (tx, rx) = mpsc::channel::<Value>(64);
    app.sessions.map().insert(
        id.clone(),
        SseSession {
            user: caller.user,
            tx,
        },
    );
    let guard = SessionGuard {
        sessions: app.sessions.clone(),
        id: id.clone(),
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?session_id={id}"));
    let messages = stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let message = rx.recv().await?;
        let event = Event::default().event("message").data(message.to_string());
        Some((Ok(event), (rx, guard)))
    });
    Sse::new(stream::once(async move { Ok(endpoint) }).chain(messages))
        .keep_alive(KeepAlive::default())
}

/// `POST /messages?session_id=…`
pub(crate) async fn sse_post(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(id) = query.get("session_id") else {
        return (StatusCode::BAD_REQUEST, "session_id is required").into_response();
    };
    let Some(session) = app.sessions.map().get(id).cloned() else {
        return (StatusCode::NOT_FOUND, "unknown or closed session").into_response();
    };
    if session.user != caller.user {
        return (
            StatusCode::FORBIDDEN,
            "this session belongs to another user",
        )
            .into_response();
    }
    let message = match parse_message(&body) {
        Ok(message) => message,
        Err(refusal) => return refusal.into_response(),
    };
    app.state.observe_call(&message);
    match tools::handle(&message, &caller, app.page_size) {
        Outcome::Reply(reply) => match session.tx.send(reply).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(_) => (StatusCode::GONE, "the session's stream is closed").into_response(),
        },
        Outcome::NoReply => StatusCode::ACCEPTED.into_response(),
        Outcome::InsufficientScope(scope) => insufficient_scope(&app.state, "/sse", scope),
    }
}
