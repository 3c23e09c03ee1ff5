//! Signed broker messages: who published this reply or card?
//!
//! MQTT tells a subscriber nothing about who published a message, and the
//! broker ACL cannot narrow who may answer a gateway (an agent answers
//! whichever gateway asked, so every agent may publish on every gateway's
//! response topics). So a component signs what it publishes where others
//! must know it is the sender: the signature travels beside the payload, in
//! the `amesh-signature` user property, as a compact JWS whose claims bind
//! it to the topic and to the SHA-256 of the payload (a detached signature
//! over the payload's hash):
//!
//! header `{alg: ES256, typ: "amesh-msg+jwt", kid}`, claims
//! `{iss: broker username, topic, sha256: base64url(SHA-256(payload)), iat}`.
//!
//! [`verify_message`] says which component signed a message, after checking
//! the signature with the key of a live trust card, that `iss` is that key's
//! owner, and that the topic and payload are the ones signed. Deciding
//! whether that component is the one that should have sent it is the
//! receiver's business (a gateway knows which agent it asked).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::card::ComponentKind;
use crate::jws::{self, Rejected, clip};
use crate::key::{SignError, SigningKey};
use crate::registry::TrustRegistry;

/// Media type of a message signature, in its JWS header `typ`.
pub const MESSAGE_SIGNATURE_TYP: &str = "amesh-msg+jwt";

/// Why a message signature was not accepted. Messages say what was expected
/// and what was found, and never quote the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message carries no signature.
    #[error("message is not signed")]
    Unsigned,
    /// Not a compact JWS with a JSON header and the required claims.
    #[error("message signature is malformed: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not exactly ES256.
    #[error("message signature algorithm must be \"ES256\", found {found:?}")]
    AlgorithmNotAllowed {
        /// The `alg` found, clipped to 64 characters.
        found: String,
    },
    /// The header's `typ` is not `amesh-msg+jwt`.
    #[error("message signature typ must be \"amesh-msg+jwt\", found {found:?}")]
    WrongType {
        /// The `typ` found (or `(no typ)`), clipped.
        found: String,
    },
    /// The header has no `kid`.
    #[error("message signature has no kid")]
    MissingKid,
    /// No trust card we hold carries the key.
    #[error("message is signed with key {kid:?}, which no trust card we hold carries")]
    UnknownKey {
        /// The `kid`, clipped.
        kid: String,
    },
    /// The key's trust card has expired.
    #[error(
        "message is signed with key {kid:?} of {component}, whose trust card expired at {expired_at}"
    )]
    KeyExpired {
        /// The `kid`.
        kid: String,
        /// The owner as `{type}/{id}`.
        component: String,
        /// The card's `exp`.
        expired_at: u64,
    },
    /// The signature does not verify with the key.
    #[error("message signature does not verify with the key its kid names")]
    BadSignature,
    /// `iss` is not the owner of the key.
    #[error("message signature issuer is {found:?}, but its key belongs to {expected:?}")]
    IssuerMismatch {
        /// The key's owner.
        expected: String,
        /// The claimed `iss`, clipped.
        found: String,
    },
    /// The signature was made for another topic.
    #[error("message signature is for topic {found:?}, but the message arrived on {expected:?}")]
    TopicMismatch {
        /// The topic the message arrived on.
        expected: String,
        /// The signed topic, clipped.
        found: String,
    },
    /// The payload is not the one signed.
    #[error("message payload does not match the hash its signature covers")]
    PayloadMismatch,
    /// `iat` is in the future (beyond the allowed clock skew).
    #[error(
        "message signature is issued at {issued_at} (unix seconds), in the future of now {now}"
    )]
    IssuedInFuture {
        /// The signature's `iat`.
        issued_at: u64,
        /// The time of the check.
        now: u64,
    },
}

impl MessageError {
    /// A short stable name for the error, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::Malformed(_) => "malformed",
            Self::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            Self::WrongType { .. } => "wrong_type",
            Self::MissingKid => "missing_kid",
            Self::UnknownKey { .. } => "unknown_key",
            Self::KeyExpired { .. } => "key_expired",
            Self::BadSignature => "bad_signature",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::TopicMismatch { .. } => "topic_mismatch",
            Self::PayloadMismatch => "payload_mismatch",
            Self::IssuedInFuture { .. } => "issued_in_future",
        }
    }
}

impl From<Rejected> for MessageError {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Malformed(reason) => Self::Malformed(reason),
            Rejected::AlgorithmNotAllowed(found) => Self::AlgorithmNotAllowed { found },
            Rejected::BadSignature => Self::BadSignature,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MessageClaims {
    iss: String,
    topic: String,
    sha256: String,
    iat: u64,
}

/// Signs the messages one component publishes. Held by the component (its
/// trust key is the one its trust card carries); cloning is shallow.
#[derive(Clone)]
pub struct MessageSigner {
    key: SigningKey,
    component_id: String,
    /// `{"alg":"ES256","typ":"amesh-msg+jwt","kid":...}`.
    header: jsonwebtoken::Header,
}

impl MessageSigner {
    /// A signer for component `component_id` (its broker username) with its
    /// trust key.
    pub fn new(key: SigningKey, component_id: impl Into<String>) -> Result<Self, SignError> {
        let component_id = component_id.into();
        if component_id.is_empty() {
            return Err(SignError::InvalidInput("component id is empty"));
        }
        Ok(Self {
            header: jws::new_header(MESSAGE_SIGNATURE_TYP, key.kid()),
            key,
            component_id,
        })
    }

    /// The signature of `payload` published on `topic` at `now`: the value
    /// of the `amesh-signature` user property.
    pub fn sign(&self, topic: &str, payload: &[u8], now: u64) -> Result<String, SignError> {
        let claims = MessageClaims {
            iss: self.component_id.clone(),
            topic: topic.to_owned(),
            sha256: payload_hash(payload),
            iat: now,
        };
        self.key.sign(&self.header, &claims)
    }
}

impl fmt::Debug for MessageSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSigner")
            .field("component_id", &self.component_id)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

/// The component that signed a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageOrigin {
    /// Its kind.
    pub kind: ComponentKind,
    /// Its id (broker username).
    pub component_id: String,
}

/// Checks that `signature` signs `payload` on `topic` with the key of a
/// live trust card in `registry`, and says whose.
pub fn verify_message(
    registry: &TrustRegistry,
    signature: Option<&str>,
    topic: &str,
    payload: &[u8],
    now: u64,
) -> Result<MessageOrigin, MessageError> {
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(MessageError::Unsigned)?;
    let header = jws::header(signature)?;
    if header.typ.as_deref() != Some(MESSAGE_SIGNATURE_TYP) {
        return Err(MessageError::WrongType {
            found: header
                .typ
                .as_deref()
                .map_or_else(|| "(no typ)".to_owned(), clip),
        });
    }
    let kid = header.kid.as_deref().ok_or(MessageError::MissingKid)?;
    let key = registry
        .key(kid)
        .ok_or_else(|| MessageError::UnknownKey { kid: clip(kid) })?;
    if !key.is_live(now, registry.skew_secs()) {
        return Err(MessageError::KeyExpired {
            kid: kid.to_owned(),
            component: format!("{}/{}", key.kind(), key.component_id()),
            expired_at: key.expires_at(),
        });
    }
    let claims: MessageClaims = jws::verify(signature, key.public_key())?;
    if claims.iss != key.component_id() {
        return Err(MessageError::IssuerMismatch {
            expected: key.component_id().to_owned(),
            found: clip(&claims.iss),
        });
    }
    if claims.topic != topic {
        return Err(MessageError::TopicMismatch {
            expected: clip(topic),
            found: clip(&claims.topic),
        });
    }
    if claims.sha256 != payload_hash(payload) {
        return Err(MessageError::PayloadMismatch);
    }
    if claims.iat > now.saturating_add(registry.skew_secs()) {
        return Err(MessageError::IssuedInFuture {
            issued_at: claims.iat,
            now,
        });
    }
    Ok(MessageOrigin {
        kind: key.kind(),
        component_id: key.component_id().to_owned(),
    })
}

fn payload_hash(payload: &[u8]) -> String {
    jws::b64(Sha256::digest(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::TrustCard;
    use std::time::Duration;

    const NS: &str = "a2a/test";
    const NOW: u64 = 1_700_000_000;
    const TOPIC: &str = "a2a/test/a2a/v1/gateway/response/gw/task-1";

    fn registry_with(key: &SigningKey, id: &str) -> TrustRegistry {
        let registry = TrustRegistry::new(NS, Duration::from_secs(60));
        let card = TrustCard::sign(key, ComponentKind::Agent, id, NS, 1, NOW).expect("card");
        registry
            .accept_card(ComponentKind::Agent, id, card.as_str(), NOW)
            .expect("accepted");
        registry
    }

    #[test]
    fn signed_message_names_its_sender() {
        let key = SigningKey::generate().expect("key");
        let registry = registry_with(&key, "agent-a");
        let signer = MessageSigner::new(key, "agent-a").expect("signer");
        let sig = signer.sign(TOPIC, b"{\"ok\":1}", NOW).expect("signs");
        let origin =
            verify_message(&registry, Some(&sig), TOPIC, b"{\"ok\":1}", NOW).expect("verifies");
        assert_eq!(
            origin,
            MessageOrigin {
                kind: ComponentKind::Agent,
                component_id: "agent-a".into()
            }
        );
    }

    #[test]
    fn signature_does_not_carry_over_to_another_payload_or_topic() {
        let key = SigningKey::generate().expect("key");
        let registry = registry_with(&key, "agent-a");
        let signer = MessageSigner::new(key, "agent-a").expect("signer");
        let sig = signer.sign(TOPIC, b"one", NOW).expect("signs");
        assert_eq!(
            verify_message(&registry, Some(&sig), TOPIC, b"two", NOW),
            Err(MessageError::PayloadMismatch)
        );
        assert!(matches!(
            verify_message(&registry, Some(&sig), "a2a/test/other", b"one", NOW),
            Err(MessageError::TopicMismatch { .. })
        ));
        assert_eq!(
            verify_message(&registry, None, TOPIC, b"one", NOW),
            Err(MessageError::Unsigned)
        );
    }

    #[test]
    fn signer_claiming_another_account_is_refused() {
        let key = SigningKey::generate().expect("key");
        let registry = registry_with(&key, "agent-a");
        // Signs with its own (trusted) key, but writes another name in iss.
        let liar = MessageSigner::new(key, "agent-b").expect("signer");
        let sig = liar.sign(TOPIC, b"x", NOW).expect("signs");
        assert!(matches!(
            verify_message(&registry, Some(&sig), TOPIC, b"x", NOW),
            Err(MessageError::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn unknown_key_is_refused() {
        let known = SigningKey::generate().expect("key");
        let registry = registry_with(&known, "agent-a");
        let stranger =
            MessageSigner::new(SigningKey::generate().expect("key"), "agent-a").expect("signer");
        let sig = stranger.sign(TOPIC, b"x", NOW).expect("signs");
        assert!(matches!(
            verify_message(&registry, Some(&sig), TOPIC, b"x", NOW),
            Err(MessageError::UnknownKey { .. })
        ));
    }
}
