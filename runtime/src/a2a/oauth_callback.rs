//! `oauth/callback`: amesh's one JSON-RPC method beside A2A's own. The
//! gateway sends it to the agent whose flow a provider redirect completes;
//! the agent finishes the flow and resumes the paused task. Both sides
//! speak it, so it lives with the protocol, not with either app.

use serde::{Deserialize, Serialize};

/// JSON-RPC method an agent answers with the outcome of a tool authorization.
pub const OAUTH_CALLBACK_METHOD: &str = "oauth/callback";

/// Params of the `oauth/callback` request sent to the agent.
#[derive(Serialize, Deserialize)]
pub struct CallbackParams {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// RFC 9207 `iss` of the authorization response, checked by the agent
    /// against the flow's issuer before the code is redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("state", &"[redacted]")
            .field("code", &self.code.as_ref().map(|_| "[redacted]"))
            .field("error", &self.error)
            .field("iss", &self.iss)
            .finish()
    }
}
