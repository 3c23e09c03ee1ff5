//! `/api/v1/conversations`: the signed-in user's chats, from the agents'
//! session stores with the gateway's memory as a cache (see
//! `conversations.rs` for what lives where and why). Every handler acts on
//! the request's own user only; another user's id is "not found", never
//! "forbidden", so ids do not leak.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::GatewayInner;
use super::agent_sessions;
use super::api_error::ApiError;
use super::auth::User;
use super::conversations::{Conversation, Restored, Summary, ToolUse, Turn};
use super::extract::AuthUser;
use crate::a2a::sessions::{Session, SessionSummary};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    agent: String,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBody {
    title: String,
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("conversation {id} not found"),
    )
}

/// `GET /api/v1/conversations`: the cached conversations and every
/// agent's, merged by id, newest first; `unavailable` names the agents
/// that did not answer (their conversations may be missing).
pub(crate) async fn list(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
) -> Json<Value> {
    let cached = inner.conversations.list(&user.id);
    let (at_agents, unavailable) = agent_sessions::list(&inner, &user).await;
    Json(json!({
        "conversations": merge(cached, at_agents),
        "unavailable": unavailable,
    }))
}

/// The cache's summaries with the agents' added. A conversation in both
/// keeps the cache's (it may have a turn running), except for a title the
/// user gave at the agent (another gateway replica, or before a restart).
/// One at several agents is listed once, under the agent it talked to last.
fn merge(cached: Vec<Summary>, at_agents: Vec<(String, SessionSummary)>) -> Vec<Summary> {
    struct Entry {
        summary: Summary,
        renamed: bool,
        cached: bool,
    }
    let mut by_id: HashMap<String, Entry> = HashMap::new();
    let mut order = Vec::new();
    for summary in cached {
        order.push(summary.id.clone());
        let entry = Entry {
            summary,
            renamed: false,
            cached: true,
        };
        by_id.insert(entry.summary.id.clone(), entry);
    }
    for (agent, s) in at_agents {
        let title = s.title.clone().filter(|t| !t.trim().is_empty());
        match by_id.get_mut(&s.context_id) {
            Some(e) => {
                if s.renamed && !e.renamed {
                    e.summary.title = title.unwrap_or_else(|| e.summary.title.clone());
                    e.renamed = true;
                }
                if s.updated_ms > e.summary.updated_ms && !e.cached {
                    e.summary.agent = agent;
                }
                e.summary.updated_ms = e.summary.updated_ms.max(s.updated_ms);
                e.summary.turns = e.summary.turns.max(s.turns as usize);
            }
            None => {
                order.push(s.context_id.clone());
                let summary = Summary {
                    id: s.context_id.clone(),
                    title: title.unwrap_or_else(|| "Untitled conversation".to_owned()),
                    agent,
                    updated_ms: s.updated_ms,
                    turns: s.turns as usize,
                };
                let entry = Entry {
                    summary,
                    renamed: s.renamed,
                    cached: false,
                };
                by_id.insert(s.context_id, entry);
            }
        }
    }
    let mut list: Vec<Summary> = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .map(|e| e.summary)
        .collect();
    list.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then(b.id.cmp(&a.id)));
    list
}

pub(crate) async fn create(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !crate::topics::valid_level(&body.agent) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{}` is not a valid agent name", body.agent),
        ));
    }
    let created = inner
        .conversations
        .create(&user.id, &body.agent, body.title.as_deref());
    Ok((StatusCode::CREATED, Json(json!(created))))
}

/// `GET /api/v1/conversations/{id}`: from the cache, else from the agents.
pub(crate) async fn get(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(cached_or_restored(&inner, &user, &id).await?)))
}

/// Conversation `id` of `user`: the cached one, else the agents' (adopted
/// into the cache, so the next turn is recorded there). Not found when no
/// agent has it; the message names the agents that did not answer.
async fn cached_or_restored(
    inner: &Arc<GatewayInner>,
    user: &User,
    id: &str,
) -> Result<Conversation, ApiError> {
    if let Some(conv) = inner.conversations.get(&user.id, id) {
        return Ok(conv);
    }
    if id.is_empty() || id.len() > 255 {
        return Err(not_found(id));
    }
    let (found, unavailable) = agent_sessions::get(inner, user, id).await;
    if found.is_empty() {
        let silent: Vec<&str> = unavailable
            .iter()
            .filter_map(|u| u["agent"].as_str())
            .collect();
        return Err(if silent.is_empty() {
            not_found(id)
        } else {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "conversation {id} not found; agents {} did not answer",
                    silent.join(", ")
                ),
            )
        });
    }
    Ok(inner.conversations.adopt(&user.id, restore(id, found)))
}

/// One conversation from what the agents that have it answered: their
/// turns in the order the agents first saw it, the title the user gave
/// (else the first agent's), under the agent it talked to last.
fn restore(id: &str, mut found: Vec<(String, Session)>) -> Restored {
    found.sort_by_key(|(_, s)| s.summary.created_ms);
    let title = found
        .iter()
        .find(|(_, s)| s.summary.renamed)
        .or(found.first())
        .and_then(|(_, s)| s.summary.title.clone())
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "Untitled conversation".to_owned());
    let agent = found
        .iter()
        .max_by_key(|(_, s)| s.summary.updated_ms)
        .map(|(a, _)| a.clone())
        .unwrap_or_default();
    let created_ms = found.iter().map(|(_, s)| s.summary.created_ms).min();
    let updated_ms = found.iter().map(|(_, s)| s.summary.updated_ms).max();
    let turns = found
        .iter()
        .flat_map(|(agent, s)| {
            s.history.iter().map(move |t| Turn {
                task_id: String::new(),
                agent: agent.clone(),
                prompt: t.prompt.clone(),
                answer: t.answer.clone(),
                state: "completed".to_owned(),
                tools: t
                    .tools
                    .iter()
                    .map(|u| ToolUse {
                        tool: u.tool.clone(),
                        server: u.server.clone(),
                        duration_ms: None,
                        ok: u.ok,
                    })
                    .collect(),
            })
        })
        .collect();
    Restored {
        id: id.to_owned(),
        title,
        agent,
        created_ms: created_ms.unwrap_or_default(),
        updated_ms: updated_ms.unwrap_or_default(),
        turns,
    }
}

/// The agents a conversation talked to, that are still discovered (only
/// agents whose card is accepted get the user's identity).
fn agents_of(inner: &GatewayInner, conv: &Conversation) -> Vec<String> {
    let mut agents: Vec<String> = conv.turns.iter().map(|t| t.agent.clone()).collect();
    agents.push(conv.agent.clone());
    agents.sort();
    agents.dedup();
    agents.retain(|a| inner.agents.get(a).is_some());
    agents
}

/// `PATCH /api/v1/conversations/{id}`: renames it here and at its agents,
/// which keep the title in their session store so it outlives this
/// gateway; `agents` says which did.
pub(crate) async fn rename(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<RenameBody>,
) -> Result<Json<Value>, ApiError> {
    let title = body.title.trim();
    if title.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the title is empty"));
    }
    let conv = cached_or_restored(&inner, &user, &id).await?;
    let renamed = inner
        .conversations
        .rename(&user.id, &id, title)
        .ok_or_else(|| not_found(&id))?;
    let agents = agents_of(&inner, &conv);
    let stored = agent_sessions::rename(&inner, &user, &agents, &id, &renamed.title).await;
    let mut answer = json!(renamed);
    answer["agents"] = json!(stored);
    Ok(Json(answer))
}

/// Deletes the conversation here and asks each agent it talked to to
/// forget its history of it (their session stores keep it by contextId);
/// the answer says which agents did.
pub(crate) async fn delete(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let conv = cached_or_restored(&inner, &user, &id).await?;
    inner.conversations.delete(&user.id, &id);
    let agents = agents_of(&inner, &conv);
    let agents = agent_sessions::forget(&inner, &user, &agents, &id).await;
    Ok(Json(json!({ "deleted": id, "agents": agents })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(id: &str, title: &str, updated_ms: u64) -> Summary {
        Summary {
            id: id.into(),
            title: title.into(),
            agent: "a1".into(),
            updated_ms,
            turns: 1,
        }
    }

    fn at(id: &str, title: &str, renamed: bool, updated_ms: u64, turns: u32) -> SessionSummary {
        SessionSummary {
            context_id: id.into(),
            title: Some(title.into()),
            renamed,
            turns,
            created_ms: 1,
            updated_ms,
        }
    }

    #[test]
    fn the_cache_and_the_agents_merge_by_id_and_a_users_title_wins() {
        let list = merge(
            vec![cached("c1", "First question", 10), cached("c2", "Mine", 20)],
            vec![
                ("a1".into(), at("c1", "Named elsewhere", true, 15, 3)),
                ("a1".into(), at("c2", "Agent's title", false, 5, 1)),
                ("a2".into(), at("c3", "Only at a2", false, 30, 2)),
                ("a1".into(), at("c3", "Only at a2 too", false, 25, 1)),
            ],
        );
        let view: Vec<(&str, &str, &str, u64, usize)> = list
            .iter()
            .map(|s| {
                (
                    s.id.as_str(),
                    s.title.as_str(),
                    s.agent.as_str(),
                    s.updated_ms,
                    s.turns,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("c3", "Only at a2", "a2", 30, 2),
                ("c2", "Mine", "a1", 20, 1),
                ("c1", "Named elsewhere", "a1", 15, 3),
            ]
        );
    }
}
