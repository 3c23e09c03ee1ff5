//! Mosquitto password file lines, generated in Rust.
//!
//! Mosquitto 2.x (`mosquitto_passwd`) writes one line per user:
//!
//! ```text
//! user:$7$101$<base64 salt, 12 bytes>$<base64 PBKDF2-HMAC-SHA512, 64 bytes>
//! ```
//!
//! `$7$` is PBKDF2-HMAC-SHA512 and `101` the iteration count. Producing the
//! same lines here lets provisioning and the test harness write password
//! files without the `mosquitto_passwd` binary. The dynamic-security
//! plugin keeps the same hash with salt and hash as separate base64 fields
//! ([`Pbkdf2Hash`], [`verify_parts`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::Sha512;
use subtle::ConstantTimeEq;

/// Iterations `mosquitto_passwd` and the dynamic-security plugin use.
pub const ITERATIONS: u32 = 101;
/// Salt and hash lengths Mosquitto expects (it refuses other lengths).
pub const SALT_LEN: usize = 12;
pub const HASH_LEN: usize = 64;

/// A user name that cannot go into a password file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswdError {
    #[error("broker user name is empty")]
    EmptyUser,
    #[error("broker user name `{0}` contains `:` or a control character")]
    BadUser(String),
}

/// A salted PBKDF2-HMAC-SHA512 password hash, the parts Mosquitto keeps:
/// the password file joins them into one `$7$` string, the
/// dynamic-security plugin stores them as separate base64 fields.
pub struct Pbkdf2Hash {
    pub salt: [u8; SALT_LEN],
    pub hash: [u8; HASH_LEN],
    pub iterations: u32,
}

impl Pbkdf2Hash {
    /// Hashes `password` with a fresh random salt and [`ITERATIONS`].
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt[..]);
        Pbkdf2Hash {
            hash: derive(password, &salt, ITERATIONS),
            salt,
            iterations: ITERATIONS,
        }
    }

    /// `$7$<iterations>$<base64 salt>$<base64 hash>`.
    fn to_mosquitto(&self) -> String {
        format!(
            "$7${}${}${}",
            self.iterations,
            STANDARD.encode(self.salt),
            STANDARD.encode(self.hash)
        )
    }
}

/// Hashes `password` with a fresh random salt: `$7$101$<salt>$<hash>`.
pub fn hash_password(password: &str) -> String {
    Pbkdf2Hash::new(password).to_mosquitto()
}

/// One password-file line `user:$7$...` (without the newline).
pub fn password_line(user: &str, password: &str) -> Result<String, PasswdError> {
    if user.is_empty() {
        return Err(PasswdError::EmptyUser);
    }
    if user.contains(':') || user.chars().any(char::is_control) {
        return Err(PasswdError::BadUser(user.escape_debug().to_string()));
    }
    Ok(format!("{user}:{}", hash_password(password)))
}

/// True if `line` (`user:$7$iterations$salt$hash`, as written by
/// `mosquitto_passwd` or [`password_line`]) accepts `password`. Other hash
/// formats and malformed lines are refused.
pub fn verify_line(line: &str, password: &str) -> bool {
    let Some((_user, hash)) = line.trim_end_matches(['\r', '\n']).split_once(':') else {
        return false;
    };
    let mut parts = hash.split('$');
    let (Some(""), Some("7"), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    verify_parts(password, salt, expected, iterations)
}

/// True if `password` hashes to `hash_b64` with `salt_b64` and `iterations`
/// (the fields of a dynamic-security client). Malformed input is refused.
pub fn verify_parts(password: &str, salt_b64: &str, hash_b64: &str, iterations: u32) -> bool {
    let (Ok(salt), Ok(expected)) = (STANDARD.decode(salt_b64), STANDARD.decode(hash_b64)) else {
        return false;
    };
    if iterations == 0 || expected.len() != HASH_LEN {
        return false;
    }
    derive(password, &salt, iterations)
        .ct_eq(&expected[..])
        .into()
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut hash);
    hash
}

#[cfg(test)]
fn hash_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    Pbkdf2Hash {
        salt: salt.try_into().expect("12-byte salt"),
        hash: derive(password, salt, iterations),
        iterations,
    }
    .to_mosquitto()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b pw alice secret` (mosquitto 2.0.11).
    const MOSQUITTO_LINE: &str = "alice:$7$101$kz22gZfetWRxwSp8$8WVnO8F6uECQmYWSnqsa23hZD+Gh+o7tywEOw7fs5eV5kqmDS5MQcqlOPgg0tAdzfP6xCAnAUTOPLPV76O38sA==";

    #[test]
    fn verifies_a_line_written_by_mosquitto_passwd() {
        assert!(verify_line(MOSQUITTO_LINE, "secret"));
        assert!(!verify_line(MOSQUITTO_LINE, "Secret"));
        assert!(!verify_line(MOSQUITTO_LINE, ""));
    }

    #[test]
    fn reproduces_mosquitto_hash_from_its_salt() {
        let salt = STANDARD.decode("kz22gZfetWRxwSp8").unwrap();
        let expected = MOSQUITTO_LINE.split_once(':').unwrap().1;
        assert_eq!(hash_with_salt("secret", &salt, ITERATIONS), expected);
    }

    #[test]
    fn generated_lines_have_mosquitto_shape_and_verify() {
        let line = password_line("agent-1", "pa:ss w0rd").unwrap();
        let parts: Vec<&str> = line.split('$').collect();
        assert_eq!(parts[0], "agent-1:");
        assert_eq!(parts[1], "7");
        assert_eq!(parts[2], "101");
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), SALT_LEN);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), HASH_LEN);
        assert!(verify_line(&line, "pa:ss w0rd"));
        assert!(!verify_line(&line, "pass"));
        // Fresh salt each time.
        assert_ne!(hash_password("x"), hash_password("x"));
    }

    #[test]
    fn bad_user_names_and_malformed_lines_are_refused() {
        assert_eq!(password_line("", "p"), Err(PasswdError::EmptyUser));
        assert!(matches!(
            password_line("a:b", "p"),
            Err(PasswdError::BadUser(_))
        ));
        assert!(matches!(
            password_line("a\nb", "p"),
            Err(PasswdError::BadUser(_))
        ));
        for bad in [
            "",
            "alice",
            "alice:$6$c2FsdA==$aGFzaA==",
            "alice:$7$0$kz22gZfetWRxwSp8$AAAA",
            "alice:$7$x$kz22gZfetWRxwSp8$AAAA",
            "alice:$7$101$!!!$AAAA",
            "alice:$7$101$kz22gZfetWRxwSp8$AAAA",
        ] {
            assert!(!verify_line(bad, "secret"), "{bad}");
        }
    }

    #[test]
    fn agrees_with_the_mosquitto_passwd_binary_when_installed() {
        let bin = [
            "/usr/bin/mosquitto_passwd",
            "/usr/local/bin/mosquitto_passwd",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
        let Some(bin) = bin else {
            eprintln!("mosquitto_passwd not installed; covered by the fixed line above");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        let status = std::process::Command::new(bin)
            .arg("-c")
            .arg("-b")
            .arg(&file)
            .arg("bob")
            .arg("hunter2")
            .status()
            .unwrap();
        assert!(status.success());
        let line = std::fs::read_to_string(&file).unwrap();
        assert!(line.starts_with("bob:$7$101$"), "{line}");
        assert!(verify_line(line.trim(), "hunter2"));
        assert!(!verify_line(line.trim(), "hunter3"));
    }
}
