//! The trust manager of one app: its key and trust card, the registry of
//! the cards it has accepted, and identity signing (gateways) or
//! verification (agents).
//!
//! It owns the broker side of `amesh-trust`: publishing this component's
//! card (retained, on its own trust topic, every
//! `card_publish_interval_seconds` and after each reconnect), feeding the
//! cards that arrive on `{ns}/a2a/v1/trust/#` into the registry, and pruning
//! expired ones. The cryptography and the rules live in the trust crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amesh_trust::{
    CardError, ComponentKind, IdentitySigner, IdentityVerifier, RequestIdentity, SigningKey,
    TrustCard, TrustDisabled, TrustRegistry, UserClaims, VerifiedIdentity, VerifierConfig,
    now_unix,
};
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Message};
use crate::config::{TrustManagerConfig, VerificationMode};
use crate::topics::{self, TrustKind};

/// How one app takes part in trust.
pub struct TrustManager {
    cfg: TrustManagerConfig,
    kind: ComponentKind,
    /// Broker username: the id on the trust topic and in the card.
    id: String,
    ns: String,
    key: SigningKey,
    registry: TrustRegistry,
    verifier: IdentityVerifier,
    /// Gateways only.
    signer: Option<IdentitySigner>,
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

/// What the agent decided about a request's identity.
pub enum Admission {
    /// Run the task for this identity.
    Run(RequestIdentity),
    /// Strict mode refused the token; the reason is safe to send back.
    Refuse(String),
}

impl TrustManager {
    /// Loads or creates the key and prepares signing/verification.
    pub fn new(
        cfg: &TrustManagerConfig,
        kind: ComponentKind,
        broker_username: &str,
        namespace: &str,
    ) -> anyhow::Result<Arc<TrustManager>> {
        let key = match &cfg.key_file {
            Some(path) => SigningKey::load_or_create(path)
                .map_err(|e| anyhow::anyhow!("trust_manager.key_file: {e}"))?,
            None => SigningKey::generate().map_err(|e| anyhow::anyhow!("trust key: {e}"))?,
        };
        let skew = Duration::from_secs(cfg.clock_skew_tolerance_seconds);
        let registry = TrustRegistry::new(namespace, skew);
        let verifier = IdentityVerifier::new(
            registry.clone(),
            VerifierConfig {
                clock_skew: skew,
                enable_time_validation: cfg.enable_time_validation,
                max_ttl: Duration::from_secs(cfg.jwt_max_ttl_seconds),
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
            ns: namespace.to_string(),
            key,
            registry,
            verifier,
            signer,
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
        let me = self.clone();
        // Signed anew at each publication (fresh `iat`/`exp`); expired
        // cards of others are pruned on the same beat.
        let payload = Box::new(move || {
            let now = now_unix();
            me.registry.prune(now);
            let days = u32::try_from(me.cfg.card_expiration_days).unwrap_or(u32::MAX);
            match TrustCard::sign(&me.key, me.kind, &me.id, &me.ns, days, now) {
                Ok(card) => Some(Bytes::from(card.into_string())),
                Err(e) => {
                    tracing::error!(component = %me.id, error = %e, "cannot sign trust card");
                    None
                }
            }
        });
        let publication = crate::cards::CardPublication {
            topic: topics::trust(&self.ns, self.trust_kind(), &self.id),
            payload,
            interval: Duration::from_secs(self.cfg.card_publish_interval_seconds.max(1)),
            retain: true,
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

    /// Gateway: the identity token for one request. `None` when trust is
    /// disabled (requests then carry no token).
    pub fn sign(
        &self,
        user_id: &str,
        email: Option<&str>,
        name: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("only gateways sign identity tokens"))?;
        let mut claims = UserClaims::new(user_id);
        claims.email = email.map(str::to_string);
        claims.name = name.map(str::to_string);
        Ok(Some(signer.sign(&claims, None)?))
    }

    /// Agent: decides whether a request may run and as whom. Every refusal
    /// and every unverified admission is logged with reason, component and
    /// user, never with the token.
    pub fn admit(&self, token: Option<&str>, claimed_user: &str, sender: &str) -> Admission {
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
        match self.verifier.identify(token, claimed_user, now_unix()) {
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
            AppKind::Gateway(g) => gateways.push((
                app.name.as_str(),
                g.namespace.as_str(),
                g.trust_manager.enabled,
            )),
            AppKind::Agent(a) => {
                agents.push((app.name.as_str(), a.namespace.as_str(), &a.trust_manager))
            }
        }
    }
    for (gw, gns, g_on) in &gateways {
        for (agent, ans, tm) in &agents {
            if gns != ans {
                continue;
            }
            if !g_on && tm.enabled {
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
            } else if *g_on && !tm.enabled {
                tracing::warn!(
                    gateway = gw,
                    agent = agent,
                    "trust is enabled on the gateway but disabled on the agent: the agent ignores identity tokens and trusts the userId property"
                );
            }
        }
    }
}
