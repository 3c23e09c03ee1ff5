//! A component's own P-256 private key: made once, kept in a 0600 PEM file,
//! used to sign its trust card and (for a gateway) user identity tokens.
//!
//! The key is p256's (generation, PKCS#8 and SEC1 decoding, PKCS#8 PEM
//! encoding); signatures are made by aws-lc (jsonwebtoken's backend, which
//! verifies them) with a key pair parsed once from the PKCS#8 DER. Nothing
//! here prints key material: `Debug` shows the `kid` only, the secret
//! scalar and the DER are wiped on drop (aws-lc's key pair too: its
//! `OPENSSL_free` cleanses what it frees), and so is the PEM text handed
//! out.

use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Header;
use p256::elliptic_curve::Generate as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::jwk::{EcPublicJwk, PublicKey};

const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("cannot {action} key file {path}: {source}")]
    Io {
        /// What was being done: "read", "create", "write".
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key file can be read or written by group or others.
    #[error(
        "key file {path} has mode {mode:04o}, readable or writable by group or others; \
         run `chmod 600 {path}`",
        path = path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The text is not a PEM private key we read.
    #[error("not a PEM private key: {0}")]
    Pem(&'static str),
    /// The DER inside is not a P-256 private key.
    #[error("not a P-256 private key: {0}")]
    InvalidKey(&'static str),
    /// The crypto library failed to generate or encode a key.
    #[error("key {0} failed in the crypto library")]
    Crypto(&'static str),
}

/// Why something could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A caller-supplied value is unusable (empty subject, zero lifetime...).
    #[error("cannot sign: {0}")]
    InvalidInput(&'static str),
    /// The crypto library failed.
    #[error("signing failed in the crypto library")]
    Crypto,
}

/// A P-256 private key with its public half, ready to sign ES256.
///
/// Held by the component that owns it; cloning is shallow (the gateway's
/// card publisher and its identity signer share one key).
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<SigningKeyInner>,
}

struct SigningKeyInner {
    secret: p256::SecretKey,
    /// The same key parsed once for aws-lc, jsonwebtoken's backend:
    /// `jsonwebtoken::encode` parses the PKCS#8 document and recomputes the
    /// public point on every call, a third of the cost of a signature on
    /// every message a component publishes.
    pair: EcdsaKeyPair,
    public: PublicKey,
}

impl SigningKey {
    /// Generates a fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let secret = p256::SecretKey::try_generate().map_err(|_| KeyError::Crypto("generation"))?;
        Self::from_secret(secret)
    }

    /// Reads a DER PKCS#8 (`PrivateKeyInfo`) P-256 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|_| KeyError::InvalidKey("PKCS#8 DER of a P-256 key expected"))?;
        Self::from_secret(secret)
    }

    /// Reads a PEM `PRIVATE KEY` (PKCS#8) or, as `openssl ecparam -genkey`
    /// writes, `EC PRIVATE KEY` (SEC1) block. Other blocks are skipped;
    /// encrypted keys are refused.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Pem("encrypted private keys are not supported"));
        }
        if let Some(der) = pem_block(pem, PKCS8_LABEL)? {
            return Self::from_pkcs8_der(&der);
        }
        if let Some(der) = pem_block(pem, SEC1_LABEL)? {
            let secret = p256::SecretKey::from_sec1_der(&der)
                .map_err(|_| KeyError::InvalidKey("SEC1 DER of a P-256 key expected"))?;
            return Self::from_secret(secret);
        }
        Err(KeyError::Pem(
            "no \"PRIVATE KEY\" or \"EC PRIVATE KEY\" block",
        ))
    }

    /// Loads the key at `path`, refusing a file that group or others may
    /// read or write. Does not create it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let file = fs::File::open(path).map_err(|source| KeyError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        Self::read_file(path, file)
    }

    /// Loads the key at `path`, or, when there is no file, generates one and
    /// writes it there as PKCS#8 PEM with mode 0600 (creating missing parent
    /// directories). An existing file that group or others may read or write
    /// is refused, like ssh does.
    ///
    /// Two processes racing to create the same file: one wins, the other
    /// loads the winner's key (the file is created with `O_EXCL`).
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        match fs::File::open(path) {
            Ok(file) => return Self::read_file(path, file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Io {
                    action: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let key = Self::generate()?;
        match key.write_new_file(path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), kid = key.kid(), "created a new signing key");
                Ok(key)
            }
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                Self::load(path)
            }
            Err(e) => Err(e),
        }
    }

    /// The private key as PKCS#8 PEM. The returned text is wiped on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner
            .secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Crypto("encoding"))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.inner.public
    }

    /// The public half as a JWK with `kid`, `alg: ES256`, `use: sig`.
    pub fn public_jwk(&self) -> EcPublicJwk {
        self.inner.public.to_jwk()
    }

    /// The key id: RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.inner.public.kid()
    }

    /// Signs `claims` under `header` (ES256, see [`crate::jws::new_header`])
    /// and returns the compact JWS.
    pub(crate) fn sign<T: Serialize>(
        &self,
        header: &Header,
        claims: &T,
    ) -> Result<String, SignError> {
        // What `jsonwebtoken::encode` writes (its header type serialized
        // the same way, base64url without padding), signed with the key
        // pair parsed once.
        if header.alg != crate::jws::ES256 {
            return Err(SignError::InvalidInput("only ES256 is signed"));
        }
        let header = serde_json::to_vec(header).map_err(|_| SignError::Crypto)?;
        let claims = serde_json::to_vec(claims).map_err(|_| SignError::Crypto)?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = self
            .inner
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| SignError::Crypto)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// The base64url ES256 signature of arbitrary bytes, for tests that
    /// forge tokens with headers the signers never write.
    #[cfg(test)]
    pub(crate) fn sign_raw(&self, signing_input: &[u8]) -> Result<String, SignError> {
        let signature = self
            .inner
            .pair
            .sign(&SystemRandom::new(), signing_input)
            .map_err(|_| SignError::Crypto)?;
        Ok(URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn from_secret(secret: p256::SecretKey) -> Result<Self, KeyError> {
        // `SecretDocument` wipes the DER on drop.
        let der = secret
            .to_pkcs8_der()
            .map_err(|_| KeyError::Crypto("encoding"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
            .map_err(|_| KeyError::Crypto("key pair"))?;
        let point = secret.public_key().to_sec1_point(false);
        let public = PublicKey::from_uncompressed_point(point.as_bytes())
            .map_err(|_| KeyError::InvalidKey("public key is not an uncompressed P-256 point"))?;
        Ok(Self {
            inner: Arc::new(SigningKeyInner {
                secret,
                pair,
                public,
            }),
        })
    }

    fn read_file(path: &Path, mut file: fs::File) -> Result<Self, KeyError> {
        let io_err = |action, source| KeyError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        check_private_mode(path, &file)?;
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text)
            .map_err(|source| io_err("read", source))?;
        Self::from_pem(&text)
    }

    fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let io_err = |action, source| KeyError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|source| io_err("create", source))?;
        }
        let pem = self.to_pkcs8_pem()?;
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|source| io_err("create", source))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_err("write", source))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .field("private_key", &format_args!("[redacted]"))
            .finish()
    }
}

#[cfg(unix)]
fn check_private_mode(path: &Path, file: &fs::File) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file
        .metadata()
        .map_err(|source| KeyError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _file: &fs::File) -> Result<(), KeyError> {
    Ok(())
}

/// The DER of the first PEM block labelled `label`, if there is one.
fn pem_block(text: &str, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        return Ok(None);
    };
    let rest = &text[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or(KeyError::Pem("BEGIN line without its END line"))?;
    let body: Zeroizing<String> = Zeroizing::new(
        rest[..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| KeyError::Pem("body is not base64"))?;
    Ok(Some(Zeroizing::new(der)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_kid() {
        let key = SigningKey::generate().expect("generates");
        let pem = key.to_pkcs8_pem().expect("encodes");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let again = SigningKey::from_pem(&pem).expect("decodes");
        assert_eq!(again.kid(), key.kid());
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = SigningKey::generate().expect("generates");
        let b = SigningKey::generate().expect("generates");
        assert_ne!(a.kid(), b.kid());
    }

    #[test]
    fn sec1_pem_is_accepted_after_other_blocks() {
        // `openssl ecparam -name prime256v1 -genkey` output: parameters, then
        // the SEC1 key. This one is the RFC 7517 A.2 key (d = 870MB6gf...).
        let pem = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n\
            -----BEGIN EC PRIVATE KEY-----\n\
            MHcCAQEEIPO9DAeoH7kyeB7VJ1L2DMiaa+XlGTT+AZON21XY93gBoAoGCCqGSM49\n\
            AwEHoUQDQgAEMKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D7gS2XpJFbZ\n\
            iItSs3m9+9Ue6GnvHw/GW2ZZaVtszggXIw==\n\
            -----END EC PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).expect("reads SEC1");
        assert_eq!(key.kid(), "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
    }

    #[test]
    fn pkcs8_pem_from_openssl_is_read() {
        // `openssl pkcs8 -topk8 -nocrypt` of the SEC1 key above: key files
        // written before keys moved to p256 (aws-lc's PKCS#8 v1) have this
        // shape too.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
            MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg870MB6gfuTJ4HtUn\n\
            UvYMyJpr5eUZNP4Bk43bVdj3eAGhRANCAAQwoEJM0hwpRIOKLXXJKzfnbqINnwCJ\n\
            OjtO7oo8Cq/sPuBLZekkVtmIi1Kzeb371R7oae8fD8ZbZllpW2zOCBcj\n\
            -----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).expect("reads PKCS#8");
        assert_eq!(key.kid(), "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
    }

    #[test]
    fn garbage_pem_is_refused_with_a_reason() {
        assert!(matches!(
            SigningKey::from_pem("hello"),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::Pem("body is not base64"))
        ));
        assert!(matches!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::InvalidKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"),
            Err(KeyError::Pem("encrypted private keys are not supported"))
        ));
    }

    #[test]
    fn debug_of_signing_key_shows_kid_and_no_key_material() {
        let key = SigningKey::generate().expect("generates");
        let pem = key.to_pkcs8_pem().expect("encodes");
        let debug = format!("{key:?}");
        assert!(debug.contains(key.kid()));
        assert!(debug.contains("[redacted]"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for chunk in body.as_bytes().chunks(16) {
            let chunk = std::str::from_utf8(chunk).expect("ascii");
            assert!(!debug.contains(chunk), "{debug} leaks {chunk}");
        }
    }
}
