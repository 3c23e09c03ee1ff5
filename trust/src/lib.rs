//! # amesh-trust
//!
//! Who is a request for, and can we prove it? A gateway authenticates a
//! user and signs an ES256 identity token; every agent checks that token
//! against the gateway's *trust card* before anything touches the user's
//! stored credentials. This crate is that machinery, and nothing else: it
//! knows no broker and no database.
//!
//! - [`SigningKey`]: a component's P-256 key, kept in a 0600 PEM file.
//! - [`TrustCard`] / [`verify_card`]: the self-signed card that publishes a
//!   component's public key; [`TrustRegistry`] holds the keys of the cards
//!   accepted so far, by `kid`, with rotation.
//! - [`IdentitySigner`] (gateway) and [`IdentityVerifier`] (agent): the
//!   identity token, addressed to one agent ([`agent_audience`]), verified
//!   once and cached until it expires.
//! - [`DelegationSigner`]: an agent passing a user's identity on to a peer,
//!   as a chain of hops each signed by the agent that delegates (RFC 8693
//!   `act`), which the peer's verifier checks hop by hop.
//! - [`MessageSigner`] / [`verify_message`]: who published a reply or card.
//! - [`VerifiedIdentity`]: what credential reads require. Only the verifier
//!   makes one — or [`VerifiedIdentity::trust_disabled`], whose
//!   [`TrustDisabled`] argument records that the operator turned trust off.
//!
//! Times are unix seconds passed in as `now` ([`now_unix`] reads the clock).
//!
//! ```
//! use std::time::Duration;
//! use amesh_trust::*;
//!
//! let ns = "a2a/prod";
//! let now = now_unix();
//! // Gateway: one key for its card and its tokens.
//! let key = SigningKey::generate()?;
//! let card = TrustCard::sign(&key, ComponentKind::Gateway, "gw-1", ns, 30, now)?;
//! let signer = IdentitySigner::new("gw-1", ns, key, Duration::from_secs(300), Duration::from_secs(3600))?;
//! let token = signer.sign(&UserClaims::new("alice"), "weather", None)?;
//!
//! // Agent `weather`: the card arrives on `{ns}/a2a/v1/trust/gateway/gw-1`.
//! let registry = TrustRegistry::new(ns, Duration::from_secs(60));
//! registry.accept_card(ComponentKind::Gateway, "gw-1", card.as_str(), now)?;
//! let verifier = IdentityVerifier::new(registry.clone(), "weather", VerifierConfig::default());
//! let alice = verifier.verify(&token, "alice", now)?;
//! assert_eq!(alice.user_id(), "alice");
//! assert_eq!(alice.issuer(), Some("gw-1"));
//!
//! // The token is for `weather` only: another agent refuses it.
//! let other = IdentityVerifier::new(registry, "billing", VerifierConfig::default());
//! assert!(matches!(other.verify(&token, "alice", now), Err(VerifyError::AudienceMismatch { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod card;
mod delegation;
mod identity;
mod jwk;
mod jws;
mod key;
mod message;
mod registry;
mod scope;
mod time;
mod verified;
mod verifier;

pub use card::{
    CardError, ComponentKind, TRUST_CARD_TYP, TrustCard, UnknownComponentKind, VerifiedCard,
    verify_card,
};
pub use delegation::{CHAIN_SEPARATOR, DEFAULT_DELEGATION_TTL, DELEGATION_TYP, DelegationSigner};
pub use identity::{IdentitySigner, UserClaims, agent_audience};
pub use jwk::{EcPublicJwk, JwkError, PublicKey};
pub use key::{KeyError, SignError, SigningKey};
pub use message::{
    MESSAGE_SIGNATURE_TYP, MessageError, MessageOrigin, MessageSigner, verify_message,
};
pub use registry::{
    CardUpdate, KeyLookupError, MAX_KEYS_PER_COMPONENT, NameError, TrustRegistry, TrustedKey,
};
pub use scope::TokenScope;
pub use time::{now_unix, now_unix_millis};
pub use verified::{
    Assurance, RequestIdentity, TrustDisabled, UnverifiedIdentity, VerifiedIdentity,
};
pub use verifier::{IdentityVerifier, VerifierConfig, VerifyError};

/// The `kid` in the header of `token`'s first JWS (a delegation chain's
/// gateway token), nothing verified: lets a component wait for the trust
/// card of a signer it does not know yet before judging the token.
pub fn token_kid(token: &str) -> Option<String> {
    let first = token.split(CHAIN_SEPARATOR).next()?;
    jws::header(first).ok()?.kid
}
