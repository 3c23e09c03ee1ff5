//! A scripted MCP server speaking revision 2026-07-28 only, over Streamable
//! HTTP on 127.0.0.1: stateless (no `initialize`, no session id), checking
//! every request as the spec's server validation does (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name` against the body, the `_meta` fields), and with
//! one tool that needs the user at a page first (URL-mode elicitation
//! through a multi round-trip request).
//!
//! Tools:
//! - `echo {text}`: answers the text.
//! - `connect_account {}`: the first call answers `input_required` with a
//!   URL-mode `elicitation/create` (key `account`) and a `requestState`
//!   naming a fresh nonce. The page is `GET /ui/connect?nonce=…` on this
//!   server: the user's visit marks the nonce done. A retry with that
//!   state and `{"account": {"action": "accept"}}` answers
//!   `connected <nonce>` once the page was visited (another
//!   `input_required` for the same nonce before); `decline` answers an
//!   `isError` result. A retry whose `requestState` the server never issued,
//!   or `inputResponses` without any, is refused with JSON-RPC -32602.
//!   Without the `elicitation.url` client capability the call is refused
//!   with `MissingRequiredClientCapability` (-32021).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

pub const VERSION: &str = "2026-07-28";

/// What one POST carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub protocol_version: Option<String>,
    pub mcp_method: Option<String>,
    pub mcp_name: Option<String>,
    pub session_id: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// Issued nonces: whether the user visited the page.
    nonces: Mutex<HashMap<String, bool>>,
    /// The page URL to send instead of this server's own (a hostile one).
    url_override: Mutex<Option<String>>,
    base: String,
}

/// A running server; dropping it stops it.
pub struct ModernMcp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModernMcp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModernMcp {
    pub async fn start() -> ModernMcp {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the modern MCP server");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/mcp", post(mcp).get(not_allowed).delete(not_allowed))
            .route("/ui/connect", get(page))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ModernMcp { shared, addr, task }
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The `tools/call` requests received, in order.
    pub fn tool_calls(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "tools/call")
            .collect()
    }

    /// Sends `url` as the elicitation page from now on.
    pub fn send_page_url(&self, url: &str) {
        *self.shared.url_override.lock().unwrap() = Some(url.to_owned());
    }
}

async fn not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

/// The page the user opens: marks the nonce done.
async fn page(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let nonce = q.get("nonce").cloned().unwrap_or_default();
    match s.nonces.lock().unwrap().get_mut(&nonce) {
        Some(done) => {
            *done = true;
            "Account connected; go back to the conversation.".into_response()
        }
        None => (StatusCode::NOT_FOUND, "unknown nonce").into_response(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn error(status: StatusCode, id: &Value, code: i64, message: &str, data: Value) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}});
    (status, Json(body)).into_response()
}

fn result(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn mcp(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let method = body["method"].as_str().unwrap_or("").to_owned();
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let params = body.get("params").cloned().unwrap_or(Value::Null);
    let seen = Seen {
        method: method.clone(),
        protocol_version: header(&headers, "mcp-protocol-version"),
        mcp_method: header(&headers, "mcp-method"),
        mcp_name: header(&headers, "mcp-name"),
        session_id: header(&headers, "mcp-session-id"),
        body: body.clone(),
    };
    s.seen.lock().unwrap().push(seen.clone());
    let bad = StatusCode::BAD_REQUEST;
    if method == "initialize" {
        return error(
            bad,
            &id,
            -32601,
            "initialize is not a 2026-07-28 method; this server speaks 2026-07-28 only",
            json!({"supported": [VERSION]}),
        );
    }
    // Server validation: version, then headers against the body, then _meta.
    if seen.protocol_version.as_deref() != Some(VERSION) {
        let requested = seen.protocol_version.clone().unwrap_or_default();
        return error(
            bad,
            &id,
            -32022,
            "Unsupported protocol version",
            json!({"supported": [VERSION], "requested": requested}),
        );
    }
    if seen.mcp_method.as_deref() != Some(method.as_str()) {
        return error(bad, &id, -32020, "Header mismatch: Mcp-Method", Value::Null);
    }
    let name = params.get("name").and_then(Value::as_str);
    if method == "tools/call" && seen.mcp_name.as_deref() != name {
        return error(bad, &id, -32020, "Header mismatch: Mcp-Name", Value::Null);
    }
    let meta = &params["_meta"];
    if meta["io.modelcontextprotocol/protocolVersion"] != VERSION
        || !meta["io.modelcontextprotocol/clientCapabilities"].is_object()
    {
        return error(
            bad,
            &id,
            -32602,
            "missing _meta protocol fields",
            Value::Null,
        );
    }
    let server_info =
        json!({"io.modelcontextprotocol/serverInfo": {"name": "modern-test", "version": "1"}});
    match method.as_str() {
        "server/discover" => result(
            &id,
            json!({"resultType": "complete", "supportedVersions": [VERSION],
                   "capabilities": {"tools": {}}, "_meta": server_info,
                   "instructions": "A 2026-07-28 test server.", "ttlMs": 60000, "cacheScope": "public"}),
        ),
        "tools/list" => result(
            &id,
            json!({"resultType": "complete", "ttlMs": 60000, "cacheScope": "public", "tools": [
                {"name": "echo", "description": "Echoes text",
                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
                {"name": "connect_account", "description": "Connects your account (opens a page first)",
                 "inputSchema": {"type": "object", "properties": {}}}
            ]}),
        ),
        "tools/call" => call(&s, &id, &params, meta),
        _ => error(
            StatusCode::NOT_FOUND,
            &id,
            -32601,
            "Method not found",
            Value::Null,
        ),
    }
}

fn text_result(id: &Value, text: &str, is_error: bool) -> Response {
    result(
        id,
        json!({"resultType": "complete", "content": [{"type": "text", "text": text}], "isError": is_error}),
    )
}

fn call(s: &Shared, id: &Value, params: &Value, meta: &Value) -> Response {
    match params["name"].as_str() {
        Some("echo") => text_result(
            id,
            params["arguments"]["text"].as_str().unwrap_or(""),
            false,
        ),
        Some("connect_account") => connect_account(s, id, params, meta),
        other => error(
            StatusCode::OK,
            id,
            -32602,
            &format!("unknown tool {other:?}"),
            Value::Null,
        ),
    }
}

fn input_required(s: &Shared, id: &Value, nonce: &str) -> Response {
    let url = s
        .url_override
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| format!("{}/ui/connect?nonce={nonce}", s.base));
    result(
        id,
        json!({"resultType": "input_required",
               "inputRequests": {"account": {"method": "elicitation/create", "params": {
                   "mode": "url", "url": url, "message": "Connect your account at the provider"}}},
               "requestState": format!("state:{nonce}")}),
    )
}

fn connect_account(s: &Shared, id: &Value, params: &Value, meta: &Value) -> Response {
    let caps = &meta["io.modelcontextprotocol/clientCapabilities"];
    if !caps["elicitation"]["url"].is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            id,
            -32021,
            "Missing required client capability",
            json!({"requiredCapabilities": {"elicitation": {"url": {}}}}),
        );
    }
    let responses = params.get("inputResponses");
    let state = params.get("requestState").and_then(Value::as_str);
    let Some(state) = state else {
        if responses.is_some() {
            return error(
                StatusCode::OK,
                id,
                -32602,
                "inputResponses without requestState",
                Value::Null,
            );
        }
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        s.nonces.lock().unwrap().insert(nonce.clone(), false);
        return input_required(s, id, &nonce);
    };
    let nonce = state.strip_prefix("state:").unwrap_or("");
    let visited = match s.nonces.lock().unwrap().get(nonce) {
        Some(visited) => *visited,
        None => {
            return error(
                StatusCode::OK,
                id,
                -32602,
                "invalid requestState",
                Value::Null,
            );
        }
    };
    match responses.and_then(|r| r["account"]["action"].as_str()) {
        Some("accept") if visited => {
            s.nonces.lock().unwrap().remove(nonce);
            text_result(id, &format!("connected {nonce}"), false)
        }
        Some("accept") => input_required(s, id, nonce),
        Some(other) => text_result(id, &format!("the user chose {other}"), true),
        None => error(
            StatusCode::OK,
            id,
            -32602,
            "requestState without inputResponses",
            Value::Null,
        ),
    }
}
