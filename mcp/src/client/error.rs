//! What can go wrong talking to an MCP server, one variant per thing the
//! caller can act on: start OAuth ([`McpError::Unauthorized`]), ask for more
//! scope ([`McpError::Forbidden`]), tell the model its arguments were wrong
//! ([`McpError::InvalidArguments`]), or report the failure.
//!
//! No message ever contains a bearer token: tokens are only ever written
//! into request headers, and transport errors are stripped of their URL
//! (which might carry an API key in its query).

use std::time::Duration;

use serde_json::Value;

use crate::schema::ArgumentError;

/// An MCP client failure.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// HTTP 401: the caller has no valid token for this server; start (or
    /// restart) OAuth with the challenge, whose `resource_metadata` names
    /// the protected resource metadata document.
    #[error("MCP server `{tool_id}` answered {status} Unauthorized{}", challenge_suffix(.www_authenticate))]
    Unauthorized {
        tool_id: String,
        www_authenticate: Option<String>,
        /// Always 401; kept so logs and callers see the status as data.
        status: u16,
    },
    /// HTTP 403: the token is valid but not enough, e.g.
    /// `error="insufficient_scope"` with the `scope` the call needs.
    #[error("MCP server `{tool_id}` answered 403 Forbidden ({})", .error.as_deref().unwrap_or("no error code"))]
    Forbidden {
        tool_id: String,
        www_authenticate: Option<String>,
        error: Option<String>,
        scope: Option<String>,
    },
    /// The server no longer knows the session (404 on a request that named
    /// one, or the legacy event stream closed). The session re-initializes
    /// once by itself; this reaches callers only when that did not help.
    #[error("MCP session with `{tool_id}` expired")]
    SessionExpired { tool_id: String },
    /// The server answered something that is not MCP as we know it.
    #[error("MCP protocol error with `{tool_id}`: {message}")]
    Protocol { tool_id: String, message: String },
    /// The server answered a JSON-RPC error object.
    #[error("MCP server `{tool_id}` returned JSON-RPC error {code} to `{method}`: {message}")]
    Rpc {
        tool_id: String,
        method: String,
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// An HTTP status the protocol has no meaning for (5xx, 400 ...).
    #[error("MCP server `{tool_id}` answered HTTP {status}")]
    Http { tool_id: String, status: u16 },
    /// No answer within `connection_params.timeout`.
    #[error("MCP request `{method}` to `{tool_id}` timed out after {after:?}")]
    Timeout {
        tool_id: String,
        method: String,
        after: Duration,
    },
    /// Connecting, sending or reading failed below HTTP.
    #[error("transport error talking to MCP server `{tool_id}`: {message}")]
    Transport { tool_id: String, message: String },
    /// Arguments refused by the tool's input schema; nothing was sent.
    #[error(transparent)]
    InvalidArguments(#[from] ArgumentError),
    /// The tool ran and reported failure (`isError: true`), surfaced as an
    /// error by [`crate::client::CallToolResult::into_result`].
    #[error("tool `{tool}` failed: {message}")]
    ToolError { tool: String, message: String },
    /// The server needs the user before it finishes the call (MCP
    /// 2026-07-28 `InputRequiredResult`): open a page, then retry the call
    /// with [`crate::client::InputRequired::answer`].
    #[error("MCP server `{tool_id}` needs the user first: {}", input_summary(.input))]
    InputRequired {
        tool_id: String,
        input: Box<crate::client::InputRequired>,
    },
    /// The tool block cannot be used (bad URL, bad header).
    #[error("MCP tool `{tool_id}` is misconfigured: {message}")]
    Config { tool_id: String, message: String },
}

fn input_summary(input: &crate::client::InputRequired) -> String {
    match input.elicitations.first() {
        Some(e) => e.message.clone(),
        None => "retry the call".into(),
    }
}

fn challenge_suffix(challenge: &Option<String>) -> String {
    challenge
        .as_deref()
        .map(|c| format!(" (WWW-Authenticate: {c})"))
        .unwrap_or_default()
}

impl McpError {
    /// Whether the caller should (re)start the OAuth flow.
    pub fn needs_authorization(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }

    /// The `WWW-Authenticate` challenge of a 401 or 403, if the server sent one.
    pub fn www_authenticate(&self) -> Option<&str> {
        match self {
            Self::Unauthorized {
                www_authenticate, ..
            }
            | Self::Forbidden {
                www_authenticate, ..
            } => www_authenticate.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn transport(tool_id: &str, err: reqwest::Error) -> Self {
        if err.is_timeout() {
            // reqwest's own connect timeout; the caller's overall deadline
            // is reported by the session with the method name.
            return Self::Transport {
                tool_id: tool_id.to_owned(),
                message: "connect timed out".into(),
            };
        }
        Self::Transport {
            tool_id: tool_id.to_owned(),
            message: error_chain(&err.without_url()),
        }
    }

    pub(crate) fn protocol(tool_id: &str, message: impl Into<String>) -> Self {
        Self::Protocol {
            tool_id: tool_id.to_owned(),
            message: message.into(),
        }
    }

    /// Maps a failing HTTP status to the variant callers act on.
    pub(crate) fn from_status(
        tool_id: &str,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
    ) -> Self {
        let challenge = headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match status.as_u16() {
            401 => Self::Unauthorized {
                tool_id: tool_id.to_owned(),
                www_authenticate: challenge,
                status: 401,
            },
            403 => {
                let parsed = challenge
                    .as_deref()
                    .and_then(crate::oauth::BearerChallenge::from_header)
                    .unwrap_or_default();
                Self::Forbidden {
                    tool_id: tool_id.to_owned(),
                    www_authenticate: challenge,
                    error: parsed.error,
                    scope: parsed.scope,
                }
            }
            other => Self::Http {
                tool_id: tool_id.to_owned(),
                status: other,
            },
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_carries_the_insufficient_scope_challenge() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::WWW_AUTHENTICATE,
            reqwest::header::HeaderValue::from_static(
                r#"Basic realm="x", Bearer error="insufficient_scope", scope="files:read files:write""#,
            ),
        );
        match McpError::from_status("t", reqwest::StatusCode::FORBIDDEN, &headers) {
            McpError::Forbidden { error, scope, .. } => {
                assert_eq!(error.as_deref(), Some("insufficient_scope"));
                assert_eq!(scope.as_deref(), Some("files:read files:write"));
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }
}
