//! Identity tokens the gateway attaches to requests, reused per user and
//! agent.
//!
//! A token names the one agent it is for (`aud`), so a token one agent
//! receives is no good at another. Signing costs ~35 us and a first
//! verification at an agent ~100 us, while a verification the agent has
//! cached costs ~1 us. So the gateway signs a user's token for an agent once
//! and reuses it until half its lifetime has passed; each agent then
//! verifies it once. A token is a bearer assertion of who the user is to
//! that agent (not of one request), so reuse within its lifetime changes
//! nothing about what it proves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use amesh_trust::UserClaims;

use super::auth::User;
use crate::trust_manager::TrustManager;

/// Upper bound on cached tokens; past it the cache is simply cleared.
const MAX_USERS: usize = 100_000;

#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    /// The token for `user` at `agent`, signed anew when the cached one is
    /// past half its life (or the user's name/email changed). `None` when
    /// trust is off.
    pub(crate) fn token_for(
        &self,
        trust: &TrustManager,
        user: &User,
        agent: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<String>> {
        if !trust.enabled() {
            return Ok(None);
        }
        let key = cache_key(user, agent);
        let now = Instant::now();
        {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((token, renew_at)) = tokens.get(&key)
                && now < *renew_at
            {
                return Ok(Some(token.clone()));
            }
        }
        let token = trust.sign(&claims(user), agent)?;
        if let Some(t) = &token {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if tokens.len() >= MAX_USERS {
                tokens.clear();
            }
            tokens.insert(key, (t.clone(), now + ttl / 2));
        }
        Ok(token)
    }
}

/// What the gateway vouches for about `user`.
pub(crate) fn claims(user: &User) -> UserClaims {
    let mut claims = UserClaims::new(user.id.clone());
    claims.email = user.email.clone();
    claims.name = user.name.clone();
    claims
}

fn cache_key(user: &User, agent: &str) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{agent}",
        user.id,
        user.email.as_deref().unwrap_or(""),
        user.name.as_deref().unwrap_or("")
    )
}
