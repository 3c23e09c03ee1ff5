//! The `tool_type: mcp` block of an agent's `tools:` list.
//!
//! These types are what the runtime's YAML loader embeds; they mirror Solace
//! Agent Mesh's MCP tool block so an operator can carry a SAM config over
//! unchanged. Every struct denies unknown fields: a misspelt `allow_lst`
//! silently exposing every tool is worse than a config error.
//!
//! Checking what serde cannot (manifest entries, schemas, exclusive lists,
//! URL schemes) lives in [`crate::manifest`], reached through
//! [`McpToolConfig::validate`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::SecretString;

use crate::manifest::{ManifestEntry, ManifestError};

/// Default per-request timeout when `connection_params.timeout` is absent,
/// the same 30 s SAM uses.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One remote MCP server and how the agent may use its tools.
///
/// Held by the runtime's agent config for the agent's lifetime; cheap enough
/// to clone into the places (pool, OAuth flow) that need it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolConfig {
    /// `mcp`. Optional because a loader that dispatches on `tool_type`
    /// (an internally tagged enum) consumes it before this struct sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_type: Option<McpToolType>,
    /// Stable name of this server in credentials and logs; see [`Self::tool_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub connection_params: ConnectionParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Tools declared up front. Required with `auth`, because listing tools
    /// needs a user's token and the agent must describe its tools before any
    /// user has logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Vec<ManifestEntry>>,
    /// Prepended to every exposed tool name, to keep two servers' `search`
    /// tools apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_list: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_list: Option<Vec<String>>,
    /// JSON Schema dialect the model provider wants in tool declarations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_dialect: Option<SchemaDialect>,
    /// `type: stdio` only: the child's environment on top of `PATH` and
    /// `HOME` (see [`crate::client::stdio`] for why nothing else is
    /// inherited). Values are often API keys: `Debug` redacts them and
    /// nothing logs them.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "crate::secret::map::serialize"
    )]
    pub environment_variables: BTreeMap<String, SecretString>,
}

/// The only accepted value of `tool_type` in this block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McpToolType {
    Mcp,
}

/// How to reach the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionParams {
    #[serde(rename = "type")]
    pub transport: TransportKind,
    /// The server's URL (`streamable-http`, `sse`). Empty for `stdio`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `stdio`: the program to start (looked up on `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `stdio`: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `stdio`: its working directory (default: the agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Seconds allowed for one request (connect, send, and the whole answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Seconds the legacy SSE stream may stay silent before it is dropped
    /// (SAM's name). Absent: no idle limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_read_timeout: Option<f64>,
    /// Static headers sent with every request (e.g. an API gateway key).
    /// `Authorization` is refused by validation when `auth` is set.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "crate::secret::map::serialize"
    )]
    pub headers: BTreeMap<String, SecretString>,
    /// Turns certificate verification off for this server only. Exists for
    /// test rigs with self-signed certificates; logged as a warning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure_skip_verify: bool,
    /// Allows an `http:` URL to a host that is not loopback. Without it such
    /// a URL is a config error: users' access tokens (and any static
    /// header) would cross the network in clear text. For a lab network or
    /// a sidecar reached by name; logged as a warning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

impl ConnectionParams {
    /// The per-request timeout, [`DEFAULT_TIMEOUT`] when unset or unusable
    /// (validation reports unusable values).
    pub fn timeout(&self) -> Duration {
        positive_secs(self.timeout).unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Idle limit of the legacy SSE stream, if any.
    pub fn sse_read_timeout(&self) -> Option<Duration> {
        positive_secs(self.sse_read_timeout)
    }
}

fn positive_secs(secs: Option<f64>) -> Option<Duration> {
    secs.filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// Which MCP transport the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransportKind {
    /// Legacy HTTP+SSE (protocol 2024-11-05): GET an event stream, POST to
    /// the endpoint it announces.
    #[serde(rename = "sse")]
    Sse,
    /// Streamable HTTP (2025-03-26 and later): POST every message to one URL.
    #[serde(rename = "streamable-http", alias = "streamable_http")]
    StreamableHttp,
    /// A child process per agent, newline-delimited JSON-RPC on its
    /// stdin and stdout.
    #[serde(rename = "stdio")]
    Stdio,
}

impl TransportKind {
    /// Whether the server is a child process (no URL, no OAuth).
    pub fn is_stdio(self) -> bool {
        self == Self::Stdio
    }
}

/// How users authorize the agent at this server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum AuthConfig {
    /// User delegated OAuth2. Every field is optional: what is missing is
    /// discovered (protected resource metadata, authorization server
    /// metadata) or registered dynamically.
    #[serde(rename = "oauth2")]
    OAuth2 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "crate::secret::option::serialize"
        )]
        client_secret: Option<SecretString>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
        /// A list, or one space-separated string as in an OAuth `scope`.
        #[serde(
            default,
            deserialize_with = "scopes_list_or_string",
            skip_serializing_if = "Vec::is_empty"
        )]
        scopes: Vec<String>,
        /// Hosts (names or IP addresses, no ports) the OAuth requests for
        /// this server may reach although they resolve to an address more
        /// internal than the MCP server's: e.g. an identity provider on the
        /// corporate network behind a public MCP server. Without an entry,
        /// a public server's metadata cannot send amesh to a private,
        /// loopback or link-local address ([`crate::oauth::permits`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allowed_internal_hosts: Vec<String>,
    },
}

fn scopes_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        List(Vec<String>),
        Spaced(String),
    }
    Ok(match Scopes::deserialize(d)? {
        Scopes::List(list) => list,
        Scopes::Spaced(s) => s.split_whitespace().map(str::to_owned).collect(),
    })
}

/// JSON Schema dialects a model provider may insist on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SchemaDialect {
    #[serde(rename = "draft-07", alias = "draft7")]
    Draft07,
    #[serde(rename = "2020-12", alias = "draft-2020-12")]
    Draft202012,
}

impl McpToolConfig {
    /// The key of this server in credentials, sessions and error messages:
    /// the configured `id`, else the normalized URL (lowercase scheme and
    /// host, default port, query, fragment and trailing slash dropped), so
    /// `HTTPS://Mcp.Example.com:443/v1/sse/` and
    /// `https://mcp.example.com/v1/sse` share one OAuth grant.
    ///
    /// A stdio server without `id` is `stdio:` and its command line.
    pub fn tool_id(&self) -> String {
        match self.id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ if self.connection_params.transport.is_stdio() => {
                let params = &self.connection_params;
                let words: Vec<&str> = params
                    .command
                    .iter()
                    .chain(&params.args)
                    .map(|w| w.trim())
                    .filter(|w| !w.is_empty())
                    .collect();
                format!("stdio:{}", words.join(" "))
            }
            _ => normalize_url(&self.connection_params.url),
        }
    }

    /// `auth.allowed_internal_hosts` (empty without an oauth2 block).
    pub fn allowed_internal_hosts(&self) -> &[String] {
        match &self.auth {
            Some(AuthConfig::OAuth2 {
                allowed_internal_hosts,
                ..
            }) => allowed_internal_hosts,
            None => &[],
        }
    }

    /// Whether users must authorize with OAuth2 before tools run.
    pub fn requires_user_auth(&self) -> bool {
        matches!(self.auth, Some(AuthConfig::OAuth2 { .. }))
    }

    /// Everything serde cannot check; see [`crate::manifest::validate`].
    pub fn validate(&self) -> Result<(), Vec<ManifestError>> {
        crate::manifest::validate(self)
    }
}

/// Normalizes an MCP server URL for use as a tool id; an unparsable URL is
/// returned trimmed (validation reports it).
pub fn normalize_url(raw: &str) -> String {
    let raw = raw.trim();
    let Ok(url) = url::Url::parse(raw) else {
        return raw.to_owned();
    };
    let Some(host) = url.host_str() else {
        return raw.to_owned();
    };
    // `Url` already lowercases scheme and host and drops a default port.
    let mut out = format!("{}://{}", url.scheme(), host.to_ascii_lowercase());
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path().trim_end_matches('/'));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let auth = AuthConfig::OAuth2 {
            client_id: Some("cid".into()),
            client_secret: Some(SecretString::from("s3cr3t")),
            authorization_url: None,
            token_url: None,
            scopes: vec![],
            allowed_internal_hosts: vec![],
        };
        let shown = format!("{auth:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.contains("s3cr3t"));
    }

    #[test]
    fn scopes_accept_a_spaced_string() {
        let auth: AuthConfig =
            serde_json::from_value(serde_json::json!({"type": "oauth2", "scopes": "a b  c"}))
                .unwrap();
        let AuthConfig::OAuth2 { scopes, .. } = auth;
        assert_eq!(scopes, ["a", "b", "c"]);
    }

    #[test]
    fn unknown_auth_field_is_refused() {
        let err = serde_json::from_value::<AuthConfig>(
            serde_json::json!({"type": "oauth2", "client_idd": "x"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("client_idd"), "{err}");
    }
}
