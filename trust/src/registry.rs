//! The keys of the components we currently trust, by `kid`.
//!
//! Fed by the trust cards arriving on `{ns}/a2a/v1/trust/#` and read on the
//! hot path of every request (one `kid` lookup per token), so it is a
//! `HashMap` behind a `std::sync::RwLock`: many readers, and a writer only
//! when a card arrives, which is rare. Keys are parsed once, when their card
//! is accepted.
//!
//! Rotation: a component that publishes a card with a new key keeps its
//! previous keys trusted until their own cards expire, so tokens signed just
//! before the rotation still verify. Clearing the retained card (an empty
//! payload) removes the component and all its keys at once.
//!
//! Agent names: an agent is addressed by its name (`agent_name`), but its
//! trust card is keyed by its broker username. The registry also holds which
//! account speaks for which agent name, learned from agent cards signed with
//! that account's key ([`TrustRegistry::bind_agent_name`]). A name equal to
//! the id of an agent trust card is that component's and nobody else's; any
//! other name belongs to the first account that signs a card for it, for as
//! long as that account's card lives. One account speaks for one name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::card::{CardError, ComponentKind, VerifiedCard, verify_card};
use crate::jwk::PublicKey;

/// Most keys one component keeps at once (its current key and previous
/// ones still within their card's lifetime). A component that rotates
/// faster loses its oldest keys first; this bounds what one broker account
/// can make every receiver hold.
pub const MAX_KEYS_PER_COMPONENT: usize = 4;

/// A key we trust, with the component it belongs to. Cloning is shallow.
#[derive(Clone)]
pub struct TrustedKey {
    inner: Arc<TrustedKeyInner>,
}

struct TrustedKeyInner {
    kind: ComponentKind,
    component_id: String,
    key: PublicKey,
    issued_at: u64,
    expires_at: u64,
}

impl TrustedKey {
    fn from_card(card: VerifiedCard) -> Self {
        Self {
            inner: Arc::new(TrustedKeyInner {
                kind: card.kind(),
                component_id: card.component_id().to_owned(),
                key: card.key().clone(),
                issued_at: card.issued_at(),
                expires_at: card.expires_at(),
            }),
        }
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        self.inner.key.kid()
    }
    /// The kind of the owning component.
    pub fn kind(&self) -> ComponentKind {
        self.inner.kind
    }
    /// The owning component's id (its broker username).
    pub fn component_id(&self) -> &str {
        &self.inner.component_id
    }
    /// The parsed public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.inner.key
    }
    /// `iat` of the card that brought the key.
    pub fn issued_at(&self) -> u64 {
        self.inner.issued_at
    }
    /// `exp` of the card that brought the key: it is not trusted after.
    pub fn expires_at(&self) -> u64 {
        self.inner.expires_at
    }
    /// Whether the key's card is still unexpired at `now`, allowing `skew_secs`.
    pub fn is_live(&self, now: u64, skew_secs: u64) -> bool {
        now <= self.inner.expires_at.saturating_add(skew_secs)
    }
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey")
            .field("kid", &self.kid())
            .field(
                "component",
                &format_args!("{}/{}", self.kind(), self.component_id()),
            )
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

/// What an accepted card changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardUpdate {
    /// First key of a component we did not know.
    Added,
    /// Same key as before (the periodic re-publication), or an older card
    /// of a key we already hold.
    Refreshed,
    /// A new key; the previous one stays trusted until its card expires.
    Rotated {
        /// The key that was current until now.
        previous_kid: String,
    },
}

/// Why [`TrustRegistry::gateway_key`] found no gateway key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookupError {
    /// No component has this key.
    Unknown,
    /// The key belongs to a component that is not a gateway.
    NotAGateway {
        /// The owner, as `{type}/{id}`.
        component: String,
    },
}

/// Why an agent name was not bound to an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The account has no agent trust card here.
    #[error("account {account:?} has no agent trust card, so it cannot speak for an agent")]
    UnknownAccount {
        /// The account (broker username).
        account: String,
    },
    /// The name is the id of another agent's trust card.
    #[error(
        "agent name {name:?} is the broker username of another agent, which alone speaks for it; refused for account {account:?}"
    )]
    Reserved {
        /// The agent name.
        name: String,
        /// The account that asked for it.
        account: String,
    },
    /// Another live account already speaks for the name.
    #[error("agent name {name:?} belongs to account {owner:?}; refused for account {account:?}")]
    Taken {
        /// The agent name.
        name: String,
        /// The account that holds it.
        owner: String,
        /// The account that asked for it.
        account: String,
    },
}

/// The trust registry: a handle to the shared set of trusted keys.
/// Cloning is shallow; all clones see the same keys.
#[derive(Clone)]
pub struct TrustRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    namespace: String,
    skew_secs: u64,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, TrustedKey>,
    components: HashMap<(ComponentKind, String), Component>,
    /// Agent name -> the account (agent component id) that speaks for it.
    names: HashMap<String, String>,
}

impl State {
    fn has_agent(&self, id: &str) -> bool {
        self.components
            .contains_key(&(ComponentKind::Agent, id.to_owned()))
    }
}

/// One component's keys: `kids` in the order they arrived, oldest first;
/// `current` is the one from the newest card (by `iat`).
struct Component {
    current: String,
    kids: Vec<String>,
}

impl TrustRegistry {
    /// An empty registry for `namespace`, tolerating `clock_skew` on card
    /// times.
    pub fn new(namespace: impl Into<String>, clock_skew: Duration) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                namespace: namespace.into(),
                skew_secs: clock_skew.as_secs(),
                state: RwLock::new(State::default()),
            }),
        }
    }

    /// The namespace cards must name.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The clock skew tolerated on card times, in seconds.
    pub fn skew_secs(&self) -> u64 {
        self.inner.skew_secs
    }

    /// Verifies the card `jws` that arrived on the topic of `kind/id` (see
    /// [`verify_card`]) and trusts its key.
    pub fn accept_card(
        &self,
        kind: ComponentKind,
        id: &str,
        jws: &str,
        now: u64,
    ) -> Result<CardUpdate, CardError> {
        let card = verify_card(
            jws,
            kind,
            id,
            &self.inner.namespace,
            now,
            Duration::from_secs(self.inner.skew_secs),
        )?;
        let new = TrustedKey::from_card(card);
        let kid = new.kid().to_owned();
        let mut state = self.write();
        let State {
            keys, components, ..
        } = &mut *state;

        if let Some(held) = keys.get(&kid) {
            if held.kind() != kind || held.component_id() != id {
                return Err(CardError::KeyInUse {
                    kid,
                    owner: format!("{}/{}", held.kind(), held.component_id()),
                });
            }
            if held.issued_at() > new.issued_at() {
                // A stale copy of a card we have a newer one of.
                return Ok(CardUpdate::Refreshed);
            }
        }
        let newest_iat = new.issued_at();
        keys.insert(kid.clone(), new);

        let Some(component) = components.get_mut(&(kind, id.to_owned())) else {
            components.insert(
                (kind, id.to_owned()),
                Component {
                    current: kid.clone(),
                    kids: vec![kid],
                },
            );
            tracing::debug!(component = %format_args!("{kind}/{id}"), "trusting a new component key");
            return Ok(CardUpdate::Added);
        };
        if component.current == kid {
            return Ok(CardUpdate::Refreshed);
        }
        if !component.kids.contains(&kid) {
            component.kids.push(kid.clone());
        }
        let current_iat = keys
            .get(&component.current)
            .map_or(0, TrustedKey::issued_at);
        let update = if newest_iat >= current_iat {
            let previous_kid = std::mem::replace(&mut component.current, kid.clone());
            tracing::info!(
                component = %format_args!("{kind}/{id}"),
                kid = %kid,
                previous_kid = %previous_kid,
                "component rotated its key; the previous key stays trusted until its card expires"
            );
            CardUpdate::Rotated { previous_kid }
        } else {
            CardUpdate::Refreshed
        };
        while component.kids.len() > MAX_KEYS_PER_COMPONENT {
            let Some(position) = component.kids.iter().position(|k| *k != component.current) else {
                break;
            };
            let dropped = component.kids.remove(position);
            keys.remove(&dropped);
        }
        Ok(update)
    }

    /// Forgets component `kind/id` and all its keys (its retained card was
    /// cleared). Returns whether it was known.
    pub fn remove(&self, kind: ComponentKind, id: &str) -> bool {
        let mut state = self.write();
        let Some(component) = state.components.remove(&(kind, id.to_owned())) else {
            return false;
        };
        for kid in &component.kids {
            state.keys.remove(kid);
        }
        if kind == ComponentKind::Agent {
            state.names.retain(|_, account| account != id);
        }
        true
    }

    /// Records that account `account` (an agent's broker username) speaks
    /// for agent `name`, as a card for `name` signed with that account's
    /// key says. Refused when another account owns the name (see the module
    /// doc); returns whether the binding is new.
    pub fn bind_agent_name(&self, name: &str, account: &str) -> Result<bool, NameError> {
        {
            // The common case, each time an agent republishes its card.
            let state = self.read();
            if state.names.get(name).is_some_and(|owner| owner == account)
                && state.has_agent(account)
                && (name == account || !state.has_agent(name))
            {
                return Ok(false);
            }
        }
        let mut state = self.write();
        if !state.has_agent(account) {
            return Err(NameError::UnknownAccount {
                account: account.to_owned(),
            });
        }
        if name != account && state.has_agent(name) {
            return Err(NameError::Reserved {
                name: name.to_owned(),
                account: account.to_owned(),
            });
        }
        if let Some(owner) = state.names.get(name)
            && owner != account
            && state.has_agent(owner)
        {
            return Err(NameError::Taken {
                name: name.to_owned(),
                owner: owner.clone(),
                account: account.to_owned(),
            });
        }
        if state.names.get(name).is_some_and(|owner| owner == account) {
            return Ok(false);
        }
        // One name per account: a renamed agent gives up its old name.
        state.names.retain(|_, owner| owner != account);
        state.names.insert(name.to_owned(), account.to_owned());
        tracing::debug!(agent = name, account, "agent name bound to its account");
        Ok(true)
    }

    /// The account that speaks for agent `name`: the agent component of
    /// that id if there is one, else the account bound to the name.
    pub fn agent_account(&self, name: &str) -> Option<String> {
        let state = self.read();
        if state.has_agent(name) {
            return Some(name.to_owned());
        }
        state
            .names
            .get(name)
            .filter(|account| state.has_agent(account))
            .cloned()
    }

    /// Drops every key whose card expired before `now` (beyond the skew).
    /// Returns how many keys were dropped.
    pub fn prune(&self, now: u64) -> usize {
        let skew = self.inner.skew_secs;
        let mut state = self.write();
        let State {
            keys,
            components,
            names,
        } = &mut *state;
        let before = keys.len();
        keys.retain(|_, key| key.is_live(now, skew));
        let dropped = before - keys.len();
        if dropped > 0 {
            components.retain(|_, component| {
                component.kids.retain(|kid| keys.contains_key(kid));
                if !keys.contains_key(&component.current) {
                    // The newest remaining card becomes current.
                    if let Some(newest) = component
                        .kids
                        .iter()
                        .max_by_key(|kid| keys.get(*kid).map_or(0, TrustedKey::issued_at))
                    {
                        component.current = newest.clone();
                    }
                }
                !component.kids.is_empty()
            });
            names.retain(|_, account| {
                components.contains_key(&(ComponentKind::Agent, account.clone()))
            });
        }
        dropped
    }

    /// The trusted key with id `kid`, whatever its owner.
    pub fn key(&self, kid: &str) -> Option<TrustedKey> {
        self.read().keys.get(kid).cloned()
    }

    /// The trusted key with id `kid` if it belongs to a gateway.
    pub fn gateway_key(&self, kid: &str) -> Result<TrustedKey, KeyLookupError> {
        let key = self.key(kid).ok_or(KeyLookupError::Unknown)?;
        if key.kind() != ComponentKind::Gateway {
            return Err(KeyLookupError::NotAGateway {
                component: format!("{}/{}", key.kind(), key.component_id()),
            });
        }
        Ok(key)
    }

    /// The keys of component `kind/id`, current key first.
    pub fn component_keys(&self, kind: ComponentKind, id: &str) -> Vec<TrustedKey> {
        let state = self.read();
        let Some(component) = state.components.get(&(kind, id.to_owned())) else {
            return Vec::new();
        };
        let mut keys: Vec<TrustedKey> = component
            .kids
            .iter()
            .filter_map(|kid| state.keys.get(kid).cloned())
            .collect();
        keys.sort_by_key(|key| key.kid() != component.current);
        keys
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.read().keys.is_empty()
    }

    // A panic while holding the lock cannot leave `State` half-updated in a
    // way that matters (each write is a few map operations), so a poisoned
    // lock is used as is rather than taking the whole mesh down with it.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for TrustRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRegistry")
            .field("namespace", &self.inner.namespace)
            .field("keys", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::TrustCard;
    use crate::key::SigningKey;

    const NS: &str = "a2a/test";
    const NOW: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn registry() -> TrustRegistry {
        TrustRegistry::new(NS, Duration::from_secs(60))
    }

    fn card(key: &SigningKey, kind: ComponentKind, id: &str, days: u32, now: u64) -> String {
        TrustCard::sign(key, kind, id, NS, days, now)
            .expect("signs")
            .into_string()
    }

    #[test]
    fn accepted_card_makes_its_key_findable_by_kid() {
        let reg = registry();
        let key = SigningKey::generate().expect("key");
        let jws = card(&key, ComponentKind::Gateway, "gw", 1, NOW);
        assert_eq!(
            reg.accept_card(ComponentKind::Gateway, "gw", &jws, NOW),
            Ok(CardUpdate::Added)
        );
        assert_eq!(
            reg.accept_card(ComponentKind::Gateway, "gw", &jws, NOW),
            Ok(CardUpdate::Refreshed)
        );
        let found = reg.gateway_key(key.kid()).expect("gateway key");
        assert_eq!(found.component_id(), "gw");
        assert_eq!(found.public_key(), key.public_key());
    }

    #[test]
    fn agent_key_is_not_a_gateway_key() {
        let reg = registry();
        let key = SigningKey::generate().expect("key");
        let jws = card(&key, ComponentKind::Agent, "agent-a", 1, NOW);
        reg.accept_card(ComponentKind::Agent, "agent-a", &jws, NOW)
            .expect("accepts");
        assert_eq!(
            reg.gateway_key(key.kid()).err(),
            Some(KeyLookupError::NotAGateway {
                component: "agent/agent-a".into()
            })
        );
    }

    #[test]
    fn card_on_the_wrong_topic_is_not_accepted() {
        let reg = registry();
        let key = SigningKey::generate().expect("key");
        let jws = card(&key, ComponentKind::Agent, "agent-a", 1, NOW);
        assert!(
            reg.accept_card(ComponentKind::Gateway, "agent-a", &jws, NOW)
                .is_err()
        );
        assert!(
            reg.accept_card(ComponentKind::Agent, "agent-b", &jws, NOW)
                .is_err()
        );
        assert!(reg.is_empty());
    }

    #[test]
    fn one_key_cannot_serve_two_components() {
        let reg = registry();
        let key = SigningKey::generate().expect("key");
        reg.accept_card(
            ComponentKind::Gateway,
            "gw",
            &card(&key, ComponentKind::Gateway, "gw", 1, NOW),
            NOW,
        )
        .expect("accepts");
        let err = reg
            .accept_card(
                ComponentKind::Agent,
                "a",
                &card(&key, ComponentKind::Agent, "a", 1, NOW),
                NOW,
            )
            .expect_err("same key, other component");
        assert!(
            matches!(err, CardError::KeyInUse { ref owner, .. } if owner == "gateway/gw"),
            "{err}"
        );
        assert_eq!(
            reg.gateway_key(key.kid())
                .map(|k| k.component_id().to_owned()),
            Ok("gw".into())
        );
    }

    #[test]
    fn rotation_keeps_the_previous_key_until_its_card_expires() {
        let reg = registry();
        let old = SigningKey::generate().expect("key");
        let new = SigningKey::generate().expect("key");
        reg.accept_card(
            ComponentKind::Gateway,
            "gw",
            &card(&old, ComponentKind::Gateway, "gw", 1, NOW),
            NOW,
        )
        .expect("accepts");
        let later = NOW + 3600;
        assert_eq!(
            reg.accept_card(
                ComponentKind::Gateway,
                "gw",
                &card(&new, ComponentKind::Gateway, "gw", 1, later),
                later
            ),
            Ok(CardUpdate::Rotated {
                previous_kid: old.kid().to_owned()
            })
        );
        let keys = reg.component_keys(ComponentKind::Gateway, "gw");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid(), new.kid(), "current key first");
        assert_eq!(reg.prune(NOW + DAY), 0);
        assert_eq!(reg.prune(NOW + DAY + 61), 1);
        assert!(reg.key(old.kid()).is_none());
        assert!(reg.gateway_key(new.kid()).is_ok());
        assert_eq!(reg.prune(later + DAY + 61), 1);
        assert!(reg.is_empty());
        assert!(reg.component_keys(ComponentKind::Gateway, "gw").is_empty());
    }

    #[test]
    fn a_component_keeps_a_bounded_number_of_keys() {
        let reg = registry();
        let keys: Vec<SigningKey> = (0..MAX_KEYS_PER_COMPONENT + 2)
            .map(|_| SigningKey::generate().expect("key"))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let at = NOW + i as u64;
            reg.accept_card(
                ComponentKind::Agent,
                "a",
                &card(key, ComponentKind::Agent, "a", 1, at),
                at,
            )
            .expect("accepts");
        }
        assert_eq!(reg.len(), MAX_KEYS_PER_COMPONENT);
        assert!(reg.key(keys[0].kid()).is_none(), "oldest dropped first");
        assert_eq!(
            reg.component_keys(ComponentKind::Agent, "a")[0].kid(),
            keys[keys.len() - 1].kid()
        );
    }

    #[test]
    fn cleared_card_removes_every_key_of_the_component() {
        let reg = registry();
        let a = SigningKey::generate().expect("key");
        let b = SigningKey::generate().expect("key");
        reg.accept_card(
            ComponentKind::Gateway,
            "gw",
            &card(&a, ComponentKind::Gateway, "gw", 1, NOW),
            NOW,
        )
        .expect("accepts");
        reg.accept_card(
            ComponentKind::Gateway,
            "gw",
            &card(&b, ComponentKind::Gateway, "gw", 1, NOW + 1),
            NOW + 1,
        )
        .expect("accepts");
        assert!(reg.remove(ComponentKind::Gateway, "gw"));
        assert!(reg.is_empty());
        assert!(!reg.remove(ComponentKind::Gateway, "gw"));
    }

    fn agent(reg: &TrustRegistry, id: &str) -> SigningKey {
        let key = SigningKey::generate().expect("key");
        reg.accept_card(
            ComponentKind::Agent,
            id,
            &card(&key, ComponentKind::Agent, id, 1, NOW),
            NOW,
        )
        .expect("accepts");
        key
    }

    #[test]
    fn an_agent_name_belongs_to_the_first_account_that_claims_it() {
        let reg = registry();
        agent(&reg, "acct-1");
        agent(&reg, "acct-2");
        assert_eq!(reg.agent_account("weather"), None);
        assert_eq!(reg.bind_agent_name("weather", "acct-1"), Ok(true));
        assert_eq!(reg.bind_agent_name("weather", "acct-1"), Ok(false));
        assert_eq!(
            reg.bind_agent_name("weather", "acct-2"),
            Err(NameError::Taken {
                name: "weather".into(),
                owner: "acct-1".into(),
                account: "acct-2".into()
            })
        );
        assert_eq!(reg.agent_account("weather").as_deref(), Some("acct-1"));
        // Its card cleared, acct-1 no longer holds the name.
        assert!(reg.remove(ComponentKind::Agent, "acct-1"));
        assert_eq!(reg.agent_account("weather"), None);
        assert_eq!(reg.bind_agent_name("weather", "acct-2"), Ok(true));
    }

    #[test]
    fn a_name_equal_to_an_agent_account_is_that_agents_alone() {
        let reg = registry();
        agent(&reg, "alpha");
        agent(&reg, "mallory");
        assert_eq!(reg.agent_account("alpha").as_deref(), Some("alpha"));
        assert!(matches!(
            reg.bind_agent_name("alpha", "mallory"),
            Err(NameError::Reserved { .. })
        ));
        assert_eq!(reg.bind_agent_name("alpha", "alpha"), Ok(true));
        assert!(matches!(
            reg.bind_agent_name("x", "nobody"),
            Err(NameError::UnknownAccount { .. })
        ));
        // A name first taken by mallory goes to the agent of that id once
        // its card arrives.
        assert_eq!(reg.bind_agent_name("beta", "mallory"), Ok(true));
        agent(&reg, "beta");
        assert_eq!(reg.agent_account("beta").as_deref(), Some("beta"));
    }

    #[test]
    fn one_account_speaks_for_one_name() {
        let reg = registry();
        agent(&reg, "acct");
        assert_eq!(reg.bind_agent_name("old-name", "acct"), Ok(true));
        assert_eq!(reg.bind_agent_name("new-name", "acct"), Ok(true));
        assert_eq!(reg.agent_account("old-name"), None);
        assert_eq!(reg.agent_account("new-name").as_deref(), Some("acct"));
    }

    #[test]
    fn stale_card_of_a_previous_key_does_not_take_over() {
        let reg = registry();
        let old = SigningKey::generate().expect("key");
        let new = SigningKey::generate().expect("key");
        let old_card = card(&old, ComponentKind::Gateway, "gw", 1, NOW);
        reg.accept_card(ComponentKind::Gateway, "gw", &old_card, NOW)
            .expect("accepts");
        reg.accept_card(
            ComponentKind::Gateway,
            "gw",
            &card(&new, ComponentKind::Gateway, "gw", 1, NOW + 10),
            NOW + 10,
        )
        .expect("accepts");
        assert_eq!(
            reg.accept_card(ComponentKind::Gateway, "gw", &old_card, NOW + 20),
            Ok(CardUpdate::Refreshed)
        );
        assert_eq!(
            reg.component_keys(ComponentKind::Gateway, "gw")[0].kid(),
            new.kid()
        );
    }
}
