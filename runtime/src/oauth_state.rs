//! The OAuth `state` value of a tool authorization, and what it tells a
//! gateway without any shared memory.
//!
//! `state` = `{nonce}.{agent}.{user tag}`: the nonce (128 random bits) is
//! the key of the pending flow in the agent's store; the agent name tells
//! any gateway replica where to forward the callback; the user tag (a
//! truncated SHA-256 of namespace and user id, so the provider never sees
//! the user id) lets the gateway refuse a callback arriving in another
//! user's browser session before anything is forwarded. The agent then
//! checks the flow itself (exists, unexpired, unused, same verified user).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use crate::topics;

/// A parsed `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowState {
    pub nonce: String,
    pub agent: String,
    pub user_tag: String,
}

/// The tag of `user_id` in namespace `ns`.
pub fn user_tag(ns: &str, user_id: &str) -> String {
    let digest = Sha256::digest(format!("amesh-oauth-state-v1\0{ns}\0{user_id}").as_bytes());
    B64.encode(&digest[..12])
}

/// A fresh state for `agent` and `user_id`.
pub fn new_state(ns: &str, agent: &str, user_id: &str) -> String {
    let nonce: [u8; 16] = rand::random();
    format!("{}.{agent}.{}", B64.encode(nonce), user_tag(ns, user_id))
}

impl FlowState {
    /// Parses a state from a callback; `None` when it is not one of ours.
    pub fn parse(state: &str) -> Option<FlowState> {
        let mut parts = state.split('.');
        let (nonce, agent, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || nonce.len() < 16
            || tag.len() != 16
            || !topics::valid_level(agent)
        {
            return None;
        }
        Some(FlowState {
            nonce: nonce.to_string(),
            agent: agent.to_string(),
            user_tag: tag.to_string(),
        })
    }

    /// Whether the flow was started for `user_id`.
    pub fn is_for(&self, ns: &str, user_id: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(
            self.user_tag
                .as_bytes()
                .ct_eq(user_tag(ns, user_id).as_bytes()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_agent_and_user_without_revealing_the_user() {
        let s = new_state("ns", "jira_agent", "alice@example.com");
        assert!(!s.contains("alice"));
        let parsed = FlowState::parse(&s).unwrap();
        assert_eq!(parsed.agent, "jira_agent");
        assert!(parsed.is_for("ns", "alice@example.com"));
        assert!(!parsed.is_for("ns", "bob@example.com"));
        assert!(!parsed.is_for("other", "alice@example.com"));
        assert_ne!(new_state("ns", "a", "u"), new_state("ns", "a", "u"));
    }

    #[test]
    fn foreign_states_do_not_parse() {
        assert!(FlowState::parse("abc").is_none());
        assert!(FlowState::parse("aaaaaaaaaaaaaaaaaaaa.a/b.AAAAAAAAAAAAAAAA").is_none());
        assert!(FlowState::parse("aaaaaaaaaaaaaaaaaaaa.agent.short").is_none());
        assert!(FlowState::parse("a.b.c.d").is_none());
    }
}
