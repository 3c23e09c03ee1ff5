//! An MCP session: one user's initialized conversation with one server.
//!
//! The session picks the protocol era ([`super::version`]): a 2026-07-28
//! server is stateless (every request carries `_meta`, nothing to
//! initialize), an older one gets the lifecycle (`initialize`,
//! `notifications/initialized`). Over any of the three transports it
//! offers the two operations an agent needs,
//! paged `tools/list` and `tools/call`. It owns the user's bearer token for
//! its whole life; a new token means a new session (see
//! [`super::pool::McpClientPool`]).
//!
//! When the server forgets the session ([`McpError::SessionExpired`]) the
//! session re-initializes once and retries the request; concurrent callers
//! that hit the same expiry share one re-initialization (a generation
//! counter tells a waiter that someone else already did it).

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::error::McpError;
use super::http::Endpoint;
use super::input::{self, Retry};
use super::jsonrpc::{self, Request, RpcError};
use super::sse::LegacySse;
use super::stdio::StdioTransport;
use super::streamable::Streamable;
use super::version::{self, Era, LEGACY_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSION, era_of_probe};
use super::{CallToolResult, ToolDescriptor};
use crate::schema::{ToolSchema, validate_arguments};
use crate::tool_config::{McpToolConfig, TransportKind};

/// The protocol revision we ask for first; a server that does not speak
/// it gets one of [`LEGACY_PROTOCOL_VERSIONS`] (the messages we use are the
/// same in all of them).
pub const PROTOCOL_VERSION: &str = MODERN_PROTOCOL_VERSION;

/// The longest a stdio server may stay silent to `server/discover` before
/// it is taken for a legacy server that ignores unknown requests.
const STDIO_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed to tell a stdio server a request was given up.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

/// A server that pages forever is cut off after this many `tools/list` pages.
const MAX_TOOL_PAGES: usize = 1000;

/// The three wire protocols behind one set of operations.
#[derive(Debug)]
enum Transport {
    Streamable(Streamable),
    Sse(LegacySse),
    Stdio(StdioTransport),
}

impl Transport {
    async fn request(&self, request: &Request) -> Result<Result<Value, RpcError>, McpError> {
        match self {
            Self::Streamable(t) => t.request(request).await,
            Self::Sse(t) => t.request(request).await,
            Self::Stdio(t) => t.request(request).await,
        }
    }

    async fn notify(&self, message: &Value) -> Result<(), McpError> {
        match self {
            Self::Streamable(t) => t.notify(message).await,
            Self::Sse(t) => t.notify(message).await,
            Self::Stdio(t) => t.notify(message).await,
        }
    }

    async fn reset(&self) -> Result<(), McpError> {
        match self {
            Self::Streamable(t) => {
                t.reset();
                Ok(())
            }
            Self::Sse(t) => t.reset().await,
            Self::Stdio(t) => t.reset().await,
        }
    }
}

/// What the server said about itself when the session was initialized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerInfo {
    /// The protocol revision in use.
    pub protocol_version: String,
    /// `serverInfo` (name, version ...), as sent.
    pub server_info: Value,
    /// `capabilities`, as sent.
    pub capabilities: Value,
    pub instructions: Option<String>,
}

/// One user's MCP session with one server. Shared as `Arc<Session>`;
/// requests may run concurrently.
#[derive(Debug)]
pub struct Session {
    tool_id: String,
    transport: Transport,
    timeout: Duration,
    next_id: AtomicU64,
    /// Bumped by every successful re-initialization.
    generation: AtomicU64,
    /// Serializes re-initialization.
    reinit: tokio::sync::Mutex<()>,
    info: RwLock<ServerInfo>,
    /// A 2026-07-28 session: requests carry `_meta`.
    modern: AtomicBool,
}

impl Session {
    /// Opens and initializes a session. `http` is the pooled client for the
    /// server's TLS mode; `access_token` is the user's token, sent as
    /// `Authorization: Bearer` on every request. A stdio server ignores
    /// both and is started with the default message limit (see
    /// [`Session::connect_stdio`]).
    pub async fn connect(
        cfg: &McpToolConfig,
        http: reqwest::Client,
        access_token: Option<&crate::secret::SecretString>,
    ) -> Result<Self, McpError> {
        let transport = match cfg.connection_params.transport {
            TransportKind::StreamableHttp => {
                Transport::Streamable(Streamable::new(Endpoint::new(cfg, http, access_token)?))
            }
            TransportKind::Sse => Transport::Sse(LegacySse::new(
                Endpoint::new(cfg, http, access_token)?,
                cfg.connection_params.sse_read_timeout(),
            )),
            TransportKind::Stdio => {
                return Self::connect_stdio(cfg, super::http::MAX_BODY_BYTES).await;
            }
        };
        Self::start(cfg, transport).await
    }

    /// Starts a stdio server's process and initializes it; `max_line` is
    /// the longest message (line) accepted from it.
    pub async fn connect_stdio(cfg: &McpToolConfig, max_line: usize) -> Result<Self, McpError> {
        if !cfg.connection_params.transport.is_stdio() {
            return Err(McpError::Config {
                tool_id: cfg.tool_id(),
                message: "not a `type: stdio` server".into(),
            });
        }
        Self::start(cfg, Transport::Stdio(StdioTransport::new(cfg, max_line))).await
    }

    async fn start(cfg: &McpToolConfig, transport: Transport) -> Result<Self, McpError> {
        let session = Self {
            tool_id: cfg.tool_id(),
            transport,
            timeout: cfg.connection_params.timeout(),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            reinit: tokio::sync::Mutex::new(()),
            info: RwLock::new(ServerInfo::default()),
            modern: AtomicBool::new(false),
        };
        session.initialize().await?;
        Ok(session)
    }

    pub fn tool_id(&self) -> &str {
        &self.tool_id
    }

    /// What the server said at (the latest) initialize.
    pub fn server_info(&self) -> ServerInfo {
        self.info.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The protocol revision the server chose.
    pub fn protocol_version(&self) -> String {
        self.server_info().protocol_version
    }

    /// Whether the session speaks 2026-07-28 (stateless, multi round-trip).
    pub fn is_modern(&self) -> bool {
        self.modern.load(Ordering::Acquire)
    }

    /// The `Mcp-Session-Id` the server assigned (Streamable HTTP only).
    pub fn session_id(&self) -> Option<String> {
        match &self.transport {
            Transport::Streamable(t) => t.session_id(),
            Transport::Sse(_) | Transport::Stdio(_) => None,
        }
    }

    /// Lists the server's tools, following `nextCursor` to the last page.
    pub async fn list_tools(&self) -> Result<Vec<ToolDescriptor>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_TOOL_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            let listed = page
                .get("tools")
                .cloned()
                .ok_or_else(|| self.protocol("tools/list answer has no `tools`"))?;
            let Value::Array(listed) = listed else {
                return Err(self.protocol("tools/list `tools` is not an array"));
            };
            // One malformed tool should not hide the server's other tools.
            for entry in listed {
                match serde_json::from_value::<ToolDescriptor>(entry) {
                    Ok(tool) => tools.push(tool),
                    Err(e) => tracing::warn!(
                        tool_id = %self.tool_id, error = %e, "MCP tool entry skipped"
                    ),
                }
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => {
                    cursor = Some(next.to_owned());
                }
                Some(next) if cursor.as_deref() == Some(next) => {
                    return Err(self.protocol("tools/list repeated the same cursor"));
                }
                _ => return Ok(tools),
            }
        }
        Err(self.protocol(format!(
            "tools/list still paging after {MAX_TOOL_PAGES} pages"
        )))
    }

    /// Calls the tool the server knows as `name`. A tool that ran and
    /// failed is `Ok` with `is_error`; see [`CallToolResult::into_result`].
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Value,
    ) -> Result<CallToolResult, McpError> {
        self.call_tool_with(name, arguments, None).await
    }

    /// [`Session::call_tool`], as the retry of a call that answered
    /// [`McpError::InputRequired`] when `retry` is given. A server that
    /// needs the user answers [`McpError::InputRequired`] (2026-07-28
    /// sessions only; an older server cannot).
    pub async fn call_tool_with(
        &self,
        name: &str,
        arguments: Value,
        retry: Option<&Retry>,
    ) -> Result<CallToolResult, McpError> {
        let mut params = json!({"name": name, "arguments": arguments});
        if let Some(retry) = retry {
            retry.apply(&mut params);
        }
        let result = self.request("tools/call", params).await?;
        // Results from servers before 2026-07-28 have no resultType.
        match result.get("resultType").and_then(Value::as_str) {
            None | Some("complete") => serde_json::from_value(result)
                .map_err(|e| self.protocol(format!("tools/call answer: {e}"))),
            Some("input_required") if self.is_modern() => Err(McpError::InputRequired {
                tool_id: self.tool_id.clone(),
                input: Box::new(input::parse(&self.tool_id, &result)?),
            }),
            Some(other) => Err(self.protocol(format!(
                "tools/call answered resultType `{other}`, which this session cannot take"
            ))),
        }
    }

    /// Validates `arguments` against the tool's compiled schema, then calls
    /// it under its remote name. Invalid arguments never leave the process.
    pub async fn call(
        &self,
        tool: &ToolSchema,
        arguments: Value,
    ) -> Result<CallToolResult, McpError> {
        self.call_with(tool, arguments, None).await
    }

    /// [`Session::call`] with the retry of an input-required answer.
    pub async fn call_with(
        &self,
        tool: &ToolSchema,
        arguments: Value,
        retry: Option<&Retry>,
    ) -> Result<CallToolResult, McpError> {
        validate_arguments(tool, &arguments)?;
        self.call_tool_with(tool.remote_name(), arguments, retry)
            .await
    }

    /// Ends the session at the server, best effort.
    pub async fn close(&self) {
        match &self.transport {
            Transport::Streamable(t) => t.close().await,
            Transport::Sse(t) => t.close(),
            Transport::Stdio(t) => t.close(),
        }
    }

    /// One request; on expiry, one re-initialization and one retry.
    async fn request(&self, method: &str, params: Value) -> Result<Value, McpError> {
        let generation = self.generation.load(Ordering::Acquire);
        match self.send(method, params.clone()).await {
            Err(McpError::SessionExpired { .. }) => {
                tracing::info!(tool_id = %self.tool_id, method, "MCP session expired; re-initializing");
                self.reinitialize(generation).await?;
                self.send(method, params).await
            }
            other => other,
        }
    }

    async fn reinitialize(&self, seen_generation: u64) -> Result<(), McpError> {
        let _lock = self.reinit.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return Ok(()); // another caller already re-initialized
        }
        self.initialize().await?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Picks the era on a fresh transport and sets the session up for it:
    /// nothing more for a 2026-07-28 server, the handshake for an older one.
    async fn initialize(&self) -> Result<(), McpError> {
        self.transport
            .reset_within(self.timeout, &self.tool_id)
            .await?;
        let era = match &self.transport {
            Transport::Sse(_) => Era::Legacy,
            Transport::Streamable(_) | Transport::Stdio(_) => self.probe().await?,
        };
        if era == Era::Modern {
            return Ok(());
        }
        self.modern.store(false, Ordering::Release);
        if let Transport::Streamable(t) = &self.transport {
            t.reset();
        }
        self.handshake().await
    }

    /// `server/discover` as 2026-07-28: a modern server answers it (or
    /// names the versions it speaks); see [`version::era_of_probe`].
    async fn probe(&self) -> Result<Era, McpError> {
        self.modern.store(true, Ordering::Release);
        if let Transport::Streamable(t) = &self.transport {
            t.set_protocol_version(MODERN_PROTOCOL_VERSION);
        }
        let stdio = matches!(self.transport, Transport::Stdio(_));
        let wait = if stdio {
            self.timeout.min(STDIO_PROBE_TIMEOUT)
        } else {
            self.timeout
        };
        let answer = match tokio::time::timeout(wait, self.send("server/discover", json!({}))).await
        {
            Ok(answer) => answer,
            Err(_) => Err(McpError::Timeout {
                tool_id: self.tool_id.clone(),
                method: "server/discover".into(),
                after: wait,
            }),
        };
        let (era, result) = match answer {
            Ok(result) => (
                era_of_probe(&self.tool_id, Ok(result.clone()), stdio)?,
                result,
            ),
            Err(e) => (era_of_probe(&self.tool_id, Err(e), stdio)?, Value::Null),
        };
        if era == Era::Modern {
            let meta = result.pointer("/_meta/io.modelcontextprotocol~1serverInfo");
            *self.info.write().unwrap_or_else(|p| p.into_inner()) = ServerInfo {
                protocol_version: MODERN_PROTOCOL_VERSION.to_owned(),
                server_info: meta.cloned().unwrap_or(Value::Null),
                capabilities: result.get("capabilities").cloned().unwrap_or(Value::Null),
                instructions: result
                    .get("instructions")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            tracing::debug!(tool_id = %self.tool_id, "MCP server speaks 2026-07-28");
        } else {
            tracing::debug!(tool_id = %self.tool_id, "MCP server is pre-2026-07-28; initializing");
        }
        Ok(era)
    }

    /// The legacy lifecycle handshake.
    async fn handshake(&self) -> Result<(), McpError> {
        let params = json!({
            "protocolVersion": LEGACY_PROTOCOL_VERSIONS[0],
            "capabilities": {},
            "clientInfo": {"name": "amesh", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = self.send("initialize", params).await?;
        let protocol_version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("initialize answer has no protocolVersion"))?
            .to_owned();
        if !LEGACY_PROTOCOL_VERSIONS.contains(&protocol_version.as_str()) {
            return Err(self.protocol(format!(
                "the server chose MCP {protocol_version:?}; amesh speaks {MODERN_PROTOCOL_VERSION} and {LEGACY_PROTOCOL_VERSIONS:?}"
            )));
        }
        if let Transport::Streamable(t) = &self.transport {
            t.set_protocol_version(&protocol_version);
        }
        *self.info.write().unwrap_or_else(|p| p.into_inner()) = ServerInfo {
            protocol_version,
            server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
            capabilities: result.get("capabilities").cloned().unwrap_or(Value::Null),
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let initialized = jsonrpc::notification("notifications/initialized", None);
        self.within(
            "notifications/initialized",
            self.transport.notify(&initialized),
        )
        .await
    }

    /// Sends one request within the timeout; a JSON-RPC error becomes
    /// [`McpError::Rpc`].
    async fn send(&self, method: &str, mut params: Value) -> Result<Value, McpError> {
        if self.is_modern() {
            version::add_meta(&mut params);
        }
        let request = Request {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            method: method.to_owned(),
            params,
        };
        let answer = match self.within(method, self.transport.request(&request)).await {
            Err(e @ McpError::Timeout { .. }) => {
                self.cancel(&request, &e).await;
                return Err(e);
            }
            other => other?,
        };
        answer.map_err(|e| McpError::Rpc {
            tool_id: self.tool_id.clone(),
            method: method.to_owned(),
            code: e.code,
            message: e.message,
            data: e.data,
        })
    }

    /// Tells a stdio server that we gave up on `request`
    /// (`notifications/cancelled`), so the child stops working on it
    /// instead of running on for nobody. Best effort, bounded; never for
    /// `initialize` (the spec forbids it). The HTTP transports don't: their
    /// dropped request ends the server's answer stream.
    async fn cancel(&self, request: &Request, why: &McpError) {
        if !matches!(self.transport, Transport::Stdio(_)) || request.method == "initialize" {
            return;
        }
        let message = jsonrpc::notification(
            "notifications/cancelled",
            Some(json!({"requestId": request.id, "reason": why.to_string()})),
        );
        let sent = tokio::time::timeout(CANCEL_TIMEOUT, self.transport.notify(&message)).await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(tool_id = %self.tool_id, id = request.id, "could not send notifications/cancelled");
        }
    }

    async fn within<T>(
        &self,
        method: &str,
        fut: impl Future<Output = Result<T, McpError>>,
    ) -> Result<T, McpError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(McpError::Timeout {
                    tool_id: self.tool_id.clone(),
                    method: method.to_owned(),
                    after: self.timeout,
                })
            })
    }

    fn protocol(&self, message: impl Into<String>) -> McpError {
        McpError::protocol(&self.tool_id, message)
    }
}

impl Transport {
    /// `reset` bounded by the request timeout (the legacy transport opens
    /// its stream here and waits for the endpoint event).
    async fn reset_within(&self, timeout: Duration, tool_id: &str) -> Result<(), McpError> {
        tokio::time::timeout(timeout, self.reset())
            .await
            .unwrap_or_else(|_| {
                Err(McpError::Timeout {
                    tool_id: tool_id.to_owned(),
                    method: "connect".into(),
                    after: timeout,
                })
            })
    }
}
