//! The methods about a user's own data at this agent: connected accounts
//! (`amesh/connections/*`, see `a2a::connections`) and conversations
//! (`amesh/sessions/*`, answered by `sessions.rs`). Only a verified
//! identity gets an answer: the user is whoever the gateway's token names.

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::Instrument as _;

use super::AgentInner;
use super::handler::{Caller, spawn_reply};
use crate::a2a::connections::{self, ToolParams};
use crate::a2a::jsonrpc::{self, Response, RpcError};
use crate::a2a::sessions;
use crate::a2a::{Message, Part};

/// Whether this module answers `method`.
pub(crate) fn is_method(method: &str) -> bool {
    connections::is_method(method) || sessions::is_method(method)
}

/// Answers one such request on `reply_to`.
pub(crate) fn handle(
    inner: &Arc<AgentInner>,
    method: &str,
    id: Value,
    params: Value,
    caller: Caller,
    reply_to: String,
) {
    let inner = inner.clone();
    let method = method.to_owned();
    let tracker = inner.tracker.clone();
    tracker.spawn(
        async move {
            let answer = answer(&inner, &method, params, &caller).await;
            // A message with one data part: the gateway reads every answer as
            // an A2A result (and checks any authorization link in it).
            let response = match answer {
                Ok(result) => Response::ok(id, Message::agent(vec![Part::data(result)], "", "")),
                Err(e) => Response::err(id, e),
            };
            spawn_reply(&inner, reply_to, response);
        }
        .in_current_span(),
    );
}

async fn answer(
    inner: &AgentInner,
    method: &str,
    params: Value,
    caller: &Caller,
) -> Result<Value, RpcError> {
    let Some(who) = caller.identity.verified() else {
        return Err(RpcError::new(
            jsonrpc::UNAUTHENTICATED,
            "connected accounts and conversations need a verified identity",
        ));
    };
    if sessions::is_method(method) {
        return super::sessions::answer(inner, method, params, who).await;
    }
    let Some(mcp) = &inner.mcp else {
        return match method {
            connections::LIST => Ok(json!({ "connections": [] })),
            _ => Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                format!("agent {} has no tools that need authorization", inner.name),
            )),
        };
    };
    let failed = |why: String| RpcError::new(jsonrpc::INVALID_PARAMS, why);
    let tool = |params: Value| {
        serde_json::from_value::<ToolParams>(params)
            .map(|p| p.tool_id)
            .map_err(|e| failed(format!("invalid params for {method}: {e}")))
    };
    match method {
        connections::LIST => {
            let list = mcp
                .connections(who)
                .await
                .map_err(|e| RpcError::new(jsonrpc::INTERNAL_ERROR, e.to_string()))?;
            Ok(json!({ "connections": list }))
        }
        connections::DISCONNECT => {
            let tool_id = tool(params)?;
            let text = mcp
                .disconnect(who, &tool_id)
                .await
                .map_err(|e| failed(e.to_string()))?;
            Ok(json!({ "toolId": tool_id, "message": text }))
        }
        connections::CONNECT => {
            let tool_id = tool(params)?;
            let prompt = mcp
                .connect(who, &tool_id)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let task_id = format!("connect-{}", uuid::Uuid::new_v4().simple());
            // Marks the flow as one with no task to resume (`pause.rs`).
            let marker = json!({ super::pause::CONNECT_MARKER: tool_id });
            mcp.record_flow(&prompt, &task_id, who, marker)
                .await
                .map_err(|e| RpcError::new(jsonrpc::INTERNAL_ERROR, e.to_string()))?;
            Ok(json!({
                "toolId": tool_id,
                "authorization_url": prompt.authorization_url,
                "message": prompt.message,
            }))
        }
        other => Err(RpcError::new(
            jsonrpc::METHOD_NOT_FOUND,
            format!("method `{other}` not found"),
        )),
    }
}
