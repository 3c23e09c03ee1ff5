//! What an authorization server says when it refuses amesh stays in the
//! agent's log: the user's message gives a generic reason (which step,
//! which HTTP status) and points at the log, never at the body, which may
//! come from an internal host.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::*;

/// Text an internal service put in its answer; it must reach the log only.
const INTERNAL: &str = "db-7.corp.internal:5432 rejected user svc_oauth";

/// A provider that challenges, publishes metadata and refuses to register
/// amesh with `refusal` (status, content type, body).
async fn refusing_provider(
    refusal: (u16, &'static str, String),
) -> (Url, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let documents = base.clone();
    let router = Router::new().fallback(move |uri: Uri| {
        let base = documents.clone();
        let refusal = refusal.clone();
        async move {
            match uri.path() {
                "/mcp" => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        header::WWW_AUTHENTICATE,
                        format!(
                            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
                        ),
                    )
                    .body(axum::body::Body::empty())
                    .expect("response"),
                "/.well-known/oauth-protected-resource/mcp" => axum::Json(json!({
                    "resource": format!("{base}/mcp"),
                    "authorization_servers": [base],
                }))
                .into_response(),
                "/.well-known/oauth-authorization-server" => axum::Json(json!({
                    "issuer": base,
                    "authorization_endpoint": format!("{base}/authorize"),
                    "token_endpoint": format!("{base}/token"),
                    "registration_endpoint": format!("{base}/register"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }))
                .into_response(),
                "/register" => {
                    let (status, content_type, body) = refusal;
                    Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, content_type)
                        .body(axum::body::Body::from(body))
                        .expect("response")
                }
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mcp = Url::parse(&format!("{base}/mcp")).expect("url");
    (mcp, task)
}

/// Log lines written while the returned guard lives (this thread only,
/// which is where a current-thread test runtime runs everything).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

async fn refused_registration(refusal: (u16, &'static str, String)) -> (String, String) {
    let logs = Captured::default();
    let _logging = logs.start();
    let (mcp, _server) = refusing_provider(refusal).await;
    let secret = AgentSecret::generate().expect("agent secret");
    let store = CredentialStore::open(StoreConfig::new(StoreBackend::Memory, AGENT, secret))
        .await
        .expect("store");
    let tools = McpTools::start(
        AGENT,
        "test/ns",
        vec![config(&mcp, "streamable-http", true)],
        Some(store),
        Some(Url::parse(REDIRECT).expect("redirect")),
        1 << 20,
    )
    .await
    .expect("mcp tools");
    let outcome = tools
        .call_as(&ctx("t1", "whoami", json!({})), &verified("alice"))
        .await;
    (failure_of(&outcome), logs.text())
}

#[tokio::test]
async fn refused_registration_body_reaches_the_log_not_the_user() {
    let body = format!("registration backend failed: {INTERNAL}");
    let (text, log) = refused_registration((400, "text/plain", body)).await;
    assert!(!text.contains(INTERNAL), "{text}");
    assert!(!text.contains("backend"), "{text}");
    assert!(
        text.contains("refused to register amesh (HTTP 400)"),
        "{text}"
    );
    assert!(text.contains("agent's log"), "{text}");
    let warned = log
        .lines()
        .find(|line| line.contains(INTERNAL))
        .unwrap_or_else(|| panic!("the body is logged:\n{log}"));
    assert!(warned.contains("WARN"), "{warned}");
}

#[tokio::test]
async fn refused_registration_description_reaches_the_log_not_the_user() {
    let body = json!({
        "error": "invalid_client_metadata",
        "error_description": INTERNAL,
    })
    .to_string();
    let (text, log) = refused_registration((400, "application/json", body)).await;
    assert!(!text.contains(INTERNAL), "{text}");
    assert!(
        text.contains("refused to register amesh (HTTP 400)"),
        "{text}"
    );
    assert!(text.contains("agent's log"), "{text}");
    let warned = log
        .lines()
        .find(|line| line.contains(INTERNAL))
        .unwrap_or_else(|| panic!("the description is logged:\n{log}"));
    assert!(warned.contains("WARN"), "{warned}");
}
