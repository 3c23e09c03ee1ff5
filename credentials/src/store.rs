//! The credential service: who may read what, what is audited, and what a
//! row that does not decrypt means.
//!
//! This is the one place policy lives, for both backends. A
//! [`CredentialStore`] is a cheap-to-clone handle; the agent makes one at
//! start and hands clones to its tool calls. Pending flows and client
//! registrations are in `flows.rs`, conversations in `conversations.rs`
//! (same type, other `impl` blocks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use amesh_trust::{Assurance, VerifiedIdentity};

use crate::config::{StoreBackend, StoreConfig};
use crate::crypto::{Keys, OpenError, Purpose, lookup_hash};
use crate::error::CredentialError;
use crate::model::{
    Credential, CredentialEvent, CredentialInfo, CredentialKey, DeleteReason, EventKind,
    ExportCursor, Filter, duration_ms, from_ms, now_ms, to_ms,
};
use crate::sealed::{Unsealed, open_credential, seal_credential};
use crate::storage::sql::migration::{MAX_ID_LEN, MAX_TOOL_LEN};
use crate::storage::sql::{PoolConfig, SqlStorage};
use crate::storage::{CredRow, PutOutcome, Storage};
use crate::sweeper::SweeperGuard;
use crate::ttl::check_ttl;

/// Flows stay this long past their expiry (so a late callback hears
/// "expired", not "unknown") before the sweeper deletes them.
const FLOW_GRACE_MS: i64 = 3_600_000;

/// Handle to one agent's credentials, pending OAuth flows, client
/// registrations and conversations. Cloning is shallow; the background
/// sweeper stops when the last clone is dropped (or at
/// [`close`](Self::close)).
///
/// Reads and writes of a user's credential take the user's
/// [`VerifiedIdentity`]: a mismatch is refused and audited.
#[derive(Clone)]
pub struct CredentialStore {
    pub(crate) shared: Arc<Shared>,
    guard: Arc<SweeperGuard>,
}

/// State shared by the handles and the sweeper task.
pub(crate) struct Shared {
    pub(crate) agent_id: String,
    pub(crate) keys: Keys,
    pub(crate) storage: Storage,
    ttl_ms: i64,
    pub(crate) flow_ttl_ms: i64,
    pub(crate) conversation_ttl_ms: i64,
    /// Names this store instance (one per replica process) as a refresh
    /// lease holder; random, so two replicas never share it.
    pub(crate) lease_holder: String,
    /// "Rows under another agent secret" is logged once per store.
    foreign_key_logged: AtomicBool,
    /// The sweeper logs an outage once, and its end.
    sweep_failing: AtomicBool,
    closed: AtomicBool,
    /// Watches recorded events for the guide's anomalous patterns.
    anomalies: crate::anomaly::AnomalyWatch,
    /// When `last_used_at` was last written, per credential.
    pub(crate) uses: crate::last_used::UseThrottle,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("agent_id", &self.shared.agent_id)
            .field("backend", &self.shared.storage.backend_name())
            .finish_non_exhaustive()
    }
}

impl CredentialStore {
    /// Opens the store: connects and migrates (SQL), derives the agent's
    /// keys, and starts the TTL sweeper. Must be called inside a tokio
    /// runtime.
    pub async fn open(config: StoreConfig) -> Result<Self, CredentialError> {
        check_id("agent_id", &config.agent_id, MAX_ID_LEN)?;
        let ttl = check_ttl(config.ttl)?;
        for (field, ttl) in [
            ("flow_ttl", config.flow_ttl),
            ("conversation_ttl", config.conversation_ttl),
        ] {
            if ttl.is_zero() {
                return Err(CredentialError::InvalidInput {
                    field,
                    reason: "must be above zero".into(),
                });
            }
        }
        let storage = match config.backend {
            StoreBackend::Memory => Storage::Memory(Box::default()),
            StoreBackend::Sql { database_url } => {
                let pool = PoolConfig {
                    connect_timeout: config.connect_timeout,
                    max_connections: config.max_connections,
                };
                Storage::Sql(SqlStorage::open(database_url, &pool).await?)
            }
        };
        let shared = Arc::new(Shared {
            keys: Keys::derive(&config.agent_secret, &config.agent_id),
            agent_id: config.agent_id,
            storage,
            ttl_ms: duration_ms(ttl),
            flow_ttl_ms: duration_ms(config.flow_ttl),
            conversation_ttl_ms: duration_ms(config.conversation_ttl),
            lease_holder: crate::refresh::new_holder(),
            foreign_key_logged: AtomicBool::new(false),
            sweep_failing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            anomalies: Default::default(),
            uses: Default::default(),
        });
        let guard = Arc::new(SweeperGuard::spawn(shared.clone(), config.sweep_interval));
        tracing::info!(
            agent = %shared.agent_id,
            backend = shared.storage.backend_name(),
            ttl_secs = ttl.as_secs(),
            "credential store open"
        );
        Ok(Self { shared, guard })
    }

    /// The agent this store serves.
    pub fn agent_id(&self) -> &str {
        &self.shared.agent_id
    }

    /// How long a pending OAuth flow lives: a task waiting for its user's
    /// authorization waits this long.
    pub fn flow_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.shared.flow_ttl_ms.max(0) as u64)
    }

    /// `memory`, `SQLite`, `PostgreSQL` or `MySQL/MariaDB`.
    pub fn backend_name(&self) -> &'static str {
        self.shared.storage.backend_name()
    }

    /// Stores `credential` as `key`'s live credential (a new grant or a
    /// refresh), starting its TTL again. `who` must be `key.user_id`.
    pub async fn put(
        &self,
        key: &CredentialKey,
        who: &VerifiedIdentity,
        credential: &Credential,
    ) -> Result<(), CredentialError> {
        let s = self.open_shared()?;
        check_key(key)?;
        s.authorize(key, who, "store")?;
        let sealed = seal_credential(&s.keys, &s.agent_id, key, credential)?;
        let now = now_ms();
        let hash = s.key_hash(key);
        let outcome = s
            .storage
            .cred_put(CredRow {
                agent_id: &s.agent_id,
                user_id: &key.user_id,
                tool_id: &key.tool_id,
                key_hash: &hash,
                sealed,
                scopes: credential.scopes.join(" "),
                issuer: credential.issuer.clone(),
                client_id: credential.client_id.clone(),
                token_expires_at: credential.expires_at.map(to_ms),
                now,
                expires_at: now.saturating_add(s.ttl_ms),
            })
            .await?;
        if outcome != PutOutcome::Refreshed {
            // A new grant: its first use is written at once.
            s.uses.forget(&hash);
        }
        let mut events = Vec::with_capacity(2);
        if outcome == PutOutcome::ReplacedExpired {
            events.push(s.event(
                key,
                EventKind::Expired,
                Some("ttl ran out before the sweeper".into()),
            ));
        }
        let kind = match outcome {
            PutOutcome::Refreshed => EventKind::Refreshed,
            PutOutcome::Acquired | PutOutcome::ReplacedExpired => EventKind::Acquired,
        };
        events.push(s.event(key, kind, None));
        s.record(events);
        Ok(())
    }

    /// `key`'s live credential, if there is one. `who` must be
    /// `key.user_id`. A row that does not decrypt (another agent secret, or
    /// an altered/moved row) reads as absent, is logged and audited.
    pub async fn get(
        &self,
        key: &CredentialKey,
        who: &VerifiedIdentity,
    ) -> Result<Option<Credential>, CredentialError> {
        let s = self.open_shared()?;
        check_key(key)?;
        s.authorize(key, who, "read")?;
        let hash = s.key_hash(key);
        let Some(blob) = s.storage.cred_get(&s.agent_id, &hash, now_ms()).await? else {
            return Ok(None);
        };
        match open_credential(&s.keys, &s.agent_id, key, &blob) {
            Ok(credential) => {
                s.record(vec![s.event(key, EventKind::Used, None)]);
                Ok(Some(credential))
            }
            Err(Unsealed::Open(why)) => {
                s.undecryptable("credential", key, why);
                Ok(None)
            }
            Err(Unsealed::Corrupt(err)) => {
                tracing::error!(agent = %s.agent_id, user = %key.user_id, tool = %key.tool_id, error = %err, "stored credential decrypted but is unreadable");
                Err(err)
            }
        }
    }

    /// Marks `key`'s live credential deleted (kept for audit) with
    /// `reason` — `Invalid` when the provider refused it, `Revoked` when
    /// the user disconnected the tool. Whether there was one.
    pub async fn delete(
        &self,
        key: &CredentialKey,
        who: &VerifiedIdentity,
        reason: DeleteReason,
    ) -> Result<bool, CredentialError> {
        let s = self.open_shared()?;
        check_key(key)?;
        s.authorize(key, who, "delete")?;
        let hash = s.key_hash(key);
        let deleted = s
            .storage
            .cred_delete(&s.agent_id, &hash, reason, now_ms())
            .await?;
        if deleted {
            let event = s.event(key, EventKind::Deleted, Some(reason.as_str().into()));
            s.record(vec![event]);
        }
        Ok(deleted)
    }

    /// `who`'s live credentials with this agent: metadata only.
    pub async fn list_for_user(
        &self,
        who: &VerifiedIdentity,
    ) -> Result<Vec<CredentialInfo>, CredentialError> {
        let s = self.open_shared()?;
        let filter = Filter::agent(s.agent_id.clone()).user(who.user_id());
        s.storage.cred_list(&filter, now_ms()).await
    }

    /// Operator listing (CLI): metadata of the rows matching `filter`,
    /// across agents sharing the database. Never token material.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<CredentialInfo>, CredentialError> {
        let s = self.open_shared()?;
        s.storage.cred_list(filter, now_ms()).await
    }

    /// Operator revocation (CLI): marks every live row matching `filter`
    /// deleted with reason `revoked` and audits each with `reason`. The
    /// number of rows revoked.
    pub async fn revoke(&self, filter: &Filter, reason: &str) -> Result<u64, CredentialError> {
        let s = self.open_shared()?;
        let now = now_ms();
        let rows = s
            .storage
            .cred_mark_deleted(filter, DeleteReason::Revoked, now)
            .await?;
        let events = rows
            .iter()
            .map(|row| CredentialEvent {
                id: 0,
                at: from_ms(now),
                agent_id: row.agent_id.clone(),
                user_id: row.user_id.clone(),
                tool_id: row.tool_id.clone(),
                kind: EventKind::Revoked,
                reason: Some(reason.to_owned()),
            })
            .collect::<Vec<_>>();
        let count = events.len() as u64;
        s.record(events);
        tracing::info!(count, reason, "credentials revoked by operator");
        Ok(count)
    }

    /// Operator audit query (CLI): the newest `limit` events matching
    /// `filter` (`include_deleted` is ignored), newest first.
    pub async fn events(
        &self,
        filter: &Filter,
        limit: u64,
    ) -> Result<Vec<CredentialEvent>, CredentialError> {
        let s = self.open_shared()?;
        s.storage.events(filter, limit).await
    }

    /// One page of an audit export (for a SIEM): up to `limit` events
    /// matching `filter` from `cursor`, oldest first. The next page starts
    /// after the last event's id ([`ExportCursor::after`]).
    pub async fn export_events(
        &self,
        filter: &Filter,
        cursor: ExportCursor,
        limit: u64,
    ) -> Result<Vec<CredentialEvent>, CredentialError> {
        let s = self.open_shared()?;
        s.storage.events_from(filter, cursor, limit).await
    }

    /// Audits that `user_id`'s authorization of `tool_id` did not complete
    /// (`reason` in words, no secrets). Repeated failures by one user are
    /// logged as an anomaly. `tool_id` is empty when the flow was unknown.
    pub fn authorization_failed(&self, user_id: &str, tool_id: &str, reason: &str) {
        let Ok(s) = self.open_shared() else {
            return;
        };
        let key = CredentialKey::new(clip(user_id, MAX_ID_LEN), clip(tool_id, MAX_TOOL_LEN));
        let reason = Some(clip(reason, MAX_REASON_LEN));
        s.record(vec![s.event(&key, EventKind::AuthorizationFailed, reason)]);
    }

    /// Runs one sweep now (the sweeper does this every `sweep_interval`):
    /// marks expired credentials deleted, drops old flows and conversations
    /// past retention. The number of credentials marked expired.
    pub async fn sweep_now(&self) -> Result<usize, CredentialError> {
        self.open_shared()?.sweep_once().await
    }

    /// Waits until queued audit events are written.
    pub async fn flush_audit(&self) {
        self.shared.storage.flush().await;
    }

    /// Stops the sweeper, writes queued audit events and closes the
    /// database pool. Every handle then answers [`CredentialError::Closed`].
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.guard.stop().await;
        self.shared.storage.close().await;
    }

    pub(crate) fn open_shared(&self) -> Result<&Shared, CredentialError> {
        if self.shared.closed.load(Ordering::Relaxed) {
            Err(CredentialError::Closed)
        } else {
            Ok(&self.shared)
        }
    }
}

impl Shared {
    pub(crate) fn key_hash(&self, key: &CredentialKey) -> String {
        lookup_hash(
            Purpose::Credential,
            &[&self.agent_id, &key.user_id, &key.tool_id],
        )
    }

    /// Records audit events, watching them for the anomalous patterns
    /// first (`anomaly.rs`). Never waits.
    pub(crate) fn record(&self, events: Vec<CredentialEvent>) {
        self.anomalies.observe(&events);
        self.storage.record(events);
    }

    pub(crate) fn event(
        &self,
        key: &CredentialKey,
        kind: EventKind,
        reason: Option<String>,
    ) -> CredentialEvent {
        CredentialEvent {
            id: 0,
            at: std::time::SystemTime::now(),
            agent_id: self.agent_id.clone(),
            user_id: key.user_id.clone(),
            tool_id: key.tool_id.clone(),
            kind,
            reason,
        }
    }

    /// Refuses (and audits) an identity that is not the key's user.
    fn authorize(
        &self,
        key: &CredentialKey,
        who: &VerifiedIdentity,
        operation: &'static str,
    ) -> Result<(), CredentialError> {
        if who.user_id() == key.user_id {
            return Ok(());
        }
        let reason = format!(
            "{operation} by identity of user {:?} ({})",
            who.user_id(),
            assurance(who)
        );
        tracing::warn!(agent = %self.agent_id, user = %key.user_id, tool = %key.tool_id, identity = %who.user_id(), operation, "credential access denied: identity is another user");
        self.record(vec![self.event(key, EventKind::AccessDenied, Some(reason))]);
        Err(CredentialError::AccessDenied {
            agent_id: self.agent_id.clone(),
            key_user: key.user_id.clone(),
            identity_user: who.user_id().to_owned(),
            tool_id: key.tool_id.clone(),
            operation,
        })
    }

    /// Logs and audits a row that did not decrypt. "Another agent secret"
    /// is expected after a rotation and is logged once per store;
    /// tampering is logged every time.
    pub(crate) fn undecryptable(&self, what: &'static str, key: &CredentialKey, why: OpenError) {
        match why {
            OpenError::ForeignKey => {
                if !self.foreign_key_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(agent = %self.agent_id, "stored {what}s were encrypted under another agent secret (was AMESH_AGENT_SECRET or the secret file changed?); such rows are treated as absent: users sign in to their tools again, conversations start over");
                }
            }
            OpenError::Tampered | OpenError::Malformed => {
                tracing::warn!(agent = %self.agent_id, user = %key.user_id, tool = %key.tool_id, reason = why.reason(), "stored {what} does not decrypt; treated as absent");
            }
        }
        let reason = format!("{what}: {}", why.reason());
        self.record(vec![self.event(
            key,
            EventKind::DecryptFailed,
            Some(reason),
        )]);
    }

    /// Marks expired credentials deleted (audited as `expired`), removes
    /// flows long past their expiry and conversations past retention.
    pub(crate) async fn sweep_once(&self) -> Result<usize, CredentialError> {
        let now = now_ms();
        let result = async {
            let swept = self.storage.cred_sweep(&self.agent_id, now).await?;
            let purged = self
                .storage
                .flow_purge(&self.agent_id, now - FLOW_GRACE_MS)
                .await?;
            let conversations = self
                .storage
                .conv_purge(&self.agent_id, self.conversation_cutoff(now))
                .await?;
            Ok::<_, CredentialError>((swept, purged, conversations))
        }
        .await;
        match result {
            Ok((swept, purged, conversations)) => {
                if self.sweep_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(agent = %self.agent_id, "credential sweeper reaches the database again");
                }
                if !swept.is_empty() || purged > 0 || conversations > 0 {
                    tracing::debug!(agent = %self.agent_id, expired = swept.len(), flows_purged = purged, conversations_purged = conversations, "credential sweep");
                }
                let count = swept.len();
                let events = swept
                    .into_iter()
                    .map(|row| CredentialEvent {
                        id: 0,
                        at: from_ms(now),
                        agent_id: row.agent_id,
                        user_id: row.user_id,
                        tool_id: row.tool_id,
                        kind: EventKind::Expired,
                        reason: Some("ttl".into()),
                    })
                    .collect();
                self.record(events);
                Ok(count)
            }
            Err(err) => {
                if !self.sweep_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(agent = %self.agent_id, error = %err, "credential sweeper cannot reach the database; will retry");
                }
                Err(err)
            }
        }
    }
}

pub(crate) fn assurance(who: &VerifiedIdentity) -> &'static str {
    match who.assurance() {
        Assurance::GatewaySigned { .. } => "gateway-signed",
        Assurance::Delegated { .. } => "delegated",
        Assurance::TrustDisabled => "trust disabled",
        _ => "other",
    }
}

/// Longest `reason` of an audit event written from request data.
const MAX_REASON_LEN: usize = 1000;

/// At most `max` characters of a value that came with a request: it fits
/// its column, and an audit row stays small whoever sent it.
fn clip(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

pub(crate) fn check_id(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), CredentialError> {
    if value.is_empty() {
        return Err(CredentialError::InvalidInput {
            field,
            reason: "is empty".into(),
        });
    }
    let len = value.chars().count();
    if len > max {
        return Err(CredentialError::InvalidInput {
            field,
            reason: format!("has {len} characters; at most {max} are allowed"),
        });
    }
    Ok(())
}

fn check_key(key: &CredentialKey) -> Result<(), CredentialError> {
    check_id("user_id", &key.user_id, MAX_ID_LEN)?;
    check_id("tool_id", &key.tool_id, MAX_TOOL_LEN)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::secret::AgentSecret;

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_sweeper() {
        let mut config = StoreConfig::new(
            StoreBackend::Memory,
            "agent-a",
            AgentSecret::generate().expect("secret"),
        );
        config.sweep_interval = Duration::from_millis(10);
        let store = CredentialStore::open(config).await.expect("open");
        let clone = store.clone();
        let shared = Arc::downgrade(&store.shared);
        drop(store);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(shared.upgrade().is_some(), "a clone still holds the store");
        drop(clone);
        // The guard broadcast shutdown; the task ends and releases the state.
        for _ in 0..100 {
            if shared.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the sweeper task still holds the store's state");
    }

    #[tokio::test]
    async fn a_closed_store_refuses_calls() {
        let config = StoreConfig::new(
            StoreBackend::Memory,
            "agent-a",
            AgentSecret::generate().expect("secret"),
        );
        let store = CredentialStore::open(config).await.expect("open");
        store.close().await;
        let err = store.list(&Filter::default()).await.expect_err("closed");
        assert!(matches!(err, CredentialError::Closed), "{err:?}");
    }
}
