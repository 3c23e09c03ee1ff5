//! The one secret type of amesh, and its serde shape.
//!
//! Tokens, client secrets, API keys and PKCE verifiers are
//! [`secrecy::SecretString`] in every crate, so a token travels from the
//! OAuth exchange through the credential store to an MCP call without being
//! rewrapped: its `Debug` is redacted, it is zeroized on drop, and reading it
//! takes an explicit [`ExposeSecret::expose_secret`], easy to grep for in
//! review. It lives in `secrecy` rather than in one of our crates because
//! `amesh-mcp` (the MCP client library) depends on none of them.
//!
//! `secrecy` deserializes a `SecretString` but deliberately does not
//! serialize one. The few shapes that are persisted — token sets and flow
//! state, sealed by the caller before they touch storage — name
//! [`serialize`] (or [`option::serialize`], [`map::serialize`]) in
//! `serialize_with`, which writes the plain string, so stored records keep
//! the shape they had.

pub use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

/// Writes `secret` as its plain string, for a record the caller seals.
pub fn serialize<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

/// [`serialize`] for an optional secret: `null` when absent.
pub mod option {
    use super::{ExposeSecret, SecretString};
    use serde::Serializer;

    /// Writes the plain string, or `null`.
    pub fn serialize<S: Serializer>(
        secret: &Option<SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match secret {
            Some(secret) => serializer.serialize_some(secret.expose_secret()),
            None => serializer.serialize_none(),
        }
    }
}

/// [`serialize`] for a map of named secrets (environment variables,
/// header values).
pub mod map {
    use std::collections::BTreeMap;

    use super::{ExposeSecret, SecretString};
    use serde::Serializer;

    /// Writes the map with plain string values.
    pub fn serialize<S: Serializer>(
        secrets: &BTreeMap<String, SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(secrets.iter().map(|(k, v)| (k, v.expose_secret())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Held {
        #[serde(serialize_with = "serialize")]
        token: SecretString,
        #[serde(default, serialize_with = "option::serialize")]
        refresh: Option<SecretString>,
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretString::from("tok-123");
        let text = format!("{secret:?}");
        assert!(
            !text.contains("tok-123") && text.contains("REDACTED"),
            "{text}"
        );
        assert_eq!(secret.expose_secret(), "tok-123");
    }

    #[test]
    fn serde_round_trips_the_plain_value() {
        let held = Held {
            token: SecretString::from("abc"),
            refresh: None,
        };
        let json = serde_json::to_string(&held).unwrap();
        assert_eq!(json, r#"{"token":"abc","refresh":null}"#);
        let back: Held = serde_json::from_str(r#"{"token":"abc","refresh":"r"}"#).unwrap();
        assert_eq!(back.token.expose_secret(), "abc");
        assert_eq!(back.refresh.unwrap().expose_secret(), "r");
    }
}
