//! Tokens already verified, so a token reused for its lifetime costs one
//! ECDSA verification instead of one per request.
//!
//! Keyed by the SHA-256 of the token string: a collision would let one
//! token pass as another, so the key must be collision resistant, and the
//! cache then never holds a token itself. Bounded with two generations: new
//! entries go to `young`; when `young` is full it becomes `old` and the
//! previous `old` is dropped whole; a hit in `old` moves the entry back to
//! `young`. That is O(1) per operation with no per-entry bookkeeping and
//! keeps the tokens in use. Entries are not trusted blindly on a hit: the
//! verifier re-checks expiry, the expected user and that the signing key is
//! still trusted.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};

use crate::verified::VerifiedIdentity;

/// SHA-256 of a token.
pub(crate) type TokenHash = [u8; 32];

/// What the verifier needs to re-check a cached token or chain.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub(crate) identity: VerifiedIdentity,
    /// Every key that signed a part of it, first the gateway's.
    pub(crate) keys: Vec<KeyCheck>,
    pub(crate) expires_at: u64,
}

/// A key that signed part of a cached token, and what made it acceptable
/// then: it must still be trusted, still the same component's, and (for a
/// delegation) that component must still speak for the delegating agent.
#[derive(Clone)]
pub(crate) struct KeyCheck {
    pub(crate) kid: String,
    pub(crate) component_id: String,
    /// The agent whose delegation the key signed; `None` for the gateway.
    pub(crate) agent_name: Option<String>,
}

pub(crate) struct TokenCache {
    /// Entries per generation; 0 disables the cache.
    generation_capacity: usize,
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    young: HashMap<TokenHash, CachedToken>,
    old: HashMap<TokenHash, CachedToken>,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0: no cache).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            generation_capacity: capacity.div_ceil(2),
            generations: Mutex::new(Generations::default()),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.generation_capacity > 0
    }

    pub(crate) fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<CachedToken> {
        if !self.is_enabled() {
            return None;
        }
        let mut generations = self.lock();
        if let Some(entry) = generations.young.get(hash) {
            return Some(entry.clone());
        }
        let entry = generations.old.remove(hash)?;
        self.insert_locked(&mut generations, *hash, entry.clone());
        Some(entry)
    }

    pub(crate) fn insert(&self, hash: TokenHash, entry: CachedToken) {
        if !self.is_enabled() {
            return;
        }
        let mut generations = self.lock();
        self.insert_locked(&mut generations, hash, entry);
    }

    pub(crate) fn remove(&self, hash: &TokenHash) {
        let mut generations = self.lock();
        generations.young.remove(hash);
        generations.old.remove(hash);
    }

    pub(crate) fn len(&self) -> usize {
        let generations = self.lock();
        generations.young.len() + generations.old.len()
    }

    fn insert_locked(&self, generations: &mut Generations, hash: TokenHash, entry: CachedToken) {
        if generations.young.len() >= self.generation_capacity
            && !generations.young.contains_key(&hash)
        {
            generations.old = std::mem::take(&mut generations.young);
            generations.young.reserve(self.generation_capacity);
        }
        generations.old.remove(&hash);
        generations.young.insert(hash, entry);
    }

    // Entries are inserted and removed whole; a panic elsewhere while the
    // lock was held leaves nothing half-written, so poison is ignored.
    fn lock(&self) -> MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verified::TrustDisabled;

    fn entry(user: &str) -> CachedToken {
        CachedToken {
            identity: VerifiedIdentity::trust_disabled(
                TrustDisabled::by_configuration(),
                user,
                None,
                None,
            ),
            keys: Vec::new(),
            expires_at: 10,
        }
    }

    #[test]
    fn cache_holds_at_most_its_capacity() {
        let cache = TokenCache::new(10);
        for i in 0..100 {
            cache.insert(TokenCache::hash(&format!("token-{i}")), entry("u"));
            assert!(cache.len() <= 10);
        }
        assert!(cache.get(&TokenCache::hash("token-99")).is_some());
        assert!(cache.get(&TokenCache::hash("token-0")).is_none());
    }

    #[test]
    fn token_in_use_survives_eviction() {
        let cache = TokenCache::new(4);
        let hot = TokenCache::hash("hot");
        cache.insert(hot, entry("hot"));
        for i in 0..50 {
            cache.insert(TokenCache::hash(&format!("cold-{i}")), entry("cold"));
            assert!(cache.get(&hot).is_some(), "evicted after {i}");
        }
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = TokenCache::new(0);
        cache.insert(TokenCache::hash("t"), entry("u"));
        assert!(cache.get(&TokenCache::hash("t")).is_none());
        assert_eq!(cache.len(), 0);
    }
}
