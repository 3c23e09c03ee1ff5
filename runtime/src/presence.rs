//! Which agents still have a replica the broker would deliver to.
//!
//! A request to an agent none of whose replicas has a session on the
//! broker is delivered to no one: MQTT v5 says so in the PUBACK (0x10,
//! no matching subscribers), but Paho C reports that PUBACK as a plain
//! success, so a gateway cannot see it. Presence says it instead:
//!
//! - Each agent replica connects with a **will** on its presence topic
//!   ([`topics::agent_presence`]): an empty retained message, sent by
//!   the broker with a will delay equal to the session expiry — that is,
//!   exactly when the broker discards the replica's session and with it
//!   the subscription that would have queued requests for it. A replica
//!   that comes back in time resumes its session and no will is sent; a
//!   graceful stop disconnects with reason 0x04 so the will still comes
//!   at the session's end.
//! - After every (re)connect the replica publishes a retained non-empty
//!   message on the same topic (the broker layer does both, see
//!   `broker::mqtt`).
//! - A gateway subscribes to every presence topic and keeps, per agent,
//!   the replicas present ([`Presence`]). An agent seen present once
//!   whose last replica's will came is *gone*: the gateway answers 503 at
//!   once instead of publishing a request nobody will receive.
//!
//! An agent that publishes no presence (SAM, the dev bus) is never
//! *gone*: its requests are sent as before and the liveness rules decide
//! (`a2a::liveness`). The presence topic is amesh's own (SAM has none)
//! and lies under the namespace's `a2a/v1/` prefix, so ACLs written for
//! SAM's topics (`{ns}/a2a/v1/#`) already cover it; `amesh acl generate`
//! grants each agent only its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::topics;

/// Replicas remembered per agent; further ones are not tracked (the
/// agent stays present).
pub const MAX_REPLICAS: usize = 1024;

/// The gateway's view of which agents have a replica with a session.
pub struct Presence {
    prefix: String,
    max_agents: usize,
    agents: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Presence {
    /// Tracks presence in namespace `ns`, for at most `max_agents` agents
    /// (the directory's bound on agent names).
    pub fn new(ns: &str, max_agents: usize) -> Presence {
        Presence {
            prefix: topics::agent_presence(ns, "", ""),
            max_agents,
            agents: Mutex::default(),
        }
    }

    /// Records a message off a presence topic: non-empty says the replica
    /// has a session, empty (its will) that it has none any more. False
    /// when `topic` is not a presence topic of this namespace.
    pub fn observe(&self, topic: &str, payload: &[u8]) -> bool {
        let Some((agent, replica)) = topic
            .strip_prefix(self.prefix.trim_end_matches('/'))
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split_once('/'))
        else {
            return false;
        };
        if agent.is_empty() || replica.is_empty() || replica.contains('/') {
            return true;
        }
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if !agents.contains_key(agent) {
            if agents.len() >= self.max_agents {
                // Make room from agents known to be gone; otherwise this
                // one is not tracked (and so never refused).
                let Some(gone) = agents
                    .iter()
                    .find(|(_, r)| r.is_empty())
                    .map(|(a, _)| a.clone())
                else {
                    return true;
                };
                agents.remove(&gone);
            }
            agents.insert(agent.to_owned(), BTreeSet::new());
        }
        let Some(replicas) = agents.get_mut(agent) else {
            return true;
        };
        if payload.is_empty() {
            if replicas.remove(replica) && replicas.is_empty() {
                tracing::info!(
                    %agent,
                    %replica,
                    "agent has no replica connected: its last session on the broker ended"
                );
            }
        } else if replicas.len() < MAX_REPLICAS {
            replicas.insert(replica.to_owned());
        }
        true
    }

    /// Whether `agent` published presence and none of its replicas has a
    /// session now.
    pub fn gone(&self, agent: &str) -> bool {
        self.agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(agent)
            .is_some_and(BTreeSet::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "acme/prod";

    fn topic(agent: &str, replica: &str) -> String {
        topics::agent_presence(NS, agent, replica)
    }

    #[test]
    fn an_agent_is_gone_once_its_last_replica_left() {
        let p = Presence::new(NS, 10);
        assert!(!p.gone("weather"), "never seen: not refused");
        assert!(p.observe(&topic("weather", "a"), b"{}"));
        assert!(p.observe(&topic("weather", "b"), b"{}"));
        assert!(p.observe(&topic("weather", "a"), b""));
        assert!(!p.gone("weather"), "replica b still has a session");
        assert!(p.observe(&topic("weather", "b"), b""));
        assert!(p.gone("weather"));
        assert!(p.observe(&topic("weather", "b"), b"{}"));
        assert!(!p.gone("weather"), "back");
    }

    #[test]
    fn other_topics_are_not_presence() {
        let p = Presence::new(NS, 10);
        assert!(!p.observe("acme/prod/a2a/v1/discovery/agentcards", b"{}"));
        assert!(!p.observe(&topics::agent_presence("other/ns", "w", "a"), b""));
        assert!(p.observe(&format!("{}/extra", topic("w", "a")), b""));
        assert!(!p.gone("w"), "a malformed presence topic records nothing");
    }

    #[test]
    fn the_number_of_agents_is_bounded_and_gone_ones_make_room() {
        let p = Presence::new(NS, 2);
        p.observe(&topic("a", "1"), b"{}");
        p.observe(&topic("b", "1"), b"{}");
        p.observe(&topic("c", "1"), b"");
        assert!(!p.gone("c"), "no room: c is not tracked");
        p.observe(&topic("a", "1"), b"");
        assert!(p.gone("a"));
        p.observe(&topic("c", "1"), b"");
        assert!(p.gone("c"), "a's slot went to c");
        assert!(!p.gone("a"), "a forgotten");
    }
}
