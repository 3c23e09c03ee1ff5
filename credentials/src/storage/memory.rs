//! The memory backend: same rules as SQL, gone when the process ends.
//!
//! For development and single-replica agents that accept signing users in
//! again after a restart. Rows are sealed exactly as in SQL (the policy
//! layer does not know the difference), deleted rows are kept for the
//! operator listing, and the audit log is kept too — each bounded, so a
//! long-running agent does not grow without limit.
//!
//! A std `Mutex`, not tokio's: every critical section is a few map
//! operations with no `.await` inside, which is what std's mutex is for.
//! Conversations (`conversations.rs`) have a mutex of their own: a large
//! history being copied out must not hold up a credential read.

mod conversations;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use self::conversations::Conversations;
use super::{
    ClientListed, ClientRow, ConvMeta, ConvRow, ConvStored, ConvWrite, CredRow, FlowRow,
    PutOutcome, Result, RowKey, Take,
};
use crate::error::CredentialError;
use crate::model::{CredentialEvent, CredentialInfo, DeleteReason, ExportCursor, Filter, from_ms};

/// Most audit events kept; older ones are dropped first.
const MAX_EVENTS: usize = 100_000;
/// Most deleted credential rows kept for the listing.
const MAX_DELETED: usize = 10_000;

#[derive(Clone)]
struct MemCred {
    agent_id: String,
    user_id: String,
    tool_id: String,
    sealed: Vec<u8>,
    scopes: String,
    issuer: Option<String>,
    client_id: Option<String>,
    token_expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
    deleted_at: Option<i64>,
    delete_reason: Option<DeleteReason>,
    /// Refresh lease: holder and until when (see `sql/lease.rs`).
    lease: Option<(String, i64)>,
    last_used_at: Option<i64>,
}

impl MemCred {
    fn info(&self) -> CredentialInfo {
        CredentialInfo {
            agent_id: self.agent_id.clone(),
            user_id: self.user_id.clone(),
            tool_id: self.tool_id.clone(),
            scopes: split_scopes(&self.scopes),
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            token_expires_at: self.token_expires_at.map(from_ms),
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
            last_used_at: self.last_used_at.map(from_ms),
            expires_at: from_ms(self.expires_at),
            deleted_at: self.deleted_at.map(from_ms),
            delete_reason: self.delete_reason,
        }
    }

    fn key(&self) -> RowKey {
        RowKey {
            agent_id: self.agent_id.clone(),
            user_id: self.user_id.clone(),
            tool_id: self.tool_id.clone(),
        }
    }
}

struct MemFlow {
    row: FlowRow,
    used: bool,
}

/// A client registration row: the agent, what operators may list, and
/// the sealed rest.
struct MemClient {
    agent_id: String,
    server: String,
    client_id: String,
    sealed: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Default)]
struct State {
    /// Live rows by key hash (the hash covers the agent).
    live: HashMap<String, MemCred>,
    /// Rows marked deleted, oldest first.
    deleted: VecDeque<MemCred>,
    flows: HashMap<String, MemFlow>,
    clients: HashMap<String, MemClient>,
    events: VecDeque<CredentialEvent>,
    next_event_id: i64,
}

impl State {
    fn bury(&mut self, mut row: MemCred, reason: DeleteReason, now: i64) -> RowKey {
        row.deleted_at = Some(now);
        row.delete_reason = Some(reason);
        let key = row.key();
        if self.deleted.len() >= MAX_DELETED {
            self.deleted.pop_front();
        }
        self.deleted.push_back(row);
        key
    }

    fn take_live_where(&mut self, keep: impl Fn(&MemCred) -> bool) -> Vec<MemCred> {
        let hashes: Vec<String> = self
            .live
            .iter()
            .filter(|(_, row)| !keep(row))
            .map(|(hash, _)| hash.clone())
            .collect();
        let mut rows: Vec<MemCred> = hashes.iter().filter_map(|h| self.live.remove(h)).collect();
        rows.sort_by(|a, b| (&a.user_id, &a.tool_id).cmp(&(&b.user_id, &b.tool_id)));
        rows
    }
}

/// The memory backend. One per store; holds one agent's rows.
#[derive(Default)]
pub(crate) struct MemoryStorage {
    state: Mutex<State>,
    conversations: Mutex<Conversations>,
}

impl MemoryStorage {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a map half-updated in
        // a way that matters more than losing the store; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn conversations(&self) -> MutexGuard<'_, Conversations> {
        self.conversations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn conv_get(&self, context_id: &str, cutoff: i64) -> Option<ConvStored> {
        self.conversations().get(context_id, cutoff)
    }

    pub(crate) fn conv_save(&self, row: ConvRow<'_>) -> ConvWrite {
        self.conversations().save(row)
    }

    pub(crate) fn conv_retitle(&self, row: super::RetitleRow<'_>) -> ConvWrite {
        self.conversations().retitle(row)
    }

    pub(crate) fn conv_delete(&self, context_id: &str, user: &str, cutoff: i64) -> ConvWrite {
        self.conversations().delete(context_id, user, cutoff)
    }

    pub(crate) fn conv_list(
        &self,
        user: &str,
        cutoff: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Vec<ConvMeta> {
        self.conversations().list(user, cutoff, before, limit)
    }

    pub(crate) fn conv_purge(&self, cutoff: i64) -> u64 {
        self.conversations().purge(cutoff)
    }

    pub(crate) fn cred_get(&self, agent: &str, key_hash: &str, now: i64) -> Option<Vec<u8>> {
        let state = self.lock();
        let row = state.live.get(key_hash)?;
        (row.agent_id == agent && row.expires_at > now).then(|| row.sealed.clone())
    }

    pub(crate) fn cred_put(&self, row: CredRow<'_>) -> PutOutcome {
        let mut state = self.lock();
        let (outcome, created_at, last_used_at) = match state.live.remove(row.key_hash) {
            Some(old) if old.expires_at <= row.now => {
                state.bury(old, DeleteReason::Ttl, row.now);
                (PutOutcome::ReplacedExpired, row.now, None)
            }
            // A refresh is the same grant: it keeps its last use.
            Some(old) => (PutOutcome::Refreshed, old.created_at, old.last_used_at),
            None => (PutOutcome::Acquired, row.now, None),
        };
        state.live.insert(
            row.key_hash.to_owned(),
            MemCred {
                agent_id: row.agent_id.to_owned(),
                user_id: row.user_id.to_owned(),
                tool_id: row.tool_id.to_owned(),
                sealed: row.sealed,
                scopes: row.scopes,
                issuer: row.issuer,
                client_id: row.client_id,
                token_expires_at: row.token_expires_at,
                created_at,
                updated_at: row.now,
                expires_at: row.expires_at,
                deleted_at: None,
                delete_reason: None,
                lease: None,
                last_used_at,
            },
        );
        outcome
    }

    /// Same rule as SQL's `cred_touch`.
    pub(crate) fn cred_touch(&self, key_hash: &str, now: i64) -> bool {
        let mut state = self.lock();
        match state.live.get_mut(key_hash) {
            Some(row) => {
                row.last_used_at = Some(now);
                true
            }
            None => false,
        }
    }

    /// Same rule as SQL's `lease_take`.
    pub(crate) fn lease_take(&self, key_hash: &str, holder: &str, now: i64, until: i64) -> bool {
        let mut state = self.lock();
        let Some(row) = state.live.get_mut(key_hash) else {
            return false;
        };
        if row.lease.as_ref().is_some_and(|(_, at)| *at > now) {
            return false;
        }
        row.lease = Some((holder.to_owned(), until));
        true
    }

    pub(crate) fn lease_release(&self, key_hash: &str, holder: &str) {
        let mut state = self.lock();
        if let Some(row) = state.live.get_mut(key_hash)
            && row.lease.as_ref().is_some_and(|(h, _)| h == holder)
        {
            row.lease = None;
        }
    }

    pub(crate) fn cred_delete(
        &self,
        agent: &str,
        key_hash: &str,
        reason: DeleteReason,
        now: i64,
    ) -> bool {
        let mut state = self.lock();
        if state
            .live
            .get(key_hash)
            .is_none_or(|row| row.agent_id != agent)
        {
            return false;
        }
        match state.live.remove(key_hash) {
            Some(row) => {
                state.bury(row, reason, now);
                true
            }
            None => false,
        }
    }

    pub(crate) fn cred_list(&self, filter: &Filter, now: i64) -> Vec<CredentialInfo> {
        let state = self.lock();
        let matches = |row: &&MemCred| filter.matches(&row.agent_id, &row.user_id, &row.tool_id);
        let mut out: Vec<CredentialInfo> = state
            .live
            .values()
            .filter(matches)
            .filter(|row| filter.include_deleted || row.expires_at > now)
            .map(MemCred::info)
            .collect();
        if filter.include_deleted {
            out.extend(state.deleted.iter().filter(matches).map(MemCred::info));
        }
        out.sort_by(|a, b| {
            (&a.agent_id, &a.user_id, &a.tool_id, a.created_at).cmp(&(
                &b.agent_id,
                &b.user_id,
                &b.tool_id,
                b.created_at,
            ))
        });
        out
    }

    pub(crate) fn cred_mark_deleted(
        &self,
        filter: &Filter,
        reason: DeleteReason,
        now: i64,
    ) -> Vec<RowKey> {
        let mut state = self.lock();
        let rows =
            state.take_live_where(|row| !filter.matches(&row.agent_id, &row.user_id, &row.tool_id));
        rows.into_iter()
            .map(|row| state.bury(row, reason, now))
            .collect()
    }

    pub(crate) fn cred_sweep(&self, agent: &str, now: i64) -> Vec<RowKey> {
        let mut state = self.lock();
        let rows = state.take_live_where(|row| row.agent_id != agent || row.expires_at > now);
        rows.into_iter()
            .map(|row| state.bury(row, DeleteReason::Ttl, now))
            .collect()
    }

    pub(crate) fn flow_insert(&self, row: FlowRow) -> Result<()> {
        let mut state = self.lock();
        if state.flows.contains_key(&row.state_hash) {
            return Err(CredentialError::InvalidInput {
                field: "state",
                reason: "a flow with this state already exists; use a fresh random state".into(),
            });
        }
        state
            .flows
            .insert(row.state_hash.clone(), MemFlow { row, used: false });
        Ok(())
    }

    pub(crate) fn flow_take(&self, agent: &str, state_hash: &str, user: &str, now: i64) -> Take {
        let mut state = self.lock();
        let Some(flow) = state
            .flows
            .get_mut(state_hash)
            .filter(|f| f.row.agent_id == agent)
        else {
            return Take::NotFound;
        };
        if flow.row.user_id != user {
            Take::WrongUser {
                user_id: flow.row.user_id.clone(),
                tool_id: flow.row.tool_id.clone(),
            }
        } else if flow.used {
            Take::Used
        } else if flow.row.expires_at <= now {
            Take::Expired(flow.row.expires_at)
        } else {
            flow.used = true;
            Take::Taken(flow.row.clone())
        }
    }

    pub(crate) fn flow_purge(&self, agent: &str, before: i64) -> u64 {
        let mut state = self.lock();
        let len = state.flows.len();
        state
            .flows
            .retain(|_, f| f.row.agent_id != agent || f.row.expires_at >= before);
        (len - state.flows.len()) as u64
    }

    pub(crate) fn client_put(&self, row: ClientRow<'_>) {
        let mut state = self.lock();
        let created_at = state
            .clients
            .get(row.key_hash)
            .filter(|c| c.agent_id == row.agent_id)
            .map_or(row.now, |c| c.created_at);
        state.clients.insert(
            row.key_hash.to_owned(),
            MemClient {
                agent_id: row.agent_id.to_owned(),
                server: row.server.to_owned(),
                client_id: row.client_id.to_owned(),
                sealed: row.sealed,
                created_at,
                updated_at: row.now,
            },
        );
    }

    pub(crate) fn client_get(&self, agent: &str, key_hash: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        state
            .clients
            .get(key_hash)
            .filter(|c| c.agent_id == agent)
            .map(|c| c.sealed.clone())
    }

    pub(crate) fn client_list(&self, agent: &str) -> Vec<ClientListed> {
        let state = self.lock();
        let mut listed: Vec<ClientListed> = state
            .clients
            .values()
            .filter(|c| c.agent_id == agent)
            .map(|c| ClientListed {
                server: c.server.clone(),
                client_id: c.client_id.clone(),
                created_at: c.created_at,
                updated_at: c.updated_at,
            })
            .collect();
        listed.sort_by(|a, b| a.server.cmp(&b.server));
        listed
    }

    pub(crate) fn client_delete(&self, agent: &str, key_hash: &str) -> bool {
        let mut state = self.lock();
        if state
            .clients
            .get(key_hash)
            .is_some_and(|c| c.agent_id == agent)
        {
            state.clients.remove(key_hash);
            true
        } else {
            false
        }
    }

    pub(crate) fn record(&self, events: Vec<CredentialEvent>) {
        let mut state = self.lock();
        for mut event in events {
            state.next_event_id += 1;
            event.id = state.next_event_id;
            if state.events.len() >= MAX_EVENTS {
                state.events.pop_front();
            }
            state.events.push_back(event);
        }
    }

    pub(crate) fn events(&self, filter: &Filter, limit: u64) -> Vec<CredentialEvent> {
        let state = self.lock();
        state
            .events
            .iter()
            .rev()
            .filter(|e| filter.matches(&e.agent_id, &e.user_id, &e.tool_id))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub(crate) fn events_from(
        &self,
        filter: &Filter,
        cursor: ExportCursor,
        limit: u64,
    ) -> Vec<CredentialEvent> {
        let state = self.lock();
        state
            .events
            .iter()
            .filter(|e| e.id > cursor.after_id && e.at >= cursor.since)
            .filter(|e| filter.matches(&e.agent_id, &e.user_id, &e.tool_id))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }
}

pub(crate) fn split_scopes(scopes: &str) -> Vec<String> {
    scopes.split_whitespace().map(str::to_owned).collect()
}
