//! Keeping access: reading a user's credential and refreshing it before it
//! expires, once per (user, tool) however many calls ask at the same time.
//!
//! Concurrent calls that find the token near expiry queue on one
//! `tokio::sync::Mutex` per (user, tool id) — a tokio mutex because it is
//! held across the token request — and each re-reads the credential after
//! acquiring it, so only the first refreshes and the others use its result.
//! Replicas of the agent share the credential rows, so the refresh also
//! holds the row's lease in the store (`CredentialStore::refresh_serialized`):
//! across replicas one refresh runs at a time, and a replica that loses
//! the race uses the winner's token instead of spending the rotated
//! refresh token again.
//! The refresh runs in its own task: if the call that started it is
//! cancelled or times out, a refresh that went through at the provider
//! still reaches the store, because a rotated refresh token lost on the way
//! would sign the user out.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amesh_credentials::{
    Credential, CredentialKey, CredentialStore, ExposeSecret as _, LeaseTiming, Refresh,
    SecretString,
};
use amesh_mcp::oauth::{self, AuthServer, OAuthClient, TokenSet};
use amesh_trust::VerifiedIdentity;

use super::error::OAuthSetupError;
use super::tools::Server;
use super::{AccessError, McpTools, RefreshLock, auth, lock};
use crate::telemetry::metrics;

/// An access token this close to its expiry is refreshed before use.
pub(super) const REFRESH_LEEWAY: Duration = Duration::from_secs(60);

/// The credential row's refresh lease (one refresh across replicas). Held
/// a little longer than the token request's 30 s timeout: a replica killed
/// while holding it delays that user's refresh by at most this long, so it
/// is kept short. A refresh slower than that (slow discovery too) may be
/// raced by another replica; the loser is refused and then finds the
/// winner's token in the store (`CredentialStore::refresh_serialized`).
const REFRESH_LEASE: LeaseTiming = LeaseTiming {
    hold: Duration::from_secs(35),
    poll: Duration::from_millis(100),
    max_poll: Duration::from_secs(2),
    max_wait: Duration::from_secs(45),
};

/// Past this many (user, tool) refresh locks, idle ones are dropped.
const MAX_IDLE_LOCKS: usize = 4096;

/// What the store holds for a (user, tool), ready to use or not.
pub(super) enum Access {
    /// A credential whose access token is good for now.
    Token(Credential),
    /// None stored: the user has to authorize.
    Missing,
    /// The stored grant is dead (refresh refused, no refresh token): the
    /// credential must be dropped and the user authorize again.
    Reauthorize(String),
    /// Something failed that the user cannot fix by authorizing (store
    /// down, provider unreachable).
    Failed(AccessError),
}

impl McpTools {
    /// `who`'s usable credential for `server`, refreshed first when it
    /// expires within [`REFRESH_LEEWAY`].
    pub(super) async fn access(
        &self,
        server: &Arc<Server>,
        store: &CredentialStore,
        who: &VerifiedIdentity,
    ) -> Access {
        let key = CredentialKey::new(who.user_id(), server.tool_id.clone());
        let credential = match metrics::store_op("get", store.get(&key, who)).await {
            Ok(Some(credential)) => credential,
            Ok(None) => return Access::Missing,
            Err(e) => return Access::Failed(e.into()),
        };
        if !near_expiry(&credential) {
            return Access::Token(credential);
        }
        self.spawn_refresh(server, store, who, None).await
    }

    /// The MCP server refused `rejected` (401) although it had not expired
    /// by our clock (revoked access token, provider-side expiry, skew): one
    /// refresh is worth trying before asking the user again. A failure here
    /// means the grant is dead.
    pub(super) async fn refresh_rejected(
        &self,
        server: &Arc<Server>,
        store: &CredentialStore,
        who: &VerifiedIdentity,
        rejected: SecretString,
    ) -> Access {
        self.spawn_refresh(server, store, who, Some(rejected)).await
    }

    /// Runs the refresh in its own task, so a refresh the provider already
    /// performed is stored even if the caller is cancelled.
    async fn spawn_refresh(
        &self,
        server: &Arc<Server>,
        store: &CredentialStore,
        who: &VerifiedIdentity,
        rejected: Option<SecretString>,
    ) -> Access {
        let (this, server, store, who) = (self.clone(), server.clone(), store.clone(), who.clone());
        tokio::spawn(async move {
            this.refresh_once(&server, &store, &who, rejected.as_ref())
                .await
        })
        .await
        .unwrap_or_else(|e| Access::Failed(AccessError::RefreshAborted(e.to_string())))
    }

    /// Refreshes under the (user, tool) lock of this process and the
    /// credential row's lease across replicas, unless another caller or
    /// replica did while this one waited.
    async fn refresh_once(
        &self,
        server: &Server,
        store: &CredentialStore,
        who: &VerifiedIdentity,
        rejected: Option<&SecretString>,
    ) -> Access {
        let user = who.user_id();
        let tool = server.tool_id.as_str();
        let agent = self.inner.agent.as_str();
        let gate = self.refresh_lock(user, tool);
        let _held = gate.lock().await;
        let key = CredentialKey::new(user, tool);
        let stale = |credential: &Credential| match rejected {
            // Until another caller replaced the refused token.
            Some(rejected) => credential.access_token.expose_secret() == rejected.expose_secret(),
            None => near_expiry(credential),
        };
        let forced = rejected.is_some();
        let outcome = store
            .refresh_serialized(&key, who, REFRESH_LEASE, stale, |credential| {
                self.refresh_grant(server, store, user, credential, forced)
            })
            .await;
        match outcome {
            Ok(Refresh::Missing) => Access::Missing,
            // Fresh: refreshed by another caller or replica meanwhile.
            Ok(Refresh::Fresh(credential) | Refresh::Refreshed(credential)) => {
                Access::Token(credential)
            }
            Ok(Refresh::Failed(instead)) => instead,
            Ok(Refresh::Busy(credential)) => {
                let why = "another replica is still refreshing this access token";
                still_valid_or(credential, agent, user, tool, &why, why.to_owned())
            }
            Err(e) => Access::Failed(e.into()),
        }
    }

    /// One refresh_token grant at the provider for `credential` (held under
    /// the lease). `Err` is what to answer instead of a new credential:
    /// reauthorize, fail, or keep using the old token while it lasts.
    async fn refresh_grant(
        &self,
        server: &Server,
        store: &CredentialStore,
        user: &str,
        credential: Credential,
        forced: bool,
    ) -> Result<Credential, Access> {
        let tool = server.tool_id.as_str();
        let agent = self.inner.agent.as_str();
        if credential.refresh_token.is_none() {
            return Err(Access::Reauthorize(
                "the access token expires and no refresh token is stored".into(),
            ));
        }
        let auth_server = match self.auth_server(server, None).await {
            Ok(found) => found,
            Err(e) if forced => return Err(Access::Reauthorize(e.to_string())),
            Err(e) => {
                let reason = e.to_string();
                return Err(still_valid_or(credential, agent, user, tool, &e, reason));
            }
        };
        // The grant belongs to the issuer that made it: its refresh token
        // and client are never sent to another one.
        if let Some(issued_by) = credential.issuer.as_deref()
            && issued_by != auth_server.issuer()
        {
            tracing::warn!(agent, user, tool, issued_by, issuer = %auth_server.issuer(), "the MCP server's authorization server changed; the grant is not sent to the new one");
            return Err(Access::Reauthorize(format!(
                "the grant was issued by {issued_by}, but the MCP server now names {}",
                auth_server.issuer()
            )));
        }
        let http = match server.oauth_http() {
            Ok(http) => http,
            Err(e) => return Err(Access::Failed(AccessError::Setup(e))),
        };
        let client = match self
            .refresh_client(server, store, &auth_server, &credential)
            .await
        {
            Ok(client) => client,
            Err(e) => return Err(Access::Failed(AccessError::Setup(e))),
        };
        tracing::info!(agent, user, tool, forced, "refreshing the access token");
        let previous = token_set(&credential);
        let result = oauth::refresh(http, &auth_server, &client, &previous).await;
        metrics::token_refresh(agent, tool, refresh_outcome(&result));
        let failed = match result {
            Ok(refreshed) => {
                // Stored by the caller, which holds the lease.
                let renewed = to_credential(&refreshed.tokens, &auth_server, &client);
                tracing::info!(
                    agent,
                    user,
                    tool,
                    rotated = refreshed.rotated,
                    "access token refreshed"
                );
                return Ok(renewed);
            }
            Err(e) if e.is_client_rejected() && auth::configured_client(&server.cfg).is_none() => {
                self.forget_registration(&auth_server, &client, tool, &e.to_string())
                    .await;
                Access::Reauthorize(format!(
                    "the authorization server no longer knows the client: {e}"
                ))
            }
            Err(e) if e.needs_reauthorization() => {
                Access::Reauthorize(format!("the provider refused the refresh: {e}"))
            }
            Err(e) if forced => Access::Reauthorize(format!("the refresh failed: {e}")),
            Err(e) => still_valid_or(credential, agent, user, tool, &e, e.user_reason()),
        };
        Err(failed)
    }

    /// The client a refresh authenticates as: the configured one, else the
    /// stored registration the grant was issued to, else the grant's
    /// client id as a public client.
    pub(super) async fn refresh_client(
        &self,
        server: &Server,
        store: &CredentialStore,
        auth_server: &AuthServer,
        credential: &Credential,
    ) -> Result<OAuthClient, OAuthSetupError> {
        if let Some(client) = auth::configured_client(&server.cfg) {
            return Ok(client);
        }
        let Some(client_id) = credential.client_id.clone() else {
            return Err(OAuthSetupError::NoClient(server.tool_id.clone()));
        };
        match store.get_client(auth_server.issuer()).await {
            Ok(Some(registration)) if registration.client_id == client_id => {
                Ok(auth::registered_client(&registration))
            }
            Ok(_) => Ok(OAuthClient::configured(client_id, None)),
            Err(e) => Err(OAuthSetupError::Store(e)),
        }
    }

    /// The lock of (user, tool); idle locks are dropped once there are many.
    fn refresh_lock(&self, user: &str, tool: &str) -> RefreshLock {
        let mut locks = lock(&self.inner.refresh_locks);
        if locks.len() > MAX_IDLE_LOCKS {
            locks.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        locks
            .entry((user.to_owned(), tool.to_owned()))
            .or_default()
            .clone()
    }
}

/// A refresh's outcome as a metrics label: `refused` when the grant is
/// dead (the user must authorize again), `failed` otherwise.
fn refresh_outcome<T>(result: &Result<T, oauth::OAuthError>) -> &'static str {
    match result {
        Ok(_) => "refreshed",
        Err(e) if e.needs_reauthorization() => "refused",
        Err(_) => "failed",
    }
}

/// A refresh failed for a reason authorizing again would not fix (provider
/// down): the old token is used while it lasts, else the call fails.
/// `error` (the details) goes to the log, `reason` to the user.
fn still_valid_or(
    credential: Credential,
    agent: &str,
    user: &str,
    tool: &str,
    error: &dyn std::fmt::Display,
    reason: String,
) -> Access {
    if credential.is_access_token_expired(SystemTime::now()) {
        tracing::warn!(agent, user, tool, %error, "access token expired and the refresh failed");
        Access::Failed(AccessError::RefreshFailed {
            tool: tool.to_owned(),
            reason,
        })
    } else {
        tracing::warn!(agent, user, tool, %error, "refresh failed; using the access token until it expires");
        Access::Token(credential)
    }
}

/// Whether the access token expires within [`REFRESH_LEEWAY`].
pub(super) fn near_expiry(credential: &Credential) -> bool {
    credential
        .expires_at
        .is_some_and(|at| at <= SystemTime::now() + REFRESH_LEEWAY)
}

/// A stored credential as the OAuth code's token set.
pub(super) fn token_set(credential: &Credential) -> TokenSet {
    TokenSet {
        access_token: credential.access_token.clone(),
        refresh_token: credential.refresh_token.clone(),
        token_type: credential.token_type.clone(),
        expires_at: credential
            .expires_at
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        scopes: credential.scopes.clone(),
    }
}

/// A token set from the provider as the credential to store, with what a
/// later refresh needs to know.
pub(super) fn to_credential(
    tokens: &TokenSet,
    auth_server: &AuthServer,
    client: &OAuthClient,
) -> Credential {
    Credential {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        token_type: tokens.token_type.clone(),
        expires_at: tokens
            .expires_at
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs)),
        scopes: tokens.scopes.clone(),
        issuer: Some(auth_server.issuer().to_owned()),
        token_endpoint: Some(auth_server.metadata.token_endpoint.to_string()),
        client_id: Some(client.client_id.clone()),
    }
}
