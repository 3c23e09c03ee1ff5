//! Tokens good for one request only.
//!
//! A gateway forwarding a tool authorization callback vouches for the user
//! for that callback, not for anything the agent might want to do with the
//! token afterwards. Such a token carries `amesh_scope: {method, sha256}`:
//! the JSON-RPC method it may be used for and the SHA-256 of the value that
//! identifies the one request (for `oauth/callback`, the OAuth `state`). A
//! scoped token is refused for any other method or value, and cannot be
//! delegated.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::jws;

/// The one use a token is good for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenScope {
    method: String,
    sha256: String,
}

impl TokenScope {
    /// A scope for `method` on the request identified by `bound_value`.
    pub fn new(method: impl Into<String>, bound_value: &str) -> Self {
        Self {
            method: method.into(),
            sha256: hash(bound_value),
        }
    }

    /// The JSON-RPC method the token may be used for.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the token may be used for `method` on `bound_value`.
    pub fn permits(&self, method: &str, bound_value: Option<&str>) -> bool {
        self.method == method && bound_value.is_some_and(|v| hash(v) == self.sha256)
    }
}

fn hash(value: &str) -> String {
    jws::b64(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_permits_its_method_and_value_only() {
        let scope = TokenScope::new("oauth/callback", "state-1");
        assert!(scope.permits("oauth/callback", Some("state-1")));
        assert!(!scope.permits("oauth/callback", Some("state-2")));
        assert!(!scope.permits("oauth/callback", None));
        assert!(!scope.permits("message/send", Some("state-1")));
        // The value itself does not travel, only its hash.
        let json = serde_json::to_string(&scope).expect("json");
        assert!(!json.contains("state-1"), "{json}");
    }
}
