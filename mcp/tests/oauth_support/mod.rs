//! Helpers shared by the `oauth_*` tests: a browser stand-in for the demo
//! provider's consent page, the whole code flow in one call, and a tiny
//! server of hand-made documents that records which paths were asked for.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_mcp::oauth::{
    AuthServer, OAuthClient, OAuthHttp, TokenSet, authorization_request, client_name_for_agent,
    discover, exchange_code, register,
};
use amesh_mcp::secret::ExposeSecret as _;
use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use url::Url;

/// The gateway callback the tests register (nothing listens there: the
/// redirect is read from the `Location` header, never followed).
pub fn redirect_uri() -> Url {
    Url::parse("http://127.0.0.1:9/api/v1/auth/tool/callback").unwrap()
}

/// The OAuth client an agent would build for an MCP server on this
/// machine (every test server listens on 127.0.0.1): loopback targets are
/// allowed, and it never follows redirects.
pub fn http() -> OAuthHttp {
    OAuthHttp::new(&Url::parse("http://127.0.0.1/").unwrap(), &[]).unwrap()
}

pub async fn demo() -> DemoHandle {
    DemoProvider::start(DemoOptions::default()).await.unwrap()
}

pub async fn demo_with(options: DemoOptions) -> DemoHandle {
    DemoProvider::start(options).await.unwrap()
}

/// Does what a browser does on the consent page (see
/// [`amesh_demo::consent_as`]); returns the callback URL.
pub async fn consent(
    _http: &reqwest::Client,
    authorization_url: &Url,
    user: &str,
    approve: bool,
) -> Url {
    amesh_demo::consent_as(authorization_url, user, approve)
        .await
        .unwrap()
}

pub fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// What a finished flow leaves the caller with.
pub struct Flow {
    pub server: AuthServer,
    pub client: OAuthClient,
    pub tokens: TokenSet,
    pub scopes: Vec<String>,
}

/// 401 → discovery → registration → consent as `user` → exchange.
pub async fn full_flow(
    http: &OAuthHttp,
    mcp_url: &Url,
    user: &str,
    configured_scopes: &[String],
) -> Flow {
    let unauthorized = mcp_post(http, mcp_url, None, &initialize()).await;
    assert_eq!(unauthorized.status(), 401);
    let challenge = unauthorized.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let server = discover(http, mcp_url, Some(&challenge)).await.unwrap();
    let registration = register(
        http,
        &server,
        &redirect_uri(),
        &client_name_for_agent("tester"),
    )
    .await
    .unwrap();
    let client = registration.client();
    let scopes = server.select_scopes(configured_scopes);
    let (url, verifier) =
        authorization_request(&server, &client, &redirect_uri(), &scopes, "state-1");
    let callback = consent(http, &url, user, true).await;
    let params = query(&callback);
    assert_eq!(params.get("state").map(String::as_str), Some("state-1"));
    let code = &params["code"];
    let tokens = exchange_code(
        http,
        &server,
        &client,
        code,
        &verifier,
        &redirect_uri(),
        &scopes,
    )
    .await
    .unwrap();
    Flow {
        server,
        client,
        tokens,
        scopes,
    }
}

pub fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
    })
}

pub fn call_tool(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// One Streamable HTTP POST.
pub async fn mcp_post(
    http: &reqwest::Client,
    url: &Url,
    token: Option<&TokenSet>,
    body: &Value,
) -> reqwest::Response {
    let mut request = http
        .post(url.clone())
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(tokens) = token {
        request = request.header(
            "authorization",
            tokens.authorization_header().expose_secret(),
        );
    }
    request.send().await.unwrap()
}

/// A server of fixed documents; records every path asked for, in order.
pub struct DocServer {
    pub base: Url,
    pub hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DocServer {
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

/// Starts a [`DocServer`]; `docs` gets the base URL (no trailing slash) and
/// returns `(path, status, body)` triples. Anything else is 404.
pub async fn doc_server(docs: impl FnOnce(&str) -> Vec<(String, u16, Value)>) -> DocServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let table: HashMap<String, (u16, Value)> = docs(&base)
        .into_iter()
        .map(|(path, status, body)| (path, (status, body)))
        .collect();
    let table = Arc::new(table);
    let hits = Arc::new(Mutex::new(Vec::new()));
    let recorded = hits.clone();
    let router = Router::new().fallback(move |uri: Uri| {
        let table = table.clone();
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push(uri.path().to_owned());
            match table.get(uri.path()) {
                Some((status, body)) if body.is_string() => (
                    StatusCode::from_u16(*status).unwrap(),
                    body.as_str().unwrap_or_default().to_owned(),
                )
                    .into_response(),
                Some((status, body)) => (
                    StatusCode::from_u16(*status).unwrap(),
                    axum::Json(body.clone()),
                )
                    .into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    DocServer {
        base: Url::parse(&base).unwrap(),
        hits,
        task,
    }
}

/// RFC 8414 metadata for an issuer at `issuer` with endpoints under it.
pub fn as_metadata(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    })
}

/// RFC 9728 metadata.
pub fn pr_metadata(resource: &str, issuer: &str) -> Value {
    json!({"resource": resource, "authorization_servers": [issuer], "scopes_supported": ["read", "write"]})
}
