//! The trust manager of one app: its key and trust card, the registry of
//! the cards it has accepted, and identity signing (gateways) or
//! verification (agents).
//!
//! It owns the broker side of `amesh-trust`: publishing this component's
//! card (retained, on its own trust topic, every
//! `card_publish_interval_seconds` and after each reconnect), feeding the
//! cards that arrive on `{ns}/a2a/v1/trust/#` into the registry, and pruning
//! expired ones. The cryptography and the rules live in the trust crate.
//!
//! Who may use what (hardening item 7):
//! - a gateway token names the one agent it is for ([`TrustManager::sign`]);
//!   an agent admits only tokens naming itself ([`TrustManager::admit`]);
//! - an agent reaches a peer with a delegation it signs itself, which only a
//!   [`DelegationPermit`] — `inter_agent_communication` saying yes — gets
//!   ([`TrustManager::delegate`]);
//! - replies and agent cards are signed with the sender's key, and count
//!   only from the account of the agent they are for ([`origin`]).

pub mod key_source;
mod origin;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amesh_trust::{
    CardError, ComponentKind, DEFAULT_DELEGATION_TTL, DelegationSigner, IdentitySigner,
    IdentityVerifier, MessageSigner, RequestIdentity, SigningKey, TokenScope, TrustCard,
    TrustDisabled, TrustRegistry, UserClaims, VerifiedIdentity, VerifierConfig, VerifyError,
    now_unix,
};
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Message, UserProperties};
use crate::config::{InterAgentConfig, TrustManagerConfig, VerificationMode};
use crate::topics::{self, TrustKind};

pub use origin::AnswerRefused;

/// Longest life of the assertion a gateway forwards with a tool
/// authorization callback: it is used at once, by one agent, for one flow.
const CALLBACK_ASSERTION_TTL: Duration = Duration::from_secs(120);

/// How one app takes part in trust.
pub struct TrustManager {
    cfg: TrustManagerConfig,
    kind: ComponentKind,
    /// Broker username: the id on the trust topic and in the card.
    id: String,
    /// Agent name (agents) or gateway id (gateways).
    name: String,
    ns: String,
    key: SigningKey,
    registry: TrustRegistry,
    verifier: IdentityVerifier,
    /// Gateways only.
    signer: Option<IdentitySigner>,
    /// Agents only.
    delegator: Option<DelegationSigner>,
    /// Signs replies and cards.
    messages: MessageSigner,
    /// Set once a token arrived while trust is disabled, so the warning is
    /// logged once, not per request.
    warned_disabled: AtomicBool,
}

impl std::fmt::Debug for TrustManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustManager")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("enabled", &self.cfg.enabled)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

/// Proof that this agent's `inter_agent_communication` lets it call a
/// peer: the only way to a delegation token for that peer.
#[derive(Debug)]
pub struct DelegationPermit {
    peer: String,
}

impl DelegationPermit {
    /// A permit to call `peer`, if `policy` allows it (allow list minus
    /// deny list, globs as in Solace Agent Mesh).
    pub fn check(policy: &InterAgentConfig, peer: &str) -> Option<DelegationPermit> {
        policy_allows(&policy.allow_list, &policy.deny_list, peer).then(|| DelegationPermit {
            peer: peer.to_string(),
        })
    }

    /// The peer this permit is for.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

/// Whether allow list `allow` minus deny list `deny` admits `peer`.
pub fn policy_allows(allow: &[String], deny: &[String], peer: &str) -> bool {
    allow.iter().any(|p| crate::glob::matches(p, peer))
        && !deny.iter().any(|p| crate::glob::matches(p, peer))
}

/// What an agent allows in the delegations it receives and signs.
#[derive(Clone, Copy, Debug)]
pub struct DelegationLimits {
    /// Most hops a chain it accepts may have (`max_call_depth`).
    pub max_depth: u32,
    /// How long a hop it signs lives: as long as it waits for the peer's
    /// answer (`inter_agent_communication.request_timeout_seconds`), never
    /// past the token it extends.
    pub hop_ttl: Duration,
}

impl Default for DelegationLimits {
    /// What a gateway passes: it neither receives nor signs delegations.
    fn default() -> Self {
        Self {
            max_depth: 0,
            hop_ttl: DEFAULT_DELEGATION_TTL,
        }
    }
}

/// Why no delegation token was made for a peer.
#[derive(Debug, thiserror::Error)]
pub enum DelegationError {
    /// The trust crate refused (scoped or expired token, ...).
    #[error("cannot delegate the user's identity: {0}")]
    Sign(#[from] amesh_trust::SignError),
}

/// What the agent decided about a request's identity.
pub enum Admission {
    /// Run the task for this identity.
    Run(RequestIdentity),
    /// Strict mode refused the token; the reason is safe to send back.
    Refuse(String),
}

impl TrustManager {
    /// Loads or creates the key (`key_file`, else a new key in memory) and
    /// prepares signing/verification for the component `name` (agent name
    /// or gateway id) connected as `broker_username`, with the delegation
    /// `limits` of an agent. Agents get their key from
    /// [`key_source::agent_key`] and call [`TrustManager::with_key`].
    pub fn new(
        cfg: &TrustManagerConfig,
        kind: ComponentKind,
        broker_username: &str,
        namespace: &str,
        name: &str,
        limits: DelegationLimits,
    ) -> anyhow::Result<Arc<TrustManager>> {
        let key = key_source::file_or_memory_key(cfg)?;
        Self::with_key(cfg, kind, broker_username, namespace, name, limits, key)
    }

    /// [`TrustManager::new`] with a key the caller loaded.
    pub fn with_key(
        cfg: &TrustManagerConfig,
        kind: ComponentKind,
        broker_username: &str,
        namespace: &str,
        name: &str,
        limits: DelegationLimits,
        key: SigningKey,
    ) -> anyhow::Result<Arc<TrustManager>> {
        let skew = Duration::from_secs(cfg.clock_skew_tolerance_seconds);
        let registry = TrustRegistry::new(namespace, skew);
        // Our own key is trusted from the start: our own signed agent card
        // and our delegations to ourselves check out before our trust card
        // has made the round trip through the broker.
        let days = u32::try_from(cfg.card_expiration_days).unwrap_or(u32::MAX);
        if cfg.enabled {
            let own = TrustCard::sign(&key, kind, broker_username, namespace, days, now_unix())
                .map_err(|e| anyhow::anyhow!("trust card: {e}"))?;
            registry
                .accept_card(kind, broker_username, own.as_str(), now_unix())
                .map_err(|e| anyhow::anyhow!("own trust card: {e}"))?;
        }
        let verifier = IdentityVerifier::new(
            registry.clone(),
            name,
            VerifierConfig {
                clock_skew: skew,
                enable_time_validation: cfg.enable_time_validation,
                max_ttl: Duration::from_secs(cfg.jwt_max_ttl_seconds),
                max_delegation_depth: usize::try_from(limits.max_depth).unwrap_or(usize::MAX),
                // A hop never outlives the gateway token it extends, so the
                // gateway tokens' bound is the hops' bound too.
                max_delegation_ttl: Duration::from_secs(cfg.jwt_max_ttl_seconds),
                ..VerifierConfig::default()
            },
        );
        let signer = match kind {
            // The token's `iss` must be the id on the gateway's trust card,
            // which is its broker username.
            ComponentKind::Gateway => Some(
                IdentitySigner::new(
                    broker_username,
                    namespace,
                    key.clone(),
                    Duration::from_secs(cfg.jwt_default_ttl_seconds),
                    Duration::from_secs(cfg.jwt_max_ttl_seconds),
                )
                .map_err(|e| anyhow::anyhow!("identity signer: {e}"))?,
            ),
            ComponentKind::Agent => None,
        };
        let delegator = match kind {
            ComponentKind::Agent => Some(
                DelegationSigner::new(
                    broker_username,
                    name,
                    namespace,
                    key.clone(),
                    limits.hop_ttl.max(Duration::from_secs(1)),
                )
                .map_err(|e| anyhow::anyhow!("delegation signer: {e}"))?,
            ),
            ComponentKind::Gateway => None,
        };
        let messages = MessageSigner::new(key.clone(), broker_username)
            .map_err(|e| anyhow::anyhow!("message signer: {e}"))?;
        if !cfg.enabled {
            tracing::warn!(
                component = %broker_username,
                "trust_manager.enabled is false: identities are taken from the userId property unchecked"
            );
        }
        Ok(Arc::new(TrustManager {
            cfg: cfg.clone(),
            kind,
            id: broker_username.to_string(),
            name: name.to_string(),
            ns: namespace.to_string(),
            key,
            registry,
            verifier,
            signer,
            delegator,
            messages,
            warned_disabled: AtomicBool::new(false),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    pub fn registry(&self) -> &TrustRegistry {
        &self.registry
    }

    /// The key id this component signs with.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    fn strict(&self) -> bool {
        self.cfg.verification_mode == VerificationMode::Strict
    }

    fn card(&self, now: u64) -> Option<Bytes> {
        let days = u32::try_from(self.cfg.card_expiration_days).unwrap_or(u32::MAX);
        match TrustCard::sign(&self.key, self.kind, &self.id, &self.ns, days, now) {
            Ok(card) => Some(Bytes::from(card.into_string())),
            Err(e) => {
                tracing::error!(component = %self.id, error = %e, "cannot sign trust card");
                None
            }
        }
    }

    fn trust_kind(&self) -> TrustKind {
        match self.kind {
            ComponentKind::Gateway => TrustKind::Gateway,
            ComponentKind::Agent => TrustKind::Agent,
        }
    }

    /// Subscribes to every trust card and starts publishing ours and
    /// pruning expired ones. Does nothing when trust is disabled.
    pub async fn start(
        self: &Arc<Self>,
        broker: &Broker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Option<JoinHandle<()>>> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        broker.subscribe(&topics::trust_all(&self.ns)).await?;
        let topic = topics::trust(&self.ns, self.trust_kind(), &self.id);
        // Published once before anything else this component signs (its
        // agent card, its replies), so receivers know the key first.
        if let Some(card) = self.card(now_unix())
            && let Err(e) = broker
                .publish(&topic, card, UserProperties::new(), true)
                .await
        {
            tracing::warn!(%topic, error = %e, "trust card publish failed");
        }
        let me = self.clone();
        // Signed anew at each publication (fresh `iat`/`exp`); expired
        // cards of others are pruned on the same beat.
        let payload = Box::new(move || {
            let now = now_unix();
            me.registry.prune(now);
            me.card(now)
        });
        let publication = crate::cards::CardPublication {
            topic,
            payload,
            interval: Duration::from_secs(self.cfg.card_publish_interval_seconds.max(1)),
            retain: true,
            sign: None,
        };
        Ok(Some(crate::cards::spawn(
            broker.clone(),
            publication,
            None,
            shutdown,
        )))
    }

    /// Handles a message if it is on a trust topic; returns whether it was.
    pub fn on_message(&self, msg: &Message) -> bool {
        let Some((kind, id)) = topics::parse_trust(&self.ns, &msg.topic) else {
            return false;
        };
        let kind = match kind {
            TrustKind::Gateway => ComponentKind::Gateway,
            TrustKind::Agent => ComponentKind::Agent,
        };
        if msg.payload.is_empty() {
            if self.registry.remove(kind, &id) {
                tracing::info!(component = %format!("{}/{id}", kind.as_str()), "trust card cleared");
            }
            return true;
        }
        let Ok(jws) = std::str::from_utf8(&msg.payload) else {
            tracing::warn!(topic = %msg.topic, "trust card refused: not UTF-8");
            return true;
        };
        match self.registry.accept_card(kind, &id, jws, now_unix()) {
            Ok(update) => tracing::debug!(component = %id, ?update, "trust card accepted"),
            Err(e) => log_card_refusal(&msg.topic, &e),
        }
        true
    }

    /// Gateway: the identity token for requests to `agent`, good at that
    /// agent only. `None` when trust is disabled (requests then carry no
    /// token).
    pub fn sign(&self, user: &UserClaims, agent: &str) -> anyhow::Result<Option<String>> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        Ok(Some(self.gateway_signer()?.sign(user, agent, None)?))
    }

    /// Gateway: the assertion forwarded to `agent` with a tool
    /// authorization callback: good for the `method` request on that one
    /// `state` only, for two minutes.
    pub fn sign_callback(
        &self,
        user: &UserClaims,
        agent: &str,
        method: &str,
        state: &str,
    ) -> anyhow::Result<Option<String>> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        let scope = TokenScope::new(method, state);
        Ok(Some(self.gateway_signer()?.sign_scoped_at(
            user,
            agent,
            &scope,
            Some(CALLBACK_ASSERTION_TTL),
            now_unix(),
        )?))
    }

    fn gateway_signer(&self) -> anyhow::Result<&IdentitySigner> {
        self.signer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("only gateways sign identity tokens"))
    }

    /// Agent: the token to send to the peer `permit` names, for the user
    /// `identity` was verified as from `presented` (the token or chain the
    /// request arrived with). `None` when trust is disabled here or the
    /// identity is not verified (permissive): the peer then gets no token —
    /// a token addressed to us is no good there — and treats the request
    /// as unverified too.
    pub fn delegate(
        &self,
        identity: &RequestIdentity,
        presented: Option<&str>,
        permit: &DelegationPermit,
    ) -> Result<Option<String>, DelegationError> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        let (RequestIdentity::Verified(identity), Some(presented)) = (identity, presented) else {
            return Ok(None);
        };
        let Some(delegator) = &self.delegator else {
            return Err(DelegationError::Sign(amesh_trust::SignError::InvalidInput(
                "only agents delegate",
            )));
        };
        Ok(Some(delegator.delegate(
            identity,
            presented,
            permit.peer(),
            now_unix(),
        )?))
    }

    /// Agent: the identity of a token a task started with, verified again
    /// now (a task resumed after its user's authorization goes on with it;
    /// see `LoopState::presented_token`). `None` when trust is disabled
    /// (the callback's identity is as good) or the token no longer verifies
    /// (expired, its signer's key gone): the task then goes on with the
    /// callback's narrower identity.
    pub fn reverify(&self, token: &str, user: &str) -> Option<VerifiedIdentity> {
        if !self.cfg.enabled {
            return None;
        }
        match self.verifier.identify(Some(token), user, now_unix()) {
            RequestIdentity::Verified(v) => Some(v),
            RequestIdentity::Unverified(u) => {
                tracing::info!(component = %self.id, user, reason = %u.reason(),
                    "the token a paused task started with no longer verifies; it goes on with the callback's identity");
                None
            }
        }
    }

    /// The `amesh-signature` of `payload` published on `topic`, when trust
    /// is enabled.
    pub fn sign_message(&self, topic: &str, payload: &[u8]) -> Option<String> {
        if !self.cfg.enabled {
            return None;
        }
        match self.messages.sign(topic, payload, now_unix()) {
            Ok(signature) => Some(signature),
            Err(e) => {
                tracing::error!(component = %self.id, error = %e, "cannot sign a message");
                None
            }
        }
    }

    /// Agent: decides whether a request may run and as whom. `check` adds
    /// what only the caller can judge (the token's scope against the
    /// method, the published policy of each delegating agent); its refusal
    /// counts like a bad token. Every refusal and every unverified
    /// admission is logged with reason, component and user, never with the
    /// token.
    pub fn admit(
        &self,
        token: Option<&str>,
        claimed_user: &str,
        sender: &str,
        check: impl FnOnce(&VerifiedIdentity) -> Result<(), VerifyError>,
    ) -> Admission {
        if !self.cfg.enabled {
            if token.is_some() && !self.warned_disabled.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    component = %self.id,
                    "requests carry identity tokens but this agent's trust_manager is disabled: \
                     tokens are ignored and the userId property is trusted"
                );
            }
            return Admission::Run(RequestIdentity::Verified(VerifiedIdentity::trust_disabled(
                TrustDisabled::by_configuration(),
                claimed_user,
                None,
                None,
            )));
        }
        let identity = match self.verifier.identify(token, claimed_user, now_unix()) {
            RequestIdentity::Verified(v) => match check(&v) {
                Ok(()) => RequestIdentity::Verified(v),
                Err(reason) => RequestIdentity::Unverified(amesh_trust::UnverifiedIdentity::new(
                    claimed_user,
                    reason,
                )),
            },
            unverified => unverified,
        };
        match identity {
            RequestIdentity::Verified(v) => Admission::Run(RequestIdentity::Verified(v)),
            RequestIdentity::Unverified(u) => match self.cfg.verification_mode {
                VerificationMode::Strict => {
                    tracing::warn!(
                        component = %self.id,
                        user = %claimed_user,
                        sender,
                        reason = %u.reason(),
                        code = u.reason().code(),
                        "identity refused (strict)"
                    );
                    crate::telemetry::metrics::trust_denial(&self.id, u.reason().code(), true);
                    Admission::Refuse(format!("identity token refused: {}", u.reason()))
                }
                VerificationMode::Permissive => {
                    tracing::warn!(
                        component = %self.id,
                        user = %claimed_user,
                        sender,
                        reason = %u.reason(),
                        "identity not verified (permissive): running without access to stored credentials"
                    );
                    crate::telemetry::metrics::trust_denial(&self.id, u.reason().code(), false);
                    Admission::Run(RequestIdentity::Unverified(u))
                }
            },
        }
    }
}

fn log_card_refusal(topic: &str, e: &CardError) {
    tracing::warn!(%topic, error = %e, "trust card refused");
}

/// Warns when the gateways and agents of one run disagree about trust: a
/// gateway that signs nothing makes strict agents refuse everything, and an
/// agent with trust off accepts any claimed user.
pub fn warn_on_mismatch(cfg: &crate::config::LoadedConfig) {
    use crate::config::AppKind;
    let mut gateways = Vec::new();
    let mut agents = Vec::new();
    for app in &cfg.apps {
        match &app.kind {
            AppKind::Gateway(g) => {
                gateways.push((app.name.as_str(), g.namespace.as_str(), &g.trust_manager))
            }
            AppKind::Agent(a) => {
                agents.push((app.name.as_str(), a.namespace.as_str(), &a.trust_manager))
            }
        }
    }
    for (gw, gns, gtm) in &gateways {
        for (agent, ans, tm) in &agents {
            if gns != ans {
                continue;
            }
            if !gtm.enabled && tm.enabled {
                let effect = match tm.verification_mode {
                    VerificationMode::Strict => "it will refuse every request from this gateway",
                    VerificationMode::Permissive => {
                        "its requests run as unverified users and never reach stored credentials"
                    }
                };
                tracing::warn!(
                    gateway = gw,
                    agent = agent,
                    "trust is disabled on the gateway but enabled on the agent: {effect}"
                );
            } else if gtm.enabled && !tm.enabled {
                let listed = match gtm.verification_mode {
                    VerificationMode::Strict => {
                        "; it signs no agent card, so this strict gateway does not list it"
                    }
                    VerificationMode::Permissive => "",
                };
                tracing::warn!(
                    gateway = gw,
                    agent = agent,
                    "trust is enabled on the gateway but disabled on the agent: the agent ignores identity tokens and trusts the userId property{listed}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_needs_a_permit_from_the_policy() {
        let policy = InterAgentConfig {
            allow_list: vec!["weather_*".into(), "billing".into()],
            deny_list: vec!["weather_secret".into()],
            ..InterAgentConfig::default()
        };
        let permit = DelegationPermit::check(&policy, "weather_eu").expect("allowed");
        assert_eq!(permit.peer(), "weather_eu");
        assert!(DelegationPermit::check(&policy, "billing").is_some());
        assert!(DelegationPermit::check(&policy, "weather_secret").is_none());
        assert!(DelegationPermit::check(&policy, "news").is_none());
    }

    #[test]
    fn gateway_tokens_name_the_agent_and_callback_assertions_their_flow() {
        let cfg = TrustManagerConfig::default();
        let gateway = TrustManager::new(
            &cfg,
            ComponentKind::Gateway,
            "gw",
            "a2a/test",
            "gw",
            DelegationLimits::default(),
        )
        .expect("tm");
        let agent = TrustManager::new(
            &cfg,
            ComponentKind::Agent,
            "alpha",
            "a2a/test",
            "alpha",
            DelegationLimits::default(),
        )
        .expect("tm");
        let card = gateway.card(now_unix()).expect("card");
        let card = std::str::from_utf8(&card).expect("utf-8");
        agent
            .registry
            .accept_card(ComponentKind::Gateway, "gw", card, now_unix())
            .expect("accepted");
        let alice = UserClaims::new("alice");
        let general = gateway
            .sign(&alice, "alpha")
            .expect("signs")
            .expect("token");
        let ok = |_: &VerifiedIdentity| Ok(());
        assert!(matches!(
            agent.admit(Some(&general), "alice", "gw", ok),
            Admission::Run(RequestIdentity::Verified(_))
        ));
        let for_beta = gateway.sign(&alice, "beta").expect("signs").expect("token");
        assert!(matches!(
            agent.admit(Some(&for_beta), "alice", "gw", ok),
            Admission::Run(RequestIdentity::Unverified(ref u))
                if matches!(u.reason(), VerifyError::AudienceMismatch { .. })
        ));
        let callback = gateway
            .sign_callback(&alice, "alpha", "oauth/callback", "state-1")
            .expect("signs")
            .expect("token");
        let for_callback =
            |who: &VerifiedIdentity| who.check_scoped_use("oauth/callback", Some("state-1"));
        assert!(matches!(
            agent.admit(Some(&callback), "alice", "gw", for_callback),
            Admission::Run(RequestIdentity::Verified(_))
        ));
        let as_send = |who: &VerifiedIdentity| who.check_use("message/send", None);
        assert!(matches!(
            agent.admit(Some(&callback), "alice", "gw", as_send),
            Admission::Run(RequestIdentity::Unverified(ref u))
                if matches!(u.reason(), VerifyError::OutOfScope { .. })
        ));
    }
}
