//! Which MCP protocol revision a session speaks, and how it is chosen.
//!
//! Two eras (MCP 2026-07-28, "Versioning and Compatibility"):
//!
//! - **modern** (2026-07-28): no handshake and no session. Every request
//!   carries the protocol version, amesh's identity and its capabilities
//!   in `_meta` (and, over HTTP, in `MCP-Protocol-Version` / `Mcp-Method`
//!   / `Mcp-Name` headers). Only a client that speaks it gets the multi
//!   round-trip requests that URL-mode elicitation needs.
//! - **legacy** (2025-11-25 back to 2024-11-05): `initialize`, then
//!   `notifications/initialized`, a session id over Streamable HTTP.
//!
//! amesh is dual-era. On Streamable HTTP and stdio the session first sends
//! `server/discover` (which every modern server implements) as 2026-07-28:
//! a discover result, or a modern error naming the versions the server
//! supports, means a modern server; any other answer — a 4xx without a
//! modern error body, `Method not found`, a stdio server that stays silent
//! until the timeout — means a legacy one, and the session falls back to
//! `initialize`. The legacy HTTP+SSE transport is legacy by definition and
//! goes straight to `initialize`.

use serde_json::{Value, json};

use super::error::McpError;
use super::input::client_capabilities;

/// The modern revision amesh speaks, and asks for first.
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

/// The handshake revisions amesh accepts, newest first; `initialize`
/// offers the first. The messages amesh sends (`tools/list`, `tools/call`)
/// mean the same in all of them.
pub const LEGACY_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// `UnsupportedProtocolVersionError` (its `data.supported` lists what the
/// server speaks).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// `HeaderMismatch` and `MissingRequiredClientCapability`: modern errors
/// that say the request was wrong, not that the server is legacy.
const MODERN_REQUEST_ERRORS: [i64; 2] = [-32020, -32021];

/// What a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    Modern,
    Legacy,
}

/// Whether `version` is a modern (per-request metadata) revision.
pub fn is_modern(version: &str) -> bool {
    version == MODERN_PROTOCOL_VERSION
}

/// The `_meta` every modern request carries.
pub(crate) fn request_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "amesh", "version": env!("CARGO_PKG_VERSION")},
        "io.modelcontextprotocol/clientCapabilities": client_capabilities(),
    })
}

/// Adds [`request_meta`] to `params`, keeping any `_meta` keys already there.
pub(crate) fn add_meta(params: &mut Value) {
    if params.is_null() {
        *params = json!({});
    }
    let Value::Object(map) = params else { return };
    let meta = map.entry("_meta").or_insert_with(|| json!({}));
    if let (Value::Object(meta), Value::Object(ours)) = (meta, request_meta()) {
        meta.extend(ours);
    }
}

/// The era a `server/discover` answer shows. `stdio` says a timeout means
/// a silent legacy server (over HTTP it means an unreachable one).
pub(crate) fn era_of_probe(
    tool_id: &str,
    answer: Result<Value, McpError>,
    stdio: bool,
) -> Result<Era, McpError> {
    let from_supported = |supported: Option<&Value>| -> Result<Era, McpError> {
        let listed: Vec<&str> = supported
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if listed.iter().any(|v| is_modern(v)) {
            Ok(Era::Modern)
        } else if listed.iter().any(|v| LEGACY_PROTOCOL_VERSIONS.contains(v)) {
            Ok(Era::Legacy)
        } else {
            Err(McpError::protocol(
                tool_id,
                format!(
                    "the server speaks MCP {listed:?}; amesh speaks {MODERN_PROTOCOL_VERSION} and {LEGACY_PROTOCOL_VERSIONS:?}"
                ),
            ))
        }
    };
    match answer {
        Ok(result) => from_supported(result.get("supportedVersions")),
        Err(McpError::Rpc { code, data, .. }) if code == UNSUPPORTED_PROTOCOL_VERSION => {
            from_supported(data.as_ref().and_then(|d| d.get("supported")))
        }
        Err(e @ McpError::Rpc { code, .. }) if MODERN_REQUEST_ERRORS.contains(&code) => Err(e),
        // Authorization is needed whatever the era; a broken connection
        // says nothing about it.
        Err(
            e @ (McpError::Unauthorized { .. }
            | McpError::Forbidden { .. }
            | McpError::Transport { .. }
            | McpError::Config { .. }),
        ) => Err(e),
        Err(e @ McpError::Timeout { .. }) if !stdio => Err(e),
        Err(_) => Ok(Era::Legacy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i64, data: Option<Value>) -> McpError {
        McpError::Rpc {
            tool_id: "t".into(),
            method: "server/discover".into(),
            code,
            message: "m".into(),
            data,
        }
    }

    #[test]
    fn discover_results_and_modern_errors_pick_the_era() {
        let modern = json!({"supportedVersions": ["2026-07-28"], "capabilities": {}});
        assert_eq!(era_of_probe("t", Ok(modern), false).unwrap(), Era::Modern);
        let listed = rpc(-32022, Some(json!({"supported": ["2025-11-25"]})));
        assert_eq!(era_of_probe("t", Err(listed), false).unwrap(), Era::Legacy);
        let unknown = rpc(-32022, Some(json!({"supported": ["2030-01-01"]})));
        assert!(era_of_probe("t", Err(unknown), false).is_err());
        assert!(era_of_probe("t", Err(rpc(-32020, None)), false).is_err());
        // A legacy server's answers to an unknown pre-initialize request.
        assert_eq!(
            era_of_probe("t", Err(rpc(-32601, None)), true).unwrap(),
            Era::Legacy
        );
        let http = McpError::Http {
            tool_id: "t".into(),
            status: 400,
        };
        assert_eq!(era_of_probe("t", Err(http), false).unwrap(), Era::Legacy);
        let timeout = || McpError::Timeout {
            tool_id: "t".into(),
            method: "server/discover".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            era_of_probe("t", Err(timeout()), true).unwrap(),
            Era::Legacy
        );
        assert!(era_of_probe("t", Err(timeout()), false).is_err());
        let unauthorized = McpError::Unauthorized {
            tool_id: "t".into(),
            www_authenticate: None,
            status: 401,
        };
        assert!(era_of_probe("t", Err(unauthorized), false).is_err());
    }

    #[test]
    fn meta_is_added_beside_the_callers_own() {
        let mut params = json!({"name": "x", "_meta": {"progressToken": 1}});
        add_meta(&mut params);
        assert_eq!(params["_meta"]["progressToken"], 1);
        assert_eq!(
            params["_meta"]["io.modelcontextprotocol/protocolVersion"],
            MODERN_PROTOCOL_VERSION
        );
        assert_eq!(
            params["_meta"]["io.modelcontextprotocol/clientCapabilities"],
            json!({"elicitation": {"url": {}}})
        );
    }
}
