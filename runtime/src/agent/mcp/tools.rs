//! Which tools the agent exposes from its MCP servers, and how a tool's
//! answer becomes A2A parts.
//!
//! Tools are fixed at start: oauth2 servers are described by their
//! manifest (listing them needs some user's token), open servers by their
//! `tools/list`. A stdio server is started here (its `tools/list` starts
//! the agent's child process, which the pool keeps for calls). Each exposed tool keeps its compiled input schema, so
//! every call is validated before anything is sent.

use std::collections::HashMap;
use std::sync::Arc;

use amesh_mcp::client::{CallToolResult, McpClientPool};
use amesh_mcp::oauth::OAuthHttp;
use amesh_mcp::schema::ToolSchema;
use amesh_mcp::tool_config::McpToolConfig;
use anyhow::{Context, bail};
use serde_json::Value;
use url::Url;

use super::error::OAuthSetupError;
use crate::a2a::Part;

/// One configured MCP server.
pub(super) struct Server {
    pub cfg: McpToolConfig,
    /// The key of its credentials and sessions ([`McpToolConfig::tool_id`]).
    pub tool_id: String,
    /// The server's URL; `None` for a stdio server (a child process).
    pub mcp_url: Option<Url>,
    /// For this server's discovery, registration and token requests, with
    /// its reach and its `auth.allowed_internal_hosts`; only oauth2
    /// servers have one.
    pub oauth: Option<OAuthHttp>,
}

impl Server {
    /// The OAuth client, or the user-facing reason there is none.
    pub fn oauth_http(&self) -> Result<&OAuthHttp, OAuthSetupError> {
        self.oauth
            .as_ref()
            .ok_or_else(|| OAuthSetupError::NotOAuth(self.tool_id.clone()))
    }
}

/// One exposed tool: its server (index into the server list), what the
/// model reads about it, and its compiled input schema.
pub(super) struct Binding {
    pub server: usize,
    pub description: String,
    pub schema: ToolSchema,
    /// The schema as written, for the model.
    pub input_schema: Value,
}

/// The servers, the exposed tools by name, and the names in config order.
pub(super) type Built = (Vec<Arc<Server>>, HashMap<String, Binding>, Vec<String>);

/// Builds every server's tools; the first failure names its tool.
pub(super) async fn build(pool: &McpClientPool, cfgs: Vec<McpToolConfig>) -> anyhow::Result<Built> {
    let mut servers: Vec<Arc<Server>> = Vec::with_capacity(cfgs.len());
    let mut bindings: HashMap<String, Binding> = HashMap::new();
    let mut order = Vec::new();
    for cfg in cfgs {
        let tool_id = cfg.tool_id();
        let mcp_url = if cfg.connection_params.transport.is_stdio() {
            None
        } else {
            Some(
                Url::parse(cfg.connection_params.url.trim()).with_context(|| {
                    format!("MCP tool `{tool_id}`: connection_params.url is not a URL")
                })?,
            )
        };
        let exposed = pool
            .startup_tools(&cfg)
            .await
            .with_context(|| format!("MCP tool `{tool_id}`: cannot list its tools at start"))?;
        let index = servers.len();
        for tool in exposed {
            if let Some(other) = bindings.get(&tool.exposed_name) {
                // The same server twice: its tools/list repeats a name.
                let Some(earlier) = servers.get(other.server) else {
                    bail!(
                        "MCP tool `{tool_id}` lists the tool `{}` twice",
                        tool.exposed_name
                    );
                };
                bail!(
                    "MCP tools `{}` and `{tool_id}` both expose a tool named `{}`; set tool_name_prefix on one of them",
                    earlier.tool_id,
                    tool.exposed_name
                );
            }
            let schema =
                ToolSchema::compile(&tool.exposed_name, &tool.tool.name, &tool.tool.input_schema)
                    .with_context(|| format!("MCP tool `{tool_id}`"))?;
            order.push(tool.exposed_name.clone());
            bindings.insert(
                tool.exposed_name,
                Binding {
                    server: index,
                    description: tool.tool.description.unwrap_or_default(),
                    schema,
                    input_schema: tool.tool.input_schema,
                },
            );
        }
        let oauth = mcp_url
            .as_ref()
            .filter(|_| cfg.requires_user_auth())
            .map(|url| OAuthHttp::new(url, cfg.allowed_internal_hosts()))
            .transpose()
            .with_context(|| format!("MCP tool `{tool_id}`: cannot build its OAuth client"))?;
        servers.push(Arc::new(Server {
            cfg,
            tool_id,
            mcp_url,
            oauth,
        }));
    }
    Ok((servers, bindings, order))
}

/// A tool's answer as A2A parts: `text` blocks as text parts, every other
/// block (image, resource, ...) and `structuredContent` as data parts.
pub(super) fn to_parts(result: CallToolResult) -> Vec<Part> {
    let mut parts: Vec<Part> = result
        .content
        .into_iter()
        .map(|block| {
            let text = (block.get("type").and_then(Value::as_str) == Some("text"))
                .then(|| block.get("text").and_then(Value::as_str))
                .flatten();
            match text {
                Some(text) => Part::text(text),
                None => Part::data(block),
            }
        })
        .collect();
    if let Some(structured) = result.structured_content {
        parts.push(Part::data(structured));
    }
    if parts.is_empty() {
        parts.push(Part::text("(the tool returned no content)"));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_becomes_text_parts_and_everything_else_data() {
        let result: CallToolResult = serde_json::from_value(json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"}
            ],
            "structuredContent": {"name": "alice"}
        }))
        .expect("result");
        let parts = to_parts(result);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], Part::text("hello"));
        assert!(matches!(&parts[1], Part::Data { data, .. } if data["type"] == "image"));
        assert_eq!(parts[2], Part::data(json!({"name": "alice"})));
    }
}
