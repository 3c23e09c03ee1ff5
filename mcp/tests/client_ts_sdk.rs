//! The client against the MCP TypeScript SDK's example servers: an
//! implementation we did not write, so wire mistakes shared by our client
//! and our fakes show up here.
//!
//! Needs `node` and the SDK installed somewhere:
//! `npm install --prefix /tmp/mcp-ts-sdk @modelcontextprotocol/sdk@1`, then
//! `MCP_TS_SDK_DIR=/tmp/mcp-ts-sdk cargo test -p amesh-mcp --test client_ts_sdk`.
//! Without `MCP_TS_SDK_DIR` each test says so and passes, so a machine
//! without node still runs the rest of the suite.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use amesh_mcp::client::version::LEGACY_PROTOCOL_VERSIONS;
use amesh_mcp::client::{BearerChallenge, McpClientPool, McpError};
use amesh_mcp::tool_config::McpToolConfig;
use serde_json::json;
use tokio::process::{Child, Command};

/// The example servers directory, or `None` (test skipped).
fn examples_dir() -> Option<PathBuf> {
    let Ok(root) = std::env::var("MCP_TS_SDK_DIR") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "MCP_TS_SDK_DIR must be set under CI=true (scripts/test installs the SDK)"
        );
        eprintln!("MCP_TS_SDK_DIR not set: skipping the TypeScript SDK interop test");
        return None;
    };
    let dir =
        PathBuf::from(root).join("node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server");
    assert!(
        dir.is_dir(),
        "MCP_TS_SDK_DIR has no SDK examples at {dir:?}"
    );
    Some(dir)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `script` with `env`, killed when the returned child drops.
async fn start(
    dir: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
    port: u16,
) -> Child {
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("node starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{script} did not listen on {port} within 10 s");
}

fn config(transport: &str, url: String) -> McpToolConfig {
    serde_json::from_value(json!({
        "connection_params": {"type": transport, "url": url, "timeout": 10}
    }))
    .unwrap()
}

#[tokio::test]
async fn streamable_http_against_the_sdk_example_server() {
    let Some(dir) = examples_dir() else { return };
    let port = free_port();
    let _server = start(
        &dir,
        "simpleStreamableHttp.js",
        &[],
        &[("MCP_PORT", port.to_string())],
        port,
    )
    .await;
    let cfg = config("streamable-http", format!("http://127.0.0.1:{port}/mcp"));
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    assert!(session.session_id().is_some());
    // A handshake-era server: the 2026-07-28 probe fell back to initialize,
    // which offers 2025-11-25 (SDK 1.32 answers it).
    assert!(!session.is_modern());
    assert!(
        LEGACY_PROTOCOL_VERSIONS.contains(&session.protocol_version().as_str()),
        "{}",
        session.protocol_version()
    );
    let tools = session.list_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "greet"), "{tools:?}");
    let result = session
        .call_tool("greet", json!({"name": "amesh"}))
        .await
        .unwrap();
    assert_eq!(result.text(), "Hello, amesh!");
    // Notifications interleaved in the answer stream before the result.
    let result = session
        .call_tool("multi-greet", json!({"name": "amesh"}))
        .await
        .unwrap();
    assert!(result.text().contains("amesh"), "{result:?}");
    session.close().await;
}

#[tokio::test]
async fn oauth_protected_sdk_server_answers_unauthorized_with_resource_metadata() {
    let Some(dir) = examples_dir() else { return };
    let (port, auth_port) = (free_port(), free_port());
    let _server = start(
        &dir,
        "simpleStreamableHttp.js",
        &["--oauth"],
        &[
            ("MCP_PORT", port.to_string()),
            ("MCP_AUTH_PORT", auth_port.to_string()),
        ],
        port,
    )
    .await;
    let cfg = config("streamable-http", format!("http://127.0.0.1:{port}/mcp"));
    let err = McpClientPool::new()
        .unwrap()
        .session(&cfg, "alice", None)
        .await
        .unwrap_err();
    let McpError::Unauthorized {
        www_authenticate: Some(challenge),
        ..
    } = &err
    else {
        panic!("expected Unauthorized with a challenge, got {err:?}");
    };
    let parsed = BearerChallenge::from_header(challenge).unwrap_or_default();
    assert!(
        parsed
            .resource_metadata
            .as_deref()
            .is_some_and(|u| u.contains("/.well-known/oauth-protected-resource")),
        "{challenge}"
    );
}

#[tokio::test]
async fn legacy_sse_against_the_sdk_compatible_server() {
    let Some(dir) = examples_dir() else { return };
    // This example listens on a fixed port.
    const PORT: u16 = 3000;
    if TcpListener::bind(("127.0.0.1", PORT)).is_err() {
        eprintln!("port {PORT} busy: skipping the legacy SSE interop test");
        return;
    }
    let _server = start(
        &dir,
        "sseAndStreamableHttpCompatibleServer.js",
        &[],
        &[],
        PORT,
    )
    .await;
    let cfg = config("sse", format!("http://127.0.0.1:{PORT}/sse"));
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    // A handshake-era server: the 2026-07-28 probe fell back to initialize,
    // which offers 2025-11-25 (SDK 1.32 answers it).
    assert!(!session.is_modern());
    assert!(
        LEGACY_PROTOCOL_VERSIONS.contains(&session.protocol_version().as_str()),
        "{}",
        session.protocol_version()
    );
    let tools = session.list_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "start-notification-stream"));
    // Logging notifications arrive on the stream before the answer.
    let result = session
        .call_tool(
            "start-notification-stream",
            json!({"interval": 10, "count": 3}),
        )
        .await
        .unwrap();
    assert!(result.text().contains("notifications"), "{result:?}");
}
