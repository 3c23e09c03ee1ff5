//! Sessions ended by logout, remembered until their cookies expire.
//!
//! A session cookie is signed, not stored: without this list, a copy of a
//! cookie taken before logout (a shared computer, a proxy log, malware)
//! would keep working for the rest of its 8 hours. Logout puts the
//! session's id here, and [`SessionCodec::verify`](super::auth::SessionCodec::verify)
//! refuses it.
//!
//! Memory is bounded per user: at most [`PER_USER`] ended sessions are
//! listed; the next logout of that user ends *all* their sessions issued
//! before it instead (one timestamp), and the list starts over. Entries go
//! when their cookie would have expired anyway. Users are the gateway's
//! configured ones and, with SSO, whoever the provider lets sign in, so the
//! number of users listed is bounded too ([`MAX_USERS`]): a logout that
//! would list one more ends every session issued so far, of every user
//! (one timestamp; everyone signs in again), and the list starts over.
//! That fails closed: no ended session ever works again.
//!
//! The list lives in this gateway process: replicas behind one load
//! balancer do not share it, and a restart forgets it (with a configured
//! `session_secret_key`, older cookies verify again after a restart).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::auth::{SESSION_TTL_SECONDS, SessionClaims};

/// Ended sessions listed per user before they are ended wholesale.
pub(crate) const PER_USER: usize = 64;

/// Users with ended sessions listed before every session is ended.
pub(crate) const MAX_USERS: usize = 10_000;

/// The ended sessions of every user.
#[derive(Default)]
pub(crate) struct Revocations {
    users: Mutex<HashMap<String, Ended>>,
    /// Sessions of any user issued before this (unix seconds) are ended;
    /// 0: none.
    everyone_before: AtomicU64,
}

/// One user's ended sessions.
#[derive(Default)]
struct Ended {
    /// (session id, expiry in unix seconds).
    sessions: Vec<(String, u64)>,
    /// Sessions issued before this (unix seconds) are ended too.
    issued_before: Option<u64>,
}

impl Ended {
    fn forget_expired(&mut self, now: u64) {
        self.sessions.retain(|(_, exp)| *exp > now);
        if self
            .issued_before
            .is_some_and(|t| t.saturating_add(SESSION_TTL_SECONDS) <= now)
        {
            self.issued_before = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.issued_before.is_none()
    }
}

impl Revocations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Ended>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session `claims` describes.
    pub(crate) fn revoke(&self, claims: &SessionClaims, now: u64) {
        let mut users = self.lock();
        users.retain(|_, ended| {
            ended.forget_expired(now);
            !ended.is_empty()
        });
        if users.len() >= MAX_USERS && !users.contains_key(&claims.user.id) {
            // Sessions issued up to this second end, this one included.
            self.everyone_before
                .fetch_max(now.saturating_add(1), Ordering::Relaxed);
            users.clear();
            return;
        }
        let ended = users.entry(claims.user.id.clone()).or_default();
        if ended.sessions.len() >= PER_USER {
            ended.issued_before = Some(ended.issued_before.unwrap_or(0).max(now));
            ended.sessions.clear();
        }
        ended.sessions.push((claims.sid.clone(), claims.exp));
    }

    /// Whether the session `claims` describes was ended.
    pub(crate) fn is_revoked(&self, claims: &SessionClaims) -> bool {
        if claims.iat < self.everyone_before.load(Ordering::Relaxed) {
            return true;
        }
        self.lock().get(&claims.user.id).is_some_and(|ended| {
            ended.issued_before.is_some_and(|t| claims.iat < t)
                || ended.sessions.iter().any(|(sid, _)| *sid == claims.sid)
        })
    }

    /// Users with ended sessions listed, and the sessions listed.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let users = self.lock();
        (users.len(), users.values().map(|e| e.sessions.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::auth::User;

    fn claims(user: &str, sid: &str, iat: u64) -> SessionClaims {
        SessionClaims {
            user: User {
                id: user.into(),
                name: None,
                email: None,
            },
            sid: sid.into(),
            iat,
            exp: iat + SESSION_TTL_SECONDS,
            sso: None,
        }
    }

    #[test]
    fn past_max_users_every_earlier_session_ends_and_the_list_starts_over() {
        let r = Revocations::default();
        for i in 0..MAX_USERS {
            r.revoke(&claims(&format!("u{i}"), "s", 1000), 1000);
        }
        assert_eq!(r.size(), (MAX_USERS, MAX_USERS));
        let still_on = claims("someone", "s2", 1000);
        assert!(!r.is_revoked(&still_on));
        r.revoke(&claims("one-more", "s", 1000), 1001);
        assert_eq!(r.size(), (0, 0));
        assert!(r.is_revoked(&claims("u0", "s", 1000)));
        assert!(r.is_revoked(&claims("one-more", "s", 1000)));
        assert!(r.is_revoked(&still_on));
        assert!(!r.is_revoked(&claims("someone", "s3", 1002)));
    }

    #[test]
    fn a_revoked_session_stays_revoked_until_it_expires() {
        let r = Revocations::default();
        let a = claims("alice", "s1", 1000);
        let b = claims("alice", "s2", 1000);
        r.revoke(&a, 1100);
        assert!(r.is_revoked(&a));
        assert!(!r.is_revoked(&b));
        assert!(!r.is_revoked(&claims("bob", "s1", 1000)));
        // Once the cookie has expired the entry is dropped at the next logout.
        r.revoke(
            &claims("bob", "x", 1000 + SESSION_TTL_SECONDS),
            1000 + SESSION_TTL_SECONDS,
        );
        assert_eq!(r.size(), (1, 1));
    }

    #[test]
    fn past_the_per_user_cap_every_older_session_of_that_user_ends() {
        let r = Revocations::default();
        for i in 0..PER_USER {
            r.revoke(&claims("mallory", &format!("s{i}"), 1000), 1000 + i as u64);
        }
        let live_elsewhere = claims("mallory", "phone", 1500);
        assert!(!r.is_revoked(&live_elsewhere));
        let last = claims("mallory", "last", 1500);
        r.revoke(&last, 2000);
        assert!(r.is_revoked(&claims("mallory", "s0", 1000)), "still ended");
        assert!(
            r.is_revoked(&live_elsewhere),
            "issued before the wholesale end"
        );
        assert!(r.is_revoked(&last));
        assert!(!r.is_revoked(&claims("mallory", "new", 2000)));
        assert_eq!(r.size(), (1, 1), "bounded");
    }
}
