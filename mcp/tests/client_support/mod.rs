//! A fake MCP server on 127.0.0.1 speaking both transports, for the client
//! tests: Streamable HTTP at `/mcp` (answers as JSON or as an event
//! stream), legacy HTTP+SSE at `/sse` + `/messages`. It records what every
//! request carried (method, bearer, session id, protocol version, trace
//! context) so tests
//! can assert on the wire, and can be told to forget sessions, drop
//! streams, or demand a token.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const GOOD: &str = "good-token";
pub const NARROW: &str = "narrow-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Json,
    EventStream,
}

/// What one request carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub method: Option<String>,
    pub authorization: Option<String>,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
    pub traceparent: Option<String>,
}

pub struct Options {
    pub answer: Answer,
    /// Require `Bearer GOOD` (or `Bearer NARROW`, which may not call tools).
    pub require_token: bool,
    /// Answer 401 without `WWW-Authenticate`.
    pub bare_401: bool,
    /// The protocol version the server answers to initialize.
    pub protocol_version: &'static str,
    /// `endpoint` event data for legacy SSE (`{sid}` replaced).
    pub endpoint: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            answer: Answer::Json,
            require_token: true,
            bare_401: false,
            protocol_version: "2025-06-18",
            endpoint: "messages?session_id={sid}".into(),
        }
    }
}

pub struct Fake {
    pub base: String,
    state: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Inner {
    opts: Options,
    base: String,
    seen: Mutex<Vec<Seen>>,
    sessions: Mutex<HashSet<String>>,
    next: AtomicU64,
    legacy: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    expire_always: AtomicBool,
}

impl Fake {
    pub async fn start(opts: Options) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Inner {
            opts,
            base: base.clone(),
            seen: Mutex::default(),
            sessions: Mutex::default(),
            next: AtomicU64::new(1),
            legacy: Mutex::default(),
            expire_always: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/mcp", post(streamable))
            .route("/sse", get(legacy_stream))
            .route("/messages", post(legacy_post))
            .route("/moved", post(moved_here))
            .route("/moved-away", post(moved_away))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            state,
            server,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn seen_method(&self, method: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method.as_deref() == Some(method))
            .collect()
    }

    /// Forgets every Streamable HTTP session (as a restarted server would).
    pub fn expire_sessions(&self) {
        self.state.sessions.lock().unwrap().clear();
    }

    /// Answers 404 to every request with a session id, forever.
    pub fn expire_always(&self) {
        self.state.expire_always.store(true, Ordering::SeqCst);
    }

    /// Ends every legacy event stream.
    pub fn drop_legacy_streams(&self) {
        self.state.legacy.lock().unwrap().clear();
    }
}

fn record(state: &Inner, path: &str, headers: &HeaderMap, body: Option<&Value>) {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.seen.lock().unwrap().push(Seen {
        path: path.into(),
        method: body.and_then(|b| b.get("method")?.as_str().map(str::to_owned)),
        authorization: h("authorization"),
        session_id: h("mcp-session-id"),
        protocol_version: h("mcp-protocol-version"),
        traceparent: h("traceparent"),
    });
}

/// Refusal for a missing or unknown token; `None` when the token may proceed.
fn check_token(state: &Inner, headers: &HeaderMap) -> Option<Response> {
    if !state.opts.require_token {
        return None;
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth == Some(&format!("Bearer {GOOD}")) || auth == Some(&format!("Bearer {NARROW}")) {
        return None;
    }
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    if !state.opts.bare_401 {
        let challenge = format!(
            r#"Bearer resource_metadata="{}/.well-known/oauth-protected-resource""#,
            state.base
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap(),
        );
    }
    Some(response)
}

fn is_narrow(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {NARROW}"))
}

/// What the MCP logic decided, before transport framing.
enum Reply {
    Message(Value),
    Accepted,
    Refused(Response),
}

fn tools() -> Vec<Value> {
    ["echo", "fail", "slow", "alpha", "beta"]
        .iter()
        .map(|name| {
            json!({"name": name, "description": format!("{name} tool"),
                   "inputSchema": {"type": "object"}})
        })
        .collect()
}

async fn handle(state: &Inner, headers: &HeaderMap, msg: &Value) -> Reply {
    let Some(id) = msg.get("id").cloned() else {
        return Reply::Accepted; // notification
    };
    let ok = |result: Value| Reply::Message(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match msg.get("method").and_then(Value::as_str).unwrap_or("") {
        "initialize" => ok(json!({
            "protocolVersion": state.opts.protocol_version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"},
        })),
        "tools/list" => {
            let page: usize = params
                .get("cursor")
                .and_then(Value::as_str)
                .map_or(0, |c| c.parse().unwrap());
            let all = tools();
            let slice: Vec<_> = all.iter().skip(page * 2).take(2).cloned().collect();
            let mut result = json!({"tools": slice});
            if (page + 1) * 2 < all.len() {
                result["nextCursor"] = json!((page + 1).to_string());
            }
            ok(result)
        }
        "tools/call" => {
            if is_narrow(headers) {
                let mut response = StatusCode::FORBIDDEN.into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer error="insufficient_scope", scope="tools:call", error_description="needs tools:call""#,
                    ),
                );
                return Reply::Refused(response);
            }
            let args = params.get("arguments").cloned().unwrap_or(json!({}));
            match params.get("name").and_then(Value::as_str) {
                Some("echo") => ok(json!({
                    "content": [{"type": "text", "text": args.to_string()}],
                    "structuredContent": args,
                    "isError": false,
                })),
                Some("fail") => ok(json!({
                    "content": [{"type": "text", "text": "it broke"}],
                    "isError": true,
                })),
                Some("slow") => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    ok(json!({"content": []}))
                }
                other => Reply::Message(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32602, "message": format!("unknown tool {other:?}")}})),
            }
        }
        other => Reply::Message(json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": format!("method {other} not found")}})),
    }
}

async fn streamable(
    State(state): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(msg): Json<Value>,
) -> Response {
    record(&state, "/mcp", &headers, Some(&msg));
    if let Some(refusal) = check_token(&state, &headers) {
        return refusal;
    }
    let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
    let mut new_session = None;
    if is_init {
        let sid = format!("session-{}", state.next.fetch_add(1, Ordering::SeqCst));
        state.sessions.lock().unwrap().insert(sid.clone());
        new_session = Some(sid);
    } else {
        let sid = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
        match sid {
            None => return (StatusCode::BAD_REQUEST, "missing Mcp-Session-Id").into_response(),
            Some(sid)
                if state.expire_always.load(Ordering::SeqCst)
                    || !state.sessions.lock().unwrap().contains(sid) =>
            {
                return StatusCode::NOT_FOUND.into_response();
            }
            Some(_) => {}
        }
    }
    let mut response = match handle(&state, &headers, &msg).await {
        Reply::Accepted => StatusCode::ACCEPTED.into_response(),
        Reply::Refused(r) => return r,
        Reply::Message(m) => match state.opts.answer {
            Answer::Json => Json(m).into_response(),
            Answer::EventStream => {
                // A priming event without data, a notification, then the answer.
                let progress = json!({"jsonrpc": "2.0", "method": "notifications/message",
                                      "params": {"level": "info", "data": "working"}});
                let body =
                    format!("id: 1\ndata:\n\nevent: message\ndata: {progress}\n\ndata: {m}\n\n");
                (
                    [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")],
                    body,
                )
                    .into_response()
            }
        },
    };
    if let Some(sid) = new_session {
        response
            .headers_mut()
            .insert("mcp-session-id", HeaderValue::from_str(&sid).unwrap());
    }
    response
}

/// A same-origin redirect to `/mcp` (as a server mounted at `/mcp/` does).
async fn moved_here() -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/mcp")]).into_response()
}

/// A redirect to another origin, which must not be followed.
async fn moved_away() -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, "http://127.0.0.2:9/mcp")],
    )
        .into_response()
}

async fn legacy_stream(State(state): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    record(&state, "/sse", &headers, None);
    if let Some(refusal) = check_token(&state, &headers) {
        return refusal;
    }
    let sid = format!("legacy-{}", state.next.fetch_add(1, Ordering::SeqCst));
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    state.legacy.lock().unwrap().insert(sid.clone(), tx);
    let endpoint = state.opts.endpoint.replace("{sid}", &sid);
    let first = stream::once(async move {
        Ok::<_, std::convert::Infallible>(Event::default().event("endpoint").data(endpoint))
    });
    let rest = stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok(Event::default().event("message").data(data)), rx))
    });
    let events: std::pin::Pin<Box<dyn Stream<Item = _> + Send>> = Box::pin(first.chain(rest));
    Sse::new(events).into_response()
}

async fn legacy_post(
    State(state): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(msg): Json<Value>,
) -> Response {
    record(&state, "/messages", &headers, Some(&msg));
    if let Some(refusal) = check_token(&state, &headers) {
        return refusal;
    }
    let sid = query.get("session_id").cloned().unwrap_or_default();
    let Some(tx) = state.legacy.lock().unwrap().get(&sid).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match handle(&state, &headers, &msg).await {
        Reply::Refused(r) => r,
        Reply::Accepted => StatusCode::ACCEPTED.into_response(),
        Reply::Message(m) => {
            let _ = tx.send(m.to_string());
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// A tool block for the fake.
pub fn config(fake: &Fake, transport: &str, extra: Value) -> amesh_mcp::tool_config::McpToolConfig {
    let path = if transport == "sse" { "/sse" } else { "/mcp" };
    let mut block = json!({
        "connection_params": {"type": transport, "url": format!("{}{path}", fake.base), "timeout": 5},
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        if k == "timeout" {
            block["connection_params"]["timeout"] = v;
        } else {
            block[k] = v;
        }
    }
    serde_json::from_value(block).unwrap()
}
