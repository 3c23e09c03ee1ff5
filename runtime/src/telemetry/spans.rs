//! Every span amesh exports, in one place: its name, kind and attributes,
//! after the OpenTelemetry semantic conventions where they exist (HTTP
//! server, messaging, JSON-RPC, GenAI client, MCP).
//!
//! One trace of a request: the gateway's HTTP server span, its `send`
//! span for the A2A request published over MQTT (the `traceparent` rides
//! in the message's user properties), the agent's `process` span for the
//! request (a child of the `send` span, across the broker), and under it
//! the model calls (`chat {model}`) and MCP tool calls (`tools/call
//! {tool}`), each of which sends its own `traceparent` header onwards.
//!
//! Attributes never hold a secret, a token, a user id or the user's words:
//! names from configuration, methods, topics, ids amesh chose, hosts,
//! status codes and error kinds. While traces are off every span here is
//! disabled (no layer wants the target), so building one costs a check.

use tracing::Span;
use tracing::field::Empty;

use super::traces::TARGET;

/// The gateway's span for one HTTP request. `route` is the route pattern
/// (`/api/v1/tasks/{id}`), `path` the path without the query (a callback's
/// query holds the authorization code).
pub(crate) fn http_server(method: &str, route: &str, path: &str, gateway: &str) -> Span {
    tracing::info_span!(target: TARGET, "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        "http.request.method" = method,
        "http.route" = route,
        "url.path" = path,
        "url.scheme" = "http",
        "http.response.status_code" = Empty,
        "error.type" = Empty,
        "amesh.gateway" = gateway,
    )
}

/// Records the response status on an [`http_server`] span; a 5xx is an
/// error of the server (a 4xx is the client's, per the conventions).
pub(crate) fn http_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
        span.record("error.type", status.to_string());
    }
}

/// A component publishing an A2A request to an agent (the gateway, or an
/// agent delegating): a messaging `send` span whose context travels in the
/// message.
pub(crate) fn a2a_send(method: &str, topic: &str, request_id: &str, peer: &str) -> Span {
    tracing::info_span!(target: TARGET, "a2a.send",
        otel.name = %format!("send {topic}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        "messaging.system" = "mqtt",
        "messaging.operation.name" = "send",
        "messaging.operation.type" = "send",
        "messaging.destination.name" = topic,
        "messaging.message.id" = request_id,
        "rpc.system" = "jsonrpc",
        "rpc.jsonrpc.version" = "2.0",
        "rpc.method" = method,
        "rpc.jsonrpc.request_id" = request_id,
        "amesh.peer" = peer,
        "error.type" = Empty,
    )
}

/// An agent processing one A2A request, from admission to the end of its
/// task (model and tool calls are children). Its parent is the sender's
/// span, read from the message.
pub(crate) fn a2a_process(topic: &str, agent: &str) -> Span {
    tracing::info_span!(target: TARGET, "a2a.process",
        otel.name = %format!("process {topic}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        "messaging.system" = "mqtt",
        "messaging.operation.name" = "process",
        "messaging.operation.type" = "process",
        "messaging.destination.name" = topic,
        "rpc.system" = "jsonrpc",
        "rpc.jsonrpc.version" = "2.0",
        "rpc.method" = Empty,
        "rpc.jsonrpc.request_id" = Empty,
        "amesh.agent" = agent,
        "a2a.task.state" = Empty,
        "rpc.jsonrpc.error_code" = Empty,
        "error.type" = Empty,
    )
}

/// One model request (retries included), as a GenAI client span.
/// `provider` is the semantic conventions' `gen_ai.provider.name`:
/// `openai` (its API or a compatible server), `azure.ai.openai` or
/// `anthropic`.
pub(crate) fn model_call(provider: &str, model: &str, host: &str, port: Option<u16>) -> Span {
    tracing::info_span!(target: TARGET, "gen_ai.chat",
        otel.name = %format!("chat {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        "gen_ai.operation.name" = "chat",
        "gen_ai.provider.name" = provider,
        "gen_ai.request.model" = model,
        "server.address" = host,
        "server.port" = port,
        "error.type" = Empty,
    )
}

/// One MCP `tools/call` (with the session's initialize on first use).
/// `tool` is the name the server knows the tool by.
pub(crate) fn mcp_call(tool: &str, host: Option<&str>, port: Option<u16>) -> Span {
    tracing::info_span!(target: TARGET, "mcp.tools_call",
        otel.name = %format!("tools/call {tool}"),
        otel.kind = "client",
        otel.status_code = Empty,
        "mcp.method.name" = "tools/call",
        "gen_ai.operation.name" = "execute_tool",
        "gen_ai.tool.name" = tool,
        "server.address" = host,
        "server.port" = port,
        "error.type" = Empty,
    )
}

/// Marks `span` failed with a short, fixed `kind` (an error class, never
/// a message that could carry user data).
pub(crate) fn failed(span: &Span, kind: &str) {
    span.record("otel.status_code", "error");
    span.record("error.type", kind);
}
