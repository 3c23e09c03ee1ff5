//! The MCP client's memory stays bounded under steady use, against real
//! HTTP servers on loopback: per-user sessions are closed when idle and
//! capped in number, and one event of an event stream is capped in size
//! (a legacy SSE stream lives as long as its session).

mod client_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amesh_mcp::client::McpClientPool;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use client_support::{Fake, GOOD, Options, config};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn pool(idle: Duration, max: usize) -> McpClientPool {
    let pool = McpClientPool::new().unwrap();
    pool.set_session_bounds(idle, max);
    pool
}

#[tokio::test]
async fn sessions_no_call_used_within_the_idle_lifetime_are_closed() {
    for transport in ["streamable-http", "sse"] {
        let fake = Fake::start(Options::default()).await;
        let cfg = config(&fake, transport, json!({"id": "fake"}));
        let pool = pool(Duration::from_millis(200), 100);
        let alice = pool
            .session(&cfg, "alice", Some(&GOOD.into()))
            .await
            .unwrap();
        alice.call_tool("echo", json!({"n": 1})).await.unwrap();
        drop(alice);
        let bob = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
        assert_eq!(pool.evict_idle().await, 0, "{transport}: nothing idle yet");

        tokio::time::sleep(Duration::from_millis(300)).await;
        // Bob's call is still running (he holds his session): kept.
        assert_eq!(pool.evict_idle().await, 1, "{transport}");
        assert_eq!(pool.session_count(), 1, "{transport}");
        let bob_again = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
        assert!(Arc::ptr_eq(&bob, &bob_again), "{transport}");

        // Alice's next call opens a new session, and works.
        let alice = pool
            .session(&cfg, "alice", Some(&GOOD.into()))
            .await
            .unwrap();
        let out = alice.call_tool("echo", json!({"n": 2})).await.unwrap();
        assert_eq!(out.structured_content, Some(json!({"n": 2})), "{transport}");
        assert_eq!(fake.seen_method("initialize").len(), 3, "{transport}");
    }
}

#[tokio::test]
async fn at_the_cap_the_least_recently_used_idle_session_makes_room() {
    let fake = Fake::start(Options::default()).await;
    let cfg = config(&fake, "streamable-http", json!({"id": "fake"}));
    let pool = pool(Duration::from_secs(3600), 2);
    let alice = pool
        .session(&cfg, "alice", Some(&GOOD.into()))
        .await
        .unwrap();
    drop(alice);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let bob = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
    drop(bob);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Alice is the least recently used: she goes, Bob stays.
    let carol = pool
        .session(&cfg, "carol", Some(&GOOD.into()))
        .await
        .unwrap();
    assert_eq!(pool.session_count(), 2);
    pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
    assert_eq!(fake.seen_method("initialize").len(), 3, "bob's was kept");
    // Every session in use: the cap yields rather than close one under a
    // running call (the count is back under the cap once they are idle).
    let bob = pool.session(&cfg, "bob", Some(&GOOD.into())).await.unwrap();
    let dave = pool
        .session(&cfg, "dave", Some(&GOOD.into()))
        .await
        .unwrap();
    assert_eq!(pool.session_count(), 3);
    carol.call_tool("echo", json!({"n": 3})).await.unwrap();
    bob.call_tool("echo", json!({"n": 4})).await.unwrap();
    dave.call_tool("echo", json!({"n": 5})).await.unwrap();
}

/// A legacy SSE server that, once a tool is called, sends `data:` lines
/// forever without the blank line that would end the event.
#[derive(Default)]
struct Endless {
    stream: std::sync::Mutex<Option<mpsc::Sender<Result<Bytes, Infallible>>>>,
    sent: AtomicUsize,
}

async fn endless_sse(State(s): State<Arc<Endless>>) -> Response {
    let (tx, rx) = mpsc::channel(16);
    tx.send(Ok(Bytes::from_static(
        b"event: endpoint\ndata: /messages\n\n",
    )))
    .await
    .unwrap();
    *s.stream.lock().unwrap() = Some(tx);
    let body = Body::from_stream(tokio_stream_from(rx));
    ([("content-type", "text/event-stream")], body).into_response()
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn endless_post(State(s): State<Arc<Endless>>, body: axum::Json<Value>) -> Response {
    let tx = s.stream.lock().unwrap().clone().unwrap();
    let msg = body.0;
    let Some(id) = msg.get("id").cloned() else {
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    match msg["method"].as_str() {
        Some("initialize") => {
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "endless", "version": "1"}}});
            let _ = tx
                .send(Ok(Bytes::from(format!("data: {answer}\n\n"))))
                .await;
        }
        _ => {
            let s = s.clone();
            tokio::spawn(async move {
                let line = Bytes::from(format!("data: {}\n", "x".repeat(64 * 1024)));
                // Until the client hangs up (or 256 MiB, so a broken
                // client fails the test instead of filling the machine).
                while s.sent.load(Ordering::SeqCst) < 256 << 20 {
                    if tx.send(Ok(line.clone())).await.is_err() {
                        break;
                    }
                    s.sent.fetch_add(line.len(), Ordering::SeqCst);
                }
            });
        }
    }
    axum::http::StatusCode::ACCEPTED.into_response()
}

#[tokio::test]
async fn a_legacy_sse_event_that_never_ends_closes_the_stream_at_the_cap() {
    let state = Arc::new(Endless::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/sse", get(endless_sse))
        .route("/messages", post(endless_post))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg: amesh_mcp::tool_config::McpToolConfig = serde_json::from_value(json!({
        "id": "endless",
        "connection_params": {"type": "sse", "url": format!("{base}/sse"), "timeout": 30},
    }))
    .unwrap();
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    let err = session
        .call_tool("anything", json!({}))
        .await
        .expect_err("the call cannot be answered");
    let sent = state.sent.load(Ordering::SeqCst);
    assert!(
        sent < 24 << 20,
        "the client read {sent} bytes of one event before giving up"
    );
    assert!(
        sent >= amesh_mcp::client::event_stream::DEFAULT_MAX_EVENT - (1 << 20),
        "gave up early, after {sent} bytes"
    );
    let text = err.to_string();
    assert!(
        text.contains("closed") || text.contains("ended") || text.contains("stream"),
        "{text}"
    );
}
