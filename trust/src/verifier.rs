//! The agent's side of identity: turning what arrives in the `authToken`
//! property into a [`VerifiedIdentity`], or a precise reason why not.
//!
//! What arrives is either a gateway's token addressed to this agent, or a
//! delegation chain `G~D1~...~Dn` (see [`crate::delegation`]) whose last
//! hop is addressed to this agent.
//!
//! Order of checks for a gateway token: the header first (ES256 exactly, typ
//! JWT, a `kid`), before any key is looked at — so `none`, HS256 keyed with
//! the gateway's public key, RS256 and ES384 never reach a verifier that
//! could be confused; then the `kid` must name a live *gateway* key; then
//! the signature; only then are the claims believed and compared (issuer =
//! the key's owner, audience = this agent, lifetime, times, subject).
//!
//! Verified tokens are cached by hash until they expire (see [`crate::cache`]);
//! a hit still checks expiry, the expected user and that every key that
//! signed a part is still trusted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CachedToken, KeyCheck, TokenCache, TokenHash};
use crate::card::ComponentKind;
use crate::identity::{IncomingClaims, agent_audience};
use crate::jws::{self, Rejected, clip};
use crate::registry::{KeyLookupError, TrustRegistry, TrustedKey};
use crate::verified::{Assurance, RequestIdentity, UnverifiedIdentity, Verified, VerifiedIdentity};

/// Why a token did not verify. Messages say what was expected and what was
/// found, and never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The request carried no token.
    #[error("no identity token")]
    MissingToken,
    /// Not a compact JWS with JSON header and the required claims.
    #[error("identity token is malformed: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not exactly ES256.
    #[error("identity token algorithm must be \"ES256\", found {found:?}")]
    AlgorithmNotAllowed {
        /// The `alg` found, clipped to 64 characters.
        found: String,
    },
    /// The header's `typ` is not the one this kind of token must have.
    #[error("identity token typ must be {expected:?}, found {found:?}")]
    WrongTokenType {
        /// `JWT` for a gateway token, `delegation+jwt` for a delegation.
        expected: &'static str,
        /// The `typ` found, clipped to 64 characters.
        found: String,
    },
    /// The header has no `kid`.
    #[error("identity token has no kid")]
    MissingKid,
    /// No trusted component has the key `kid`.
    #[error("identity token is signed with key {kid:?}, which no trust card we hold carries")]
    UnknownKey {
        /// The token's `kid`, clipped to 64 characters.
        kid: String,
    },
    /// The key belongs to a component that is not a gateway.
    #[error("identity token is signed with key {kid:?} of {component}, which is not a gateway")]
    NotAGateway {
        /// The token's `kid`.
        kid: String,
        /// The key's owner as `{type}/{id}`.
        component: String,
    },
    /// A delegation is signed with a key that is not an agent's.
    #[error("delegation is signed with key {kid:?} of {component}, which is not an agent")]
    NotAnAgent {
        /// The delegation's `kid`.
        kid: String,
        /// The key's owner as `{type}/{id}`.
        component: String,
    },
    /// The key's trust card has expired.
    #[error(
        "identity token is signed with key {kid:?} of {component}, whose trust card expired at {expired_at}"
    )]
    KeyExpired {
        /// The token's `kid`.
        kid: String,
        /// The key's owner as `{type}/{id}`.
        component: String,
        /// The card's `exp`.
        expired_at: u64,
    },
    /// The signature does not verify with the gateway's key.
    #[error("identity token signature does not verify with the key its kid names")]
    BadSignature,
    /// `iss` is not the component that owns the signing key.
    #[error("identity token issuer is {found:?}, but its key belongs to {expected:?}")]
    IssuerMismatch {
        /// The key owner's component id.
        expected: String,
        /// The token's `iss`, clipped to 64 characters.
        found: String,
    },
    /// `aud` does not name this agent.
    #[error("identity token audience is {found:?}, expected {expected:?}")]
    AudienceMismatch {
        /// This agent's audience.
        expected: String,
        /// The token's `aud`, clipped to 64 characters.
        found: String,
    },
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error("identity token expired at {expired_at} (unix seconds), now is {now}")]
    Expired {
        /// The token's `exp`.
        expired_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("identity token is not valid before {not_before} (unix seconds), now is {now}")]
    NotYetValid {
        /// The token's `nbf`.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// `iat` is in the future (beyond the allowed clock skew).
    #[error("identity token is issued at {issued_at} (unix seconds), in the future of now {now}")]
    IssuedInFuture {
        /// The token's `iat`.
        issued_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// `exp - iat` exceeds the maximum token lifetime.
    #[error("identity token lives {lifetime_secs} s, more than the maximum {max_secs} s")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime_secs: u64,
        /// The configured maximum.
        max_secs: u64,
    },
    /// `sub` is not the user the request claims to be for.
    #[error(
        "identity token is for user {:?}, but the request claims user {:?}",
        clip(.token_sub),
        clip(.claimed)
    )]
    SubjectMismatch {
        /// The token's `sub`.
        token_sub: String,
        /// The request's `userId`.
        claimed: String,
    },
    /// A delegation chain with more hops than allowed.
    #[error("delegation chain has {hops} hops, more than the maximum {max}")]
    ChainTooDeep {
        /// Delegations in the chain.
        hops: usize,
        /// The configured maximum (`max_call_depth`).
        max: usize,
    },
    /// One token of a delegation chain failed a check of its own.
    #[error("delegation chain, {}: {error}", position_name(*.position))]
    InChain {
        /// 0 for the gateway's token, n for the n-th delegation.
        position: usize,
        /// What is wrong with that token.
        error: Box<VerifyError>,
    },
    /// A delegation does not fit the token it claims to extend.
    #[error("delegation chain, hop {hop}: {problem}")]
    BrokenLink {
        /// The n-th delegation.
        hop: usize,
        /// What does not fit.
        problem: &'static str,
    },
    /// A delegation is signed by an account that does not speak for the
    /// agent it names as the actor.
    #[error(
        "delegation chain, hop {hop}: signed by account {account:?}, which does not speak for agent {agent:?} (no agent card of {agent:?} signed by that account)"
    )]
    ActorNotBound {
        /// The n-th delegation.
        hop: usize,
        /// The agent named in `act.sub`.
        agent: String,
        /// The account whose key signed it.
        account: String,
    },
    /// A token scoped to one request was delegated.
    #[error("a token scoped to one {method} request cannot be delegated")]
    ScopedTokenDelegated {
        /// The scope's method.
        method: String,
    },
    /// A scoped token presented for another method.
    #[error(
        "identity token is scoped to one {scope_method} request and cannot be used for {method}"
    )]
    OutOfScope {
        /// The method the token is good for.
        scope_method: String,
        /// The method it was presented for.
        method: String,
    },
    /// A scoped token presented for another request of its method.
    #[error("identity token is scoped to another {method} request")]
    ScopeMismatch {
        /// The method.
        method: String,
    },
    /// A request that needs a token scoped to it came with a general one.
    #[error("{method} needs an identity assertion scoped to it; this token is a general one")]
    ScopeRequired {
        /// The method.
        method: String,
    },
    /// A delegation hop the delegating agent's published policy does not
    /// allow (checked by the runtime against the agent's card).
    #[error(
        "agent {from:?} does not publish permission to delegate to agent {to:?} (inter_agent_communication)"
    )]
    HopNotPermitted {
        /// The delegating agent.
        from: String,
        /// The agent it delegated to.
        to: String,
    },
}

impl From<Rejected> for VerifyError {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Malformed(reason) => Self::Malformed(reason),
            Rejected::AlgorithmNotAllowed(found) => Self::AlgorithmNotAllowed { found },
            Rejected::BadSignature => Self::BadSignature,
        }
    }
}

fn position_name(position: usize) -> String {
    match position {
        0 => "gateway token".to_owned(),
        n => format!("hop {n}"),
    }
}

impl VerifyError {
    /// A short stable name for the error, for metrics and JSON-RPC error data.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            Self::WrongTokenType { .. } => "wrong_token_type",
            Self::MissingKid => "missing_kid",
            Self::UnknownKey { .. } => "unknown_key",
            Self::NotAGateway { .. } => "not_a_gateway",
            Self::NotAnAgent { .. } => "not_an_agent",
            Self::KeyExpired { .. } => "key_expired",
            Self::BadSignature => "bad_signature",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::AudienceMismatch { .. } => "audience_mismatch",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::SubjectMismatch { .. } => "subject_mismatch",
            Self::ChainTooDeep { .. } => "chain_too_deep",
            Self::InChain { error, .. } => error.code(),
            Self::BrokenLink { .. } => "broken_chain",
            Self::ActorNotBound { .. } => "actor_not_bound",
            Self::ScopedTokenDelegated { .. } => "scoped_token_delegated",
            Self::OutOfScope { .. } => "out_of_scope",
            Self::ScopeMismatch { .. } => "scope_mismatch",
            Self::ScopeRequired { .. } => "scope_required",
            Self::HopNotPermitted { .. } => "hop_not_permitted",
        }
    }

    /// This error as found in the `position`-th token of a chain.
    pub(crate) fn in_chain(self, position: usize) -> Self {
        Self::InChain {
            position,
            error: Box::new(self),
        }
    }
}

/// How strictly tokens are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Tolerance on `exp`, `nbf`, `iat` and card expiry.
    pub clock_skew: Duration,
    /// Check `exp`, `nbf` and `iat` against the clock. Off only for
    /// deployments whose clocks cannot be trusted; the lifetime bound and
    /// card expiry still apply.
    pub enable_time_validation: bool,
    /// Longest accepted `exp - iat` of a gateway token.
    pub max_ttl: Duration,
    /// Verified tokens remembered (0 turns the cache off).
    pub cache_capacity: usize,
    /// Most delegations a chain may have (the agent's `max_call_depth`).
    pub max_delegation_depth: usize,
    /// Longest accepted `exp - iat` of one delegation.
    pub max_delegation_ttl: Duration,
}

impl Default for VerifierConfig {
    /// 60 s skew, time validation on, at most 1 h tokens, 10,000 cached,
    /// chains of at most 10 delegations living at most 5 minutes each.
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(60),
            enable_time_validation: true,
            max_ttl: Duration::from_secs(3600),
            cache_capacity: 10_000,
            max_delegation_depth: 10,
            max_delegation_ttl: crate::delegation::DEFAULT_DELEGATION_TTL,
        }
    }
}

/// Verifies identity tokens addressed to one agent against the keys in a
/// [`TrustRegistry`]. Cloning is shallow; clones share the cache.
#[derive(Clone)]
pub struct IdentityVerifier {
    inner: Arc<VerifierInner>,
}

pub(crate) struct VerifierInner {
    pub(crate) registry: TrustRegistry,
    /// `{namespace}/agent/{agent_name}`: what `aud` must say.
    pub(crate) audience: String,
    pub(crate) skew_secs: u64,
    pub(crate) time_validation: bool,
    pub(crate) max_ttl_secs: u64,
    pub(crate) max_depth: usize,
    pub(crate) max_delegation_ttl_secs: u64,
    cache: TokenCache,
}

/// A gateway token whose signature and own claims checked out; its
/// audience is for the caller to compare.
pub(crate) struct GatewayToken {
    pub(crate) claims: IncomingClaims,
    pub(crate) key: KeyCheck,
}

impl IdentityVerifier {
    /// A verifier for tokens addressed to agent `agent_name` in the
    /// registry's namespace.
    pub fn new(registry: TrustRegistry, agent_name: &str, config: VerifierConfig) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                audience: agent_audience(registry.namespace(), agent_name),
                registry,
                skew_secs: config.clock_skew.as_secs(),
                time_validation: config.enable_time_validation,
                max_ttl_secs: config.max_ttl.as_secs(),
                max_depth: config.max_delegation_depth,
                max_delegation_ttl_secs: config.max_delegation_ttl.as_secs(),
                cache: TokenCache::new(config.cache_capacity),
            }),
        }
    }

    /// The registry whose keys are trusted.
    pub fn registry(&self) -> &TrustRegistry {
        &self.inner.registry
    }

    /// The audience tokens must name: this agent.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// Verifies `token` (a gateway token or a delegation chain) as an
    /// identity for `expected_user_id` (the request's `userId`) at `now`
    /// (unix seconds).
    pub fn verify(
        &self,
        token: &str,
        expected_user_id: &str,
        now: u64,
    ) -> Result<VerifiedIdentity, VerifyError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(VerifyError::MissingToken);
        }
        let cache = &self.inner.cache;
        let hash = TokenCache::hash(token);
        if let Some(cached) = cache.get(&hash) {
            return self.recheck(&hash, cached, expected_user_id, now);
        }
        let verified = if token.contains(crate::delegation::CHAIN_SEPARATOR) {
            crate::delegation::verify_chain(&self.inner, token, now)?
        } else {
            self.verify_gateway_token(token, hash, now)?
        };
        let identity = verified.identity.clone();
        // Cached before the subject check: the token is genuine whoever it
        // is presented for.
        cache.insert(hash, verified);
        check_subject(&identity, expected_user_id)?;
        Ok(identity)
    }

    /// Verifies the request's token if it has one and says who the request
    /// is for either way: `Verified`, or `Unverified` with the claimed user
    /// id and the reason. For `permissive` mode, which runs the request
    /// anyway but must not release credentials to an unverified user.
    pub fn identify(
        &self,
        token: Option<&str>,
        claimed_user_id: &str,
        now: u64,
    ) -> RequestIdentity {
        let result = match token {
            Some(token) => self.verify(token, claimed_user_id, now),
            None => Err(VerifyError::MissingToken),
        };
        match result {
            Ok(identity) => RequestIdentity::Verified(identity),
            Err(reason) => {
                RequestIdentity::Unverified(UnverifiedIdentity::new(claimed_user_id, reason))
            }
        }
    }

    /// A cache hit: the signatures and claims were checked when the token
    /// was first seen; what can have changed since is the time, the trust
    /// in its keys, who speaks for the agents of a chain, and who the token
    /// is presented for.
    fn recheck(
        &self,
        hash: &TokenHash,
        cached: CachedToken,
        expected_user_id: &str,
        now: u64,
    ) -> Result<VerifiedIdentity, VerifyError> {
        let inner = &self.inner;
        if inner.time_validation && now > cached.expires_at.saturating_add(inner.skew_secs) {
            inner.cache.remove(hash);
            return Err(VerifyError::Expired {
                expired_at: cached.expires_at,
                now,
            });
        }
        for (position, check) in cached.keys.iter().enumerate() {
            let result = inner.still_trusted(check, now).map_err(|e| {
                if cached.keys.len() > 1 {
                    e.in_chain(position)
                } else {
                    e
                }
            });
            let result = result.and_then(|()| match &check.agent_name {
                Some(agent)
                    if inner.registry.agent_account(agent).as_deref()
                        != Some(check.component_id.as_str()) =>
                {
                    Err(VerifyError::ActorNotBound {
                        hop: position,
                        agent: agent.clone(),
                        account: check.component_id.clone(),
                    })
                }
                _ => Ok(()),
            });
            if let Err(e) = result {
                inner.cache.remove(hash);
                return Err(e);
            }
        }
        check_subject(&cached.identity, expected_user_id)?;
        Ok(cached.identity)
    }

    /// A token straight from a gateway: checked, and addressed to us.
    fn verify_gateway_token(
        &self,
        token: &str,
        hash: TokenHash,
        now: u64,
    ) -> Result<CachedToken, VerifyError> {
        let inner = &self.inner;
        let checked = inner.check_gateway_token(token, now)?;
        let claims = checked.claims;
        if !claims.aud.contains(&inner.audience) {
            return Err(VerifyError::AudienceMismatch {
                expected: inner.audience.clone(),
                found: claims.aud.describe(),
            });
        }
        Ok(CachedToken {
            identity: VerifiedIdentity::from_verified(Verified {
                user_id: claims.sub,
                email: claims.email,
                name: claims.name,
                assurance: Assurance::GatewaySigned {
                    issuer: claims.iss,
                    jti: claims.jti,
                    expires_at: claims.exp,
                },
                scope: claims.amesh_scope,
                token_sha256: hash,
            }),
            keys: vec![checked.key],
            expires_at: claims.exp,
        })
    }
}

impl VerifierInner {
    /// Everything about a gateway token except its audience.
    pub(crate) fn check_gateway_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<GatewayToken, VerifyError> {
        let header = jws::header(token)?;
        if let Some(typ) = header
            .typ
            .as_deref()
            .filter(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(VerifyError::WrongTokenType {
                expected: "JWT",
                found: clip(typ),
            });
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
        let key = self.gateway_key(kid, now)?;
        let claims: IncomingClaims = jws::verify(token, key.public_key())?;
        // Signed by a gateway we trust: the claims are that gateway's words.
        if claims.iss != key.component_id() {
            return Err(VerifyError::IssuerMismatch {
                expected: key.component_id().to_owned(),
                found: clip(&claims.iss),
            });
        }
        if claims.sub.is_empty() {
            return Err(VerifyError::Malformed("sub is empty"));
        }
        self.check_lifetime(claims.iat, claims.exp, self.max_ttl_secs)?;
        self.check_now(claims.iat, claims.nbf, claims.exp, now)?;
        Ok(GatewayToken {
            key: KeyCheck {
                kid: kid.to_owned(),
                component_id: claims.iss.clone(),
                agent_name: None,
            },
            claims,
        })
    }

    /// `exp` after `iat`, and no further than `max_secs`.
    pub(crate) fn check_lifetime(
        &self,
        iat: u64,
        exp: u64,
        max_secs: u64,
    ) -> Result<(), VerifyError> {
        if exp <= iat {
            return Err(VerifyError::Malformed("exp is not after iat"));
        }
        let lifetime_secs = exp - iat;
        if lifetime_secs > max_secs {
            return Err(VerifyError::LifetimeTooLong {
                lifetime_secs,
                max_secs,
            });
        }
        Ok(())
    }

    /// Valid at `now` (when time validation is on), within the skew.
    pub(crate) fn check_now(
        &self,
        iat: u64,
        nbf: Option<u64>,
        exp: u64,
        now: u64,
    ) -> Result<(), VerifyError> {
        if !self.time_validation {
            return Ok(());
        }
        let skew = self.skew_secs;
        if now > exp.saturating_add(skew) {
            return Err(VerifyError::Expired {
                expired_at: exp,
                now,
            });
        }
        if let Some(nbf) = nbf.filter(|nbf| *nbf > now.saturating_add(skew)) {
            return Err(VerifyError::NotYetValid {
                not_before: nbf,
                now,
            });
        }
        if iat > now.saturating_add(skew) {
            return Err(VerifyError::IssuedInFuture {
                issued_at: iat,
                now,
            });
        }
        Ok(())
    }

    fn gateway_key(&self, kid: &str, now: u64) -> Result<TrustedKey, VerifyError> {
        let key = self.registry.gateway_key(kid).map_err(|e| match e {
            KeyLookupError::Unknown => VerifyError::UnknownKey { kid: clip(kid) },
            KeyLookupError::NotAGateway { component } => VerifyError::NotAGateway {
                kid: kid.to_owned(),
                component,
            },
        })?;
        debug_assert_eq!(key.kind(), ComponentKind::Gateway);
        self.live(key, now)
    }

    /// The live agent key `kid`, for a delegation.
    pub(crate) fn agent_key(&self, kid: &str, now: u64) -> Result<TrustedKey, VerifyError> {
        let key = self
            .registry
            .key(kid)
            .ok_or_else(|| VerifyError::UnknownKey { kid: clip(kid) })?;
        if key.kind() != ComponentKind::Agent {
            return Err(VerifyError::NotAnAgent {
                kid: kid.to_owned(),
                component: format!("{}/{}", key.kind(), key.component_id()),
            });
        }
        self.live(key, now)
    }

    fn live(&self, key: TrustedKey, now: u64) -> Result<TrustedKey, VerifyError> {
        if !key.is_live(now, self.skew_secs) {
            return Err(VerifyError::KeyExpired {
                kid: key.kid().to_owned(),
                component: format!("{}/{}", key.kind(), key.component_id()),
                expired_at: key.expires_at(),
            });
        }
        Ok(key)
    }

    /// Whether a key that signed part of a cached token still would.
    fn still_trusted(&self, check: &KeyCheck, now: u64) -> Result<(), VerifyError> {
        let key = match &check.agent_name {
            None => self.gateway_key(&check.kid, now)?,
            Some(_) => self.agent_key(&check.kid, now)?,
        };
        if key.component_id() != check.component_id {
            return Err(VerifyError::UnknownKey {
                kid: clip(&check.kid),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("audience", &self.inner.audience)
            .field("skew_secs", &self.inner.skew_secs)
            .field("time_validation", &self.inner.time_validation)
            .field("max_ttl_secs", &self.inner.max_ttl_secs)
            .field("max_depth", &self.inner.max_depth)
            .field("cached_tokens", &self.cached_tokens())
            .finish()
    }
}

fn check_subject(identity: &VerifiedIdentity, expected_user_id: &str) -> Result<(), VerifyError> {
    if identity.user_id() != expected_user_id {
        return Err(VerifyError::SubjectMismatch {
            token_sub: identity.user_id().to_owned(),
            claimed: expected_user_id.to_owned(),
        });
    }
    Ok(())
}
