//! Trust cards: how a component tells the mesh which public key is its own.
//!
//! A card is a compact JWS (ES256, `typ: trust-card+jwt`) signed by the key
//! it carries, published retained on `{ns}/a2a/v1/trust/{type}/{id}`. The
//! self-signature proves the publisher holds the private key; the broker ACL
//! proves the publisher is `{id}` (only `{id}` may publish on its topic). So
//! a receiver checks both halves: the signature, and that the claims name
//! the same `{type}/{id}` and namespace as the topic it came from.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jwk::{EcPublicJwk, JwkError, PublicKey};
use crate::jws::{self, Rejected, clip};
use crate::key::{SignError, SigningKey};

/// Media type of a trust card, in its JWS header `typ`.
pub const TRUST_CARD_TYP: &str = "trust-card+jwt";

const SECONDS_PER_DAY: u64 = 86_400;

/// What kind of component a card (and its key) belongs to. Only gateways
/// may sign user identity tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A gateway: authenticates users and signs their identity tokens.
    Gateway,
    /// An agent: verifies identity tokens, never signs them.
    Agent,
}

impl ComponentKind {
    /// The lowercase name used in topics and claims: `gateway` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Agent => "agent",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic segment that is neither `gateway` nor `agent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected component type \"gateway\" or \"agent\", found {0:?}")]
pub struct UnknownComponentKind(String);

impl FromStr for ComponentKind {
    type Err = UnknownComponentKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gateway" => Ok(Self::Gateway),
            "agent" => Ok(Self::Agent),
            other => Err(UnknownComponentKind(clip(other))),
        }
    }
}

/// Why a trust card was not accepted. Each message says what was expected
/// and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// Not a compact JWS with JSON header and claims of the card shape.
    #[error("trust card is malformed: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not ES256.
    #[error("trust card algorithm must be \"ES256\", found {found:?}")]
    AlgorithmNotAllowed {
        /// The `alg` found, clipped to 64 characters.
        found: String,
    },
    /// The header's `typ` is not `trust-card+jwt`.
    #[error("trust card typ must be \"trust-card+jwt\", found {found:?}")]
    WrongType {
        /// The `typ` found (or `none`), clipped to 64 characters.
        found: String,
    },
    /// The header or the embedded JWK carries no `kid`.
    #[error("trust card has no kid in its {location}")]
    MissingKid {
        /// `"header"` or `"jwk"`.
        location: &'static str,
    },
    /// The embedded key is not an acceptable P-256 key.
    #[error("trust card key is not acceptable: {0}")]
    InvalidKey(#[from] JwkError),
    /// The header `kid` is not the thumbprint of the embedded key.
    #[error("trust card header kid {found:?} is not the embedded key's thumbprint {thumbprint:?}")]
    KidMismatch {
        /// The header `kid`, clipped to 64 characters.
        found: String,
        /// The thumbprint of the embedded key.
        thumbprint: String,
    },
    /// The signature does not verify with the embedded key.
    #[error("trust card signature does not verify with the key it carries")]
    BadSignature,
    /// The card is for another kind of component than its topic says.
    #[error("trust card is for a {found}, but its topic is for a {expected}")]
    KindMismatch {
        /// The kind the topic names.
        expected: ComponentKind,
        /// The kind the card claims.
        found: ComponentKind,
    },
    /// The card is for another component id than its topic says.
    #[error("trust card is for component {found:?}, but its topic is for {expected:?}")]
    IdMismatch {
        /// The id the topic names.
        expected: String,
        /// The id the card claims, clipped to 64 characters.
        found: String,
    },
    /// The card is for another namespace.
    #[error("trust card is for namespace {found:?}, expected {expected:?}")]
    NamespaceMismatch {
        /// Our namespace.
        expected: String,
        /// The card's namespace, clipped to 64 characters.
        found: String,
    },
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error("trust card expired at {expired_at} (unix seconds), now is {now}")]
    Expired {
        /// The card's `exp`.
        expired_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// `iat` is in the future (beyond the allowed clock skew).
    #[error("trust card is issued at {issued_at} (unix seconds), in the future of now {now}")]
    IssuedInFuture {
        /// The card's `iat`.
        issued_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The key is already the key of another component.
    #[error(
        "trust card key {kid:?} already belongs to {owner}; one key cannot serve two components"
    )]
    KeyInUse {
        /// The key id.
        kid: String,
        /// The component that has it, as `{type}/{id}`.
        owner: String,
    },
}

impl From<Rejected> for CardError {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Malformed(reason) => Self::Malformed(reason),
            Rejected::AlgorithmNotAllowed(found) => Self::AlgorithmNotAllowed { found },
            Rejected::BadSignature => Self::BadSignature,
        }
    }
}

/// The claims of a trust card, as they travel.
#[derive(Debug, Serialize, Deserialize)]
struct CardClaims {
    component_type: ComponentKind,
    component_id: String,
    namespace: String,
    jwk: EcPublicJwk,
    iat: u64,
    exp: u64,
}

/// A signed trust card, ready to publish.
#[derive(Clone, Debug)]
pub struct TrustCard {
    jws: String,
    expires_at: u64,
}

impl TrustCard {
    /// Signs the card of component `kind/component_id` in `namespace` with
    /// `key`, valid from `now` for `expiration_days` days.
    pub fn sign(
        key: &SigningKey,
        kind: ComponentKind,
        component_id: &str,
        namespace: &str,
        expiration_days: u32,
        now: u64,
    ) -> Result<Self, SignError> {
        if component_id.is_empty() {
            return Err(SignError::InvalidInput("component id is empty"));
        }
        if namespace.is_empty() {
            return Err(SignError::InvalidInput("namespace is empty"));
        }
        if expiration_days == 0 {
            return Err(SignError::InvalidInput("card expiration is zero days"));
        }
        let exp = now
            .checked_add(u64::from(expiration_days) * SECONDS_PER_DAY)
            .ok_or(SignError::InvalidInput("card expiration overflows"))?;
        let claims = CardClaims {
            component_type: kind,
            component_id: component_id.to_owned(),
            namespace: namespace.to_owned(),
            jwk: key.public_jwk(),
            iat: now,
            exp,
        };
        let header = jws::new_header(TRUST_CARD_TYP, key.kid());
        Ok(Self {
            jws: key.sign(&header, &claims)?,
            expires_at: exp,
        })
    }

    /// The compact JWS: the payload to publish.
    pub fn as_str(&self) -> &str {
        &self.jws
    }

    /// The compact JWS, owned.
    pub fn into_string(self) -> String {
        self.jws
    }

    /// The card's `exp` (unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// A card that passed [`verify_card`]: the key it carries is the key of the
/// component it names. Only this module makes one.
#[derive(Clone, Debug)]
pub struct VerifiedCard {
    kind: ComponentKind,
    component_id: String,
    namespace: String,
    key: PublicKey,
    issued_at: u64,
    expires_at: u64,
}

impl VerifiedCard {
    /// The component's kind.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }
    /// The component's id (its broker username).
    pub fn component_id(&self) -> &str {
        &self.component_id
    }
    /// The namespace the card is for.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The component's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
    /// The card's `iat` (unix seconds).
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
    /// The card's `exp` (unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Checks a card received on the topic of `expected_kind/expected_id`.
///
/// Accepted only if: the header says ES256 and `trust-card+jwt`; the header
/// `kid` and the JWK's `kid` both equal the thumbprint of the embedded key;
/// the signature verifies with that key; the claims name the expected kind,
/// id and namespace; and at `now` (± `skew`) the card is issued and
/// not expired.
pub fn verify_card(
    jws: &str,
    expected_kind: ComponentKind,
    expected_id: &str,
    expected_namespace: &str,
    now: u64,
    skew: Duration,
) -> Result<VerifiedCard, CardError> {
    let skew_secs = skew.as_secs();
    let header = jws::header(jws)?;
    if header.typ.as_deref() != Some(TRUST_CARD_TYP) {
        return Err(CardError::WrongType {
            found: header
                .typ
                .as_deref()
                .map_or_else(|| "(no typ)".to_owned(), clip),
        });
    }
    let header_kid = header
        .kid
        .as_deref()
        .ok_or(CardError::MissingKid { location: "header" })?;
    // Self-signed: the key that checks the signature is in the claims.
    let unverified: CardClaims = jws::unverified_claims(jws)?;
    if unverified.jwk.kid.is_none() {
        return Err(CardError::MissingKid { location: "jwk" });
    }
    // Checks the JWK's own kid against the thumbprint.
    let key = PublicKey::from_jwk(&unverified.jwk)?;
    if header_kid != key.kid() {
        return Err(CardError::KidMismatch {
            found: clip(header_kid),
            thumbprint: key.kid().to_owned(),
        });
    }
    let claims: CardClaims = jws::verify(jws, &key)?;
    // Signed by the key it carries: from here on the claims are the
    // publisher's own words, to be compared with where they arrived.
    if claims.component_type != expected_kind {
        return Err(CardError::KindMismatch {
            expected: expected_kind,
            found: claims.component_type,
        });
    }
    if claims.component_id != expected_id {
        return Err(CardError::IdMismatch {
            expected: expected_id.to_owned(),
            found: clip(&claims.component_id),
        });
    }
    if claims.namespace != expected_namespace {
        return Err(CardError::NamespaceMismatch {
            expected: expected_namespace.to_owned(),
            found: clip(&claims.namespace),
        });
    }
    if claims.exp <= claims.iat {
        return Err(CardError::Malformed("exp is not after iat"));
    }
    if now > claims.exp.saturating_add(skew_secs) {
        return Err(CardError::Expired {
            expired_at: claims.exp,
            now,
        });
    }
    if claims.iat > now.saturating_add(skew_secs) {
        return Err(CardError::IssuedInFuture {
            issued_at: claims.iat,
            now,
        });
    }
    Ok(VerifiedCard {
        kind: claims.component_type,
        component_id: claims.component_id,
        namespace: claims.namespace,
        key,
        issued_at: claims.iat,
        expires_at: claims.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const NS: &str = "a2a/test";
    const NOW: u64 = 1_700_000_000;
    const SKEW_SECS: u64 = 60;
    const SKEW: Duration = Duration::from_secs(SKEW_SECS);

    fn card(key: &SigningKey, kind: ComponentKind, id: &str) -> TrustCard {
        TrustCard::sign(key, kind, id, NS, 30, NOW).expect("signs")
    }

    /// Re-encodes the claims of `jws` after `edit`, keeping header and signature.
    fn with_claims(jws: &str, edit: impl FnOnce(&mut Value)) -> String {
        let parts: Vec<&str> = jws.split('.').collect();
        let mut claims = jws::segment_json(jws, 1);
        edit(&mut claims);
        let payload = jws::b64(serde_json::to_vec(&claims).expect("json"));
        format!("{}.{}.{}", parts[0], payload, parts[2])
    }

    #[test]
    fn card_round_trip() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Gateway, "gw-1");
        let verified = verify_card(card.as_str(), ComponentKind::Gateway, "gw-1", NS, NOW, SKEW)
            .expect("verifies");
        assert_eq!(verified.kind(), ComponentKind::Gateway);
        assert_eq!(verified.component_id(), "gw-1");
        assert_eq!(verified.namespace(), NS);
        assert_eq!(verified.key().kid(), key.kid());
        assert_eq!(verified.expires_at(), NOW + 30 * 86_400);
        assert_eq!(card.expires_at(), verified.expires_at());
    }

    #[test]
    fn card_for_another_id_is_refused() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Agent, "agent-a");
        let err = verify_card(
            card.as_str(),
            ComponentKind::Agent,
            "agent-b",
            NS,
            NOW,
            SKEW,
        )
        .expect_err("other id");
        assert_eq!(
            err,
            CardError::IdMismatch {
                expected: "agent-b".into(),
                found: "agent-a".into()
            }
        );
        assert!(err.to_string().contains("agent-a") && err.to_string().contains("agent-b"));
    }

    #[test]
    fn card_for_another_kind_is_refused() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Agent, "x");
        let err = verify_card(card.as_str(), ComponentKind::Gateway, "x", NS, NOW, SKEW)
            .expect_err("agent card on a gateway topic");
        assert_eq!(
            err,
            CardError::KindMismatch {
                expected: ComponentKind::Gateway,
                found: ComponentKind::Agent
            }
        );
    }

    #[test]
    fn card_for_another_namespace_is_refused() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Gateway, "gw");
        let err = verify_card(
            card.as_str(),
            ComponentKind::Gateway,
            "gw",
            "a2a/prod",
            NOW,
            SKEW,
        )
        .expect_err("other namespace");
        assert!(matches!(err, CardError::NamespaceMismatch { .. }), "{err}");
    }

    #[test]
    fn card_with_tampered_claims_is_refused() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Agent, "agent-a");
        let forged = with_claims(card.as_str(), |c| {
            c["component_type"] = "gateway".into();
        });
        assert_eq!(
            verify_card(&forged, ComponentKind::Gateway, "agent-a", NS, NOW, SKEW).err(),
            Some(CardError::BadSignature)
        );
    }

    #[test]
    fn card_carrying_someone_elses_key_is_refused() {
        // A card signed by key A that carries public key B (e.g. the
        // gateway's, copied from its card): the kid no longer matches, and
        // with the kid fixed up the signature does not verify with B.
        let a = SigningKey::generate().expect("key");
        let b = SigningKey::generate().expect("key");
        let card = card(&a, ComponentKind::Gateway, "gw");
        let swapped = with_claims(card.as_str(), |c| {
            c["jwk"] = serde_json::to_value(b.public_jwk()).expect("json");
        });
        assert!(matches!(
            verify_card(&swapped, ComponentKind::Gateway, "gw", NS, NOW, SKEW),
            Err(CardError::KidMismatch { .. })
        ));
        let header =
            jws::b64(serde_json::to_vec(&jws::new_header(TRUST_CARD_TYP, b.kid())).expect("json"));
        let rest = swapped.split_once('.').expect("dots").1;
        let forged = format!("{header}.{rest}");
        assert_eq!(
            verify_card(&forged, ComponentKind::Gateway, "gw", NS, NOW, SKEW).err(),
            Some(CardError::BadSignature)
        );
    }

    #[test]
    fn expired_card_is_refused() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Gateway, "gw");
        let exp = card.expires_at();
        assert!(
            verify_card(
                card.as_str(),
                ComponentKind::Gateway,
                "gw",
                NS,
                exp + SKEW_SECS,
                SKEW
            )
            .is_ok()
        );
        assert_eq!(
            verify_card(
                card.as_str(),
                ComponentKind::Gateway,
                "gw",
                NS,
                exp + SKEW_SECS + 1,
                SKEW
            )
            .err(),
            Some(CardError::Expired {
                expired_at: exp,
                now: exp + SKEW_SECS + 1
            })
        );
    }

    #[test]
    fn card_from_the_future_is_refused() {
        let key = SigningKey::generate().expect("key");
        let card = card(&key, ComponentKind::Gateway, "gw");
        assert!(matches!(
            verify_card(
                card.as_str(),
                ComponentKind::Gateway,
                "gw",
                NS,
                NOW - SKEW_SECS - 1,
                SKEW
            ),
            Err(CardError::IssuedInFuture { .. })
        ));
    }

    #[test]
    fn identity_token_is_not_a_card() {
        // Same key, same signature scheme, but typ JWT: refused by type
        // before its claims are even looked at.
        let key = SigningKey::generate().expect("key");
        let header = jws::new_header("JWT", key.kid());
        let token = key.sign(&header, &serde_json::json!({})).expect("signs");
        assert_eq!(
            verify_card(&token, ComponentKind::Gateway, "gw", NS, NOW, SKEW).err(),
            Some(CardError::WrongType {
                found: "JWT".into()
            })
        );
    }

    #[test]
    fn component_kind_parses_its_topic_segment() {
        assert_eq!(
            "gateway".parse::<ComponentKind>(),
            Ok(ComponentKind::Gateway)
        );
        assert_eq!("agent".parse::<ComponentKind>(), Ok(ComponentKind::Agent));
        assert!("Agent".parse::<ComponentKind>().is_err());
    }
}
