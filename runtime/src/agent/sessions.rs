//! `amesh/sessions/*` at the agent (wire shapes in `a2a::sessions`): the
//! verified user's own conversations from the session store — listed a
//! page at a time, read back as turns, renamed, deleted. One function per
//! method; `accounts.rs` admits the request (verified identity only) and
//! answers it.
//!
//! A conversation is only kept with `default_behavior: PERSISTENT` and a
//! store; otherwise the list is empty and every conversation unknown.

use amesh_credentials::{ConversationInfo, CredentialError, CredentialStore};
use amesh_trust::VerifiedIdentity;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AgentInner;
use super::llm::ChatMessage;
use super::reasoning::history;
use crate::a2a::jsonrpc::{self, RpcError};
use crate::a2a::sessions::{
    self, ContextParams, DEFAULT_PAGE, ListParams, MAX_PAGE, RenameParams, Session, SessionList,
    SessionSummary, SessionTool, SessionTurn,
};

/// Answers one `amesh/sessions/*` request for `who`.
pub(super) async fn answer(
    inner: &AgentInner,
    method: &str,
    params: Value,
    who: &VerifiedIdentity,
) -> Result<Value, RpcError> {
    let store = history::kept(inner);
    match method {
        sessions::LIST => list(inner, store, who, parse(method, params)?).await,
        sessions::GET => get(inner, store, who, parse(method, params)?).await,
        sessions::RENAME => rename(inner, store, who, parse(method, params)?).await,
        sessions::DELETE => delete(inner, who, parse(method, params)?).await,
        other => Err(RpcError::new(
            jsonrpc::METHOD_NOT_FOUND,
            format!("method `{other}` not found"),
        )),
    }
}

fn parse<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            jsonrpc::INVALID_PARAMS,
            format!("invalid params for {method}: {e}"),
        )
    })
}

fn ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store's error as the requester may see it: another user's
/// conversation reads as unknown, so a `contextId` tells nobody whose it is.
fn store_error(context_id: &str, e: CredentialError) -> RpcError {
    match e {
        CredentialError::ConversationOfAnotherUser { .. } => not_found(context_id),
        CredentialError::InvalidInput { .. } => {
            RpcError::new(jsonrpc::INVALID_PARAMS, e.to_string())
        }
        e => RpcError::new(jsonrpc::INTERNAL_ERROR, e.to_string()),
    }
}

fn not_found(context_id: &str) -> RpcError {
    RpcError::new(
        jsonrpc::TASK_NOT_FOUND,
        format!("conversation {context_id} not found"),
    )
}

fn summary(c: ConversationInfo) -> SessionSummary {
    SessionSummary {
        renamed: c.renamed_at.is_some(),
        created_ms: ms(c.created_at),
        updated_ms: ms(c.updated_at),
        context_id: c.context_id,
        title: c.title,
        turns: c.turns,
    }
}

/// `amesh/sessions/list`: one page, newest first. One more than the page
/// is read to know whether another page follows.
async fn list(
    inner: &AgentInner,
    store: Option<&CredentialStore>,
    who: &VerifiedIdentity,
    p: ListParams,
) -> Result<Value, RpcError> {
    let Some(store) = store else {
        return Ok(json!(SessionList {
            sessions: Vec::new(),
            next_before_ms: None
        }));
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    let before = p
        .before_ms
        .map(|b| std::time::UNIX_EPOCH + std::time::Duration::from_millis(b));
    let mut rows = store
        .list_conversations_before(who, before, limit + 1)
        .await
        .map_err(|e| store_error("", e))?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let sessions: Vec<SessionSummary> = rows.into_iter().map(summary).collect();
    let next_before_ms = more
        .then(|| sessions.last().map(|s| s.updated_ms))
        .flatten();
    tracing::debug!(agent = %inner.name, user = %who.user_id(), listed = sessions.len(), "sessions listed");
    Ok(json!(SessionList {
        sessions,
        next_before_ms
    }))
}

/// `amesh/sessions/get`: the conversation's turns as the model history
/// holds them (at most `history::MAX_TURNS`, the newest).
async fn get(
    inner: &AgentInner,
    store: Option<&CredentialStore>,
    who: &VerifiedIdentity,
    p: ContextParams,
) -> Result<Value, RpcError> {
    let Some(store) = store else {
        return Err(not_found(&p.context_id));
    };
    let (conversation, info) = store
        .conversation_with_info(who, &p.context_id)
        .await
        .map_err(|e| store_error(&p.context_id, e))?
        .ok_or_else(|| not_found(&p.context_id))?;
    let messages: Vec<ChatMessage> =
        serde_json::from_value(conversation.messages.into_inner()).unwrap_or_default();
    let history = turns(inner, &messages);
    let summary = summary(info);
    Ok(json!(Session { summary, history }))
}

/// The model history as turns: a turn starts at each user message; the
/// answer is the assistant's text; tools are the calls it made, each with
/// whether its result was an error.
fn turns(inner: &AgentInner, messages: &[ChatMessage]) -> Vec<SessionTurn> {
    let mut out: Vec<SessionTurn> = Vec::new();
    // (call id, index in the current turn's tools)
    let mut calls: Vec<(String, usize)> = Vec::new();
    for m in messages {
        match m {
            ChatMessage::User { text } => {
                calls.clear();
                out.push(SessionTurn {
                    prompt: text.clone(),
                    answer: None,
                    tools: Vec::new(),
                });
            }
            ChatMessage::Assistant { text, tool_calls } => {
                let Some(turn) = out.last_mut() else { continue };
                if !text.trim().is_empty() {
                    let answer = turn.answer.get_or_insert_with(String::new);
                    if !answer.is_empty() {
                        answer.push_str("\n\n");
                    }
                    answer.push_str(text);
                }
                for call in tool_calls {
                    calls.push((call.id.clone(), turn.tools.len()));
                    turn.tools.push(SessionTool {
                        tool: call.name.clone(),
                        server: super::toolbox::server_of(inner, &call.name),
                        ok: None,
                    });
                }
            }
            ChatMessage::Tool {
                call_id, is_error, ..
            } => {
                let Some(turn) = out.last_mut() else { continue };
                if let Some((_, i)) = calls.iter().find(|(id, _)| id == call_id)
                    && let Some(tool) = turn.tools.get_mut(*i)
                {
                    tool.ok = Some(!is_error);
                }
            }
        }
    }
    out
}

/// `amesh/sessions/rename`: the user's title, kept through later turns.
async fn rename(
    inner: &AgentInner,
    store: Option<&CredentialStore>,
    who: &VerifiedIdentity,
    p: RenameParams,
) -> Result<Value, RpcError> {
    let Some(store) = store else {
        return Ok(json!({ "renamed": false }));
    };
    let title = p.title.trim();
    store
        .rename_conversation(who, &p.context_id, title)
        .await
        .map_err(|e| store_error(&p.context_id, e))?;
    tracing::info!(agent = %inner.name, user = %who.user_id(), "conversation renamed at the user's request");
    Ok(json!({ "renamed": true }))
}

/// `amesh/sessions/delete`: forgets the history (any store, whatever the
/// session behaviour: what was kept before a config change goes too).
async fn delete(
    inner: &AgentInner,
    who: &VerifiedIdentity,
    p: ContextParams,
) -> Result<Value, RpcError> {
    // No store: there is nothing to forget.
    let Some(store) = &inner.store else {
        return Ok(json!({ "deleted": false }));
    };
    let deleted = store
        .delete_conversation(who, &p.context_id)
        .await
        .map_err(|e| store_error(&p.context_id, e))?;
    tracing::info!(agent = %inner.name, user = %who.user_id(), deleted, "conversation history deleted at the user's request");
    Ok(json!({ "deleted": deleted }))
}
