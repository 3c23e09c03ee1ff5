//! An MCP server (Streamable HTTP, no auth) whose tools misbehave the way
//! real providers do under trouble, for the fault tests: each tool name is
//! one fault, so one server and one agent config cover them all.
//!
//! | tool | what `tools/call` gets |
//! |---|---|
//! | `ok` | a normal JSON answer |
//! | `boom` | HTTP 500 with a plain-text body |
//! | `unavailable` | HTTP 503 with `Retry-After: 1` |
//! | `stall` | headers never come |
//! | `trickle` | an event stream that sends a keep-alive comment every 200 ms and never the answer |
//! | `slow_ok` | an event stream that sends the answer a few bytes at a time over about a second |
//!
//! `initialize`, `tools/list` and notifications are answered normally.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::stream;
use serde_json::{Value, json};

/// The tools the server lists, in order.
pub const TOOLS: [&str; 6] = ["ok", "boom", "unavailable", "stall", "trickle", "slow_ok"];

/// Pause between the keep-alive comments of `trickle`.
const TRICKLE_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Calls(Mutex<HashMap<String, usize>>);

/// A running faulty server; stops when dropped.
pub struct FaultyMcp {
    url: String,
    calls: Arc<Calls>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyMcp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultyMcp {
    pub async fn start() -> anyhow::Result<FaultyMcp> {
        let calls = Arc::new(Calls::default());
        let app = Router::new()
            .route(
                "/mcp",
                post(streamable).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/mcp", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FaultyMcp { url, calls, server })
    }

    /// The Streamable HTTP endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `tools/call` requests received for `tool`.
    pub fn calls(&self, tool: &str) -> usize {
        let calls = self.calls.0.lock().unwrap_or_else(|p| p.into_inner());
        calls.get(tool).copied().unwrap_or(0)
    }
}

async fn streamable(State(calls): State<Arc<Calls>>, Json(msg): Json<Value>) -> Response {
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let answer = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match msg.get("method").and_then(Value::as_str).unwrap_or("") {
        "initialize" => {
            let version = params
                .get("protocolVersion")
                .cloned()
                .unwrap_or(json!("2025-06-18"));
            let mut response = Json(answer(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "faulty", "version": "1"},
            })))
            .into_response();
            response.headers_mut().insert(
                "mcp-session-id",
                header::HeaderValue::from_static("faulty-1"),
            );
            response
        }
        "tools/list" => Json(answer(json!({
            "tools": TOOLS.iter().map(|t| json!({
                "name": t,
                "description": format!("The {t} fault."),
                "inputSchema": {"type": "object", "properties": {}},
            })).collect::<Vec<_>>(),
        })))
        .into_response(),
        "tools/call" => {
            let tool = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            *calls
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(tool.clone())
                .or_default() += 1;
            let done =
                answer(json!({"content": [{"type": "text", "text": format!("{tool} done")}]}));
            call(&tool, done).await
        }
        other => Json(json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32601, "message": format!("method {other} not found")}}))
        .into_response(),
    }
}

async fn call(tool: &str, done: Value) -> Response {
    let event_stream = |body: Body| {
        (
            [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")],
            body,
        )
            .into_response()
    };
    match tool {
        "ok" => Json(done).into_response(),
        "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "database on fire").into_response(),
        "unavailable" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "down for maintenance",
        )
            .into_response(),
        "stall" => {
            // Hold the request until the client gives up (or the server stops).
            std::future::pending::<Response>().await
        }
        "trickle" => {
            let ticks = stream::unfold((), |()| async {
                tokio::time::sleep(TRICKLE_EVERY).await;
                Some((
                    Ok::<_, Infallible>(Bytes::from_static(b": still here\n\n")),
                    (),
                ))
            });
            event_stream(Body::from_stream(ticks))
        }
        "slow_ok" => {
            let text = format!("event: message\ndata: {done}\n\n").into_bytes();
            let pieces: Vec<Bytes> = text
                .chunks(text.len().div_ceil(10))
                .map(Bytes::copy_from_slice)
                .collect();
            let slow = stream::unfold(pieces.into_iter(), |mut rest| async move {
                let piece = rest.next()?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok::<_, Infallible>(piece), rest))
            });
            event_stream(Body::from_stream(slow))
        }
        _ => Json(json!({"jsonrpc": "2.0", "id": done["id"],
            "error": {"code": -32602, "message": format!("unknown tool {tool}")}}))
        .into_response(),
    }
}
