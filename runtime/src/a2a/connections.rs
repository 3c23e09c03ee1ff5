//! `amesh/connections/*`: a user's connected accounts at an agent (the
//! credentials it holds for that user's MCP servers). amesh's own JSON-RPC
//! methods beside A2A's, spoken by the gateway (for the web page's
//! connected accounts) and the agent; the user is the one the gateway's
//! signed identity token names, never a parameter.

use serde::{Deserialize, Serialize};

/// Lists the agent's MCP servers that need authorization, each with the
/// user's credential metadata if connected. Params: `{}`.
pub const LIST: &str = "amesh/connections/list";
/// Revokes the user's grant at the provider (RFC 7009, when offered) and
/// marks the credential deleted. Params: [`ToolParams`].
pub const DISCONNECT: &str = "amesh/connections/disconnect";
/// Starts an authorization outside any task; answers the authorization
/// URL. Params: [`ToolParams`].
pub const CONNECT: &str = "amesh/connections/connect";

/// Whether `method` is one of these.
pub fn is_method(method: &str) -> bool {
    matches!(method, LIST | DISCONNECT | CONNECT)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolParams {
    /// The MCP server's `id` in the agent's config.
    pub tool_id: String,
}
