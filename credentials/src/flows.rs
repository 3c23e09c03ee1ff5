//! Pending OAuth flows and dynamic client registrations.
//!
//! A flow is the bridge between "the agent sent the user to log in" and
//! "the provider redirected back". Several replicas share an agent's
//! requests, so the callback may land on a replica that never saw the
//! flow start: everything needed to finish it — the PKCE verifier, the
//! redirect URI, and the `resume` document with the tool call and
//! conversation — is stored here, encrypted, under a hash of the `state`.
//! Taking it is one atomic conditional update, so a replayed callback finds
//! it used, whichever replica it reaches.

use std::time::SystemTime;

use amesh_trust::VerifiedIdentity;

use crate::crypto::{Purpose, lookup_hash};
use crate::error::CredentialError;
use crate::model::{
    ClientInfo, ClientRegistration, CredentialKey, EventKind, NewFlow, PendingFlow, from_ms, now_ms,
};
use crate::sealed::{FlowIdentity, Unsealed, open_client, open_flow, seal_client, seal_flow};
use crate::secret::ExposeSecret as _;
use crate::storage::sql::migration::{MAX_ID_LEN, MAX_TOOL_LEN};
use crate::storage::{ClientRow, FlowRow, Take};
use crate::store::{CredentialStore, check_id};

/// Shortest accepted `state`: 16 characters (oauth2's `CsrfToken::new_random`
/// makes 22) — a guessable state would let another user's callback in.
pub const MIN_STATE_LEN: usize = 16;
const MAX_STATE_LEN: usize = 1024;

impl CredentialStore {
    /// Records a pending OAuth flow for `who`, valid for the configured
    /// flow lifetime (ten minutes by default). Returns when it expires.
    pub async fn start_flow(
        &self,
        flow: NewFlow,
        who: &VerifiedIdentity,
    ) -> Result<SystemTime, CredentialError> {
        let s = self.open_shared()?;
        check_state(flow.state.expose_secret())?;
        check_id("tool_id", &flow.tool_id, MAX_TOOL_LEN)?;
        check_id("task_id", &flow.task_id, MAX_ID_LEN)?;
        check_id("user_id", who.user_id(), MAX_ID_LEN)?;
        let state_hash = state_hash(&s.agent_id, flow.state.expose_secret());
        let id = FlowIdentity {
            agent_id: &s.agent_id,
            user_id: who.user_id(),
            tool_id: &flow.tool_id,
            task_id: &flow.task_id,
            state_hash: &state_hash,
        };
        let sealed = seal_flow(&s.keys, &id, &flow)?;
        let now = now_ms();
        let expires_at = now.saturating_add(s.flow_ttl_ms);
        s.storage
            .flow_insert(FlowRow {
                state_hash: state_hash.clone(),
                agent_id: s.agent_id.clone(),
                user_id: who.user_id().to_owned(),
                tool_id: flow.tool_id.clone(),
                task_id: flow.task_id.clone(),
                sealed,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(from_ms(expires_at))
    }

    /// Takes the pending flow of `state` for `who`: it must exist, be
    /// unexpired, unused and `who`'s, and is marked used in the same atomic
    /// step — a second take fails with [`CredentialError::FlowAlreadyUsed`].
    /// Another user's identity gets [`CredentialError::FlowUserMismatch`]
    /// (audited) and does not use the flow up.
    pub async fn take_flow(
        &self,
        state: &str,
        who: &VerifiedIdentity,
    ) -> Result<PendingFlow, CredentialError> {
        let s = self.open_shared()?;
        if state.is_empty() || state.len() > MAX_STATE_LEN {
            return Err(CredentialError::FlowNotFound);
        }
        let state_hash = state_hash(&s.agent_id, state);
        let row = match s
            .storage
            .flow_take(&s.agent_id, &state_hash, who.user_id(), now_ms())
            .await?
        {
            Take::Taken(row) => row,
            Take::NotFound => return Err(CredentialError::FlowNotFound),
            Take::Expired(at) => return Err(CredentialError::FlowExpired { expired_at_ms: at }),
            Take::Used => return Err(CredentialError::FlowAlreadyUsed),
            Take::WrongUser { user_id, tool_id } => {
                let key = CredentialKey::new(user_id, tool_id);
                let reason = format!(
                    "identity of user {:?} tried to complete this user's OAuth flow",
                    who.user_id()
                );
                tracing::warn!(agent = %s.agent_id, user = %key.user_id, tool = %key.tool_id, identity = %who.user_id(), "OAuth flow refused: identity is another user");
                s.record(vec![s.event(&key, EventKind::AccessDenied, Some(reason))]);
                return Err(CredentialError::FlowUserMismatch {
                    identity_user: who.user_id().to_owned(),
                });
            }
        };
        let id = FlowIdentity {
            agent_id: &row.agent_id,
            user_id: &row.user_id,
            tool_id: &row.tool_id,
            task_id: &row.task_id,
            state_hash: &row.state_hash,
        };
        match open_flow(&s.keys, &id, &row.sealed) {
            Ok(doc) => Ok(PendingFlow {
                pkce_verifier: doc.pkce_verifier.into(),
                redirect_uri: doc.redirect_uri,
                resume: crate::model::SecretJson::new(doc.resume),
                created_at: from_ms(row.created_at),
                expires_at: from_ms(row.expires_at),
                agent_id: row.agent_id,
                user_id: row.user_id,
                tool_id: row.tool_id,
                task_id: row.task_id,
            }),
            Err(Unsealed::Open(why)) => {
                let key = CredentialKey::new(row.user_id.clone(), row.tool_id.clone());
                s.undecryptable("OAuth flow", &key, why);
                Err(CredentialError::FlowNotFound)
            }
            Err(Unsealed::Corrupt(err)) => Err(err),
        }
    }

    /// Stores (or replaces) this agent's client registration at
    /// `registration.server`.
    pub async fn put_client(
        &self,
        registration: &ClientRegistration,
    ) -> Result<(), CredentialError> {
        let s = self.open_shared()?;
        check_id("server", &registration.server, MAX_TOOL_LEN)?;
        check_id("client_id", &registration.client_id, MAX_TOOL_LEN)?;
        let sealed = seal_client(&s.keys, &s.agent_id, registration)?;
        let key_hash = client_hash(&s.agent_id, &registration.server);
        s.storage
            .client_put(ClientRow {
                key_hash: &key_hash,
                agent_id: &s.agent_id,
                server: &registration.server,
                client_id: &registration.client_id,
                sealed,
                now: now_ms(),
            })
            .await
    }

    /// This agent's client registration at `server`. Absent when none was
    /// stored, when its secret has expired, or when it does not decrypt
    /// (logged and audited): the caller registers again.
    pub async fn get_client(
        &self,
        server: &str,
    ) -> Result<Option<ClientRegistration>, CredentialError> {
        let s = self.open_shared()?;
        check_id("server", server, MAX_TOOL_LEN)?;
        let key_hash = client_hash(&s.agent_id, server);
        let Some(blob) = s.storage.client_get(&s.agent_id, &key_hash).await? else {
            return Ok(None);
        };
        match open_client(&s.keys, &s.agent_id, server, &blob) {
            Ok(reg)
                if reg
                    .client_secret_expires_at
                    .is_some_and(|t| t <= SystemTime::now()) =>
            {
                tracing::debug!(server, "stored client registration's secret has expired");
                Ok(None)
            }
            Ok(reg) => Ok(Some(reg)),
            Err(Unsealed::Open(why)) => {
                s.undecryptable("client registration", &CredentialKey::new("", server), why);
                Ok(None)
            }
            Err(Unsealed::Corrupt(err)) => Err(err),
        }
    }

    /// This agent's client registrations, by server: for operators
    /// (`amesh credentials clients list`), without secrets.
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>, CredentialError> {
        let s = self.open_shared()?;
        let rows = s.storage.client_list(&s.agent_id).await?;
        Ok(rows
            .into_iter()
            .map(|row| ClientInfo {
                agent_id: s.agent_id.clone(),
                server: row.server,
                client_id: row.client_id,
                created_at: from_ms(row.created_at),
                updated_at: from_ms(row.updated_at),
            })
            .collect())
    }

    /// Audits an authorization response for `key` that was refused before
    /// its code was redeemed (RFC 9207 issuer mismatch); `reason` names the
    /// issuers, never a code or a token.
    pub fn audit_refused_authorization(
        &self,
        key: &CredentialKey,
        reason: String,
    ) -> Result<(), CredentialError> {
        let s = self.open_shared()?;
        s.storage.record(vec![s.event(
            key,
            EventKind::AuthorizationRefused,
            Some(reason),
        )]);
        Ok(())
    }

    /// Removes this agent's client registration at `server`; whether there
    /// was one.
    pub async fn delete_client(&self, server: &str) -> Result<bool, CredentialError> {
        let s = self.open_shared()?;
        check_id("server", server, MAX_TOOL_LEN)?;
        s.storage
            .client_delete(&s.agent_id, &client_hash(&s.agent_id, server))
            .await
    }
}

fn check_state(state: &str) -> Result<(), CredentialError> {
    let len = state.chars().count();
    if !(MIN_STATE_LEN..=MAX_STATE_LEN).contains(&len) {
        return Err(CredentialError::InvalidInput {
            field: "state",
            reason: format!(
                "must have {MIN_STATE_LEN} to {MAX_STATE_LEN} characters of randomness, has {len}"
            ),
        });
    }
    Ok(())
}

/// The stored key of a flow: the state itself never reaches the database.
fn state_hash(agent_id: &str, state: &str) -> String {
    lookup_hash(Purpose::Flow, &[agent_id, state])
}

fn client_hash(agent_id: &str, server: &str) -> String {
    lookup_hash(Purpose::Client, &[agent_id, server])
}
