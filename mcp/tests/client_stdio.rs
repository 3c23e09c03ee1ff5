//! The stdio transport against a real MCP server: `tests/mcp/stdio_server.mjs`
//! on the MCP TypeScript SDK (`McpServer` + `StdioServerTransport`), started
//! by the client as a child process.
//!
//! Needs `node` and the SDK (`MCP_TS_SDK_DIR`, installed by scripts/test).
//! Without `MCP_TS_SDK_DIR` each test says so and passes; under `CI=true`
//! a missing SDK fails instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use amesh_mcp::client::version::LEGACY_PROTOCOL_VERSIONS;
use amesh_mcp::client::{McpClientPool, McpError};
use amesh_mcp::tool_config::McpToolConfig;
use serde_json::{Value, json};

/// The SDK's install directory, or `None` (test skipped).
fn sdk_dir() -> Option<PathBuf> {
    let Ok(root) = std::env::var("MCP_TS_SDK_DIR") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "MCP_TS_SDK_DIR must be set under CI=true (scripts/test installs the SDK)"
        );
        eprintln!("MCP_TS_SDK_DIR not set: skipping the stdio MCP test");
        return None;
    };
    let root = PathBuf::from(root);
    assert!(
        root.join("node_modules/@modelcontextprotocol/sdk").is_dir(),
        "MCP_TS_SDK_DIR has no SDK at {root:?}"
    );
    Some(root)
}

fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/stdio_server.mjs")
}

/// A stdio tool block running the test server, with `extra` merged in.
fn config(sdk: &Path, extra: Value) -> McpToolConfig {
    let mut block = json!({
        "connection_params": {
            "type": "stdio",
            "command": "node",
            "args": [server_script().display().to_string(), sdk.display().to_string()],
            "timeout": 10
        }
    });
    if let (Value::Object(block), Value::Object(extra)) = (&mut block, extra) {
        for (k, v) in extra {
            match (block.get_mut(&k), v) {
                (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
                (_, v) => {
                    block.insert(k, v);
                }
            }
        }
    }
    let cfg: McpToolConfig = serde_json::from_value(block).expect("tool block");
    cfg.validate().expect("valid block");
    cfg
}

#[tokio::test]
async fn lists_tools_and_answers_calls() {
    let Some(sdk) = sdk_dir() else { return };
    let cfg = config(&sdk, json!({}));
    let pool = McpClientPool::new().unwrap();
    let tools = pool.startup_tools(&cfg).await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.exposed_name.as_str()).collect();
    assert_eq!(
        names,
        ["echo", "env", "pid", "sleep", "cancelled", "big", "crash"]
    );
    // Listing started the agent's process; calls reuse it, for every user.
    let alice = pool.session(&cfg, "alice", None).await.unwrap();
    let bob = pool.session(&cfg, "bob", None).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&alice, &bob));
    assert_eq!(pool.session_count(), 1);
    // A handshake-era server: the 2026-07-28 probe fell back to initialize,
    // which offers 2025-11-25 (SDK 1.32 answers it).
    assert!(!alice.is_modern());
    assert!(
        LEGACY_PROTOCOL_VERSIONS.contains(&alice.protocol_version().as_str()),
        "{}",
        alice.protocol_version()
    );
    assert_eq!(alice.server_info().server_info["name"], "amesh-test-stdio");
    let result = alice
        .call_tool("echo", json!({"text": "hello over stdio"}))
        .await
        .unwrap();
    assert_eq!(result.text(), "hello over stdio");
    // Concurrent calls are matched to their answers by id.
    let calls = (0..20).map(|i| {
        let s = alice.clone();
        async move { s.call_tool("echo", json!({"text": format!("n{i}")})).await }
    });
    let answers = futures::future::join_all(calls).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().text(), format!("n{i}"));
    }
}

#[tokio::test]
async fn the_child_sees_its_environment_variables_path_and_home_only() {
    let Some(sdk) = sdk_dir() else { return };
    // cargo sets this for the test process; the child must not inherit it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let cfg = config(
        &sdk,
        json!({"environment_variables": {"TEST_SECRET": "s3cr3t-value", "OTHER": "x"}}),
    );
    assert!(!format!("{cfg:?}").contains("s3cr3t-value"));
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    let env = |name: &'static str| {
        let session = session.clone();
        async move {
            session
                .call_tool("env", json!({"name": name}))
                .await
                .unwrap()
                .text()
        }
    };
    assert_eq!(env("TEST_SECRET").await, "s3cr3t-value");
    assert_eq!(env("OTHER").await, "x");
    assert_eq!(env("CARGO_MANIFEST_DIR").await, "(unset)");
    if let Ok(path) = std::env::var("PATH") {
        assert_eq!(env("PATH").await, path);
    }
}

#[tokio::test]
async fn a_call_over_the_timeout_fails_is_cancelled_and_the_process_keeps_serving() {
    let Some(sdk) = sdk_dir() else { return };
    let cfg = config(&sdk, json!({"connection_params": {"timeout": 1}}));
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    let err = session
        .call_tool("sleep", json!({"ms": 3000}))
        .await
        .expect_err("timeout");
    assert!(
        matches!(&err, McpError::Timeout { method, after, .. }
            if method == "tools/call" && *after == Duration::from_secs(1)),
        "{err:?}"
    );
    let result = session
        .call_tool("echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(result.text(), "still here");
    // The server was told (notifications/cancelled) and aborted the sleep.
    let cancelled = session.call_tool("cancelled", json!({})).await.unwrap();
    assert_eq!(cancelled.text(), "1");
}

#[tokio::test]
async fn a_crashed_child_fails_its_call_and_is_restarted_on_the_next() {
    let Some(sdk) = sdk_dir() else { return };
    let cfg = config(&sdk, json!({}));
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    let err = session
        .call_tool("crash", json!({}))
        .await
        .expect_err("the process exits");
    let text = err.to_string();
    assert!(matches!(err, McpError::Transport { .. }), "{err:?}");
    assert!(
        text.contains("exited") && text.contains("before answering"),
        "{text}"
    );
    let result = session
        .call_tool("echo", json!({"text": "back"}))
        .await
        .expect("restarted");
    assert_eq!(result.text(), "back");
}

#[tokio::test]
async fn a_child_that_cannot_start_is_retried_with_backoff() {
    let Some(sdk) = sdk_dir() else { return };
    let dir = tempfile_dir();
    let marker = dir.join("poison");
    let cfg = config(
        &sdk,
        json!({"environment_variables": {"CRASH_MARKER": marker.display().to_string()}}),
    );
    let pool = McpClientPool::new().unwrap();
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    // The child poisons its next start, then exits.
    session
        .call_tool("crash", json!({"poison": true}))
        .await
        .expect_err("the process exits");
    // First restart is immediate, and the new child dies at start.
    let err = session
        .call_tool("echo", json!({"text": "x"}))
        .await
        .expect_err("cannot start");
    assert!(err.to_string().contains("exited"), "{err}");
    // Now a clear error, without starting anything, until the delay passed.
    let err = session
        .call_tool("echo", json!({"text": "x"}))
        .await
        .expect_err("backing off");
    assert!(err.to_string().contains("next restart in"), "{err}");
    std::fs::remove_file(&marker).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let result = session
        .call_tool("echo", json!({"text": "recovered"}))
        .await
        .expect("restarted after the delay");
    assert_eq!(result.text(), "recovered");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_line_over_the_message_limit_is_an_error_and_the_child_is_replaced() {
    let Some(sdk) = sdk_dir() else { return };
    let cfg = config(&sdk, json!({}));
    let pool = McpClientPool::new().unwrap();
    pool.set_max_stdio_message_bytes(64 * 1024);
    let session = pool.session(&cfg, "alice", None).await.unwrap();
    let ok = session
        .call_tool("big", json!({"bytes": 1000}))
        .await
        .unwrap();
    assert_eq!(ok.text().len(), 1000);
    let err = session
        .call_tool("big", json!({"bytes": 200_000}))
        .await
        .expect_err("too long");
    assert!(err.to_string().contains("longer than 65536 bytes"), "{err}");
    let result = session
        .call_tool("echo", json!({"text": "fresh"}))
        .await
        .expect("a new process");
    assert_eq!(result.text(), "fresh");
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_a_clear_error() {
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "connection_params": {"type": "stdio", "command": "amesh-no-such-mcp-server"}
    }))
    .unwrap();
    let pool = McpClientPool::new().unwrap();
    let err = pool.startup_tools(&cfg).await.expect_err("no such program");
    let text = err.to_string();
    assert!(
        text.contains("could not be started") && text.contains("amesh-no-such-mcp-server"),
        "{text}"
    );
}

#[test]
fn stdio_blocks_are_checked() {
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "connection_params": {"type": "stdio", "url": "https://x.example"},
        "auth": {"type": "oauth2"},
        "manifest": [{"name": "t", "description": "d", "inputSchema": {"type": "object"}}]
    }))
    .unwrap();
    let fields: Vec<String> = cfg
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        ["connection_params.command", "auth", "connection_params.url"]
    );
    let http: McpToolConfig = serde_json::from_value(json!({
        "connection_params": {"type": "sse", "url": "https://x.example/sse", "command": "node"},
        "environment_variables": {"K": "v"}
    }))
    .unwrap();
    let fields: Vec<String> = http
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        ["connection_params.command", "environment_variables"]
    );
    let no_url: McpToolConfig =
        serde_json::from_value(json!({"connection_params": {"type": "streamable-http"}})).unwrap();
    let errors = no_url.validate().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "connection_params.url");
    assert!(errors[0].message.contains("missing `url`"), "{}", errors[0]);
}

/// A fresh directory under the system temp dir (no tempfile dev-dependency).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "amesh-stdio-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
