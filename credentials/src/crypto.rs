//! Encryption at rest: AES-256-GCM under keys derived from the agent secret.
//!
//! Why it looks like this:
//! - One HKDF-SHA256 key per *purpose* (credentials, flows, client
//!   registrations, conversations), with the agent id in `info`: two agents
//!   sharing a database — even, by mistake, a secret — derive different
//!   keys, and a blob of one purpose never opens as another.
//! - The AAD is the row's identity (agent, user, tool, ...) as the *caller*
//!   asks for it, length-prefixed so `("ab","c")` and `("a","bc")` differ. A
//!   sealed blob copied into another agent's, user's or tool's row does not
//!   open.
//! - A fresh random 96-bit nonce per write; a key is used for far fewer
//!   than the 2^32 messages where random nonces become a concern.
//! - The blob carries an 8-byte key id (derived, not the key), so "written
//!   under another agent secret" (operator rotated it: log once, users sign
//!   in again) is told apart from "altered or moved" (tampering: audit).
//!
//! Blob layout: `version (1) | key id (8) | nonce (12) | ciphertext | tag (16)`.

use aes_gcm::aead::{Aead, Generate as _, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::CredentialError;
use crate::secret::AgentSecret;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const HKDF_SALT: &[u8] = b"amesh-credentials/hkdf-salt/v1";
const INFO_LABEL: &str = "amesh-credentials/v1";

/// What a key protects; each gets its own key and AAD label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Credential,
    Flow,
    Client,
    Conversation,
    /// The agent's trust (signing) key, shared by its replicas.
    TrustKey,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::Credential => "oauth-credential",
            Self::Flow => "pending-oauth-flow",
            Self::Client => "client-registration",
            Self::Conversation => "conversation",
            Self::TrustKey => "trust-key",
        }
    }
}

/// Why a blob did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Sealed under another agent secret or agent id.
    ForeignKey,
    /// Right key, but the tag does not verify: altered, or moved to
    /// another row.
    Tampered,
    /// Not a blob this version writes.
    Malformed,
}

impl OpenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::ForeignKey => "encrypted under another agent secret or agent id",
            Self::Tampered => "authentication failed: the row was altered or moved",
            Self::Malformed => "not an encrypted blob of this version",
        }
    }
}

/// The keys of one agent. Derived once when the store opens.
pub(crate) struct Keys {
    credential: Aes256Gcm,
    flow: Aes256Gcm,
    client: Aes256Gcm,
    conversation: Aes256Gcm,
    trust_key: Aes256Gcm,
    key_id: [u8; KEY_ID_LEN],
}

impl Keys {
    pub(crate) fn derive(secret: &AgentSecret, agent_id: &str) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.expose_bytes());
        let expand = |purpose: &str| {
            let mut okm = Zeroizing::new([0u8; 32]);
            let info = encode_fields(INFO_LABEL, &[purpose, agent_id]);
            hkdf.expand(&info, okm.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            okm
        };
        let cipher = |purpose: Purpose| {
            Aes256Gcm::new_from_slice(expand(purpose.label()).as_ref())
                .expect("AES-256 takes a 32-byte key")
        };
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&expand("key-id")[..KEY_ID_LEN]);
        Self {
            credential: cipher(Purpose::Credential),
            flow: cipher(Purpose::Flow),
            client: cipher(Purpose::Client),
            conversation: cipher(Purpose::Conversation),
            trust_key: cipher(Purpose::TrustKey),
            key_id,
        }
    }

    fn cipher(&self, purpose: Purpose) -> &Aes256Gcm {
        match purpose {
            Purpose::Credential => &self.credential,
            Purpose::Flow => &self.flow,
            Purpose::Client => &self.client,
            Purpose::Conversation => &self.conversation,
            Purpose::TrustKey => &self.trust_key,
        }
    }

    /// Encrypts `plaintext` bound to `aad` (from [`aad`]).
    pub(crate) fn seal(
        &self,
        purpose: Purpose,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CredentialError> {
        let nonce = Nonce::try_generate().map_err(|_| CredentialError::Crypto("random nonce"))?;
        let ciphertext = self
            .cipher(purpose)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CredentialError::Crypto("AES-GCM encryption"))?;
        let mut blob = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        blob.push(VERSION);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(blob)
    }

    /// Decrypts a blob from [`seal`](Self::seal) with the same `aad`.
    pub(crate) fn open(
        &self,
        purpose: Purpose,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if blob.len() < HEADER_LEN + TAG_LEN || blob[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        if blob[1..1 + KEY_ID_LEN] != self.key_id {
            return Err(OpenError::ForeignKey);
        }
        let nonce =
            Nonce::try_from(&blob[1 + KEY_ID_LEN..HEADER_LEN]).map_err(|_| OpenError::Malformed)?;
        self.cipher(purpose)
            .decrypt(
                &nonce,
                Payload {
                    msg: &blob[HEADER_LEN..],
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Tampered)
    }
}

/// `label` and `fields` as `len(u32 BE) | bytes` each: unambiguous where a
/// plain concatenation is not.
pub(crate) fn encode_fields(label: &str, fields: &[&str]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(4 + label.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    for part in std::iter::once(label).chain(fields.iter().copied()) {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The AAD of a row: its purpose and identity.
pub(crate) fn aad(purpose: Purpose, fields: &[&str]) -> Vec<u8> {
    encode_fields(purpose.label(), fields)
}

/// Hex SHA-256 of a row's identity: the indexed lookup key. Fixed length
/// whatever the ids' lengths, so the unique index fits every database.
pub(crate) fn lookup_hash(purpose: Purpose, fields: &[&str]) -> String {
    hex(&Sha256::digest(encode_fields(purpose.label(), fields)))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8, agent: &str) -> Keys {
        Keys::derive(
            &AgentSecret::from_bytes(&[byte; 32]).expect("secret"),
            agent,
        )
    }

    #[test]
    fn seal_open_round_trip_and_fresh_nonce_per_write() {
        let k = keys(1, "agent-a");
        let aad = aad(Purpose::Credential, &["agent-a", "alice", "tool"]);
        let a = k.seal(Purpose::Credential, &aad, b"hello").expect("seal");
        let b = k.seal(Purpose::Credential, &aad, b"hello").expect("seal");
        assert_ne!(a, b, "same plaintext, different nonce");
        assert_eq!(
            &*k.open(Purpose::Credential, &aad, &a).expect("open"),
            b"hello"
        );
    }

    #[test]
    fn moved_blob_does_not_open() {
        let k = keys(1, "agent-a");
        let alice = aad(Purpose::Credential, &["agent-a", "alice", "tool"]);
        let bob = aad(Purpose::Credential, &["agent-a", "bob", "tool"]);
        let blob = k.seal(Purpose::Credential, &alice, b"x").expect("seal");
        assert_eq!(
            k.open(Purpose::Credential, &bob, &blob),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            k.open(Purpose::Flow, &alice, &blob),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            k.open(Purpose::Conversation, &alice, &blob),
            Err(OpenError::Tampered)
        );
    }

    #[test]
    fn other_secret_or_agent_is_a_foreign_key() {
        let aad = aad(Purpose::Credential, &["a", "u", "t"]);
        let blob = keys(1, "a")
            .seal(Purpose::Credential, &aad, b"x")
            .expect("seal");
        assert_eq!(
            keys(2, "a").open(Purpose::Credential, &aad, &blob),
            Err(OpenError::ForeignKey)
        );
        assert_eq!(
            keys(1, "b").open(Purpose::Credential, &aad, &blob),
            Err(OpenError::ForeignKey)
        );
        assert_eq!(
            keys(1, "a").open(Purpose::Credential, &aad, &blob[..10]),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn field_encoding_is_unambiguous() {
        assert_ne!(
            encode_fields("l", &["ab", "c"]),
            encode_fields("l", &["a", "bc"])
        );
        assert_ne!(
            lookup_hash(Purpose::Credential, &["a", "b|c", "d"]),
            lookup_hash(Purpose::Credential, &["a", "b", "c|d"])
        );
        assert_eq!(lookup_hash(Purpose::Credential, &["a"]).len(), 64);
    }
}
