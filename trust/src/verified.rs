//! Who a request is for, and how sure we are — in the type.
//!
//! Stored credentials are released only to a [`VerifiedIdentity`], and the
//! only ways to get one are the [`IdentityVerifier`](crate::IdentityVerifier)
//! (a gateway-signed token addressed to this agent and checked against a
//! live gateway card, possibly extended by a chain of delegations each
//! checked against the delegating agent's card) or
//! [`VerifiedIdentity::trust_disabled`], which needs a [`TrustDisabled`]
//! proof that names the operator's choice in the code that makes it. An
//! identity that failed verification is an [`UnverifiedIdentity`], a type
//! with no path to `VerifiedIdentity`. Nothing here derives `Deserialize`
//! or `Default`, and no field is public.

use std::fmt;
use std::sync::Arc;

use crate::scope::TokenScope;
use crate::verifier::VerifyError;

/// Proof that the operator switched the trust manager off.
///
/// Zero-sized; its only constructor is [`TrustDisabled::by_configuration`],
/// so every place that builds an identity without a verified token says so
/// in its source.
#[derive(Clone, Copy, Debug)]
pub struct TrustDisabled {
    _private: (),
}

impl TrustDisabled {
    /// The operator turned the trust manager off in the configuration:
    /// user ids are taken as claimed, without a signed token. Call this
    /// only where that configuration is read.
    pub fn by_configuration() -> Self {
        Self { _private: () }
    }
}

/// How an identity came to be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Assurance {
    /// A token signed by a gateway whose trust card we hold.
    GatewaySigned {
        /// The gateway's component id (the token's `iss`).
        issuer: String,
        /// The token's `jti`, for audit.
        jti: String,
        /// The token's `exp` (unix seconds).
        expires_at: u64,
    },
    /// A gateway-signed token passed on by agents, each hop signed by the
    /// agent that delegated (RFC 8693 `act` chain), verified hop by hop.
    Delegated {
        /// The gateway that vouched for the user.
        issuer: String,
        /// The `jti` of the last delegation, for audit.
        jti: String,
        /// When the chain stops being valid (unix seconds).
        expires_at: u64,
        /// The agents the request came through, first (the one the gateway
        /// asked) to last (the one that asked us).
        actors: Vec<String>,
    },
    /// Not verified: the trust manager is off ([`TrustDisabled`]).
    TrustDisabled,
}

/// A user identity the mesh may act for, including reading the user's
/// stored credentials. Cloning is shallow.
///
/// Made only by the verifier or with a [`TrustDisabled`] proof.
#[derive(Clone)]
pub struct VerifiedIdentity {
    inner: Arc<IdentityInner>,
}

struct IdentityInner {
    user_id: String,
    email: Option<String>,
    name: Option<String>,
    assurance: Assurance,
    /// The one request the token is good for, if it is scoped.
    scope: Option<TokenScope>,
    /// SHA-256 of the last token of what was verified: what a delegation
    /// from this identity must extend.
    token_sha256: Option<[u8; 32]>,
}

/// What the verifier learned from a token, to make a [`VerifiedIdentity`].
pub(crate) struct Verified {
    pub(crate) user_id: String,
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) assurance: Assurance,
    pub(crate) scope: Option<TokenScope>,
    pub(crate) token_sha256: [u8; 32],
}

impl VerifiedIdentity {
    /// An identity for `user_id`, unverified because the operator turned the
    /// trust manager off; its [`assurance`](Self::assurance) says so.
    pub fn trust_disabled(
        _proof: TrustDisabled,
        user_id: impl Into<String>,
        email: Option<String>,
        name: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(IdentityInner {
                user_id: user_id.into(),
                email,
                name,
                assurance: Assurance::TrustDisabled,
                scope: None,
                token_sha256: None,
            }),
        }
    }

    /// Made by the verifier from a checked token or chain.
    pub(crate) fn from_verified(v: Verified) -> Self {
        Self {
            inner: Arc::new(IdentityInner {
                user_id: v.user_id,
                email: v.email,
                name: v.name,
                assurance: v.assurance,
                scope: v.scope,
                token_sha256: Some(v.token_sha256),
            }),
        }
    }

    /// The user id (the token's `sub`).
    pub fn user_id(&self) -> &str {
        &self.inner.user_id
    }

    /// The user's email, if the gateway put one in the token.
    pub fn email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }

    /// The user's display name, if the gateway put one in the token.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The gateway that vouched for the user; `None` with trust disabled.
    pub fn issuer(&self) -> Option<&str> {
        match &self.inner.assurance {
            Assurance::GatewaySigned { issuer, .. } | Assurance::Delegated { issuer, .. } => {
                Some(issuer)
            }
            Assurance::TrustDisabled => None,
        }
    }

    /// How this identity came to be trusted.
    pub fn assurance(&self) -> &Assurance {
        &self.inner.assurance
    }

    /// The agents a delegated request came through, first to last; empty
    /// for a request straight from a gateway.
    pub fn actors(&self) -> &[String] {
        match &self.inner.assurance {
            Assurance::Delegated { actors, .. } => actors,
            _ => &[],
        }
    }

    /// When the token (or chain) this identity came from expires; `None`
    /// with trust disabled.
    pub fn expires_at(&self) -> Option<u64> {
        match &self.inner.assurance {
            Assurance::GatewaySigned { expires_at, .. }
            | Assurance::Delegated { expires_at, .. } => Some(*expires_at),
            Assurance::TrustDisabled => None,
        }
    }

    /// The one request the token is good for, if it is scoped.
    pub fn scope(&self) -> Option<&TokenScope> {
        self.inner.scope.as_ref()
    }

    /// Whether this identity may be used for a `method` request identified
    /// by `bound_value`: a scoped token only for its own request, any other
    /// token for anything.
    pub fn check_use(&self, method: &str, bound_value: Option<&str>) -> Result<(), VerifyError> {
        match &self.inner.scope {
            None => Ok(()),
            Some(scope) if scope.method() != method => Err(VerifyError::OutOfScope {
                scope_method: scope.method().to_owned(),
                method: method.to_owned(),
            }),
            Some(scope) if !scope.permits(method, bound_value) => Err(VerifyError::ScopeMismatch {
                method: method.to_owned(),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Like [`check_use`](Self::check_use), but the token must be scoped to
    /// this very request: for requests a gateway makes with an assertion of
    /// their own (the `oauth/callback` it forwards). An identity made with
    /// trust disabled has no token and passes.
    pub fn check_scoped_use(
        &self,
        method: &str,
        bound_value: Option<&str>,
    ) -> Result<(), VerifyError> {
        if self.inner.scope.is_none() && self.inner.assurance != Assurance::TrustDisabled {
            return Err(VerifyError::ScopeRequired {
                method: method.to_owned(),
            });
        }
        self.check_use(method, bound_value)
    }

    /// SHA-256 of the last token this identity was verified from.
    pub(crate) fn token_sha256(&self) -> Option<&[u8; 32]> {
        self.inner.token_sha256.as_ref()
    }
}

impl fmt::Debug for VerifiedIdentity {
    /// User id and assurance only: email and name are personal data that
    /// have no place in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedIdentity")
            .field("user_id", &self.inner.user_id)
            .field("assurance", &self.inner.assurance)
            .finish_non_exhaustive()
    }
}

/// A user id that was claimed but not proven, and why. Good for logging and
/// for work that needs no credentials; there is no way to turn it into a
/// [`VerifiedIdentity`].
#[derive(Clone, Debug)]
pub struct UnverifiedIdentity {
    claimed_user_id: String,
    reason: VerifyError,
}

impl UnverifiedIdentity {
    /// A claimed user id that could not be verified for `reason`.
    pub fn new(claimed_user_id: impl Into<String>, reason: VerifyError) -> Self {
        Self {
            claimed_user_id: claimed_user_id.into(),
            reason,
        }
    }

    /// The user id the request claimed (MQTT `userId`).
    pub fn claimed_user_id(&self) -> &str {
        &self.claimed_user_id
    }

    /// Why it is not verified.
    pub fn reason(&self) -> &VerifyError {
        &self.reason
    }
}

/// The identity a request arrived with, verified or not.
///
/// In `strict` mode the runtime refuses `Unverified`; in `permissive` mode it
/// runs the request but can only hand credentials to `Verified`.
#[derive(Clone, Debug)]
pub enum RequestIdentity {
    /// Proven.
    Verified(VerifiedIdentity),
    /// Claimed only.
    Unverified(UnverifiedIdentity),
}

impl RequestIdentity {
    /// The user id, proven or claimed: for logs and credential-free work.
    pub fn user_id(&self) -> &str {
        match self {
            Self::Verified(identity) => identity.user_id(),
            Self::Unverified(identity) => identity.claimed_user_id(),
        }
    }

    /// The verified identity, if there is one.
    pub fn verified(&self) -> Option<&VerifiedIdentity> {
        match self {
            Self::Verified(identity) => Some(identity),
            Self::Unverified(_) => None,
        }
    }

    /// Whether the identity is verified.
    pub fn is_verified(&self) -> bool {
        matches!(self, Self::Verified(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_disabled_identity_says_so() {
        let id = VerifiedIdentity::trust_disabled(
            TrustDisabled::by_configuration(),
            "alice",
            Some("alice@example.com".into()),
            None,
        );
        assert_eq!(id.user_id(), "alice");
        assert_eq!(id.email(), Some("alice@example.com"));
        assert_eq!(id.issuer(), None);
        assert_eq!(id.assurance(), &Assurance::TrustDisabled);
    }

    fn signed(scope: Option<TokenScope>) -> VerifiedIdentity {
        VerifiedIdentity::from_verified(Verified {
            user_id: "alice".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice Liddell".into()),
            assurance: Assurance::GatewaySigned {
                issuer: "gw-1".into(),
                jti: "jti-1".into(),
                expires_at: 42,
            },
            scope,
            token_sha256: [0; 32],
        })
    }

    #[test]
    fn scoped_identity_is_good_for_its_request_only() {
        let id = signed(Some(TokenScope::new("oauth/callback", "s1")));
        assert_eq!(id.check_use("oauth/callback", Some("s1")), Ok(()));
        assert_eq!(id.check_scoped_use("oauth/callback", Some("s1")), Ok(()));
        assert!(matches!(
            id.check_use("message/send", None),
            Err(VerifyError::OutOfScope { .. })
        ));
        assert!(matches!(
            id.check_use("oauth/callback", Some("s2")),
            Err(VerifyError::ScopeMismatch { .. })
        ));
        let general = signed(None);
        assert_eq!(general.check_use("message/send", None), Ok(()));
        assert!(matches!(
            general.check_scoped_use("oauth/callback", Some("s1")),
            Err(VerifyError::ScopeRequired { .. })
        ));
    }

    #[test]
    fn debug_of_identity_omits_personal_data() {
        let id = signed(None);
        let debug = format!("{id:?}");
        assert!(debug.contains("alice") && debug.contains("gw-1"), "{debug}");
        assert!(
            !debug.contains("example.com") && !debug.contains("Liddell"),
            "{debug}"
        );
    }

    #[test]
    fn request_identity_gives_the_user_id_either_way() {
        let unverified =
            RequestIdentity::Unverified(UnverifiedIdentity::new("bob", VerifyError::MissingToken));
        assert_eq!(unverified.user_id(), "bob");
        assert!(unverified.verified().is_none());
    }
}
