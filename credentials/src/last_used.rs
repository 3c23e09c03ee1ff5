//! "Last used" on credential rows, written sparingly.
//!
//! Every MCP tool call reads its user's credential; writing `last_used_at`
//! on each would turn a read path into a write path (an UPDATE per tool
//! call, row locks, WAL growth on SQLite). The connected accounts page only
//! needs "last used" to the minute, so a store writes it at most once per
//! [`USE_WRITE_INTERVAL`] per credential: [`UseThrottle`] remembers, in
//! memory, when it last wrote each row. Replicas throttle independently,
//! so a credential used on every replica gets at most one write per
//! replica per minute.
//!
//! Bounded: at most [`MAX_TRACKED`] credentials are remembered; when full,
//! entries older than the interval are dropped (they would allow a write
//! anyway), and if all are recent the map starts over — the cost is a few
//! extra writes, never a missed one.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::CredentialStore;
use crate::error::CredentialError;
use crate::model::{CredentialKey, now_ms};

/// At most one `last_used_at` write per credential per this many ms.
pub const USE_WRITE_INTERVAL_MS: i64 = 60_000;

/// Credentials whose last write is remembered.
const MAX_TRACKED: usize = 10_000;

/// When this store last wrote `last_used_at`, per credential key hash.
pub(crate) struct UseThrottle {
    written: Mutex<HashMap<String, i64>>,
    interval_ms: i64,
    max: usize,
}

impl Default for UseThrottle {
    fn default() -> Self {
        Self::new(USE_WRITE_INTERVAL_MS, MAX_TRACKED)
    }
}

impl UseThrottle {
    pub(crate) fn new(interval_ms: i64, max: usize) -> Self {
        Self {
            written: Mutex::default(),
            interval_ms,
            max: max.max(1),
        }
    }

    /// Whether a write for `key_hash` is due at `now`; if so, it is
    /// counted as written now (a failed write waits for the next interval:
    /// "last used" is a convenience, not audit — the audit log has every use).
    pub(crate) fn due(&self, key_hash: &str, now: i64) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = written.get(key_hash)
            && now.saturating_sub(*at) < self.interval_ms
        {
            return false;
        }
        if written.len() >= self.max && !written.contains_key(key_hash) {
            let interval = self.interval_ms;
            written.retain(|_, at| now.saturating_sub(*at) < interval);
            if written.len() >= self.max {
                written.clear();
            }
        }
        written.insert(key_hash.to_owned(), now);
        true
    }

    /// Forgets `key_hash` (its credential was replaced or deleted), so its
    /// next use is written at once.
    pub(crate) fn forget(&self, key_hash: &str) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_hash);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.written.lock().unwrap().len()
    }
}

impl CredentialStore {
    /// Notes that a tool call used `key`'s credential: sets its
    /// `last_used_at`, but at most once a minute per credential (see the
    /// module doc) — so this is not an SQL write per tool call. Whether a
    /// write was made. `who` must be `key.user_id`.
    pub async fn record_use(
        &self,
        key: &CredentialKey,
        who: &amesh_trust::VerifiedIdentity,
    ) -> Result<bool, CredentialError> {
        let s = self.open_shared()?;
        if who.user_id() != key.user_id {
            return Ok(false);
        }
        let hash = s.key_hash(key);
        let now = now_ms();
        if !s.uses.due(&hash, now) {
            return Ok(false);
        }
        s.storage.cred_touch(&hash, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_per_interval_per_credential() {
        let t = UseThrottle::new(60_000, 100);
        assert!(t.due("a", 1_000));
        assert!(!t.due("a", 1_001));
        assert!(!t.due("a", 60_999));
        assert!(t.due("b", 1_002), "another credential is its own");
        assert!(t.due("a", 61_000));
        t.forget("a");
        assert!(t.due("a", 61_001), "forgotten: written at once");
    }

    #[test]
    fn the_map_is_bounded_and_drops_what_no_longer_throttles() {
        let t = UseThrottle::new(1_000, 3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            assert!(t.due(k, i as i64));
        }
        // Full, all recent: starts over rather than grow.
        assert!(t.due("d", 10));
        assert!(t.len() <= 3, "{}", t.len());
        // Full again later: only stale entries go.
        assert!(t.due("e", 20));
        assert!(t.due("f", 30));
        assert!(t.due("g", 2_000));
        assert_eq!(t.len(), 1, "d, e, f were older than the interval");
        assert!(!t.due("g", 2_001));
    }
}
