//! Secret values in memory, and the agent's secret they are protected with.
//!
//! Tokens, PKCE verifiers and client secrets pass through logs, error
//! chains and `{:?}` all the time in a service like this; the types here
//! make the safe thing the default: their `Debug` is redacted, they have no
//! `Display` and no `Serialize`, the bytes are zeroized on drop, and reading
//! one takes an explicit [`ExposeSecret::expose_secret`].
//!
//! [`AgentSecret`] is the agent's *secret unique identifier*, the input to
//! the key derivation in `crypto.rs`. It lives outside the database — in a
//! 0600 file or in `AMESH_AGENT_SECRET` — so a database dump alone decrypts
//! nothing. Replicas of one agent must share it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::TryRngCore as _;
use zeroize::Zeroizing;

use crate::error::SecretError;

/// Environment variable holding the agent secret (base64 of at least 32
/// bytes). Takes precedence over the secret file.
pub const AGENT_SECRET_ENV: &str = "AMESH_AGENT_SECRET";

/// Fewest bytes an agent secret may have: it is AES-256 key material.
pub const AGENT_SECRET_MIN_BYTES: usize = 32;

/// A string that must never reach a log: an access or refresh token, a PKCE
/// verifier, a client secret, an OAuth `state`, a database password. The
/// workspace-wide type (see `amesh_mcp::secret` for why it is `secrecy`'s),
/// re-exported so users of this crate name it from here.
pub use secrecy::{ExposeSecret, SecretString};

/// The agent's secret unique identifier: key material for encryption at
/// rest. Never written to the database.
///
/// Load it with [`AgentSecret::resolve`] (environment first, then a file
/// created on first use). Every replica of an agent must use the same
/// secret, and each agent should have its own: the keys derived from it
/// are also bound to the agent id, but a shared secret makes one agent's
/// compromise every agent's.
#[derive(Clone)]
pub struct AgentSecret {
    bytes: Zeroizing<Vec<u8>>,
}

impl AgentSecret {
    /// 32 fresh random bytes from the operating system.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = Zeroizing::new(vec![0u8; AGENT_SECRET_MIN_BYTES]);
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| SecretError::Random)?;
        Ok(Self { bytes })
    }

    /// A secret from raw bytes (at least [`AGENT_SECRET_MIN_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        Self::checked(Zeroizing::new(bytes.to_vec()), "bytes")
    }

    /// A secret from its base64 text (standard or URL-safe alphabet, padded
    /// or not; surrounding whitespace ignored), as written in the secret
    /// file or `AMESH_AGENT_SECRET`. `origin` names where it came from, for
    /// the error message.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Malformed {
                origin: origin.to_owned(),
                reason: "it is empty",
            });
        }
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| SecretError::Malformed {
                origin: origin.to_owned(),
                reason: "it is not base64",
            })?;
        Self::checked(Zeroizing::new(decoded), origin)
    }

    /// The secret in `AMESH_AGENT_SECRET`, if that variable is set and not
    /// empty.
    pub fn from_env() -> Result<Option<Self>, SecretError> {
        match std::env::var(AGENT_SECRET_ENV) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => {
                let value = Zeroizing::new(value);
                Self::from_base64(&value, &format!("environment variable {AGENT_SECRET_ENV}"))
                    .map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::Malformed {
                origin: format!("environment variable {AGENT_SECRET_ENV}"),
                reason: "it is not UTF-8",
            }),
        }
    }

    /// Reads the secret file at `path`, or creates it — 32 random bytes,
    /// base64, mode 0600, parent directories as needed — when it does not
    /// exist. Warns when an existing file is readable by group or others.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        match Self::load(path) {
            Err(SecretError::Missing { .. }) => Self::create(path),
            other => other,
        }
    }

    /// Reads the existing secret file at `path`; [`SecretError::Missing`]
    /// when there is none. For tools that read what an agent stored: a
    /// secret made up now would decrypt nothing of it.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                warn_if_shared(path);
                Self::from_base64(&text, &format!("file {}", path.display()))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(SecretError::Missing {
                path: path.to_owned(),
            }),
            Err(source) => Err(SecretError::Io {
                path: path.to_owned(),
                action: "read",
                source,
            }),
        }
    }

    /// The agent secret as the runtime resolves it: `AMESH_AGENT_SECRET`
    /// when set, else the file at `file` (created when missing), else
    /// [`SecretError::NotConfigured`].
    pub fn resolve(file: Option<&Path>) -> Result<Self, SecretError> {
        if let Some(secret) = Self::from_env()? {
            return Ok(secret);
        }
        match file {
            Some(path) => Self::load_or_create(path),
            None => Err(SecretError::NotConfigured),
        }
    }

    /// Like [`resolve`](Self::resolve), but a missing file is
    /// [`SecretError::Missing`] rather than created.
    pub fn resolve_existing(file: Option<&Path>) -> Result<Self, SecretError> {
        if let Some(secret) = Self::from_env()? {
            return Ok(secret);
        }
        match file {
            Some(path) => Self::load(path),
            None => Err(SecretError::NotConfigured),
        }
    }

    pub(crate) fn expose_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn checked(bytes: Zeroizing<Vec<u8>>, origin: &str) -> Result<Self, SecretError> {
        if bytes.len() < AGENT_SECRET_MIN_BYTES {
            return Err(SecretError::TooShort {
                origin: origin.to_owned(),
                bytes: bytes.len(),
            });
        }
        Ok(Self { bytes })
    }

    fn create(path: &Path) -> Result<Self, SecretError> {
        let io_err = |action: &'static str| {
            let path: PathBuf = path.to_owned();
            move |source| SecretError::Io {
                path,
                action,
                source,
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err("create the directory of"))?;
        }
        let secret = Self::generate()?;
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(secret.expose_bytes())));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_err("write"))?;
                tracing::info!(path = %path.display(), "created a new agent secret file (mode 0600)");
                Ok(secret)
            }
            // Another replica on a shared volume created it first: use theirs.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(source) => Err(io_err("create")(source)),
        }
    }
}

impl fmt::Debug for AgentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentSecret([redacted])")
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the agent secret file is readable by group or others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_debug_is_redacted() {
        let s = SecretString::from("ya29.super-secret");
        let text = format!("{:?}", Some(s.clone()));
        assert!(
            !text.contains("ya29") && text.contains("REDACTED"),
            "{text}"
        );
        assert_eq!(s.expose_secret(), "ya29.super-secret");
    }

    #[test]
    fn agent_secret_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/agent.secret");
        let first = AgentSecret::load_or_create(&path).expect("created");
        let again = AgentSecret::load_or_create(&path).expect("read");
        assert_eq!(first.expose_bytes(), again.expose_bytes());
        assert_eq!(first.expose_bytes().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = fs::read_to_string(&path).expect("text");
        assert_eq!(STANDARD.decode(text.trim()).expect("b64").len(), 32);
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let short = AgentSecret::from_base64(&STANDARD.encode([7u8; 16]), "test").unwrap_err();
        assert!(
            matches!(short, SecretError::TooShort { bytes: 16, .. }),
            "{short}"
        );
        let garbage = AgentSecret::from_base64("not base64 at all!!", "env X").unwrap_err();
        assert!(garbage.to_string().contains("env X"), "{garbage}");
        assert!(
            !garbage.to_string().contains("not base64 at all"),
            "{garbage}"
        );
    }

    #[test]
    fn agent_secret_debug_is_redacted() {
        let secret = AgentSecret::from_bytes(&[0x41; 32]).expect("secret");
        let text = format!("{secret:?}");
        assert!(!text.contains("AAAA") && !text.contains("65"), "{text}");
    }
}
