//! The MCP client: how an agent lists and calls a remote server's tools,
//! each request carrying the calling user's own bearer token, or a local
//! server's tools over the stdio of a child process ([`stdio`]).
//!
//! # Why this is not rmcp
//!
//! rmcp (3.x) was evaluated first. Its Streamable HTTP client is good and
//! does much of what we need (session id, protocol version header, 404
//! re-initialization, a typed 401/403 when a `WWW-Authenticate` header is
//! present, a fixed bearer token per transport). We still write both
//! transports here, directly on reqwest, because:
//!
//! - OAuth starts from the *status* and the challenge. rmcp only types a
//!   401 or 403 that carries `WWW-Authenticate`; without the header they
//!   become a string error, and every 403 becomes "insufficient scope"
//!   whatever its `error=` says. Here 401 is always
//!   [`McpError::Unauthorized`] (challenge optional) and 403 is always
//!   [`McpError::Forbidden`] with `error` and `scope` parsed.
//! - rmcp has no legacy HTTP+SSE client (removed in 0.11), and SAM configs
//!   use `type: sse`. Plugging our own SSE transport into rmcp's service
//!   layer would route its 401s through rmcp's type-erased transport
//!   errors and back out by downcasting; two layers of plumbing for a
//!   protocol whose client side is four methods.
//! - Each rmcp client session runs a service task and a transport worker.
//!   We keep one session per (server, user), so idle users would each hold
//!   two tasks; our Streamable HTTP session holds none (legacy SSE needs
//!   its one stream reader).
//!
//! The protocol surface we use is small and stable: `server/discover` or
//! `initialize` + `notifications/initialized` ([`version`] picks the era),
//! `tools/list` (paged), `tools/call` (with its multi round-trip retry,
//! [`input`]). Tool content travels as raw JSON, so newer content types
//! pass through.
//!
//! # Layout
//!
//! - `body`: the bounded body reader, shared with the OAuth client.
//! - `call_headers`: headers one call adds to its requests (trace context).
//! - [`event_stream`]: `text/event-stream` parser, shared by both HTTP transports.
//! - `streamable` / `sse` / [`stdio`]: the three transports. stdio (a
//!   child process) is ours too, not rmcp's child-process transport: one
//!   MCP client in the codebase, not two; see [`stdio`].
//! - [`session`]: lifecycle, paging, retry after expiry, timeouts.
//! - [`version`]: protocol revisions and the modern/legacy negotiation.
//! - [`input`]: `InputRequiredResult` and URL-mode elicitation.
//! - [`pool`]: HTTP clients per TLS mode, sessions per (tool, user).
//! - [`error`]: [`McpError`] and the `WWW-Authenticate` parser.

pub(crate) mod body;
mod call_headers;
pub mod error;
pub mod event_stream;
mod http;
pub mod input;
mod jsonrpc;
pub mod pool;
pub mod session;
mod sse;
pub mod stdio;
mod streamable;
pub mod version;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::oauth::BearerChallenge;
pub use call_headers::with_call_headers;
pub use error::McpError;
pub use input::{ElicitAction, InputRequired, Retry, UrlElicitation};
pub use pool::{DEFAULT_IDLE_SESSION_TTL, DEFAULT_MAX_SESSIONS, McpClientPool};
pub use session::{PROTOCOL_VERSION, ServerInfo, Session};

use crate::tool_config::McpToolConfig;

/// A tool as the server (or the manifest) describes it, under the name
/// the server knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDescriptor {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "inputSchema")]
    pub input_schema: Value,
}

/// A tool as the agent exposes it to the model: `{prefix}{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedTool {
    /// The name the model sees and calls.
    pub exposed_name: String,
    /// The tool under the server's name (used on the wire).
    pub tool: ToolDescriptor,
}

/// The answer to `tools/call`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallToolResult {
    /// Content blocks (`text`, `image`, `resource` ...), passed through as sent.
    #[serde(default)]
    pub content: Vec<Value>,
    /// The tool ran and failed; `content` says why (the model should see it).
    #[serde(rename = "isError", default)]
    pub is_error: bool,
    #[serde(
        rename = "structuredContent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub structured_content: Option<Value>,
}

impl CallToolResult {
    /// The text blocks joined by newlines.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `isError: true` as [`McpError::ToolError`], for callers that treat a
    /// failed tool like any other failure.
    pub fn into_result(self, tool: &str) -> Result<Self, McpError> {
        if self.is_error {
            Err(McpError::ToolError {
                tool: tool.to_owned(),
                message: self.text(),
            })
        } else {
            Ok(self)
        }
    }
}

/// Applies `cfg`'s allow or deny list, then its prefix. A list entry
/// matches a tool by its server name or by its prefixed name: operators
/// read the first in the provider's docs and the second in the agent's
/// tool list, and either should work.
pub fn apply_filters(cfg: &McpToolConfig, tools: Vec<ToolDescriptor>) -> Vec<ExposedTool> {
    let prefix = cfg.tool_name_prefix.as_deref().unwrap_or("");
    let listed = |list: &[String], remote: &str, exposed: &str| {
        list.iter().any(|n| n == remote || n == exposed)
    };
    tools
        .into_iter()
        .filter_map(|tool| {
            let exposed_name = format!("{prefix}{}", tool.name);
            if let Some(allow) = &cfg.allow_list
                && !listed(allow, &tool.name, &exposed_name)
            {
                return None;
            }
            if let Some(deny) = &cfg.deny_list
                && listed(deny, &tool.name, &exposed_name)
            {
                return None;
            }
            Some(ExposedTool { exposed_name, tool })
        })
        .collect()
}
