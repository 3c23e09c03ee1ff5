//! `limits:` blocks: how much of the machine one client, one user or one
//! message may take. Every figure has a default that suits one gateway or
//! agent process on a small server; operators raise or lower them here
//! instead of learning about them from an outage.

use serde::Deserialize;

/// `app_config.limits` of a gateway app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayLimits {
    /// A request's line and headers must arrive within this; it is also how
    /// long a keep-alive connection may wait for its next request.
    pub header_read_timeout_seconds: u64,
    /// A client that neither reads what the gateway sends nor sends the
    /// request body it announced for this long is disconnected.
    pub idle_timeout_seconds: u64,
    /// Open HTTP connections, all clients together. At the cap the oldest
    /// connection that has not yet sent a request is closed to make room;
    /// when every connection is busy, the new one gets a 503 and is closed.
    pub max_connections: usize,
    /// Open HTTP connections from one IP address (0: no per-address cap,
    /// e.g. behind a reverse proxy where every client has its address).
    pub max_connections_per_ip: usize,
    /// Open `message:stream` streams of one user; more get a 429.
    pub max_streams_per_user: usize,
    /// Tasks of one user that have not ended; more get a 429. A task stops
    /// counting once it ends or after `request_timeout_seconds`.
    pub max_running_tasks_per_user: usize,
    /// Bytes of agent messages one request may hold before its handler
    /// takes them; beyond it the request gets an `error`. A streamed task's
    /// recorder takes them at once (a slow SSE client reads the task's
    /// event log, bounded by the `task_events_*` limits, instead).
    pub stream_queue_bytes: usize,
    /// Tasks the gateway remembers (id, user, agent, state) for ownership
    /// checks of `GET /api/v1/tasks/{id}` and cancel; oldest forgotten first.
    pub task_index_max_tasks: usize,
    /// ... and for at most this long.
    pub task_index_ttl_seconds: u64,
    /// Streamed tasks whose events the gateway keeps, so a browser that
    /// reloads or opens another tab gets them (`GET
    /// /api/v1/tasks/{id}/events` with `Last-Event-ID`); oldest forgotten
    /// first.
    pub task_events_max_tasks: usize,
    /// ... holding at most this many bytes together ...
    pub task_events_max_bytes: usize,
    /// ... of which one task's events before its final one take at most
    /// this many (the final event, with the whole answer, is always kept) ...
    pub task_events_per_task_bytes: usize,
    /// ... each for at most this long after its task started.
    pub task_events_ttl_seconds: u64,
    /// Conversations of the web page kept per user; the least recently
    /// used goes first.
    pub max_conversations_per_user: usize,
    /// Conversations kept, all users together ...
    pub max_conversations: usize,
    /// ... and their bytes.
    pub conversations_max_bytes: usize,
    /// Agent cards larger than this are ignored (with a warning).
    pub max_agent_card_bytes: usize,
    /// Agents the gateway lists; cards of further names are ignored.
    pub max_agents: usize,
    /// Failed logins and refused API tokens or cookies from one address (an
    /// IPv6 /64) before it must wait: 1 s, then twice as long after each
    /// further failure. While it waits, its authenticated requests get a
    /// 429 with `Retry-After`. 0: no throttling (behind a reverse proxy
    /// every client has the proxy's address).
    pub max_login_failures_per_ip: u32,
    /// The longest such wait; failures are forgotten after this long, or
    /// 15 minutes, without another.
    pub login_backoff_max_seconds: u64,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            max_connections: 8192,
            max_connections_per_ip: 256,
            max_streams_per_user: 16,
            max_running_tasks_per_user: 32,
            stream_queue_bytes: 32 * 1024 * 1024,
            task_index_max_tasks: 20_000,
            task_index_ttl_seconds: 3600,
            task_events_max_tasks: 2000,
            task_events_max_bytes: 64 * 1024 * 1024,
            task_events_per_task_bytes: 1024 * 1024,
            task_events_ttl_seconds: 3600,
            max_conversations_per_user: 200,
            max_conversations: 20_000,
            conversations_max_bytes: 64 * 1024 * 1024,
            max_agent_card_bytes: DEFAULT_MAX_CARD_BYTES,
            max_agents: DEFAULT_MAX_AGENTS,
            max_login_failures_per_ip: 5,
            login_backoff_max_seconds: 900,
        }
    }
}

/// `app_config.limits` of an agent app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentLimits {
    /// Finished tasks kept for `tasks/get`, by their approximate JSON size;
    /// oldest forgotten first.
    pub finished_tasks_max_bytes: usize,
    /// ... and for at most this long.
    pub finished_tasks_ttl_seconds: u64,
    /// Agent and gateway cards larger than this are ignored (with a warning).
    pub max_agent_card_bytes: usize,
    /// Peers (agents, gateways) the agent knows; cards of further names are
    /// ignored.
    pub max_agents: usize,
    /// A user's session with an MCP server that no call used for this long
    /// is closed (the next call opens a new one).
    pub mcp_session_idle_seconds: u64,
    /// (server, user) MCP sessions kept open at most; the least recently
    /// used idle one is closed to make room.
    pub max_mcp_sessions: usize,
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self {
            finished_tasks_max_bytes: 4 * 1024 * 1024,
            finished_tasks_ttl_seconds: 3600,
            max_agent_card_bytes: DEFAULT_MAX_CARD_BYTES,
            max_agents: DEFAULT_MAX_AGENTS,
            mcp_session_idle_seconds: amesh_mcp::client::DEFAULT_IDLE_SESSION_TTL.as_secs(),
            max_mcp_sessions: amesh_mcp::client::DEFAULT_MAX_SESSIONS,
        }
    }
}

const DEFAULT_MAX_CARD_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_AGENTS: usize = 1000;
