//! The agent's side of identity: turning a token from the `authToken`
//! property into a [`VerifiedIdentity`], or a precise reason why not.
//!
//! Order of checks: the header first (ES256 exactly, typ JWT, a `kid`),
//! before any key is looked at — so `none`, HS256 keyed with the gateway's
//! public key, RS256 and ES384 never reach a verifier that could be
//! confused; then the `kid` must name a live *gateway* key; then the
//! signature; only then are the claims believed and compared (issuer =
//! the key's owner, audience = our namespace, lifetime, times, subject).
//!
//! Verified tokens are cached by hash until they expire (see [`crate::cache`]);
//! a hit still checks expiry, the expected user and that the key is trusted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CachedToken, TokenCache, TokenHash};
use crate::card::ComponentKind;
use crate::identity::IncomingClaims;
use crate::jws::{self, ES256, Segment, clip};
use crate::registry::{KeyLookupError, TrustRegistry, TrustedKey};
use crate::verified::{RequestIdentity, UnverifiedIdentity, VerifiedIdentity};

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
    /// The header's `typ` is present and not `JWT`.
    #[error("identity token typ must be \"JWT\", found {found:?}")]
    WrongTokenType {
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
    /// `iss` is not the gateway that owns the signing key.
    #[error("identity token issuer is {found:?}, but its key belongs to gateway {expected:?}")]
    IssuerMismatch {
        /// The key owner's component id.
        expected: String,
        /// The token's `iss`, clipped to 64 characters.
        found: String,
    },
    /// `aud` does not name our namespace.
    #[error("identity token audience is {found:?}, expected {expected:?}")]
    AudienceMismatch {
        /// Our namespace.
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
            Self::KeyExpired { .. } => "key_expired",
            Self::BadSignature => "bad_signature",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::AudienceMismatch { .. } => "audience_mismatch",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::SubjectMismatch { .. } => "subject_mismatch",
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
    /// Longest accepted `exp - iat`.
    pub max_ttl: Duration,
    /// Verified tokens remembered (0 turns the cache off).
    pub cache_capacity: usize,
}

impl Default for VerifierConfig {
    /// 60 s skew, time validation on, at most 1 h tokens, 10,000 cached.
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(60),
            enable_time_validation: true,
            max_ttl: Duration::from_secs(3600),
            cache_capacity: 10_000,
        }
    }
}

/// Verifies identity tokens against the gateway keys in a
/// [`TrustRegistry`]. Cloning is shallow; clones share the cache.
#[derive(Clone)]
pub struct IdentityVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    registry: TrustRegistry,
    skew_secs: u64,
    time_validation: bool,
    max_ttl_secs: u64,
    cache: TokenCache,
}

impl IdentityVerifier {
    /// A verifier for tokens addressed to the registry's namespace.
    pub fn new(registry: TrustRegistry, config: VerifierConfig) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                registry,
                skew_secs: config.clock_skew.as_secs(),
                time_validation: config.enable_time_validation,
                max_ttl_secs: config.max_ttl.as_secs(),
                cache: TokenCache::new(config.cache_capacity),
            }),
        }
    }

    /// The registry whose gateway keys are trusted.
    pub fn registry(&self) -> &TrustRegistry {
        &self.inner.registry
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// Verifies `token` as an identity token for `expected_user_id` (the
    /// request's `userId`) at `now` (unix seconds).
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
        let hash = cache.is_enabled().then(|| TokenCache::hash(token));
        if let Some(hash) = &hash
            && let Some(cached) = cache.get(hash)
        {
            return self.recheck(hash, cached, expected_user_id, now);
        }
        let verified = self.verify_uncached(token, now)?;
        let identity = verified.identity.clone();
        // Cached before the subject check: the token is genuine whoever it
        // is presented for.
        if let Some(hash) = hash {
            cache.insert(hash, verified);
        }
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

    /// A cache hit: the signature and claims were checked when the token was
    /// first seen; what can have changed since is the time, the key's trust
    /// and who the token is presented for.
    fn recheck(
        &self,
        hash: &TokenHash,
        cached: CachedToken,
        expected_user_id: &str,
        now: u64,
    ) -> Result<VerifiedIdentity, VerifyError> {
        if self.inner.time_validation
            && now > cached.expires_at.saturating_add(self.inner.skew_secs)
        {
            self.inner.cache.remove(hash);
            return Err(VerifyError::Expired {
                expired_at: cached.expires_at,
                now,
            });
        }
        let issuer = cached.identity.issuer().unwrap_or_default();
        let still_trusted = self.gateway_key(&cached.kid, now).and_then(|key| {
            if key.component_id() == issuer {
                Ok(key)
            } else {
                Err(VerifyError::UnknownKey {
                    kid: clip(&cached.kid),
                })
            }
        });
        if let Err(e) = still_trusted {
            self.inner.cache.remove(hash);
            return Err(e);
        }
        check_subject(&cached.identity, expected_user_id)?;
        Ok(cached.identity)
    }

    /// Full verification, up to but not including the subject check.
    fn verify_uncached(&self, token: &str, now: u64) -> Result<CachedToken, VerifyError> {
        let compact = jws::parse(token).map_err(|m| VerifyError::Malformed(m.0))?;
        let header = &compact.header;
        if header.alg != ES256 {
            return Err(VerifyError::AlgorithmNotAllowed {
                found: clip(&header.alg),
            });
        }
        if let Some(typ) = header
            .typ
            .as_deref()
            .filter(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(VerifyError::WrongTokenType { found: clip(typ) });
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
        let key = self.gateway_key(kid, now)?;
        if !key
            .public_key()
            .verifies(compact.signing_input.as_bytes(), compact.signature_b64)
        {
            return Err(VerifyError::BadSignature);
        }

        // Signed by a gateway we trust: the claims are that gateway's words.
        let claims: IncomingClaims = jws::decode_json(compact.payload_b64, Segment::Claims)
            .map_err(|m| VerifyError::Malformed(m.0))?;
        if claims.iss != key.component_id() {
            return Err(VerifyError::IssuerMismatch {
                expected: key.component_id().to_owned(),
                found: clip(&claims.iss),
            });
        }
        let namespace = self.inner.registry.namespace();
        if !claims.aud.contains(namespace) {
            return Err(VerifyError::AudienceMismatch {
                expected: namespace.to_owned(),
                found: claims.aud.describe(),
            });
        }
        if claims.sub.is_empty() {
            return Err(VerifyError::Malformed("sub is empty"));
        }
        if claims.exp <= claims.iat {
            return Err(VerifyError::Malformed("exp is not after iat"));
        }
        let lifetime_secs = claims.exp - claims.iat;
        if lifetime_secs > self.inner.max_ttl_secs {
            return Err(VerifyError::LifetimeTooLong {
                lifetime_secs,
                max_secs: self.inner.max_ttl_secs,
            });
        }
        if self.inner.time_validation {
            let skew = self.inner.skew_secs;
            if now > claims.exp.saturating_add(skew) {
                return Err(VerifyError::Expired {
                    expired_at: claims.exp,
                    now,
                });
            }
            if let Some(nbf) = claims.nbf.filter(|nbf| *nbf > now.saturating_add(skew)) {
                return Err(VerifyError::NotYetValid {
                    not_before: nbf,
                    now,
                });
            }
            if claims.iat > now.saturating_add(skew) {
                return Err(VerifyError::IssuedInFuture {
                    issued_at: claims.iat,
                    now,
                });
            }
        }
        Ok(CachedToken {
            identity: VerifiedIdentity::gateway_signed(
                claims.sub,
                claims.email,
                claims.name,
                claims.iss,
                claims.jti,
                claims.exp,
            ),
            kid: kid.to_owned(),
            expires_at: claims.exp,
        })
    }

    fn gateway_key(&self, kid: &str, now: u64) -> Result<TrustedKey, VerifyError> {
        let key = self.inner.registry.gateway_key(kid).map_err(|e| match e {
            KeyLookupError::Unknown => VerifyError::UnknownKey { kid: clip(kid) },
            KeyLookupError::NotAGateway { component } => VerifyError::NotAGateway {
                kid: kid.to_owned(),
                component,
            },
        })?;
        debug_assert_eq!(key.kind(), ComponentKind::Gateway);
        if !key.is_live(now, self.inner.skew_secs) {
            return Err(VerifyError::KeyExpired {
                kid: kid.to_owned(),
                component: format!("{}/{}", key.kind(), key.component_id()),
                expired_at: key.expires_at(),
            });
        }
        Ok(key)
    }
}

impl fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("namespace", &self.inner.registry.namespace())
            .field("skew_secs", &self.inner.skew_secs)
            .field("time_validation", &self.inner.time_validation)
            .field("max_ttl_secs", &self.inner.max_ttl_secs)
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
