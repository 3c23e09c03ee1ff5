//! A scripted MCP server: Streamable HTTP on `127.0.0.1:0`, no auth, one
//! tool (`lookup`, which echoes its `q` argument), every request recorded
//! with its JSON-RPC method and headers.
//!
//! Why not the demo provider: its tools need the OAuth flow, and tests of
//! what reaches an MCP server (trace headers) need every request's headers,
//! which the demo does not keep.
//!
//! What is faithful to the protocol: `initialize` answered with a session
//! id (`Mcp-Session-Id`) that later requests must carry, `202` for
//! notifications, `tools/list` and `tools/call` as JSON answers, JSON-RPC
//! errors for unknown methods and tools.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SESSION: &str = "scripted-session";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The JSON-RPC method (`initialize`, `tools/call`, ...).
    pub method: String,
    pub headers: HeaderMap,
}

impl Seen {
    /// One header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running scripted MCP server; stops when dropped.
pub struct ScriptedMcp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedMcp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ScriptedMcp {
    pub async fn start() -> ScriptedMcp {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a scripted MCP server");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/mcp", post(answer))
            .with_state(seen.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedMcp { addr, seen, server }
    }

    /// The Streamable HTTP endpoint, for `connection_params.url`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The requests of one JSON-RPC method.
    pub fn seen_method(&self, method: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method)
            .collect()
    }
}

async fn answer(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
        method: method.clone(),
        headers: headers.clone(),
    });
    let session = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    if method != "initialize" && session != Some(SESSION) {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    }
    let Some(id) = request.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match method.as_str() {
        "initialize" => json!({
            "protocolVersion": request["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "scripted", "version": "1"},
        }),
        "tools/list" => json!({"tools": [{
            "name": "lookup",
            "description": "Looks a word up.",
            "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}},
                            "required": ["q"]},
        }]}),
        "tools/call" if request["params"]["name"] == "lookup" => {
            let q = request["params"]["arguments"]["q"].as_str().unwrap_or("");
            json!({"content": [{"type": "text", "text": format!("found {q}")}]})
        }
        _ => {
            let error = json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("no method {method}")}});
            return axum::Json(error).into_response();
        }
    };
    let mut response =
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    if method == "initialize" {
        response
            .headers_mut()
            .insert("mcp-session-id", HeaderValue::from_static(SESSION));
    }
    response
}
