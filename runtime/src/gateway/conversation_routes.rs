//! `/api/v1/conversations`: the signed-in user's chats (see
//! `conversations.rs` for what is kept and why at the gateway). Every
//! handler acts on the request's own user only; another user's id is
//! "not found", never "forbidden", so ids do not leak.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use std::time::Duration;

use super::GatewayInner;
use super::agent_requests::ask_agent_for;
use super::api_error::ApiError;
use super::extract::AuthUser;
use crate::a2a::client::Event;
use crate::a2a::sessions::{self, ContextParams};
use crate::a2a::{Part, StreamResult};

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

pub(crate) async fn list(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
) -> Json<Value> {
    Json(json!({ "conversations": inner.conversations.list(&user.id) }))
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

pub(crate) async fn get(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let conv = inner
        .conversations
        .get(&user.id, &id)
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(json!(conv)))
}

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
    let renamed = inner
        .conversations
        .rename(&user.id, &id, title)
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(json!(renamed)))
}

/// Deletes the conversation here and asks each agent it talked to to
/// forget its history of it (their session stores keep it by contextId);
/// the answer says which agents did.
pub(crate) async fn delete(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let conv = inner
        .conversations
        .get(&user.id, &id)
        .ok_or_else(|| not_found(&id))?;
    inner.conversations.delete(&user.id, &id);
    let mut agents: Vec<String> = conv.turns.iter().map(|t| t.agent.clone()).collect();
    agents.push(conv.agent.clone());
    agents.sort();
    agents.dedup();
    // Only agents whose card is accepted get the user's identity.
    agents.retain(|a| inner.agents.get(a).is_some());
    let asks = agents.iter().map(|agent| {
        let (inner, user, id) = (inner.clone(), user.clone(), id.clone());
        async move {
            let params = ContextParams { context_id: id };
            let answer = ask_agent_for(
                &inner,
                &user,
                agent,
                sessions::DELETE,
                params,
                Duration::from_secs(5),
            )
            .await;
            match answer {
                Ok(Some(Event::Final(StreamResult::Message(m)))) => {
                    // `deleted: false`: the agent kept no history of it.
                    let had = m.parts.iter().any(
                        |p| matches!(p, Part::Data { data, .. } if data["deleted"] == json!(true)),
                    );
                    json!({ "agent": agent, "forgotten": true, "had_history": had })
                }
                Ok(Some(Event::Error(e))) => json!({ "agent": agent, "error": e.message }),
                Ok(_) => json!({ "agent": agent, "error": "no answer" }),
                Err(e) => json!({ "agent": agent, "error": e.message }),
            }
        }
    });
    let agents = futures::future::join_all(asks).await;
    Ok(Json(json!({ "deleted": id, "agents": agents })))
}
