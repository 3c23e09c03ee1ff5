//! Who is out there: cards seen on a discovery topic, forgotten after a TTL.
//!
//! Gateways use it to list agents, agents to know their peers. Cards are
//! published periodically (not retained: one discovery topic carries every
//! agent's card), so a component that stops publishing is dropped once its
//! last card is older than the TTL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::a2a::AgentCard;

#[derive(Clone)]
pub struct Directory {
    ttl: Duration,
    cards: Arc<RwLock<HashMap<String, (AgentCard, Instant)>>>,
}

impl Directory {
    pub fn new(ttl: Duration) -> Self {
        Directory {
            ttl,
            cards: Arc::default(),
        }
    }

    /// Records a card; returns true when the name was not known (or had
    /// expired) before, which is when a newcomer may deserve a greeting.
    pub fn observe(&self, card: AgentCard) -> bool {
        self.observe_at(card, Instant::now())
    }

    fn observe_at(&self, card: AgentCard, now: Instant) -> bool {
        let mut cards = self.cards.write().unwrap_or_else(|p| p.into_inner());
        let fresh = match cards.get(&card.name) {
            Some((_, seen)) => now.duration_since(*seen) > self.ttl,
            None => true,
        };
        cards.insert(card.name.clone(), (card, now));
        fresh
    }

    /// Live cards, sorted by name. Expired entries are removed on the way.
    pub fn list(&self) -> Vec<AgentCard> {
        self.list_at(Instant::now())
    }

    fn list_at(&self, now: Instant) -> Vec<AgentCard> {
        let mut cards = self.cards.write().unwrap_or_else(|p| p.into_inner());
        cards.retain(|_, (_, seen)| now.duration_since(*seen) <= self.ttl);
        let mut out: Vec<AgentCard> = cards.values().map(|(c, _)| c.clone()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The live card of one component.
    pub fn get(&self, name: &str) -> Option<AgentCard> {
        let cards = self.cards.read().unwrap_or_else(|p| p.into_inner());
        let (card, seen) = cards.get(name)?;
        (seen.elapsed() <= self.ttl).then(|| card.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::{AgentCapabilities, PROTOCOL_VERSION};

    fn card(name: &str) -> AgentCard {
        AgentCard {
            protocol_version: PROTOCOL_VERSION.into(),
            name: name.into(),
            display_name: None,
            description: String::new(),
            url: String::new(),
            version: "1".into(),
            capabilities: AgentCapabilities {
                streaming: true,
                push_notifications: false,
                state_transition_history: false,
            },
            default_input_modes: vec![],
            default_output_modes: vec![],
            skills: vec![],
            metadata: None,
        }
    }

    #[test]
    fn cards_expire_after_ttl() {
        let dir = Directory::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(dir.observe_at(card("b"), t0));
        assert!(!dir.observe_at(card("b"), t0));
        assert!(dir.observe_at(card("a"), t0 + Duration::from_secs(20)));
        let names: Vec<_> = dir
            .list_at(t0 + Duration::from_secs(25))
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let names: Vec<_> = dir
            .list_at(t0 + Duration::from_secs(31))
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a"]);
    }
}
