//! The demo provider: a local OAuth 2.1 authorization server and an MCP
//! server (Streamable HTTP and HTTP+SSE) whose tools answer with the
//! signed-in user's name, plus a deterministic demo model behind an
//! OpenAI-compatible Chat Completions endpoint. It exists so user-delegated
//! tool access and an agent's LLM loop can be shown and tested end to end
//! without a third-party account: tests start it in-process on
//! `127.0.0.1:0`, operators run `amesh demo-provider`.
//!
//! Design: the MCP side is written directly (JSON-RPC over axum, a few
//! hundred lines) rather than with rmcp's server. The demo must check the bearer
//! token on every request, answer 401/403 with precise `WWW-Authenticate`
//! challenges, pass the token's user into the tool handler, and also speak
//! the legacy HTTP+SSE transport, which rmcp no longer has; a middleware
//! layer plus a small dispatcher does all of that visibly.
//!
//! Routes (declared in `router`, all under the public base URL):
//! - `/.well-known/oauth-authorization-server` — RFC 8414 metadata
//! - `/.well-known/oauth-protected-resource{,/mcp,/sse}` — RFC 9728 metadata
//! - `/register`, `/authorize` (GET page, POST decision), `/token`, `/revoke`
//! - `/mcp` — Streamable HTTP; `/sse` + `/messages` — HTTP+SSE
//! - `/v1/chat/completions`, `/v1/models` — the demo model (no token needed)

#![forbid(unsafe_code)]
mod auth_server;
mod browser;
mod consent;
mod mcp_server;
mod model;
mod store;
mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

pub use browser::consent_as;
use mcp_server::{Guard, SseSessions};
pub use model::DEMO_MODEL;
use model::ModelState;
use store::{DemoState, Settings};

/// How to run a demo provider.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The URL clients reach it at, used in every metadata document
    /// (default: `http://{bound address}`, with 127.0.0.1 for 0.0.0.0).
    pub public_url: Option<Url>,
    /// The URL browsers reach it at, when servers reach it at another
    /// (`public_url` a compose service name, browsers a published
    /// `localhost` port): used for the `authorization_endpoint` only, the
    /// one URL a browser opens. Default: the public URL.
    pub browser_url: Option<Url>,
    /// Access token lifetime (`expires_in`).
    pub access_ttl: Duration,
    /// Whether `/token` issues refresh tokens.
    pub issue_refresh_tokens: bool,
    /// Whether authorization and token requests must carry RFC 8707 `resource`.
    pub require_resource: bool,
    /// Tools per `tools/list` page.
    pub page_size: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            browser_url: None,
            access_ttl: Duration::from_secs(3600),
            issue_refresh_tokens: true,
            require_resource: true,
            page_size: 2,
        }
    }
}

/// Shared state of the router; handlers take the part they need.
#[derive(Clone)]
pub(crate) struct App {
    state: Arc<DemoState>,
    sessions: Arc<SseSessions>,
    model: Arc<ModelState>,
    page_size: usize,
}

impl FromRef<App> for Arc<DemoState> {
    fn from_ref(app: &App) -> Self {
        app.state.clone()
    }
}

/// Entry point: `DemoProvider::start(options)`.
pub struct DemoProvider;

impl DemoProvider {
    /// Binds, starts serving in a background task and returns its handle.
    pub async fn start(options: DemoOptions) -> anyhow::Result<DemoHandle> {
        let listener = TcpListener::bind(options.bind).await?;
        let local = listener.local_addr()?;
        let base_url = match &options.public_url {
            Some(url) => url.clone(),
            None => {
                let host = if local.ip().is_unspecified() {
                    SocketAddr::from(([127, 0, 0, 1], local.port()))
                } else {
                    local
                };
                Url::parse(&format!("http://{host}"))?
            }
        };
        let base = base_url.as_str().trim_end_matches('/').to_owned();
        let browser_base = match &options.browser_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => base.clone(),
        };
        let state = DemoState::new(
            base,
            browser_base,
            Settings {
                access_ttl: options.access_ttl,
                issue_refresh_tokens: options.issue_refresh_tokens,
                require_resource: options.require_resource,
                client_id_metadata_documents: false,
                refresh_reuse_interval: Duration::ZERO,
            },
        );
        let app = App {
            state: state.clone(),
            sessions: Arc::default(),
            model: Arc::default(),
            page_size: options.page_size,
        };
        let app_model = app.model.clone();
        let router = router(app);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "demo provider stopped");
            }
        });
        tracing::info!(%base_url, "demo provider listening");
        Ok(DemoHandle {
            base_url,
            local_addr: local,
            state,
            model: app_model,
            task,
        })
    }
}

/// A running demo provider. Dropping it stops the server.
pub struct DemoHandle {
    /// The public base URL (issuer).
    pub base_url: Url,
    /// The bound socket address.
    pub local_addr: SocketAddr,
    state: Arc<DemoState>,
    model: Arc<ModelState>,
    task: JoinHandle<()>,
}

impl DemoHandle {
    /// The Streamable HTTP endpoint.
    pub fn mcp_url(&self) -> Url {
        self.endpoint("/mcp")
    }

    /// The HTTP+SSE endpoint.
    pub fn sse_url(&self) -> Url {
        self.endpoint("/sse")
    }

    /// The demo model's OpenAI-compatible base URL (`…/v1`): clients POST
    /// `{base}/chat/completions` and list `{base}/models`.
    pub fn model_base_url(&self) -> Url {
        self.endpoint("/v1")
    }

    /// Any path under the base URL.
    pub fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        url.set_path(path);
        url
    }

    /// Test hook: every access token issued so far is now expired.
    pub fn expire_access_tokens(&self) {
        self.state.expire_access_tokens();
    }

    /// Test hook: revokes every token and pending code of `user`.
    pub fn revoke_user(&self, user: &str) {
        self.state.revoke_user(user);
    }

    /// Test hook: forgets every registered client, code and token, as a
    /// provider keeping them in memory does when it restarts; the next
    /// request with an old `client_id` is refused as an unknown client.
    pub fn forget_registrations(&self) {
        self.state.forget_registrations();
    }

    /// Requests to `/token` so far (any grant, success or not).
    pub fn token_requests(&self) -> usize {
        self.state.counters().token_requests
    }

    /// Successful authorization code exchanges so far.
    /// `tools/call` requests answered (both transports), for tests that
    /// prove a call was not repeated.
    pub fn tool_calls(&self) -> usize {
        self.state.counters().tool_calls
    }

    pub fn code_exchanges(&self) -> usize {
        self.state.counters().code_exchanges
    }

    /// Successful refreshes so far.
    pub fn refreshes(&self) -> usize {
        self.state.counters().refreshes
    }

    /// RFC 7009 revocations of a token the server knew, so far.
    pub fn revocations(&self) -> usize {
        self.state.counters().revocations
    }

    /// Chat completions the demo model answered so far (refusals excluded).
    pub fn model_completions(&self) -> usize {
        self.model.completions()
    }

    /// Dynamic client registrations so far.
    pub fn registrations(&self) -> usize {
        self.state.counters().registrations
    }

    /// The `resource` of the last token request (`None` if it had none).
    pub fn last_resource(&self) -> Option<String> {
        self.state.counters().last_resource
    }

    /// Changes whether `/token` issues refresh tokens from now on.
    pub fn set_issue_refresh_tokens(&self, issue: bool) {
        self.state
            .update_settings(|s| s.issue_refresh_tokens = issue);
    }

    /// Changes whether URL client ids with a Client ID Metadata Document
    /// are accepted (and advertised) from now on.
    pub fn set_client_id_metadata_documents(&self, accept: bool) {
        self.state
            .update_settings(|s| s.client_id_metadata_documents = accept);
    }

    /// Client ID Metadata Documents fetched and accepted so far.
    pub fn metadata_documents(&self) -> usize {
        self.state.counters().metadata_documents
    }

    /// Changes whether `resource` is required from now on.
    pub fn set_require_resource(&self, require: bool) {
        self.state.update_settings(|s| s.require_resource = require);
    }

    /// Honours a rotated-away refresh token for `interval` more (a
    /// provider's reuse interval); zero (the default) is strict rotation.
    pub fn set_refresh_reuse_interval(&self, interval: Duration) {
        self.state
            .update_settings(|s| s.refresh_reuse_interval = interval);
    }

    /// Changes the lifetime of access tokens issued from now on.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.state.update_settings(|s| s.access_ttl = ttl);
    }

    /// Stops the server.
    pub fn shutdown(self) {}
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every route of the demo provider, in one place.
fn router(app: App) -> Router {
    let state = app.state.clone();
    let guard = |endpoint| {
        from_fn_with_state(
            Guard {
                state: state.clone(),
                endpoint,
            },
            mcp_server::require_bearer,
        )
    };
    let streamable = Router::new()
        .route(
            "/mcp",
            post(mcp_server::streamable_post)
                .get(mcp_server::streamable_get)
                .delete(mcp_server::streamable_delete),
        )
        .route_layer(guard("/mcp"));
    let legacy_sse = Router::new()
        .route("/sse", get(mcp_server::sse_open))
        .route("/messages", post(mcp_server::sse_post))
        .route_layer(guard("/sse"));
    let metadata = |path: &'static str| {
        let state = state.clone();
        get(move || async move { auth_server::resource_metadata(&state, path) })
    };
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(auth_server::server_metadata),
        )
        .route("/.well-known/oauth-protected-resource", metadata(""))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            metadata("/mcp"),
        )
        .route(
            "/.well-known/oauth-protected-resource/sse",
            metadata("/sse"),
        )
        .route("/register", post(auth_server::register))
        .route("/authorize", get(consent::show).post(consent::decide))
        .route("/token", post(auth_server::token))
        .route("/revoke", post(auth_server::revoke))
        .route("/v1/models", get(model::list_models))
        .route(
            "/v1/chat/completions",
            post(model::chat_completions).layer(DefaultBodyLimit::max(model::MAX_BODY)),
        )
        .merge(streamable)
        .merge(legacy_sse)
        .with_state(app)
}

/// Runs a demo provider until Ctrl-C (for `amesh demo-provider`).
pub async fn serve(options: DemoOptions) -> anyhow::Result<()> {
    let handle = DemoProvider::start(options).await?;
    println!("amesh demo provider at {}", handle.base_url);
    println!("  MCP (Streamable HTTP): {}", handle.mcp_url());
    println!("  MCP (HTTP+SSE):        {}", handle.sse_url());
    println!(
        "  Demo model (OpenAI Chat Completions, model {DEMO_MODEL}): {}",
        handle.model_base_url()
    );
    tokio::signal::ctrl_c().await?;
    handle.shutdown();
    Ok(())
}
