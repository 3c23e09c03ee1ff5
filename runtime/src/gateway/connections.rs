//! `/api/v1/connections`: the signed-in user's connected accounts, for the
//! web page's Connected accounts view. The gateway keeps none of it: each
//! request goes to the agents over the broker (`amesh/connections/*`) with
//! the user's signed identity, and each agent answers for that user only.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::GatewayInner;
use super::agent_requests::ask_agent_for;
use super::api_error::ApiError;
use super::extract::AuthUser;
use crate::a2a::client::Event;
use crate::a2a::connections::{self, ToolParams};
use crate::a2a::{Part, StreamResult};

/// How long one agent may take to answer.
const WAIT: Duration = Duration::from_secs(5);

/// The data part of an agent's answer.
fn data_of(answer: Option<Event>, agent: &str) -> Result<Value, ApiError> {
    match answer {
        Some(Event::Final(StreamResult::Message(m))) => m
            .parts
            .into_iter()
            .find_map(|p| match p {
                Part::Data { data, .. } => Some(data),
                _ => None,
            })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("agent {agent} answered without data"),
                )
            }),
        Some(Event::Error(e)) => Err(ApiError::new(
            match e.code {
                crate::a2a::jsonrpc::INVALID_PARAMS => StatusCode::BAD_REQUEST,
                crate::a2a::jsonrpc::UNAUTHENTICATED => StatusCode::FORBIDDEN,
                crate::a2a::jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_IMPLEMENTED,
                _ => StatusCode::BAD_GATEWAY,
            },
            e.message,
        )),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("agent {agent} sent an unexpected answer"),
        )),
        None => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("agent {agent} did not answer within {WAIT:?}"),
        )),
    }
}

fn known_agent(inner: &GatewayInner, agent: &str) -> Result<(), ApiError> {
    if !crate::topics::valid_level(agent) || inner.agents.get(agent).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown agent {agent}"),
        ));
    }
    Ok(())
}

/// `GET /api/v1/connections`: every agent's answer, asked at once; an
/// agent that does not answer is listed with its error.
pub(crate) async fn list(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
) -> Json<Value> {
    let agents = inner.agents.list();
    let asks = agents.iter().map(|card| {
        let (inner, user) = (inner.clone(), user.clone());
        let agent = card.name.clone();
        async move {
            let answer =
                ask_agent_for(&inner, &user, &agent, connections::LIST, json!({}), WAIT).await;
            (agent, answer)
        }
    });
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (agent, answer) in futures::future::join_all(asks).await {
        match answer.and_then(|a| data_of(a, &agent)) {
            Ok(data) => {
                for mut c in data["connections"].as_array().cloned().unwrap_or_default() {
                    c["agent"] = json!(agent);
                    rows.push(c);
                }
            }
            // Agents without tools that need authorization are not errors.
            Err(e) if e.status == StatusCode::NOT_IMPLEMENTED => {}
            Err(e) => problems.push(json!({ "agent": agent, "error": e.message })),
        }
    }
    Json(json!({ "connections": rows, "unavailable": problems }))
}

/// `DELETE /api/v1/connections/{agent}/{tool}`: disconnect.
pub(crate) async fn disconnect(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path((agent, tool)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    known_agent(&inner, &agent)?;
    let params = ToolParams { tool_id: tool };
    let answer = ask_agent_for(
        &inner,
        &user,
        &agent,
        connections::DISCONNECT,
        params,
        WAIT * 2,
    )
    .await?;
    Ok(Json(data_of(answer, &agent)?))
}

/// `POST /api/v1/connections/{agent}/{tool}`: start an authorization
/// before chatting; answers the provider's `authorization_url` (checked
/// like every agent link, see `links.rs`).
pub(crate) async fn connect(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path((agent, tool)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    known_agent(&inner, &agent)?;
    let params = ToolParams { tool_id: tool };
    let answer = ask_agent_for(
        &inner,
        &user,
        &agent,
        connections::CONNECT,
        params,
        WAIT * 2,
    )
    .await?;
    let data = data_of(answer, &agent)?;
    match data.get("authorization_url").and_then(Value::as_str) {
        Some(url) if super::links::check_link(url).is_ok() => Ok(Json(data)),
        _ => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            super::links::REFUSED,
        )),
    }
}
