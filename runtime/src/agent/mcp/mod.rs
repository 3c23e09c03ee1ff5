//! Remote MCP tools of an agent, run with each user's own OAuth2 credentials.
//!
//! The agent handler holds one [`McpTools`] and asks it two things: run a
//! tool call for a request's identity ([`McpTools::call`]), and finish a
//! tool authorization the gateway forwarded ([`McpTools::on_callback`]).
//! Everything between — which credential to use, when to refresh it, when
//! the user must (re)authorize, and with which scopes — is decided here, so
//! the handler only maps an [`McpOutcome`] to a task state.
//!
//! Scale out: nothing a waiting task needs lives only in this replica's
//! memory. A started flow stores the reasoning loop's state (with the discovered
//! authorization server, the OAuth client and the scopes) encrypted in the
//! credential store under the flow's `state`, so whichever replica the
//! callback reaches can exchange the code and resume the call. What is kept
//! in memory (discovered authorization servers, refresh locks) is a cache
//! that any replica rebuilds on demand.
//!
//! Layout: `tools.rs` builds the exposed tools and turns results into A2A
//! parts; `refresh.rs` reads credentials and refreshes them once per (user,
//! tool); `auth.rs` starts authorization flows (first grant, re-grant,
//! scope step-up); `callback.rs` finishes them.
//!
//! Each oauth2 server has its own OAuth HTTP client
//! ([`amesh_mcp::oauth::OAuthHttp`]), which keeps that server's metadata
//! from sending the agent to hosts more internal than the server. An OAuth
//! failure is logged here with its details (URLs, statuses, an excerpt of
//! a refused body) and the user reads only its generic reason
//! ([`amesh_mcp::oauth::OAuthError::user_reason`]): a hostile server could
//! otherwise read an internal host's answer back through the user.

mod auth;
mod callback;
mod connections;
mod error;
mod refresh;
mod tools;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amesh_credentials::{
    CredentialError, CredentialKey, CredentialStore, DeleteReason, SecretString,
};
use amesh_mcp::client::{CallToolResult, InputRequired, McpClientPool, McpError, Retry};
use amesh_mcp::oauth::AuthServer;
use amesh_mcp::tool_config::McpToolConfig;
use amesh_trust::{RequestIdentity, VerifiedIdentity};
use anyhow::Context;
use tracing::Instrument as _;
use url::Url;

use crate::a2a::Part;
pub(crate) use error::{AccessError, McpCallError};
use refresh::Access;
use tools::{Binding, Server};

/// Time allowed on top of a tool's own timeout for one token refresh (or
/// the discovery and registration of a new flow), so a call never hangs
/// longer than that in total.
const AUTH_ALLOWANCE: Duration = Duration::from_secs(30);

/// One MCP tool call of a task, as the reasoning loop asks for it.
#[derive(Clone, Debug)]
pub(crate) struct McpCall {
    /// The exposed tool name (with any prefix).
    pub tool: String,
    pub arguments: serde_json::Value,
    /// The call re-runs after a scope step-up: a second
    /// `insufficient_scope` then fails instead of asking again.
    pub stepped_up: bool,
    /// The call re-runs after the user answered the server's
    /// input-required result: `inputResponses` and `requestState`.
    pub retry: Option<Retry>,
}

/// A server's URL-mode elicitation (MCP 2026-07-28 `InputRequiredResult`):
/// the user must open a page of the server's before the call can finish.
/// The task pauses like for an authorization ([`crate::agent::elicitation`])
/// and the same call is retried with `input.answer(..)`.
#[derive(Debug)]
pub(crate) struct InputPrompt {
    /// The server (credential key).
    pub tool_id: String,
    /// The exposed tool name.
    pub tool: String,
    pub input: InputRequired,
}

/// How one MCP tool call ended.
pub(crate) enum McpOutcome {
    /// The tool's result as A2A parts: text content as text parts,
    /// `structuredContent` and other content blocks as data parts.
    Done(Vec<Part>),
    /// Why it gave no result; never holds a token.
    Failed(McpCallError),
    /// The user must authorize at the provider first. Nothing is stored
    /// yet: the pause owner records the flow with the task's own state
    /// ([`McpTools::record_flow`]), so the loop resumes exactly there.
    AuthRequired(Box<AuthPrompt>),
    /// The server needs the user at a page of its own first.
    InputRequired(Box<InputPrompt>),
}

pub(crate) use auth::AuthPrompt;

impl McpOutcome {
    /// The outcome as a metrics label.
    fn label(&self) -> &'static str {
        match self {
            McpOutcome::Done(_) => "ok",
            McpOutcome::Failed(_) => "failed",
            McpOutcome::AuthRequired(_) => "auth_required",
            McpOutcome::InputRequired(_) => "input_required",
        }
    }
}

impl std::fmt::Debug for McpOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done(parts) => f.debug_tuple("Done").field(parts).finish(),
            Self::Failed(why) => f.debug_tuple("Failed").field(why).finish(),
            Self::AuthRequired(prompt) => f.debug_tuple("AuthRequired").field(prompt).finish(),
            Self::InputRequired(prompt) => f.debug_tuple("InputRequired").field(prompt).finish(),
        }
    }
}

/// One agent's MCP tools: the servers, the tools they expose, and the
/// machinery to call them as a user. Cloning is shallow; the agent makes
/// one at start and shares it with every task.
#[derive(Clone)]
pub(crate) struct McpTools {
    inner: Arc<Inner>,
}

struct Inner {
    agent: String,
    namespace: String,
    pool: McpClientPool,
    servers: Vec<Arc<Server>>,
    bindings: HashMap<String, Binding>,
    /// Exposed names in configuration order (for the agent card).
    order: Vec<String>,
    store: Option<CredentialStore>,
    redirect_uri: Option<Url>,
    /// One lock per (user, tool id): concurrent calls refresh once.
    refresh_locks: std::sync::Mutex<HashMap<(String, String), RefreshLock>>,
    /// Discovered authorization servers by tool id (a cache).
    auth_servers: std::sync::Mutex<HashMap<String, AuthServer>>,
    /// Serializes dynamic client registration, so concurrent first flows
    /// register one client, not several.
    registration: tokio::sync::Mutex<()>,
}

/// Held across a token request, hence a tokio mutex.
type RefreshLock = Arc<tokio::sync::Mutex<()>>;

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTools")
            .field("agent", &self.inner.agent)
            .field("tools", &self.inner.order)
            .finish_non_exhaustive()
    }
}

impl McpTools {
    /// Bounds the per-user MCP sessions (the agent's `limits:`).
    pub(crate) fn bound_sessions(&self, idle: std::time::Duration, max: usize) {
        self.inner.pool.set_session_bounds(idle, max);
    }

    /// Closes the MCP sessions no call used within the idle lifetime.
    pub(crate) async fn evict_idle_sessions(&self) {
        let closed = self.inner.pool.evict_idle().await;
        if closed > 0 {
            tracing::debug!(agent = %self.inner.agent, closed, "idle MCP sessions closed");
        }
    }

    /// Builds the exposed tools: oauth2 tools from their manifest, tools
    /// without auth from the server's `tools/list` (asked now; stdio
    /// servers are started for it). `max_message_bytes` (the agent's
    /// `max_message_size_bytes`) bounds one message from a stdio server. Validates
    /// nothing the config loader already did; errors name the tool.
    pub(crate) async fn start(
        agent_name: &str,
        namespace: &str,
        cfgs: Vec<McpToolConfig>,
        store: Option<CredentialStore>,
        redirect_uri: Option<Url>,
        max_message_bytes: usize,
    ) -> anyhow::Result<McpTools> {
        let pool = McpClientPool::new().context("cannot build the MCP HTTP client")?;
        // A stdio server's messages are held whole in memory, one line each.
        pool.set_max_stdio_message_bytes(max_message_bytes);
        let (servers, bindings, order) = tools::build(&pool, cfgs).await?;
        for server in servers
            .iter()
            .filter(|s| s.cfg.connection_params.allow_insecure_http)
        {
            tracing::warn!(agent = agent_name, tool = %server.tool_id, "MCP server may be reached over plain http (allow_insecure_http: true); its users' tokens can be read on the network");
        }
        for server in servers.iter().filter(|s| s.cfg.requires_user_auth()) {
            if store.is_none() {
                tracing::warn!(agent = agent_name, tool = %server.tool_id, "MCP tool needs user authorization but the agent has no credential store; its calls will fail");
            }
            if redirect_uri.is_none() {
                tracing::warn!(agent = agent_name, tool = %server.tool_id, "MCP tool needs user authorization but OAUTH_TOOL_REDIRECT_URI is not set; users cannot authorize it");
            }
        }
        Ok(McpTools {
            inner: Arc::new(Inner {
                agent: agent_name.to_owned(),
                namespace: namespace.to_owned(),
                pool,
                servers,
                bindings,
                order,
                store,
                redirect_uri,
                refresh_locks: Default::default(),
                auth_servers: Default::default(),
                registration: Default::default(),
            }),
        })
    }

    /// Exposed tool names with descriptions (for the agent card and error
    /// messages), in configuration order.
    pub(crate) fn names(&self) -> Vec<(String, String)> {
        self.inner
            .order
            .iter()
            .filter_map(|name| {
                let binding = self.inner.bindings.get(name)?;
                Some((name.clone(), binding.description.clone()))
            })
            .collect()
    }

    pub(crate) fn has(&self, exposed: &str) -> bool {
        self.inner.bindings.contains_key(exposed)
    }

    /// What the model reads about each exposed tool: name, description
    /// and the input schema in the server's configured dialect.
    pub(crate) fn specs(&self) -> Vec<(String, String, serde_json::Value)> {
        self.inner
            .order
            .iter()
            .filter_map(|name| {
                let binding = self.inner.bindings.get(name)?;
                let server = &self.inner.servers[binding.server];
                let schema =
                    amesh_mcp::schema::for_model(&binding.input_schema, server.cfg.schema_dialect);
                Some((name.clone(), binding.description.clone(), schema))
            })
            .collect()
    }

    /// The server (credential key) of an exposed tool.
    pub(crate) fn tool_id_of(&self, exposed: &str) -> Option<&str> {
        let binding = self.inner.bindings.get(exposed)?;
        Some(self.inner.servers[binding.server].tool_id.as_str())
    }

    /// Runs one call for `identity`. Never panics; never blocks longer
    /// than the tool's timeout plus [`AUTH_ALLOWANCE`].
    pub(crate) async fn call(&self, ctx: &McpCall, identity: &RequestIdentity) -> McpOutcome {
        let Some(binding) = self.inner.bindings.get(&ctx.tool) else {
            let offered = self.inner.order.join(", ");
            return McpOutcome::Failed(McpCallError::UnknownTool {
                agent: self.inner.agent.clone(),
                tool: ctx.tool.clone(),
                offered,
            });
        };
        let server = &self.inner.servers[binding.server];
        // The model wrote these; nothing leaves the process unless they fit.
        if let Err(e) = binding.schema.validate(&ctx.arguments) {
            return McpOutcome::Failed(McpCallError::InvalidArguments(e.to_string()));
        }
        let stepped_up = ctx.stepped_up;
        let limit = server.cfg.connection_params.timeout() + AUTH_ALLOWANCE;
        let endpoint = server.mcp_url.as_ref();
        let span = crate::telemetry::spans::mcp_call(
            binding.schema.remote_name(),
            endpoint.and_then(Url::host_str),
            endpoint.and_then(Url::port_or_known_default),
        );
        // Every request of this call (initialize included) names its span.
        let headers = span.in_scope(crate::telemetry::propagation::http_headers);
        let run = amesh_mcp::client::with_call_headers(
            headers,
            self.run(ctx, identity, server, binding, stepped_up),
        );
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(limit, run)
            .instrument(span.clone())
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => McpOutcome::Failed(McpCallError::Timeout {
                tool: ctx.tool.clone(),
                seconds: limit.as_secs(),
            }),
        };
        if let McpOutcome::Failed(_) = &outcome {
            crate::telemetry::spans::failed(&span, outcome.label());
        }
        let took = started.elapsed();
        crate::telemetry::metrics::mcp_call(
            &self.inner.agent,
            &server.tool_id,
            outcome.label(),
            took,
        );
        outcome
    }

    async fn run(
        &self,
        ctx: &McpCall,
        identity: &RequestIdentity,
        server: &Arc<Server>,
        binding: &Binding,
        stepped_up: bool,
    ) -> McpOutcome {
        if !server.cfg.requires_user_auth() {
            return match self
                .send(server, binding, ctx, identity.user_id(), None)
                .await
            {
                Ok(result) => finished(&ctx.tool, result),
                Err(e) => failed_or_input(server, ctx, e),
            };
        }
        let verified = match identity {
            RequestIdentity::Verified(v) => v,
            RequestIdentity::Unverified(u) => {
                tracing::info!(agent = %self.inner.agent, user = %u.claimed_user_id(), tool = %server.tool_id, reason = %u.reason(), "MCP tool refused: identity not verified");
                return McpOutcome::Failed(McpCallError::Unverified {
                    tool: ctx.tool.clone(),
                    reason: u.reason().to_string(),
                });
            }
        };
        let Some(store) = &self.inner.store else {
            return McpOutcome::Failed(McpCallError::NoStore {
                tool: ctx.tool.clone(),
                agent: self.inner.agent.clone(),
            });
        };
        let credential = match self.access(server, store, verified).await {
            Access::Token(credential) => credential,
            Access::Missing => {
                tracing::info!(agent = %self.inner.agent, user = %verified.user_id(), tool = %server.tool_id, "no credential; starting authorization");
                return self.start_flow(server, ctx, verified, None, None).await;
            }
            Access::Reauthorize(why) => {
                tracing::info!(agent = %self.inner.agent, user = %verified.user_id(), tool = %server.tool_id, reason = %why, "credential unusable; starting a new authorization");
                self.forget(server, store, verified).await;
                return self.start_flow(server, ctx, verified, None, None).await;
            }
            Access::Failed(why) => return McpOutcome::Failed(why.into()),
        };
        note_use(store, verified, &server.tool_id);
        let token = credential.access_token.clone();
        let mut result = self
            .send(server, binding, ctx, verified.user_id(), Some(&token))
            .await;
        let mut credential = credential;
        // A 401 on a token we believed valid: one refresh, one retry.
        if matches!(result, Err(McpError::Unauthorized { .. }))
            && credential.refresh_token.is_some()
        {
            tracing::info!(agent = %self.inner.agent, user = %verified.user_id(), tool = %server.tool_id, "MCP server refused the access token; trying a refresh");
            self.inner
                .pool
                .invalidate(&server.tool_id, verified.user_id())
                .await;
            match self.refresh_rejected(server, store, verified, token).await {
                Access::Token(renewed) => {
                    result = self
                        .send(
                            server,
                            binding,
                            ctx,
                            verified.user_id(),
                            Some(&renewed.access_token),
                        )
                        .await;
                    credential = renewed;
                }
                Access::Failed(why) => return McpOutcome::Failed(why.into()),
                Access::Missing | Access::Reauthorize(_) => {}
            }
        }
        match result {
            Ok(result) => finished(&ctx.tool, result),
            Err(McpError::Unauthorized {
                www_authenticate, ..
            }) => {
                tracing::info!(agent = %self.inner.agent, user = %verified.user_id(), tool = %server.tool_id, "MCP server answered 401; credential deleted, starting a new authorization");
                self.forget(server, store, verified).await;
                self.start_flow(server, ctx, verified, www_authenticate.as_deref(), None)
                    .await
            }
            Err(McpError::Forbidden {
                error: Some(error),
                scope,
                ..
            }) if error == "insufficient_scope" => {
                let granted = &credential.scopes;
                self.step_up(server, ctx, verified, granted, scope.as_deref(), stepped_up)
                    .await
            }
            Err(e) => failed_or_input(server, ctx, e),
        }
    }

    /// Opens (or reuses) the user's session and calls the tool.
    async fn send(
        &self,
        server: &Server,
        binding: &Binding,
        ctx: &McpCall,
        user_id: &str,
        token: Option<&SecretString>,
    ) -> Result<CallToolResult, McpError> {
        let session = self.inner.pool.session(&server.cfg, user_id, token).await?;
        session
            .call_with(&binding.schema, ctx.arguments.clone(), ctx.retry.as_ref())
            .await
    }

    /// Marks the user's credential invalid and drops the pooled session
    /// opened with it. A store failure here is logged only: the flow that
    /// follows replaces the credential anyway.
    async fn forget(&self, server: &Server, store: &CredentialStore, who: &VerifiedIdentity) {
        let key = CredentialKey::new(who.user_id(), server.tool_id.clone());
        if let Err(e) = store.delete(&key, who, DeleteReason::Invalid).await {
            tracing::warn!(agent = %self.inner.agent, user = %who.user_id(), tool = %server.tool_id, error = %e, "could not mark the credential invalid");
        }
        self.inner
            .pool
            .invalidate(&server.tool_id, who.user_id())
            .await;
    }
}

/// A failed call, unless the server asked for the user's input.
fn failed_or_input(server: &Server, ctx: &McpCall, e: McpError) -> McpOutcome {
    match e {
        McpError::InputRequired { input, .. } => McpOutcome::InputRequired(Box::new(InputPrompt {
            tool_id: server.tool_id.clone(),
            tool: ctx.tool.clone(),
            input: *input,
        })),
        e => McpOutcome::Failed(e.into()),
    }
}

/// A finished `tools/call`: its content, or its error text.
fn finished(tool: &str, result: CallToolResult) -> McpOutcome {
    if result.is_error {
        let text = result.text();
        let tool = tool.to_owned();
        return McpOutcome::Failed(if text.is_empty() {
            McpCallError::FailedSilently { tool }
        } else {
            McpCallError::ToolFailed { tool, text }
        });
    }
    McpOutcome::Done(tools::to_parts(result))
}

/// The user-facing text of a store failure (for the callback and
/// connected-accounts answers, which are JSON-RPC error texts).
fn store_failure(e: &CredentialError) -> String {
    match e {
        CredentialError::Unavailable { .. } | CredentialError::Closed => {
            format!("credential store unavailable: {e}; try again later")
        }
        other => format!("credential store error: {other}"),
    }
}

/// Locks a std mutex, shrugging off poisoning: the maps behind these locks
/// stay consistent (every critical section is one map operation).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records that a tool call uses `who`'s credential for `tool_id` ("last
/// used" on the connected accounts page). The store writes it at most once
/// a minute per credential (`CredentialStore::record_use`); the write runs
/// beside the call, never in its way, and a failure is only logged.
fn note_use(store: &CredentialStore, who: &VerifiedIdentity, tool_id: &str) {
    let (store, who) = (store.clone(), who.clone());
    let key = CredentialKey::new(who.user_id(), tool_id);
    tokio::spawn(async move {
        if let Err(e) = store.record_use(&key, &who).await {
            tracing::debug!(agent = %store.agent_id(), tool = %key.tool_id, error = %e, "last use of a credential not recorded");
        }
    });
}
