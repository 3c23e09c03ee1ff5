//! `amesh/sessions/*`: a user's conversations as an agent keeps them in
//! its session store (per agent, user and `contextId`). amesh's own
//! JSON-RPC methods beside A2A's, which has no way to list a user's
//! sessions. Spoken by the gateway, so its web page's conversation list
//! and history come back after a gateway restart; answered by the agent
//! for the user its verified identity token names, never a parameter: a
//! user only ever sees and changes their own.
//!
//! Every answer is an A2A message with one data part holding the shapes
//! below.

use serde::{Deserialize, Serialize};

/// One page of the user's conversations, newest first. Params:
/// [`ListParams`]; answer: [`SessionList`].
pub const LIST: &str = "amesh/sessions/list";
/// One conversation's turns. Params: [`ContextParams`]; answer:
/// [`Session`], or the error [`super::jsonrpc::TASK_NOT_FOUND`] when the
/// user has no such conversation (another user's looks the same).
pub const GET: &str = "amesh/sessions/get";
/// Names a conversation for good (the agent's own title is the first
/// question). Params: [`RenameParams`]; answer `{"renamed": bool}`.
pub const RENAME: &str = "amesh/sessions/rename";
/// Forgets a conversation's history. Params: [`ContextParams`]; answer
/// `{"deleted": bool}` (whether there was one).
pub const DELETE: &str = "amesh/sessions/delete";

/// Conversations per page when the request names no `limit`.
pub const DEFAULT_PAGE: u32 = 50;
/// Most conversations per page.
pub const MAX_PAGE: u32 = 200;

/// Whether `method` is one of these.
pub fn is_method(method: &str) -> bool {
    matches!(method, LIST | GET | RENAME | DELETE)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextParams {
    pub context_id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// At most this many (default [`DEFAULT_PAGE`], capped at [`MAX_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only conversations last updated before this (unix ms): the previous
    /// page's `nextBeforeMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenameParams {
    pub context_id: String,
    pub title: String,
}

/// A conversation in the list: no turns.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub context_id: String,
    pub title: Option<String>,
    /// Whether the title is the user's (else the agent's: the first question).
    pub renamed: bool,
    pub turns: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
    /// Set when there may be more: the `beforeMs` of the next page.
    pub next_before_ms: Option<u64>,
}

/// One tool call of a turn.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTool {
    pub tool: String,
    pub server: String,
    /// Whether it succeeded; `None` when its result is not kept.
    pub ok: Option<bool>,
}

/// One turn: what the user asked, what the agent answered, the tools used.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTurn {
    pub prompt: String,
    pub answer: Option<String>,
    pub tools: Vec<SessionTool>,
}

/// One conversation with its turns (as many as the agent keeps).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[serde(flatten)]
    pub summary: SessionSummary,
    pub history: Vec<SessionTurn>,
}
