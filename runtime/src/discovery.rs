//! Who is out there: cards seen on a discovery topic, forgotten after a TTL.
//!
//! Gateways use it to list agents, agents to know their peers. Cards are
//! published periodically (not retained: one discovery topic carries every
//! agent's card), so a component that stops publishing is dropped once its
//! last card is older than the TTL. What one directory holds is bounded
//! ([`DirectoryLimits`]): a card over the size cap, or a new name once the
//! directory is full, is ignored with a warning.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::a2a::AgentCard;
use crate::logging::Throttle;

/// What one directory may hold: anyone allowed to publish on the discovery
/// topic could otherwise fill memory with one huge card or with thousands
/// of made-up names, and every listing would carry them.
#[derive(Clone, Copy, Debug)]
pub struct DirectoryLimits {
    /// Bytes of one card as published; larger cards are ignored.
    pub max_card_bytes: usize,
    /// Names known at once; cards of further names are ignored until some
    /// expire. Names already known keep being refreshed.
    pub max_entries: usize,
}

impl Default for DirectoryLimits {
    fn default() -> Self {
        let d = crate::config::AgentLimits::default();
        DirectoryLimits {
            max_card_bytes: d.max_agent_card_bytes,
            max_entries: d.max_agents,
        }
    }
}

/// Why a card was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CardRefused {
    #[error("the card is not JSON of an agent card: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("the card of {sender:?} is {bytes} bytes, over the limit of {max}")]
    TooLarge {
        /// The name the card claims (cards carry no other sender identity).
        sender: String,
        bytes: usize,
        max: usize,
    },
    #[error("the card of {name:?} is ignored: {max} names are known already")]
    Full { name: String, max: usize },
    /// The trust manager did not accept the card (it logs why).
    #[error("the card was not accepted by the trust manager")]
    NotAccepted,
}

#[derive(Clone)]
pub struct Directory {
    ttl: Duration,
    limits: DirectoryLimits,
    cards: Arc<RwLock<HashMap<String, (AgentCard, Instant)>>>,
    warnings: Arc<Warnings>,
}

/// A flood of bad cards costs a warning every few seconds, not one each.
struct Warnings {
    too_large: Throttle,
    full: Throttle,
}

impl Directory {
    /// A directory with the default limits.
    pub fn new(ttl: Duration) -> Self {
        Self::with_limits(ttl, DirectoryLimits::default())
    }

    pub fn with_limits(ttl: Duration, limits: DirectoryLimits) -> Self {
        Directory {
            ttl,
            limits,
            cards: Arc::default(),
            warnings: Arc::new(Warnings {
                too_large: Throttle::new(Duration::from_secs(10)),
                full: Throttle::new(Duration::from_secs(10)),
            }),
        }
    }

    /// Reads and records a card as it came off the broker; see
    /// [`Directory::observe`]. Refusals are logged here (oversized cards
    /// and names beyond the cap as warnings, at most one per 10 s each).
    pub fn observe_payload(&self, payload: &[u8]) -> Result<bool, CardRefused> {
        self.observe_checked(payload, || {
            serde_json::from_slice(payload).map_err(CardRefused::from)
        })
    }

    /// Like [`Directory::observe_payload`], with the card read by `accept`
    /// (the trust manager's check that the card comes from the agent's own
    /// account) — called only once the payload fits the size cap, so an
    /// oversized card costs neither a parse nor a signature check.
    pub fn observe_checked(
        &self,
        payload: &[u8],
        accept: impl FnOnce() -> Result<AgentCard, CardRefused>,
    ) -> Result<bool, CardRefused> {
        let result = if payload.len() > self.limits.max_card_bytes {
            Err(CardRefused::TooLarge {
                sender: claimed_name(payload),
                bytes: payload.len(),
                max: self.limits.max_card_bytes,
            })
        } else {
            accept().and_then(|card| self.observe(card))
        };
        if let Err(e) = &result {
            let throttle = match e {
                CardRefused::TooLarge { .. } => &self.warnings.too_large,
                CardRefused::Full { .. } => &self.warnings.full,
                CardRefused::Unreadable(_) | CardRefused::NotAccepted => {
                    tracing::debug!(error = %e, "card ignored");
                    return result;
                }
            };
            if let Some(held_back) = throttle.allow() {
                tracing::warn!(error = %e, held_back, "card ignored");
            }
        }
        result
    }

    /// Records a card; returns true when the name was not known (or had
    /// expired) before, which is when a newcomer may deserve a greeting.
    pub fn observe(&self, card: AgentCard) -> Result<bool, CardRefused> {
        self.observe_at(card, Instant::now())
    }

    fn observe_at(&self, card: AgentCard, now: Instant) -> Result<bool, CardRefused> {
        let mut cards = self.cards.write().unwrap_or_else(|p| p.into_inner());
        let fresh = match cards.get(&card.name) {
            Some((_, seen)) => now.duration_since(*seen) > self.ttl,
            None => {
                if cards.len() >= self.limits.max_entries {
                    cards.retain(|_, (_, seen)| now.duration_since(*seen) <= self.ttl);
                }
                if cards.len() >= self.limits.max_entries {
                    return Err(CardRefused::Full {
                        name: card.name,
                        max: self.limits.max_entries,
                    });
                }
                true
            }
        };
        cards.insert(card.name.clone(), (card, now));
        Ok(fresh)
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

/// The `name` a card claims, for naming it in a warning without keeping
/// or fully parsing it (the rest of the JSON is skipped, not built).
fn claimed_name(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
    }
    match serde_json::from_slice::<Named>(payload) {
        Ok(n) => n.name.chars().take(100).collect(),
        Err(_) => "(no readable name)".to_string(),
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

    fn limited(max_card_bytes: usize, max_entries: usize) -> Directory {
        Directory::with_limits(
            Duration::from_secs(30),
            DirectoryLimits {
                max_card_bytes,
                max_entries,
            },
        )
    }

    fn payload(c: &AgentCard) -> Vec<u8> {
        serde_json::to_vec(c).unwrap()
    }

    #[test]
    fn oversized_card_is_ignored() {
        let dir = limited(4096, 10);
        let mut big = card("big");
        big.description = "x".repeat(5000);
        assert!(dir.observe_payload(&payload(&big)).is_err());
        assert!(dir.get("big").is_none());
        assert!(dir.observe_payload(&payload(&card("small"))).unwrap());
        let names: Vec<_> = dir.list().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["small"]);
    }

    #[test]
    fn names_beyond_the_cap_are_ignored_but_known_ones_refresh() {
        let dir = limited(4096, 3);
        for name in ["a", "b", "c", "d", "e"] {
            let _ = dir.observe_payload(&payload(&card(name)));
        }
        let names: Vec<_> = dir.list().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // A known name still refreshes at the cap.
        let mut a = card("a");
        a.description = "newer".into();
        assert!(dir.observe_payload(&payload(&a)).is_ok());
        assert_eq!(dir.get("a").unwrap().description, "newer");
    }

    #[test]
    fn expired_names_make_room_for_new_ones() {
        let dir = limited(4096, 2);
        let t0 = Instant::now();
        assert!(dir.observe_at(card("a"), t0).is_ok());
        assert!(dir.observe_at(card("b"), t0).is_ok());
        assert!(dir.observe_at(card("c"), t0).is_err());
        assert!(
            dir.observe_at(card("c"), t0 + Duration::from_secs(31))
                .is_ok()
        );
    }

    #[test]
    fn cards_expire_after_ttl() {
        let dir = Directory::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(dir.observe_at(card("b"), t0).unwrap());
        assert!(!dir.observe_at(card("b"), t0).unwrap());
        assert!(
            dir.observe_at(card("a"), t0 + Duration::from_secs(20))
                .unwrap()
        );
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
