//! Starting authorization flows: when a user has no usable credential, or
//! needs more scope; and finding what a flow needs (the authorization
//! server, the OAuth client, the scopes).
//!
//! A flow stores everything needed to finish it — the resume context, the
//! authorization server as discovered, the OAuth client and the scopes
//! asked for — encrypted with the pending flow, so the replica that gets
//! the callback needs no memory of the start. The `state` comes from
//! [`crate::oauth_state`], which lets any gateway route the callback and
//! refuse it in another user's browser session.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amesh_credentials::{ClientRegistration, CredentialStore, NewFlow, SecretJson, SecretString};
use amesh_mcp::client::Session;
use amesh_mcp::oauth::{
    self, AuthServer, BearerChallenge, OAuthClient, OAuthError, TokenEndpointAuth,
};
use amesh_mcp::tool_config::{AuthConfig, McpToolConfig};
use amesh_trust::VerifiedIdentity;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::McpCallError;
use super::error::OAuthSetupError;
use super::tools::Server;
use super::{McpCall, McpOutcome, McpTools, lock};
use crate::oauth_state;

/// How long the check of a stored client at the authorization endpoint may
/// delay a prompt; an endpoint only browsers can reach must not eat the
/// call's time.
const CLIENT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The `resume` document of a pending flow: what finishing the flow
/// needs, and the paused task's own state, opaque here.
#[derive(Serialize, Deserialize)]
pub(super) struct FlowResume {
    /// The reasoning loop's state ([`crate::agent::reasoning`]).
    pub task: Value,
    pub auth_server: AuthServer,
    pub client: OAuthClient,
    pub scopes: Vec<String>,
    /// The flow asks for more scope after an `insufficient_scope`.
    #[serde(default)]
    pub step_up: bool,
}

/// A started, not yet recorded, authorization: the link for the user and
/// everything the flow record needs. Secrets are redacted in `Debug`.
pub(crate) struct AuthPrompt {
    pub authorization_url: String,
    pub tool_id: String,
    pub message: String,
    state: SecretString,
    pkce_verifier: SecretString,
    redirect_uri: String,
    auth_server: AuthServer,
    client: OAuthClient,
    scopes: Vec<String>,
    pub step_up: bool,
}

impl std::fmt::Debug for AuthPrompt {
    /// The authorization URL carries the flow's `state`; show only where
    /// it points.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = self
            .authorization_url
            .split_once('?')
            .map_or(self.authorization_url.as_str(), |(base, _)| base);
        f.debug_struct("AuthPrompt")
            .field("authorization_url", &format_args!("{endpoint}?[redacted]"))
            .field("tool_id", &self.tool_id)
            .field("step_up", &self.step_up)
            .finish_non_exhaustive()
    }
}

impl McpTools {
    /// Starts a flow for `who` and answers `AuthRequired`. `challenge` is
    /// the server's `WWW-Authenticate`, when a 401 led here; `scopes` are
    /// set for a step-up (else challenge > config > metadata).
    pub(super) async fn start_flow(
        &self,
        server: &Server,
        ctx: &McpCall,
        who: &VerifiedIdentity,
        challenge: Option<&str>,
        scopes: Option<Vec<String>>,
    ) -> McpOutcome {
        let inner = &self.inner;
        let Some(redirect) = &inner.redirect_uri else {
            return McpOutcome::Failed(McpCallError::NoRedirectUri {
                tool: ctx.tool.clone(),
                agent: inner.agent.clone(),
                path: oauth::CALLBACK_PATH,
            });
        };
        let Some(store) = &inner.store else {
            return McpOutcome::Failed(McpCallError::NoStore {
                tool: ctx.tool.clone(),
                agent: inner.agent.clone(),
            });
        };
        let cannot = |why: OAuthSetupError| {
            McpOutcome::Failed(McpCallError::CannotAuthorize {
                tool: ctx.tool.clone(),
                why: Box::new(why),
            })
        };
        let auth_server = match self.auth_server(server, challenge).await {
            Ok(found) => found,
            Err(why) => return cannot(why),
        };
        let client = match self
            .flow_client(server, store, &auth_server, redirect)
            .await
        {
            Ok(client) => client,
            Err(why) => return cannot(why),
        };
        let step_up = scopes.is_some();
        let scopes =
            scopes.unwrap_or_else(|| auth_server.select_scopes(configured_scopes(&server.cfg)));
        let state = oauth_state::new_state(&inner.namespace, &inner.agent, who.user_id());
        let (url, verifier) =
            oauth::authorization_request(&auth_server, &client, redirect, &scopes, &state);
        let host = issuer_host(auth_server.issuer());
        let scope_list = scopes.join(" ");
        tracing::info!(agent = %inner.agent, user = %who.user_id(), tool = %server.tool_id, issuer = %host, scopes = %scope_list, step_up, "authorization needed");
        let message = if step_up {
            format!(
                "To use {}, authorize amesh at {host} for more access (scope: {scope_list}): open the link, sign in, then come back.",
                ctx.tool
            )
        } else {
            format!(
                "To use {}, authorize amesh at {host}: open the link, sign in, then come back.",
                ctx.tool
            )
        };
        McpOutcome::AuthRequired(Box::new(AuthPrompt {
            authorization_url: url.to_string(),
            tool_id: server.tool_id.clone(),
            message,
            state: SecretString::from(state),
            pkce_verifier: verifier.secret().clone(),
            redirect_uri: redirect.to_string(),
            auth_server,
            client,
            scopes,
            step_up,
        }))
    }

    /// Stores the flow of `prompt` with the paused task's state, so the
    /// callback — on any replica — can finish it and resume the task.
    pub(crate) async fn record_flow(
        &self,
        prompt: &AuthPrompt,
        task_id: &str,
        who: &VerifiedIdentity,
        task: Value,
    ) -> Result<(), OAuthSetupError> {
        let Some(store) = &self.inner.store else {
            return Err(OAuthSetupError::NoStore(self.inner.agent.clone()));
        };
        let resume = FlowResume {
            task,
            auth_server: prompt.auth_server.clone(),
            client: prompt.client.clone(),
            scopes: prompt.scopes.clone(),
            step_up: prompt.step_up,
        };
        let resume = serde_json::to_value(&resume).map_err(OAuthSetupError::Record)?;
        let flow = NewFlow {
            state: prompt.state.clone(),
            tool_id: prompt.tool_id.clone(),
            task_id: task_id.to_owned(),
            pkce_verifier: prompt.pkce_verifier.clone(),
            redirect_uri: prompt.redirect_uri.clone(),
            resume: SecretJson::new(resume),
        };
        crate::telemetry::metrics::store_op("start_flow", store.start_flow(flow, who))
            .await
            .map(drop)
            .map_err(OAuthSetupError::Store)
    }

    /// After a 403 `insufficient_scope`: one authorization for the union
    /// of the granted and the challenged scopes. When the call already
    /// followed a step-up, or the grant already holds the scopes asked
    /// for, asking again cannot help and the call fails.
    pub(super) async fn step_up(
        &self,
        server: &Server,
        ctx: &McpCall,
        who: &VerifiedIdentity,
        granted: &[String],
        scope: Option<&str>,
        stepped_up: bool,
    ) -> McpOutcome {
        let (agent, user, tool) = (&self.inner.agent, who.user_id(), &server.tool_id);
        let wanted = oauth::split_scopes(scope.unwrap_or(""));
        if wanted.is_empty() {
            tracing::info!(%agent, %user, %tool, "insufficient scope without a scope named; not stepping up");
            return McpOutcome::Failed(McpCallError::ScopeUnnamed {
                tool: ctx.tool.clone(),
            });
        }
        let missing: Vec<&String> = wanted.iter().filter(|s| !granted.contains(s)).collect();
        if stepped_up || missing.is_empty() {
            tracing::info!(%agent, %user, %tool, wanted = %wanted.join(" "), "insufficient scope again after authorization; giving up");
            return McpOutcome::Failed(McpCallError::ScopeNotGranted {
                tool: ctx.tool.clone(),
                scopes: wanted.join(" "),
            });
        }
        let mut scopes = granted.to_vec();
        scopes.extend(missing.into_iter().cloned());
        tracing::info!(%agent, %user, %tool, scopes = %scopes.join(" "), "insufficient scope; starting a step-up authorization");
        self.start_flow(server, ctx, who, None, Some(scopes)).await
    }

    /// The authorization server of `server`: configured endpoints, else
    /// discovered (and cached per tool). With a `challenge` (a fresh 401)
    /// the cache is bypassed; without one the server is probed for its
    /// challenge first, which names its resource metadata.
    pub(super) async fn auth_server(
        &self,
        server: &Server,
        challenge: Option<&str>,
    ) -> Result<AuthServer, OAuthSetupError> {
        if challenge.is_none()
            && let Some(cached) = lock(&self.inner.auth_servers).get(&server.tool_id)
        {
            return Ok(cached.clone());
        }
        let Some(mcp_url) = server.mcp_url.as_ref() else {
            return Err(OAuthSetupError::Stdio(server.tool_id.clone()));
        };
        let (authorization_url, token_url) = configured_endpoints(&server.cfg)?;
        let found = match (authorization_url, token_url) {
            (Some(authorization_url), Some(token_url)) => {
                let mut configured = AuthServer::configured(mcp_url, authorization_url, token_url);
                configured.challenge_scopes = challenge
                    .and_then(BearerChallenge::from_header)
                    .map(|c| c.scopes())
                    .unwrap_or_default();
                configured
            }
            (authorization_url, token_url) => {
                let http = server.oauth_http()?;
                let challenge = match challenge {
                    Some(c) => Some(c.to_owned()),
                    None => self.probe(server).await,
                };
                oauth::discover(http, mcp_url, challenge.as_deref())
                    .await
                    .map_err(|e| {
                        OAuthSetupError::Provider(self.oauth_failure(
                            &server.tool_id,
                            "authorization server discovery",
                            &e,
                        ))
                    })?
                    .with_overrides(authorization_url, token_url)
            }
        };
        lock(&self.inner.auth_servers).insert(server.tool_id.clone(), found.clone());
        Ok(found)
    }

    /// Logs an OAuth failure of `step` with everything the operator needs
    /// (URLs, status, an excerpt of a refused body, at warn) and returns
    /// what the user may read: the generic reason.
    pub(super) fn oauth_failure(&self, tool_id: &str, step: &str, e: &OAuthError) -> String {
        tracing::warn!(agent = %self.inner.agent, tool = %tool_id, error = %e, "{step} failed");
        e.user_reason()
    }

    /// The server's `WWW-Authenticate` for a request without a token.
    async fn probe(&self, server: &Server) -> Option<String> {
        let http = self.inner.pool.http_client(&server.cfg).ok()?;
        match Session::connect(&server.cfg, http, None).await {
            Err(e) => e.www_authenticate().map(str::to_owned),
            Ok(session) => {
                session.close().await;
                None
            }
        }
    }

    /// The client a new flow uses: configured, else the gateway's Client ID
    /// Metadata Document where the server supports one, else this agent's stored
    /// registration at the issuer (for the current redirect URI, and still
    /// known to the server), else a new dynamic registration, stored for
    /// every replica. Registrations are keyed by issuer: one is never used
    /// with another.
    async fn flow_client(
        &self,
        server: &Server,
        store: &CredentialStore,
        auth_server: &AuthServer,
        redirect: &Url,
    ) -> Result<OAuthClient, OAuthSetupError> {
        if let Some(client) = configured_client(&server.cfg) {
            return Ok(client);
        }
        // MCP 2026-07-28 prefers a Client ID Metadata Document: nothing to
        // register, store, or lose when the provider restarts.
        if auth_server.metadata.client_id_metadata_document_supported == Some(true)
            && let Some(client_id) = oauth::client_metadata_url(redirect)
        {
            return Ok(OAuthClient::configured(client_id.as_str(), None));
        }
        let issuer = auth_server.issuer().to_owned();
        let _one_at_a_time = self.inner.registration.lock().await;
        match store.get_client(&issuer).await {
            Ok(Some(stored)) if registered_for(&stored, redirect) => {
                let client = registered_client(&stored);
                match self
                    .check_registration(server, auth_server, &client, redirect)
                    .await
                {
                    None => return Ok(client),
                    Some(evidence) => {
                        self.forget_registration(auth_server, &client, &server.tool_id, &evidence)
                            .await;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => return Err(OAuthSetupError::Store(e)),
        }
        let name = oauth::client_name_for_agent(&self.inner.agent);
        let registration = oauth::register(server.oauth_http()?, auth_server, redirect, &name)
            .await
            .map_err(|e| {
                OAuthSetupError::Provider(self.oauth_failure(
                    &server.tool_id,
                    "client registration",
                    &e,
                ))
            })?;
        let stored = ClientRegistration {
            server: issuer.clone(),
            client_id: registration.client_id.clone(),
            client_secret: registration.client_secret.as_ref().cloned(),
            client_secret_expires_at: secret_expiry(&registration.raw),
            registration: SecretJson::new(registration.raw.clone()),
        };
        store
            .put_client(&stored)
            .await
            .map_err(OAuthSetupError::Store)?;
        tracing::info!(agent = %self.inner.agent, tool = %server.tool_id, %issuer, "registered an OAuth client with the authorization server");
        Ok(registration.client())
    }
}

impl McpTools {
    /// Loads the authorization URL a prompt with the stored `client` would
    /// show ([`oauth::check_client`]); the evidence when the server refused
    /// the client as unknown. A check that fails says nothing: the client
    /// is used as before.
    async fn check_registration(
        &self,
        server: &Server,
        auth_server: &AuthServer,
        client: &OAuthClient,
        redirect: &Url,
    ) -> Option<String> {
        let http = server.oauth_http().ok()?;
        let scopes = auth_server.select_scopes(configured_scopes(&server.cfg));
        let check = oauth::check_client(http, auth_server, client, redirect, &scopes);
        match tokio::time::timeout(CLIENT_CHECK_TIMEOUT, check).await {
            Ok(Ok(oauth::ClientStatus::Known)) => None,
            Ok(Ok(oauth::ClientStatus::Unknown { evidence })) => Some(evidence),
            Ok(Err(e)) => {
                tracing::debug!(agent = %self.inner.agent, tool = %server.tool_id, error = %e, "could not check the stored OAuth client at the authorization endpoint; using it");
                None
            }
            Err(_) => {
                tracing::debug!(agent = %self.inner.agent, tool = %server.tool_id, "the authorization endpoint did not answer the client check in time; using the stored client");
                None
            }
        }
    }

    /// Drops this agent's registration at the flow's issuer after the
    /// server refused `client` as unknown (a provider restarted with an
    /// in-memory store), so the next flow registers again. Only the
    /// registration that was refused is dropped: a configured client, or
    /// one another replica already replaced, stays. Logged at warn with
    /// the server's words: the operator should know a provider forgets.
    pub(super) async fn forget_registration(
        &self,
        auth_server: &AuthServer,
        client: &OAuthClient,
        tool_id: &str,
        evidence: &str,
    ) {
        let agent = &self.inner.agent;
        let issuer = auth_server.issuer();
        let Some(store) = &self.inner.store else {
            return;
        };
        let stored = match store.get_client(issuer).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(%agent, tool = %tool_id, %issuer, error = %e, "could not read the client registration to drop");
                return;
            }
        };
        if stored.is_none_or(|s| s.client_id != client.client_id) {
            tracing::warn!(%agent, tool = %tool_id, %issuer, client_id = %client.client_id, %evidence, "the authorization server refused an OAuth client amesh did not register (configured, or already replaced); nothing dropped");
            return;
        }
        match store.delete_client(issuer).await {
            Ok(_) => {
                tracing::warn!(%agent, tool = %tool_id, %issuer, client_id = %client.client_id, %evidence, "the authorization server no longer knows amesh's registered OAuth client (restarted with an in-memory store?); registration dropped, the next authorization registers again");
            }
            Err(e) => {
                tracing::warn!(%agent, tool = %tool_id, %issuer, error = %e, "could not drop the refused client registration");
            }
        }
    }
}

/// The `client_id` (and secret) of the tool's `auth:` block, if set.
pub(super) fn configured_client(cfg: &McpToolConfig) -> Option<OAuthClient> {
    let Some(AuthConfig::OAuth2 {
        client_id: Some(client_id),
        client_secret,
        ..
    }) = &cfg.auth
    else {
        return None;
    };
    let client_id = client_id.trim();
    (!client_id.is_empty()).then(|| {
        let secret = client_secret.as_ref().cloned();
        OAuthClient::configured(client_id, secret)
    })
}

/// A stored registration as the client identity of a flow.
pub(super) fn registered_client(stored: &ClientRegistration) -> OAuthClient {
    let client_secret = stored.client_secret.as_ref().cloned();
    let auth = stored
        .registration
        .expose()
        .get("token_endpoint_auth_method")
        .and_then(|m| serde_json::from_value::<TokenEndpointAuth>(m.clone()).ok())
        .unwrap_or(if client_secret.is_some() {
            TokenEndpointAuth::ClientSecretBasic
        } else {
            TokenEndpointAuth::None
        });
    OAuthClient {
        client_id: stored.client_id.clone(),
        client_secret,
        auth,
    }
}

/// Whether a stored registration lists `redirect` (one made before the
/// operator changed `OAUTH_TOOL_REDIRECT_URI` would be refused at consent).
fn registered_for(stored: &ClientRegistration, redirect: &Url) -> bool {
    match stored
        .registration
        .expose()
        .get("redirect_uris")
        .and_then(Value::as_array)
    {
        Some(uris) => uris.iter().any(|u| u.as_str() == Some(redirect.as_str())),
        None => true,
    }
}

/// RFC 7591 `client_secret_expires_at` (0 or absent: never).
fn secret_expiry(raw: &Value) -> Option<SystemTime> {
    raw.get("client_secret_expires_at")
        .and_then(Value::as_u64)
        .filter(|secs| *secs > 0)
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

fn configured_scopes(cfg: &McpToolConfig) -> &[String] {
    match &cfg.auth {
        Some(AuthConfig::OAuth2 { scopes, .. }) => scopes,
        None => &[],
    }
}

/// `authorization_url` and `token_url` of the `auth:` block, parsed.
fn configured_endpoints(
    cfg: &McpToolConfig,
) -> Result<(Option<Url>, Option<Url>), OAuthSetupError> {
    let Some(AuthConfig::OAuth2 {
        authorization_url,
        token_url,
        ..
    }) = &cfg.auth
    else {
        return Ok((None, None));
    };
    let parse = |key: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| {
                Url::parse(v.trim()).map_err(|source| OAuthSetupError::BadEndpoint {
                    key,
                    value: v.to_owned(),
                    source,
                })
            })
            .transpose()
    };
    Ok((
        parse("authorization_url", authorization_url)?,
        parse("token_url", token_url)?,
    ))
}

/// The issuer's host, for messages to the user.
pub(super) fn issuer_host(issuer: &str) -> String {
    Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| issuer.to_owned())
}
