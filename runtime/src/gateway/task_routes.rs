//! Routes about tasks: send one and wait, look one up, cancel one; and the
//! two small listings (health, agents).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::GatewayInner;
use super::agent_requests::{SendBody, ask_agent, start_task, timeout};
use super::api_error::ApiError;
use super::extract::AuthUser;
use crate::a2a::client::{CallError, Event};
use crate::a2a::elicitation::{ELICITATION_COMPLETE_METHOD, ElicitationParams};
use crate::a2a::{TaskIdParams, TaskQueryParams, methods};

pub(crate) async fn healthz(State(inner): State<Arc<GatewayInner>>) -> Json<Value> {
    Json(json!({ "status": "ok", "gateway_id": inner.id }))
}

pub(crate) async fn list_agents(
    State(inner): State<Arc<GatewayInner>>,
    _user: AuthUser,
) -> Json<Value> {
    Json(json!({ "agents": inner.agents.list() }))
}

pub(crate) async fn message_send(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Json(body): Json<SendBody>,
) -> Result<Json<Value>, ApiError> {
    let (call, _) = start_task(&inner, &user, body, methods::SEND).await?;
    let task_id = call.id.clone();
    match call.final_answer(timeout(&inner)).await {
        Ok(result) => Ok(Json(serde_json::to_value(result).unwrap_or(Value::Null))),
        Err(CallError::Refused { error, .. }) => Err(ApiError::from_rpc(error)),
        Err(CallError::Closed(_)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "answer channel closed",
        )),
        Err(CallError::TimedOut { peer, wait }) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("agent {peer} gave no answer for task {task_id} within {wait:?}"),
        )),
    }
}

pub(crate) async fn get_task(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = inner
        .tasks
        .get(&id, &user.id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("task {id} not found")))?;
    let params = TaskQueryParams {
        id: id.clone(),
        history_length: None,
    };
    match ask_agent(&inner, &user, &rec.agent, methods::GET, params).await? {
        Some(Event::Final(r)) => Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null))),
        Some(Event::Error(e)) => Err(ApiError::from_rpc(e)),
        // The agent is gone or slow (or forgot the task): the last state the
        // gateway saw is still useful. The gateway keeps no task content.
        _ => match rec.state {
            Some(state) => {
                let mut task = crate::a2a::Task::new(&id, "", state);
                task.metadata = Some(serde_json::Map::from_iter([(
                    "amesh_note".to_string(),
                    json!("the agent did not answer; this is the last state the gateway saw"),
                )]));
                Ok(Json(serde_json::to_value(task).unwrap_or(Value::Null)))
            }
            None => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("agent {} did not answer about task {id}", rec.agent),
            )),
        },
    }
}

/// `POST /api/v1/tasks/{id}:cancel`, and `POST /api/v1/tasks/{id}:continue`
/// with `{"elicitation_id", "action": "accept" | "decline"}` for a task
/// waiting for the user at a tool server's page (the action is a suffix of
/// the id segment, Google API style).
pub(crate) async fn task_action(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id_action): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if let Some(id) = id_action.strip_suffix(":continue") {
        return continue_task(&inner, &user, id, &body).await;
    }
    let Some(id) = id_action.strip_suffix(":cancel") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown task action; use POST /api/v1/tasks/{id}:cancel or :continue",
        ));
    };
    let rec = inner
        .tasks
        .get(id, &user.id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("task {id} not found")))?;
    let params = TaskIdParams { id: id.to_string() };
    match ask_agent(&inner, &user, &rec.agent, methods::CANCEL, params).await? {
        Some(Event::Final(r)) => Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null))),
        Some(Event::Error(e)) => Err(ApiError::from_rpc(e)),
        _ => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("agent {} did not answer the cancel of task {id}", rec.agent),
        )),
    }
}

/// `:continue`: the user's answer to a tool server's page, sent to the
/// task's agent as `amesh/elicitation/complete` with the user's identity.
/// The agent checks the id is this user's and retries the paused call.
async fn continue_task(
    inner: &Arc<GatewayInner>,
    user: &super::auth::User,
    id: &str,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let params: ElicitationParams = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "expected {{\"elicitation_id\": ..., \"action\": \"accept\" | \"decline\"}}: {e}"
            ),
        )
    })?;
    let rec = inner
        .tasks
        .get(id, &user.id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("task {id} not found")))?;
    match ask_agent(inner, user, &rec.agent, ELICITATION_COMPLETE_METHOD, params).await? {
        Some(Event::Final(r)) => Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null))),
        Some(Event::Error(e)) => Err(ApiError::from_rpc(e)),
        _ => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("agent {} did not answer for task {id}", rec.agent),
        )),
    }
}
