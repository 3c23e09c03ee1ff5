//! A user's connected accounts at this agent: the oauth2 MCP servers, and
//! for each whether the user has a credential (metadata only: scopes,
//! issuer, dates — never token material). Disconnecting revokes the grant
//! at the provider (RFC 7009) when it advertises a revocation endpoint,
//! then marks the credential deleted (the row stays for audit). Connecting
//! starts the same flow a tool call would, with no task waiting on it.
//!
//! Always for a verified identity: the gateway's signed token says which
//! user asks, so a user only ever sees and touches their own.

use std::time::{SystemTime, UNIX_EPOCH};

use amesh_credentials::{CredentialKey, DeleteReason};
use amesh_mcp::oauth;
use amesh_trust::VerifiedIdentity;
use serde::Serialize;

use super::error::{ConnectionError, OAuthSetupError};
use super::refresh::token_set;
use super::{AuthPrompt, McpCall, McpOutcome, McpTools};

/// One oauth2 MCP server of this agent, as its user sees it.
#[derive(Debug, Serialize)]
pub(crate) struct Connection {
    pub tool_id: String,
    /// The exposed tools that use this server.
    pub tools: Vec<String>,
    pub connected: bool,
    pub scopes: Vec<String>,
    pub issuer: Option<String>,
    /// Unix milliseconds: first stored, last stored (acquired or refreshed),
    /// last used by a tool call (to the minute: the store writes it at most
    /// once a minute), when the access token expires, when the
    /// credential's TTL runs out.
    pub connected_ms: Option<u64>,
    pub refreshed_ms: Option<u64>,
    pub last_used_ms: Option<u64>,
    pub token_expires_ms: Option<u64>,
    pub expires_ms: Option<u64>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl McpTools {
    fn oauth_server(
        &self,
        tool_id: &str,
    ) -> Result<&std::sync::Arc<super::tools::Server>, ConnectionError> {
        self.inner
            .servers
            .iter()
            .find(|s| s.tool_id == tool_id && s.oauth.is_some())
            .ok_or_else(|| ConnectionError::UnknownServer {
                agent: self.inner.agent.clone(),
                tool_id: tool_id.to_owned(),
            })
    }

    /// Every oauth2 server of the agent, with `who`'s credential if any.
    pub(crate) async fn connections(
        &self,
        who: &VerifiedIdentity,
    ) -> Result<Vec<Connection>, ConnectionError> {
        let Some(store) = &self.inner.store else {
            return Ok(Vec::new());
        };
        let rows = store.list_for_user(who).await?;
        Ok(self
            .inner
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.oauth.is_some())
            .map(|(i, server)| {
                let row = rows
                    .iter()
                    .find(|r| r.tool_id == server.tool_id && r.deleted_at.is_none());
                let tools = self
                    .inner
                    .order
                    .iter()
                    .filter(|n| self.inner.bindings.get(*n).is_some_and(|b| b.server == i))
                    .cloned()
                    .collect();
                Connection {
                    tool_id: server.tool_id.clone(),
                    tools,
                    connected: row.is_some(),
                    scopes: row.map(|r| r.scopes.clone()).unwrap_or_default(),
                    issuer: row.and_then(|r| r.issuer.clone()),
                    connected_ms: row.map(|r| ms(r.created_at)),
                    refreshed_ms: row.map(|r| ms(r.updated_at)),
                    last_used_ms: row.and_then(|r| r.last_used_at).map(ms),
                    token_expires_ms: row.and_then(|r| r.token_expires_at).map(ms),
                    expires_ms: row.map(|r| ms(r.expires_at)),
                }
            })
            .collect())
    }

    /// Revokes `who`'s grant for `tool_id` at the provider (when it offers
    /// RFC 7009) and marks the credential deleted. The text says what
    /// happened; `Err` when there was nothing to disconnect or the store
    /// failed.
    pub(crate) async fn disconnect(
        &self,
        who: &VerifiedIdentity,
        tool_id: &str,
    ) -> Result<String, ConnectionError> {
        let server = self.oauth_server(tool_id)?;
        let Some(store) = &self.inner.store else {
            return Err(ConnectionError::NoStore(self.inner.agent.clone()));
        };
        let key = CredentialKey::new(who.user_id(), tool_id);
        let Some(credential) = store.get(&key, who).await? else {
            return Err(ConnectionError::NotConnected(tool_id.to_owned()));
        };
        // Revoke first: a grant we forget but the provider keeps is worse
        // than one we keep a moment longer.
        let revoked = async {
            let auth_server = self.auth_server(server, None).await?;
            let client = self
                .refresh_client(server, store, &auth_server, &credential)
                .await?;
            let http = server.oauth_http()?;
            oauth::revoke(http, &auth_server, &client, &token_set(&credential))
                .await
                .map_err(OAuthSetupError::Provider)
        }
        .await;
        store.delete(&key, who, DeleteReason::Revoked).await?;
        tracing::info!(agent = %self.inner.agent, user = %who.user_id(), tool = %tool_id,
            revoked_at_provider = ?revoked.as_ref().ok(), "user disconnected a tool");
        Ok(match revoked {
            Ok(true) => format!("{tool_id} disconnected; the provider revoked the grant"),
            Ok(false) => format!(
                "{tool_id} disconnected here; the provider offers no revocation endpoint, so \
                 revoke amesh's access there too if you want the grant gone"
            ),
            Err(why) => format!(
                "{tool_id} disconnected here, but the provider did not confirm the revocation: {why}"
            ),
        })
    }

    /// Starts an authorization of `tool_id` for `who` outside any task.
    pub(crate) async fn connect(
        &self,
        who: &VerifiedIdentity,
        tool_id: &str,
    ) -> Result<AuthPrompt, ConnectionError> {
        let server = self.oauth_server(tool_id)?.clone();
        let ctx = McpCall {
            tool: tool_id.to_owned(),
            arguments: serde_json::Value::Null,
            stepped_up: false,
            retry: None,
        };
        match self.start_flow(&server, &ctx, who, None, None).await {
            McpOutcome::AuthRequired(prompt) => Ok(*prompt),
            McpOutcome::Failed(why) => Err(why.into()),
            _ => Err(ConnectionError::NotStarted(tool_id.to_owned())),
        }
    }
}
