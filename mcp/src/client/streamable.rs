//! Streamable HTTP transport (MCP 2025-03-26 and later).
//!
//! Every client message is a POST to the one MCP URL. A request is answered
//! either as `application/json` (one message) or as a `text/event-stream`
//! that carries our response, possibly after server notifications. The
//! server names the session in an `Mcp-Session-Id` header on the
//! initialize answer; we send it back on every later message, with the
//! negotiated `MCP-Protocol-Version`. A 404 on a message that carried a
//! session id means the server forgot the session: reported as
//! [`McpError::SessionExpired`] so the session layer re-initializes.
//!
//! In a 2026-07-28 session there is no session id: every POST carries
//! `MCP-Protocol-Version: 2026-07-28` and the standard request headers
//! `Mcp-Method` and `Mcp-Name` (the tool name, Base64-wrapped when it is
//! not a plain header value), and a 4xx whose body is a JSON-RPC error is
//! that error ([`McpError::Rpc`]), which tells a modern server from a
//! legacy one during negotiation (see [`super::version`]).
//!
//! Not implemented, because an agent calling tools does not need them: the
//! optional GET stream for server-initiated messages, and resuming a broken
//! answer stream with `Last-Event-ID` (a broken answer fails that call).

use std::sync::Mutex;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use super::error::McpError;
use super::event_stream::EventParser;
use super::http::{Endpoint, MAX_BODY_BYTES, byte_stream, media_type};
use super::jsonrpc::{self, Incoming, Request, RpcError};

const HEADER_SESSION_ID: &str = "mcp-session-id";
const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const HEADER_METHOD: &str = "mcp-method";
const HEADER_NAME: &str = "mcp-name";

#[derive(Debug, Default, Clone)]
struct SessionState {
    session_id: Option<String>,
    protocol_version: Option<String>,
}

/// One Streamable HTTP session with one server, for one user.
#[derive(Debug)]
pub(crate) struct Streamable {
    endpoint: Endpoint,
    /// Written by initialize, read by every message; a std mutex because it
    /// is never held across an await.
    state: Mutex<SessionState>,
}

impl Streamable {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            state: Mutex::new(SessionState::default()),
        }
    }

    fn state(&self) -> SessionState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the session before a (re-)initialize.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = SessionState::default();
    }

    /// Records the protocol version the server chose, sent from now on.
    pub fn set_protocol_version(&self, version: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .protocol_version = Some(version.to_owned());
    }

    pub fn session_id(&self) -> Option<String> {
        self.state().session_id
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, request: &Request) -> Result<Result<Value, RpcError>, McpError> {
        let (response, new_session_id) = self.post(&request.to_json(), &request.method).await?;
        if response.status() == StatusCode::ACCEPTED {
            return Err(self
                .endpoint
                .protocol_error("server answered a request with 202 Accepted and no response"));
        }
        match media_type(response.headers()).as_deref() {
            Some("application/json") => {
                let body = self.endpoint.read_body(response).await?;
                let text = String::from_utf8_lossy(&body);
                let messages = jsonrpc::parse_messages(&text).map_err(|e| {
                    self.endpoint
                        .protocol_error(format!("invalid JSON answer: {e}"))
                })?;
                find_response(messages, request.id).ok_or_else(|| {
                    self.endpoint
                        .protocol_error(format!("JSON answer has no response to id {}", request.id))
                })
            }
            Some("text/event-stream") => self.read_event_stream(response, request.id).await,
            other => Err(self.endpoint.protocol_error(format!(
                "expected application/json or text/event-stream, found {}",
                other.unwrap_or("no Content-Type")
            ))),
        }
        .inspect(|_| self.adopt_session_id(&new_session_id))
    }

    /// Sends a notification; the server acknowledges with 202 (or 200).
    pub async fn notify(&self, message: &Value) -> Result<(), McpError> {
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let (_response, new_session_id) = self.post(message, method).await?;
        self.adopt_session_id(&new_session_id);
        Ok(())
    }

    /// Ends the session at the server (DELETE), best effort: servers may
    /// answer 405, and a session we drop expires there anyway.
    pub async fn close(&self) {
        let Some(session_id) = self.state().session_id else {
            return;
        };
        let rb = self
            .endpoint
            .http
            .delete(self.endpoint.url.clone())
            .header(HEADER_SESSION_ID, session_id);
        if let Ok(rb) = self.endpoint.authorize(rb)
            && let Err(e) = rb.send().await
        {
            tracing::debug!(tool_id = %self.endpoint.tool_id, error = %e.without_url(), "MCP session DELETE failed");
        }
        self.reset();
    }

    /// POSTs one message; maps failing statuses to errors. Returns the
    /// response and the session id it carried (adopted only once the
    /// answer is good, so a failed initialize leaves no half session).
    async fn post(
        &self,
        message: &Value,
        method: &str,
    ) -> Result<(reqwest::Response, Option<String>), McpError> {
        let state = self.state();
        let modern = state
            .protocol_version
            .as_deref()
            .is_some_and(super::version::is_modern);
        let mut rb = self
            .endpoint
            .http
            .post(self.endpoint.url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(message.to_string());
        if let Some(id) = &state.session_id {
            rb = rb.header(HEADER_SESSION_ID, id);
        }
        if let Some(version) = &state.protocol_version {
            rb = rb.header(HEADER_PROTOCOL_VERSION, version);
        }
        if modern {
            rb = rb.header(HEADER_METHOD, method);
            let params = message.get("params");
            let name = params
                .and_then(|p| p.get("name").or_else(|| p.get("uri")))
                .and_then(Value::as_str);
            if let Some(name) = name {
                rb = rb.header(HEADER_NAME, header_value(name));
            }
        }
        let response = self
            .endpoint
            .authorize(rb)?
            .send()
            .await
            .map_err(|e| self.endpoint.transport_error(e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && state.session_id.is_some() {
            return Err(McpError::SessionExpired {
                tool_id: self.endpoint.tool_id.clone(),
            });
        }
        if !status.is_success() {
            return Err(self.status_error(response, method).await);
        }
        if modern {
            return Ok((response, None)); // 2026-07-28 has no sessions
        }
        let session_id = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((response, session_id))
    }

    fn adopt_session_id(&self, session_id: &Option<String>) {
        if let Some(id) = session_id {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.session_id.is_none() {
                state.session_id = Some(id.clone());
            }
        }
    }

    /// A failing status: 401/403 become the auth variants; a JSON-RPC error
    /// body (servers answer 400 or 404 with one) is that error.
    async fn status_error(&self, response: reqwest::Response, method: &str) -> McpError {
        let status = response.status();
        let headers = response.headers().clone();
        let error = McpError::from_status(&self.endpoint.tool_id, status, &headers);
        if !matches!(error, McpError::Http { .. })
            || media_type(&headers).as_deref() != Some("application/json")
        {
            return error;
        }
        let Ok(body) = self.endpoint.read_body(response).await else {
            return error;
        };
        let Some(rpc) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").cloned())
            .filter(|e| e.get("code").is_some_and(Value::is_i64))
        else {
            return error;
        };
        McpError::Rpc {
            tool_id: self.endpoint.tool_id.clone(),
            method: method.to_owned(),
            code: rpc.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: format!(
                "HTTP {}: {}",
                status.as_u16(),
                rpc.get("message").and_then(Value::as_str).unwrap_or("")
            ),
            data: rpc.get("data").cloned(),
        }
    }

    /// Reads an answer stream until our response arrives.
    async fn read_event_stream(
        &self,
        response: reqwest::Response,
        id: u64,
    ) -> Result<Result<Value, RpcError>, McpError> {
        let mut stream = byte_stream(response);
        let mut parser = EventParser::new();
        let mut read = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.endpoint.transport_error(e))?;
            read += chunk.len();
            if read > MAX_BODY_BYTES {
                return Err(self
                    .endpoint
                    .protocol_error(format!("answer stream longer than {MAX_BODY_BYTES} bytes")));
            }
            let events = parser
                .push(&chunk)
                .map_err(|e| self.endpoint.protocol_error(e.to_string()))?;
            for event in events {
                if event.event != "message" || event.data.trim().is_empty() {
                    continue;
                }
                let messages = jsonrpc::parse_messages(&event.data).map_err(|e| {
                    self.endpoint
                        .protocol_error(format!("invalid JSON in event stream: {e}"))
                })?;
                if let Some(answer) = find_response(messages, id) {
                    return Ok(answer);
                }
            }
        }
        Err(self
            .endpoint
            .protocol_error(format!("event stream ended without a response to id {id}")))
    }
}

/// A value for `Mcp-Name`: as is when it is a plain header value, else the
/// `=?base64?…?=` form (non-ASCII, control characters, edge whitespace, or
/// something that already looks like that form).
fn header_value(value: &str) -> String {
    use base64::Engine as _;
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        value.to_owned()
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        format!("=?base64?{encoded}?=")
    }
}

/// Picks our response out of received messages; logs the rest.
fn find_response(messages: Vec<Value>, id: u64) -> Option<Result<Value, RpcError>> {
    for message in messages {
        match jsonrpc::classify(message) {
            Incoming::Response { id: got, result } if jsonrpc::id_matches(&got, id) => {
                return Some(result);
            }
            Incoming::Response { id: got, .. } => {
                tracing::debug!(%got, "MCP response to an id we are not waiting for; ignored");
            }
            Incoming::Other { method } => {
                tracing::debug!(?method, "MCP server message ignored by the tool client");
            }
        }
    }
    None
}

#[cfg(test)]
mod header_tests {
    use super::header_value;

    #[test]
    fn names_that_are_not_plain_header_values_are_base64_wrapped() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(
            header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }
}
