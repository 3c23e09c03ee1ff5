//! One refresh at a time per credential, across every replica sharing the
//! store.
//!
//! Providers that rotate refresh tokens accept each one once. Replicas of
//! an agent share its credential rows, so without coordination two of
//! them would refresh the same expiring grant together: one wins, the
//! other spends the already-rotated token, is refused, and the user is
//! asked to authorize again although a valid credential exists. Here the
//! refresher first takes the row's lease (one conditional UPDATE, see
//! `storage/sql/lease.rs`); whoever does not get it waits and re-reads the
//! row until the winner's fresh token is there, or the lease runs out
//! (its holder died) and it may take it itself.
//!
//! Within one process the runtime still queues callers on a local mutex
//! first, so the database sees one contender per replica, not per call.

use std::future::Future;
use std::time::Duration;

use amesh_trust::VerifiedIdentity;

use crate::error::CredentialError;
use crate::model::{Credential, CredentialKey, now_ms};
use crate::store::CredentialStore;

/// How long a lease lasts and how waiters poll for the winner's result.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// How long the holder may take to refresh and store. Longer than the
    /// token request's timeout, so a slow but live refresh is not raced;
    /// also how long a replica killed mid-refresh holds the others up.
    pub hold: Duration,
    /// How long a waiter first waits before re-reading the row. Each
    /// further wait doubles, up to [`max_poll`](Self::max_poll), with
    /// jitter: a winner usually stores within a round trip to the provider,
    /// but when a holder died every waiter of every user polls until its
    /// lease runs out, and hundreds of waiters re-reading every 100 ms
    /// took every pooled connection of every replica (the 200-user replica
    /// test's "timed out waiting for a database connection").
    pub poll: Duration,
    /// The longest wait between two re-reads.
    pub max_poll: Duration,
    /// How long a waiter waits in all before giving up with
    /// [`Refresh::Busy`].
    pub max_wait: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(45),
            poll: Duration::from_millis(100),
            max_poll: Duration::from_secs(2),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// How a serialized refresh ended.
#[derive(Debug)]
pub enum Refresh<E> {
    /// No live credential: the user has to authorize.
    Missing,
    /// The credential no longer needed a refresh when this caller got to
    /// it: another caller or replica refreshed it. Use it.
    Fresh(Credential),
    /// This caller refreshed; the new credential is stored.
    Refreshed(Credential),
    /// The refresh function failed; the lease was given back and the row
    /// still needs a refresh.
    Failed(E),
    /// Another replica held the lease for the whole wait: the last
    /// credential read, which the caller may still use if unexpired.
    Busy(Credential),
}

impl CredentialStore {
    /// Refreshes `key`'s credential with `refresh` unless `stale` says it no
    /// longer needs it, holding the row's lease so that across all
    /// replicas one refresh runs at a time. `refresh` gets the credential
    /// as read under the lease; what it returns is stored (which ends the
    /// lease). Store failures are errors; `refresh`'s own are
    /// [`Refresh::Failed`].
    pub async fn refresh_serialized<E, F, Fut>(
        &self,
        key: &CredentialKey,
        who: &VerifiedIdentity,
        timing: LeaseTiming,
        stale: impl Fn(&Credential) -> bool,
        refresh: F,
    ) -> Result<Refresh<E>, CredentialError>
    where
        F: FnOnce(Credential) -> Fut,
        Fut: Future<Output = Result<Credential, E>>,
    {
        let waited_since = tokio::time::Instant::now();
        let holder = self.open_shared()?.lease_holder.clone();
        let hash = self.open_shared()?.key_hash(key);
        let mut poll = timing.poll;
        loop {
            let Some(credential) = self.get(key, who).await? else {
                return Ok(Refresh::Missing);
            };
            if !stale(&credential) {
                return Ok(Refresh::Fresh(credential));
            }
            let now = now_ms();
            let until =
                now.saturating_add(i64::try_from(timing.hold.as_millis()).unwrap_or(i64::MAX));
            let storage = &self.open_shared()?.storage;
            if storage.lease_take(&hash, &holder, now, until).await? {
                return self
                    .refresh_leased(key, who, &hash, &holder, stale, refresh)
                    .await;
            }
            if waited_since.elapsed() >= timing.max_wait {
                tracing::warn!(agent = %self.agent_id(), user = %key.user_id, tool = %key.tool_id, "another replica held the refresh lease for the whole wait");
                return Ok(Refresh::Busy(credential));
            }
            tokio::time::sleep(jittered(poll)).await;
            poll = poll.saturating_mul(2).min(timing.max_poll.max(timing.poll));
        }
    }

    /// The part under the lease: re-read (a winner may have stored between
    /// our read and our lease), refresh, store or give the lease back.
    async fn refresh_leased<E, F, Fut>(
        &self,
        key: &CredentialKey,
        who: &VerifiedIdentity,
        hash: &str,
        holder: &str,
        stale: impl Fn(&Credential) -> bool,
        refresh: F,
    ) -> Result<Refresh<E>, CredentialError>
    where
        F: FnOnce(Credential) -> Fut,
        Fut: Future<Output = Result<Credential, E>>,
    {
        let release = async || {
            if let Ok(s) = self.open_shared()
                && let Err(err) = s.storage.lease_release(hash, holder).await
            {
                // It runs out by itself; nothing is lost but time.
                tracing::warn!(agent = %s.agent_id, user = %key.user_id, tool = %key.tool_id, error = %err, "could not give back the refresh lease");
            }
        };
        let credential = match self.get(key, who).await {
            Ok(Some(credential)) => credential,
            Ok(None) => return Ok(Refresh::Missing),
            Err(err) => {
                release().await;
                return Err(err);
            }
        };
        if !stale(&credential) {
            release().await;
            return Ok(Refresh::Fresh(credential));
        }
        match refresh(credential).await {
            Ok(renewed) => match self.put(key, who, &renewed).await {
                Ok(()) => Ok(Refresh::Refreshed(renewed)),
                Err(err) => {
                    release().await;
                    Err(err)
                }
            },
            Err(err) => {
                release().await;
                // A replica whose lease had run out may have refreshed
                // meanwhile: its credential is as good as ours would be.
                match self.get(key, who).await? {
                    Some(current) if !stale(&current) => Ok(Refresh::Fresh(current)),
                    _ => Ok(Refresh::Failed(err)),
                }
            }
        }
    }
}

/// `wait` give or take a quarter, so waiters that started together (a
/// dead holder's users, all stuck on the same expiry) do not stay in step.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::random_range(0.75..1.25))
}

/// A random lease holder name for one store instance.
pub(crate) fn new_holder() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
