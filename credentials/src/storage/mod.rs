//! Where rows live: one enum over the memory and SQL backends.
//!
//! The backends store and find *sealed* rows; they know nothing of
//! identities, keys or plaintext. Policy — who may read, what is audited,
//! what a decrypt failure means — is in `store.rs`, once, for both. An enum
//! rather than a trait object: two known backends, async methods without
//! boxing, and `match` shows every place that differs.

pub(crate) mod memory;
pub(crate) mod sql;

use crate::error::CredentialError;
use crate::model::{CredentialEvent, CredentialInfo, DeleteReason, ExportCursor, Filter};

pub(crate) type Result<T> = std::result::Result<T, CredentialError>;

/// A credential row to store (upsert of the live row of `key_hash`).
pub(crate) struct CredRow<'a> {
    pub(crate) agent_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) tool_id: &'a str,
    pub(crate) key_hash: &'a str,
    pub(crate) sealed: Vec<u8>,
    /// Space-separated plaintext copy for operators.
    pub(crate) scopes: String,
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) token_expires_at: Option<i64>,
    pub(crate) now: i64,
    pub(crate) expires_at: i64,
}

/// What a put found in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    /// No live row: a new one.
    Acquired,
    /// A live row, overwritten.
    Refreshed,
    /// A row past its TTL the sweeper had not reached yet: marked deleted
    /// (ttl), and a new live row made.
    ReplacedExpired,
}

/// The identity of a row marked deleted, for its audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowKey {
    pub(crate) agent_id: String,
    pub(crate) user_id: String,
    pub(crate) tool_id: String,
}

/// A pending flow row.
#[derive(Clone, Debug)]
pub(crate) struct FlowRow {
    pub(crate) state_hash: String,
    pub(crate) agent_id: String,
    pub(crate) user_id: String,
    pub(crate) tool_id: String,
    pub(crate) task_id: String,
    pub(crate) sealed: Vec<u8>,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

/// The result of atomically taking a flow.
#[derive(Debug)]
pub(crate) enum Take {
    Taken(FlowRow),
    NotFound,
    Expired(i64),
    Used,
    WrongUser { user_id: String, tool_id: String },
}

/// A client registration row.
pub(crate) struct ClientRow<'a> {
    pub(crate) key_hash: &'a str,
    pub(crate) agent_id: &'a str,
    pub(crate) server: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) sealed: Vec<u8>,
    pub(crate) now: i64,
}

/// A client registration as listed for operators: no sealed part.
pub(crate) struct ClientListed {
    pub(crate) server: String,
    pub(crate) client_id: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A conversation to store under (agent, `context_id`), for `user_id`.
pub(crate) struct ConvRow<'a> {
    pub(crate) agent_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) context_id: &'a str,
    pub(crate) sealed: Vec<u8>,
    pub(crate) sealed_title: Vec<u8>,
    /// Plaintext copy for the listing.
    pub(crate) turns: u32,
    pub(crate) now: i64,
    /// A row last saved at or before this is past retention: whoever it
    /// belonged to, it is replaced as if absent.
    pub(crate) cutoff: i64,
}

/// A user's own title for a conversation under (agent, `context_id`). A
/// conversation not saved yet (or past retention) is created with
/// `empty_sealed` as its history, so a title given before the first
/// answer is kept.
pub(crate) struct RetitleRow<'a> {
    pub(crate) agent_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) context_id: &'a str,
    pub(crate) sealed_title: Vec<u8>,
    pub(crate) empty_sealed: Vec<u8>,
    pub(crate) now: i64,
    pub(crate) cutoff: i64,
}

/// A live conversation as read back.
pub(crate) struct ConvStored {
    /// Whose it is; the policy layer compares it with the caller.
    pub(crate) user_id: String,
    pub(crate) sealed: Vec<u8>,
    pub(crate) sealed_title: Vec<u8>,
    pub(crate) turns: u32,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) renamed_at: Option<i64>,
}

/// A conversation as listed: no history.
pub(crate) struct ConvMeta {
    pub(crate) context_id: String,
    pub(crate) sealed_title: Vec<u8>,
    pub(crate) turns: u32,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// When the user named it (`None`: the agent's title).
    pub(crate) renamed_at: Option<i64>,
}

/// What a conversation save or delete found at its `context_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConvWrite {
    /// Saved, or deleted.
    Done,
    /// Nothing of the caller's to delete.
    Missing,
    /// A live conversation of this other user: nothing was changed.
    OwnedBy(String),
}

/// An agent's trust key to store, sealed.
pub(crate) struct TrustKeyRow<'a> {
    pub(crate) key_hash: &'a str,
    pub(crate) agent_id: &'a str,
    pub(crate) account: &'a str,
    pub(crate) kid: &'a str,
    pub(crate) sealed: Vec<u8>,
    pub(crate) now: i64,
}

/// The rows' home. The memory backend is boxed: its maps make it several
/// times the size of a connection pool handle.
pub(crate) enum Storage {
    Memory(Box<memory::MemoryStorage>),
    Sql(sql::SqlStorage),
}

impl Storage {
    pub(crate) fn backend_name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Sql(s) => s.backend_name(),
        }
    }

    /// The sealed blob of the live, unexpired row of `key_hash`.
    pub(crate) async fn cred_get(
        &self,
        agent: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(m) => Ok(m.cred_get(agent, key_hash, now)),
            Self::Sql(s) => s.cred_get(agent, key_hash, now).await,
        }
    }

    pub(crate) async fn cred_put(&self, row: CredRow<'_>) -> Result<PutOutcome> {
        match self {
            Self::Memory(m) => Ok(m.cred_put(row)),
            Self::Sql(s) => s.cred_put(row).await,
        }
    }

    /// Records that the live row of `key_hash` was used at `now`; whether
    /// there was one.
    pub(crate) async fn cred_touch(&self, key_hash: &str, now: i64) -> Result<bool> {
        match self {
            Self::Memory(m) => Ok(m.cred_touch(key_hash, now)),
            Self::Sql(s) => s.cred_touch(key_hash, now).await,
        }
    }

    /// Takes the refresh lease of the live row of `key_hash` if it is free
    /// or ran out at `now`; whether `holder` got it.
    pub(crate) async fn lease_take(
        &self,
        key_hash: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        match self {
            Self::Memory(m) => Ok(m.lease_take(key_hash, holder, now, until)),
            Self::Sql(s) => s.lease_take(key_hash, holder, now, until).await,
        }
    }

    /// Frees the lease if `holder` holds it.
    pub(crate) async fn lease_release(&self, key_hash: &str, holder: &str) -> Result<()> {
        match self {
            Self::Memory(m) => {
                m.lease_release(key_hash, holder);
                Ok(())
            }
            Self::Sql(s) => s.lease_release(key_hash, holder).await,
        }
    }

    /// Marks the live row of `key_hash` deleted; whether there was one.
    pub(crate) async fn cred_delete(
        &self,
        agent: &str,
        key_hash: &str,
        reason: DeleteReason,
        now: i64,
    ) -> Result<bool> {
        match self {
            Self::Memory(m) => Ok(m.cred_delete(agent, key_hash, reason, now)),
            Self::Sql(s) => s.cred_delete(key_hash, reason, now).await,
        }
    }

    pub(crate) async fn cred_list(&self, filter: &Filter, now: i64) -> Result<Vec<CredentialInfo>> {
        match self {
            Self::Memory(m) => Ok(m.cred_list(filter, now)),
            Self::Sql(s) => s.cred_list(filter, now).await,
        }
    }

    /// Marks every live row matching `filter` deleted with `reason`.
    pub(crate) async fn cred_mark_deleted(
        &self,
        filter: &Filter,
        reason: DeleteReason,
        now: i64,
    ) -> Result<Vec<RowKey>> {
        match self {
            Self::Memory(m) => Ok(m.cred_mark_deleted(filter, reason, now)),
            Self::Sql(s) => s.cred_mark_deleted(filter, reason, now).await,
        }
    }

    /// Marks `agent`'s live rows past their TTL deleted (reason ttl).
    pub(crate) async fn cred_sweep(&self, agent: &str, now: i64) -> Result<Vec<RowKey>> {
        match self {
            Self::Memory(m) => Ok(m.cred_sweep(agent, now)),
            Self::Sql(s) => s.cred_sweep(agent, now).await,
        }
    }

    pub(crate) async fn flow_insert(&self, row: FlowRow) -> Result<()> {
        match self {
            Self::Memory(m) => m.flow_insert(row),
            Self::Sql(s) => s.flow_insert(row).await,
        }
    }

    /// Checks and marks used in one atomic step.
    pub(crate) async fn flow_take(
        &self,
        agent: &str,
        state_hash: &str,
        user: &str,
        now: i64,
    ) -> Result<Take> {
        match self {
            Self::Memory(m) => Ok(m.flow_take(agent, state_hash, user, now)),
            Self::Sql(s) => s.flow_take(agent, state_hash, user, now).await,
        }
    }

    /// Removes `agent`'s flows that expired before `before`.
    pub(crate) async fn flow_purge(&self, agent: &str, before: i64) -> Result<u64> {
        match self {
            Self::Memory(m) => Ok(m.flow_purge(agent, before)),
            Self::Sql(s) => s.flow_purge(agent, before).await,
        }
    }

    pub(crate) async fn client_put(&self, row: ClientRow<'_>) -> Result<()> {
        match self {
            Self::Memory(m) => {
                m.client_put(row);
                Ok(())
            }
            Self::Sql(s) => s.client_put(row).await,
        }
    }

    pub(crate) async fn client_get(&self, agent: &str, key_hash: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(m) => Ok(m.client_get(agent, key_hash)),
            Self::Sql(s) => s.client_get(agent, key_hash).await,
        }
    }

    /// `agent`'s registrations, by server.
    pub(crate) async fn client_list(&self, agent: &str) -> Result<Vec<ClientListed>> {
        match self {
            Self::Memory(m) => Ok(m.client_list(agent)),
            Self::Sql(s) => s.client_list(agent).await,
        }
    }

    pub(crate) async fn client_delete(&self, agent: &str, key_hash: &str) -> Result<bool> {
        match self {
            Self::Memory(m) => Ok(m.client_delete(agent, key_hash)),
            Self::Sql(s) => s.client_delete(agent, key_hash).await,
        }
    }

    /// `context_id`'s conversation, if it was saved after `cutoff`.
    pub(crate) async fn conv_get(
        &self,
        agent: &str,
        context_id: &str,
        cutoff: i64,
    ) -> Result<Option<ConvStored>> {
        match self {
            Self::Memory(m) => Ok(m.conv_get(context_id, cutoff)),
            Self::Sql(s) => s.conv_get(agent, context_id, cutoff).await,
        }
    }

    /// Sets the user's own title (created empty if there is none), unless a
    /// live conversation of another user holds its `context_id`.
    pub(crate) async fn conv_retitle(&self, row: RetitleRow<'_>) -> Result<ConvWrite> {
        match self {
            Self::Memory(m) => Ok(m.conv_retitle(row)),
            Self::Sql(s) => s.conv_retitle(row).await,
        }
    }

    /// Creates or replaces the conversation, unless a live one of another
    /// user holds its `context_id`. A title the user gave (see
    /// [`conv_retitle`](Self::conv_retitle)) is kept: the row's new title
    /// is used only while the conversation has none of the user's.
    pub(crate) async fn conv_save(&self, row: ConvRow<'_>) -> Result<ConvWrite> {
        match self {
            Self::Memory(m) => Ok(m.conv_save(row)),
            Self::Sql(s) => s.conv_save(row).await,
        }
    }

    /// Deletes `user`'s conversation `context_id` (live or not).
    pub(crate) async fn conv_delete(
        &self,
        agent: &str,
        context_id: &str,
        user: &str,
        cutoff: i64,
    ) -> Result<ConvWrite> {
        match self {
            Self::Memory(m) => Ok(m.conv_delete(context_id, user, cutoff)),
            Self::Sql(s) => s.conv_delete(agent, context_id, user, cutoff).await,
        }
    }

    /// `user`'s live conversations saved before `before` (all when
    /// `None`), most recently saved first.
    pub(crate) async fn conv_list(
        &self,
        agent: &str,
        user: &str,
        cutoff: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ConvMeta>> {
        match self {
            Self::Memory(m) => Ok(m.conv_list(user, cutoff, before, limit)),
            Self::Sql(s) => s.conv_list(agent, user, cutoff, before, limit).await,
        }
    }

    /// Deletes `agent`'s conversations last saved at or before `cutoff`.
    pub(crate) async fn conv_purge(&self, agent: &str, cutoff: i64) -> Result<u64> {
        match self {
            Self::Memory(m) => Ok(m.conv_purge(cutoff)),
            Self::Sql(s) => s.conv_purge(agent, cutoff).await,
        }
    }

    /// The sealed trust key of `key_hash`. `None` from a memory store too:
    /// it shares nothing with other processes, so it keeps no key.
    pub(crate) async fn trust_key_get(
        &self,
        agent: &str,
        key_hash: &str,
    ) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(_) => Ok(None),
            Self::Sql(s) => s.trust_key_get(agent, key_hash).await,
        }
    }

    /// Stores a trust key unless one is there; whether this one was stored.
    pub(crate) async fn trust_key_insert(&self, row: TrustKeyRow<'_>) -> Result<bool> {
        match self {
            Self::Memory(_) => Ok(false),
            Self::Sql(s) => s.trust_key_insert(row).await,
        }
    }

    /// Deletes a stored trust key; whether there was one.
    pub(crate) async fn trust_key_delete(&self, agent: &str, key_hash: &str) -> Result<bool> {
        match self {
            Self::Memory(_) => Ok(false),
            Self::Sql(s) => s.trust_key_delete(agent, key_hash).await,
        }
    }

    /// Appends audit events. Never waits: SQL buffers them for a writer
    /// task (a read must not wait on an INSERT); write failures are logged
    /// and retried there, not returned.
    pub(crate) fn record(&self, events: Vec<CredentialEvent>) {
        match self {
            Self::Memory(m) => m.record(events),
            Self::Sql(s) => s.record(events),
        }
    }

    /// Newest first; waits for queued events to be written.
    pub(crate) async fn events(&self, filter: &Filter, limit: u64) -> Result<Vec<CredentialEvent>> {
        match self {
            Self::Memory(m) => Ok(m.events(filter, limit)),
            Self::Sql(s) => s.events(filter, limit).await,
        }
    }

    /// Oldest first, from `cursor`; waits for queued events to be written.
    pub(crate) async fn events_from(
        &self,
        filter: &Filter,
        cursor: ExportCursor,
        limit: u64,
    ) -> Result<Vec<CredentialEvent>> {
        match self {
            Self::Memory(m) => Ok(m.events_from(filter, cursor, limit)),
            Self::Sql(s) => s.events_from(filter, cursor, limit).await,
        }
    }

    /// Waits until queued events are written (or failed and were logged).
    pub(crate) async fn flush(&self) {
        if let Self::Sql(s) = self {
            s.flush().await;
        }
    }

    pub(crate) async fn close(&self) {
        if let Self::Sql(s) = self {
            s.close().await;
        }
    }
}
