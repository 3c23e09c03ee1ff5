//! A2A 0.3.0 over MQTT v5: protocol types, JSON-RPC envelopes, and the user
//! property names shared with Solace Agent Mesh.

pub(crate) mod client;
pub mod connections;
pub mod elicitation;
pub mod jsonrpc;
pub mod liveness;
pub mod oauth_callback;
pub mod sessions;
pub mod types;
pub(crate) mod waiters;

pub use types::*;

/// MQTT v5 user property names (the same strings as Solace Agent Mesh).
pub mod props {
    /// Topic the final JSON-RPC response goes to.
    pub const REPLY_TO: &str = "replyTo";
    /// Topic status and artifact updates go to.
    pub const STATUS_TOPIC: &str = "a2aStatusTopic";
    /// The user the request is made for.
    pub const USER_ID: &str = "userId";
    /// The component that sent the request.
    pub const CLIENT_ID: &str = "clientId";
    /// ES256 identity token signed by the gateway for the receiving agent,
    /// or a delegation chain ending at it (`G~D1~...~Dn`).
    pub const AUTH_TOKEN: &str = "authToken";
    /// JSON with per-user configuration.
    pub const USER_CONFIG: &str = "a2aUserConfig";
    /// The agent that delegated this request, if any.
    pub const DELEGATING_AGENT: &str = "delegating_agent_name";
    /// How many delegation hops led to this request (0 from a gateway).
    pub const CALL_DEPTH: &str = "callDepth";
    /// Sender's time, milliseconds since the epoch.
    pub const TIMESTAMP: &str = "timestamp";
    /// amesh: the publisher's signature over topic and payload (replies,
    /// status updates, agent cards), a compact JWS by its trust key.
    pub const SIGNATURE: &str = "amesh-signature";
}

/// Method names.
pub mod methods {
    pub const SEND: &str = "message/send";
    pub const STREAM: &str = "message/stream";
    pub const GET: &str = "tasks/get";
    pub const CANCEL: &str = "tasks/cancel";
}
