//! Why an MCP tool call gave no result, as one enum. The reasoning loop
//! hands it to the model as the call's error (the model may try another
//! way); a task without a model ends `failed` with it. Messages name tools,
//! agents and scopes, never a token.
//!
//! A provider's failure in discovery, registration or refresh is carried
//! as the reason the user may read ([`OAuthSetupError::Provider`]); the
//! details went to the log where it arose.

use amesh_credentials::CredentialError;
use amesh_mcp::client::McpError;

use super::store_failure;

#[derive(Debug, thiserror::Error)]
pub(crate) enum McpCallError {
    #[error("agent {agent} has no MCP tool `{tool}`; it offers: {offered}")]
    UnknownTool {
        agent: String,
        tool: String,
        offered: String,
    },
    /// The model's arguments do not fit the tool's schema (the
    /// validator's words, which name the failing path).
    #[error("{0}")]
    InvalidArguments(String),
    #[error("tool {tool} did not answer within {seconds} s")]
    Timeout { tool: String, seconds: u64 },
    /// The MCP server or the way to it failed.
    #[error(transparent)]
    Server(#[from] McpError),
    #[error(
        "tool {tool} needs a verified identity; this request's identity was not verified: {reason}"
    )]
    Unverified { tool: String, reason: String },
    #[error(
        "tool {tool} needs user authorization, but agent {agent} has no credential store configured"
    )]
    NoStore { tool: String, agent: String },
    #[error(
        "tool {tool} needs user authorization, but OAUTH_TOOL_REDIRECT_URI is not set for agent {agent}; \
         the operator must set it to the gateway's {path} URL"
    )]
    NoRedirectUri {
        tool: String,
        agent: String,
        path: &'static str,
    },
    #[error("cannot start the authorization of tool {tool}: {why}")]
    CannotAuthorize {
        tool: String,
        why: Box<OAuthSetupError>,
    },
    #[error(
        "tool {tool} was refused for insufficient scope, and the server did not say which scope it needs"
    )]
    ScopeUnnamed { tool: String },
    #[error(
        "tool {tool} still lacks access after authorization: it needs scope {scopes}, which the provider did not grant"
    )]
    ScopeNotGranted { tool: String, scopes: String },
    /// The stored credential could not be used, and authorizing again
    /// would not help.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The tool ran and said it failed (`isError`).
    #[error("tool {tool} failed without saying why")]
    FailedSilently { tool: String },
    #[error("tool {tool} failed: {text}")]
    ToolFailed { tool: String, text: String },
}

/// Why a stored credential could not be used (store down, refresh failed
/// at the provider): nothing the user fixes by authorizing again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error("{}", store_failure(.0))]
    Store(CredentialError),
    #[error("could not refresh the access token for tool {tool}: {reason}; try again later")]
    RefreshFailed { tool: String, reason: String },
    /// The refresh task itself ended abnormally.
    #[error("refreshing the access token failed: {0}")]
    RefreshAborted(String),
    /// The OAuth client for the refresh could not be set up.
    #[error(transparent)]
    Setup(#[from] OAuthSetupError),
}

/// Why the agent could not prepare an OAuth step for a tool: find its
/// authorization server, pick the client, record a flow. The messages are
/// what the user may read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OAuthSetupError {
    #[error("MCP tool `{0}` is a stdio server; it has no OAuth")]
    Stdio(String),
    #[error("MCP tool `{0}` has no `auth: {{type: oauth2}}` block")]
    NotOAuth(String),
    #[error("auth.{key} {value:?} is not a URL: {source}")]
    BadEndpoint {
        key: &'static str,
        value: String,
        source: url::ParseError,
    },
    /// The provider refused or failed a step: its user-facing reason (the
    /// details were logged by `oauth_failure`).
    #[error("{0}")]
    Provider(String),
    #[error("{}", store_failure(.0))]
    Store(CredentialError),
    #[error("agent {0} has no credential store configured")]
    NoStore(String),
    #[error("the flow could not be recorded: {0}")]
    Record(serde_json::Error),
    #[error("the stored credential for {0} names no OAuth client; disconnect and authorize again")]
    NoClient(String),
}

impl From<CredentialError> for AccessError {
    fn from(e: CredentialError) -> Self {
        AccessError::Store(e)
    }
}

/// Why a connected-accounts request (list, disconnect, connect) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    #[error("agent {agent} has no MCP server `{tool_id}` that needs authorization")]
    UnknownServer { agent: String, tool_id: String },
    #[error("agent {0} has no credential store")]
    NoStore(String),
    #[error("{0} is not connected")]
    NotConnected(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Authorize(#[from] McpCallError),
    #[error("the authorization of {0} could not start")]
    NotStarted(String),
}

impl From<CredentialError> for ConnectionError {
    fn from(e: CredentialError) -> Self {
        ConnectionError::Access(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_say_whether_to_try_again() {
        let closed = AccessError::from(CredentialError::Closed).to_string();
        assert!(
            closed.starts_with("credential store unavailable"),
            "{closed}"
        );
        assert!(closed.ends_with("try again later"), "{closed}");
        let timeout = McpCallError::Timeout {
            tool: "jira".into(),
            seconds: 30,
        };
        assert_eq!(timeout.to_string(), "tool jira did not answer within 30 s");
    }
}
