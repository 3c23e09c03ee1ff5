//! Static tool manifests and the checks serde cannot make on an MCP tool block.
//!
//! A tool behind user OAuth cannot be listed when the agent starts: listing
//! needs some user's token. So such a block declares its tools (`manifest:`)
//! and the agent advertises them to the model from config. Because the
//! manifest is then the only description the model sees, it is checked hard
//! at load time: every entry has a name, a description and an input schema
//! that is itself a valid JSON Schema.
//!
//! Errors are data ([`ManifestError`]: tool id, entry index and name, field
//! path, kind) so the runtime's loader can point at the YAML line.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::ToolDescriptor;
use crate::schema;
use crate::secret::ExposeSecret as _;
use crate::tool_config::{AuthConfig, McpToolConfig};

/// One declared tool, shaped like an entry of an MCP `tools/list` answer so
/// that answer can be pasted in. Fields are optional here only so a missing
/// one is reported with its entry's index and name rather than as a bare
/// serde error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Some servers' `tools/list` answers (and SAM's examples copied from
    /// them) carry an `id`; accepted, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        rename = "inputSchema",
        alias = "input_schema",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub input_schema: Option<Value>,
    /// Accepted (tools/list output carries it) but not used by the client.
    #[serde(
        rename = "outputSchema",
        alias = "output_schema",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub output_schema: Option<Value>,
    /// Accepted (tools/list output carries it) but not used by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    /// Accepted (tools/list output carries it) but not used by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<Value>,
    /// Accepted (tools/list output carries it) but not used by the client.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// MCP 2025-11 task support hints; accepted, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Value>,
}

impl ManifestEntry {
    /// The entry as a descriptor, if it has everything one needs.
    pub fn to_descriptor(&self) -> Option<ToolDescriptor> {
        Some(ToolDescriptor {
            name: self.name.clone()?,
            description: self.description.clone(),
            input_schema: self.input_schema.clone()?,
        })
    }
}

/// The manifest's tools as descriptors, skipping incomplete entries
/// (validation reports those).
pub fn manifest_tools(cfg: &McpToolConfig) -> Vec<ToolDescriptor> {
    cfg.manifest
        .iter()
        .flatten()
        .filter_map(ManifestEntry::to_descriptor)
        .collect()
}

/// What is wrong, for callers that react by kind (tests, tooling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestErrorKind {
    /// `auth: oauth2` without a non-empty `manifest`.
    MissingManifest,
    /// A manifest entry lacks `name`, `description` or `inputSchema`.
    MissingField,
    /// A field is present but empty or of the wrong shape.
    InvalidField,
    /// `inputSchema` is not a valid JSON Schema (or not an object schema).
    InvalidSchema,
    /// Two manifest entries share a name.
    DuplicateName,
    /// `allow_list` and `deny_list` are both set.
    ConflictingLists,
    /// `connection_params.url` is not an absolute http(s) URL, or is http
    /// to a host that is not loopback without `allow_insecure_http`; or
    /// `auth.authorization_url` / `auth.token_url` is not https (or http to
    /// a loopback host).
    InvalidUrl,
    /// A connection parameter (timeout, header) is unusable.
    InvalidConnectionParam,
}

/// One problem in one MCP tool block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// [`McpToolConfig::tool_id`] of the block.
    pub tool_id: String,
    /// Index in `manifest`, when the problem is in an entry.
    pub entry_index: Option<usize>,
    /// That entry's `name`, when it has one.
    pub entry_name: Option<String>,
    /// Key path inside the tool block, e.g. `manifest[2].inputSchema`,
    /// `allow_list`, `connection_params.url`: what the loader looks up to
    /// find the line.
    pub field: String,
    pub kind: ManifestErrorKind,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MCP tool `{}`", self.tool_id)?;
        match (self.entry_index, &self.entry_name) {
            (Some(i), Some(name)) => write!(f, ", manifest entry {i} (`{name}`)")?,
            (Some(i), None) => write!(f, ", manifest entry {i}")?,
            _ => {}
        }
        write!(f, ", `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Checks one MCP tool block; returns every problem, not just the first,
/// so an operator fixes a config in one pass.
pub fn validate(cfg: &McpToolConfig) -> Result<(), Vec<ManifestError>> {
    let tool_id = cfg.tool_id();
    let mut errors = Vec::new();
    let mut push = |entry: Option<(usize, Option<&str>)>, field: String, kind, message: String| {
        errors.push(ManifestError {
            tool_id: tool_id.clone(),
            entry_index: entry.map(|(i, _)| i),
            entry_name: entry.and_then(|(_, n)| n.map(str::to_owned)),
            field,
            kind,
            message,
        })
    };

    check_connection(cfg, &mut push);
    check_auth_endpoints(cfg, &mut push);

    if cfg.allow_list.is_some() && cfg.deny_list.is_some() {
        push(
            None,
            "deny_list".into(),
            ManifestErrorKind::ConflictingLists,
            "allow_list and deny_list exclude each other; keep one".into(),
        );
    }

    let manifest = cfg.manifest.as_deref().unwrap_or_default();
    if matches!(cfg.auth, Some(AuthConfig::OAuth2 { .. })) && manifest.is_empty() {
        push(
            None,
            "manifest".into(),
            ManifestErrorKind::MissingManifest,
            "a tool with `auth: {type: oauth2}` needs a non-empty `manifest`: its tools \
             cannot be listed before a user has logged in"
                .into(),
        );
    }

    let mut seen = HashSet::new();
    for (index, entry) in manifest.iter().enumerate() {
        let name = entry.name.as_deref().filter(|n| !n.trim().is_empty());
        let at = Some((index, name));
        let field = |f: &str| format!("manifest[{index}].{f}");
        match &entry.name {
            None => push(
                at,
                field("name"),
                ManifestErrorKind::MissingField,
                "missing `name`".into(),
            ),
            Some(n) if n.trim().is_empty() => push(
                at,
                field("name"),
                ManifestErrorKind::InvalidField,
                "`name` is empty".into(),
            ),
            Some(n) if !seen.insert(n.as_str()) => push(
                at,
                field("name"),
                ManifestErrorKind::DuplicateName,
                format!("`{n}` is declared more than once"),
            ),
            Some(_) => {}
        }
        match &entry.description {
            None => push(
                at,
                field("description"),
                ManifestErrorKind::MissingField,
                "missing `description`: the model chooses tools by it".into(),
            ),
            Some(d) if d.trim().is_empty() => push(
                at,
                field("description"),
                ManifestErrorKind::InvalidField,
                "`description` is empty: the model chooses tools by it".into(),
            ),
            Some(_) => {}
        }
        match &entry.input_schema {
            None => push(
                at,
                field("inputSchema"),
                ManifestErrorKind::MissingField,
                "missing `inputSchema`".into(),
            ),
            Some(schema) => {
                if let Err(problems) = schema::check_input_schema(schema) {
                    push(
                        at,
                        field("inputSchema"),
                        ManifestErrorKind::InvalidSchema,
                        format!("not a valid tool input schema: {}", problems.join("; ")),
                    );
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

type Push<'a> = dyn FnMut(Option<(usize, Option<&str>)>, String, ManifestErrorKind, String) + 'a;

fn check_connection(cfg: &McpToolConfig, push: &mut Push<'_>) {
    let params = &cfg.connection_params;
    if params.transport.is_stdio() {
        check_stdio(cfg, push);
    } else {
        check_url(cfg, push);
    }
    for (key, value) in [
        ("timeout", params.timeout),
        ("sse_read_timeout", params.sse_read_timeout),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            push(
                None,
                format!("connection_params.{key}"),
                ManifestErrorKind::InvalidConnectionParam,
                format!("expected a positive number of seconds, found {v}"),
            );
        }
    }
    for (name, value) in &params.headers {
        let bad_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err();
        let bad_value = reqwest::header::HeaderValue::from_str(value.expose_secret()).is_err();
        let field = format!("connection_params.headers.{name}");
        if bad_name || bad_value {
            push(
                None,
                field,
                ManifestErrorKind::InvalidConnectionParam,
                "not a valid HTTP header name or value".into(),
            );
        } else if cfg.auth.is_some() && name.eq_ignore_ascii_case("authorization") {
            push(
                None,
                field,
                ManifestErrorKind::InvalidConnectionParam,
                "`Authorization` is set per user by `auth`; remove the static header".into(),
            );
        }
    }
}

/// A stdio server is a child process: it needs a command, and has no URL,
/// headers, TLS or OAuth (it runs with the agent's rights and whatever
/// `environment_variables` give it, the same for every user).
fn check_stdio(cfg: &McpToolConfig, push: &mut Push<'_>) {
    let params = &cfg.connection_params;
    if params
        .command
        .as_deref()
        .is_none_or(|c| c.trim().is_empty())
    {
        push(
            None,
            "connection_params.command".into(),
            ManifestErrorKind::MissingField,
            "`type: stdio` needs `command`, the program that runs the MCP server".into(),
        );
    }
    if cfg.auth.is_some() {
        push(
            None,
            "auth".into(),
            ManifestErrorKind::InvalidConnectionParam,
            "a stdio MCP server has no OAuth (it is a child process of the agent, not a \
             remote service users log in to); remove `auth` and pass credentials in \
             `environment_variables`"
                .into(),
        );
    }
    let unused = [
        ("url", !params.url.trim().is_empty()),
        ("headers", !params.headers.is_empty()),
        ("sse_read_timeout", params.sse_read_timeout.is_some()),
        ("tls_insecure_skip_verify", params.tls_insecure_skip_verify),
        ("allow_insecure_http", params.allow_insecure_http),
    ];
    for (key, set) in unused {
        if set {
            push(
                None,
                format!("connection_params.{key}"),
                ManifestErrorKind::InvalidConnectionParam,
                format!("`{key}` has no meaning for `type: stdio`; remove it"),
            );
        }
    }
    for name in cfg.environment_variables.keys() {
        if name.is_empty() || name.contains(['=', '\0']) {
            push(
                None,
                format!("environment_variables.{name}"),
                ManifestErrorKind::InvalidField,
                "not a valid environment variable name".into(),
            );
        }
    }
}

fn check_url(cfg: &McpToolConfig, push: &mut Push<'_>) {
    let params = &cfg.connection_params;
    let stdio_only = [
        ("connection_params.command", params.command.is_some()),
        ("connection_params.args", !params.args.is_empty()),
        ("connection_params.cwd", params.cwd.is_some()),
        (
            "environment_variables",
            !cfg.environment_variables.is_empty(),
        ),
    ];
    for (key, set) in stdio_only {
        if set {
            push(
                None,
                key.into(),
                ManifestErrorKind::InvalidConnectionParam,
                format!("`{key}` is only for `type: stdio` (a local child process)"),
            );
        }
    }
    if params.url.trim().is_empty() {
        push(
            None,
            "connection_params.url".into(),
            ManifestErrorKind::MissingField,
            "missing `url`, the MCP server's http(s) URL (a local server started as a \
             child process is `type: stdio` with `command`)"
                .into(),
        );
        return;
    }
    match url::Url::parse(params.url.trim()) {
        Ok(url)
            if url.scheme() == "http"
                && url.host_str().is_some()
                && !crate::oauth::is_loopback(&url)
                && !params.allow_insecure_http =>
        {
            push(
                None,
                "connection_params.url".into(),
                ManifestErrorKind::InvalidUrl,
                format!(
                    "http:// to {:?}, which is not a loopback host, would carry requests and \
                     credentials unencrypted; use https, or set `allow_insecure_http: true` in \
                     connection_params",
                    url.host_str().unwrap_or_default()
                ),
            )
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
        Ok(url) => push(
            None,
            "connection_params.url".into(),
            ManifestErrorKind::InvalidUrl,
            format!(
                "expected an http:// or https:// URL with a host, found scheme `{}`",
                url.scheme()
            ),
        ),
        Err(e) => push(
            None,
            "connection_params.url".into(),
            ManifestErrorKind::InvalidUrl,
            format!("expected an absolute http(s) URL: {e}"),
        ),
    }
}

/// Configured OAuth endpoints get the check discovered ones get
/// ([`crate::oauth::endpoint_url`]), at load time rather than at a user's
/// first login: the authorization URL is opened in users' browsers. The
/// allow-list of internal hosts must hold bare hosts, the only thing the
/// OAuth client matches.
fn check_auth_endpoints(cfg: &McpToolConfig, push: &mut Push<'_>) {
    let Some(AuthConfig::OAuth2 {
        authorization_url,
        token_url,
        allowed_internal_hosts,
        ..
    }) = &cfg.auth
    else {
        return;
    };
    for (index, entry) in allowed_internal_hosts.iter().enumerate() {
        if let Err(reason) = entry.parse::<crate::oauth::AllowedHost>() {
            push(
                None,
                format!("auth.allowed_internal_hosts[{index}]"),
                ManifestErrorKind::InvalidField,
                format!("{entry:?} is not a host name or IP address: {reason}"),
            );
        }
    }
    for (key, value) in [
        ("authorization_url", authorization_url),
        ("token_url", token_url),
    ] {
        if let Some(value) = value
            && let Err(e) = crate::oauth::endpoint_url(key, value.trim())
        {
            push(
                None,
                format!("auth.{key}"),
                ManifestErrorKind::InvalidUrl,
                e.to_string(),
            );
        }
    }
}
