//! `amesh/elicitation/complete`: the user's answer to a tool server's
//! URL-mode elicitation. A task whose MCP server asked the user to open a
//! page waits in `input-required` with a data part
//! `{"type": "url_elicitation_required", "elicitation_id", "elicitation_url",
//! "message", ...}`; when the user says they are done (or declines), the
//! gateway sends this request to the agent with the user's own identity
//! token, and the agent retries the tool call with the server's
//! `requestState`. Both sides speak it, so it lives with the protocol.

use serde::{Deserialize, Serialize};

/// JSON-RPC method of the user's answer.
pub const ELICITATION_COMPLETE_METHOD: &str = "amesh/elicitation/complete";

/// The `type` of the data part that carries an elicitation to the user.
pub const URL_ELICITATION_REQUIRED: &str = "url_elicitation_required";

/// What the user did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserAction {
    /// They went to the page and are done.
    Accept,
    /// They will not.
    Decline,
}

/// Params of `amesh/elicitation/complete`.
#[derive(Serialize, Deserialize)]
pub struct ElicitationParams {
    /// The handle the agent gave the user with the page (single use, bound
    /// to the user, expires with the wait).
    pub elicitation_id: String,
    pub action: UserAction,
}

impl std::fmt::Debug for ElicitationParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElicitationParams")
            .field("elicitation_id", &"[redacted]")
            .field("action", &self.action)
            .finish()
    }
}
