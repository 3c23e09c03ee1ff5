//! Tasks that wait for a user's tool authorization, and their resumption.
//!
//! When a tool needs the user to authorize it, the task moves to
//! `auth-required` with the authorization URL and stays there; nothing
//! about it has to stay in this process, because the pending flow in the
//! credential store holds the [`ResumeContext`]. The `oauth/callback`
//! request may therefore reach any replica (shared subscription): that
//! replica exchanges the code, stores the credential, and runs the tool
//! call again, answering on the original task's reply topics, so the user
//! sees the result without asking again.

use std::sync::Arc;

use serde_json::{Value, json};

use super::AgentInner;
use super::handler::{Caller, Job, ToolRef, agent_text, publish, run, spawn_reply};
use super::mcp::ResumeContext;
use super::tools::ToolCall;
use crate::a2a::jsonrpc::Response;
use crate::a2a::{Message, Part, Task, TaskState, TaskStatus, TaskStatusUpdateEvent};
use crate::gateway::tool_callback::CallbackParams;

/// What the MCP layer stores to resume `job`.
pub(super) fn context(job: &Job) -> ResumeContext {
    ResumeContext {
        task_id: job.task_id.clone(),
        context_id: job.context_id.clone(),
        rpc_id: job.rpc_id.clone(),
        reply_to: job.reply_to.clone(),
        status_topic: job.status_topic.clone(),
        tool: job.call.tool.clone(),
        arguments: job.call.arguments.clone(),
        call_depth: job.caller.call_depth,
    }
}

/// Moves the task to `auth-required` and tells the user where to sign in:
/// a status update on the stream, or — for `message/send`, which waits for
/// one answer — the task itself on `replyTo`.
pub(super) async fn wait_for_authorization(
    inner: &Arc<AgentInner>,
    job: &Job,
    authorization_url: String,
    tool_id: String,
    message: String,
) {
    let prompt = Message::agent(
        vec![
            Part::text(format!("{message}\n{authorization_url}")),
            Part::data(json!({
                "type": "oauth2_authorization_required",
                "authorization_url": authorization_url,
                "tool_id": tool_id,
                "tool": job.call.tool,
                "message": message,
            })),
        ],
        &job.task_id,
        &job.context_id,
    );
    let status = TaskStatus::new(TaskState::AuthRequired, Some(prompt));
    let Some(task) = inner.tasks.set_status(&job.task_id, status.clone()) else {
        return;
    };
    tracing::info!(
        agent = %inner.name,
        user = %job.caller.user_id,
        tool = %tool_id,
        task = %job.task_id,
        "task waits for the user's tool authorization"
    );
    match &job.status_topic {
        Some(topic) => {
            let ev = TaskStatusUpdateEvent::new(&job.task_id, &job.context_id, status, false);
            publish(inner, topic, &Response::ok(job.rpc_id.clone(), ev)).await;
        }
        None => {
            publish(
                inner,
                &job.reply_to,
                &Response::ok(job.rpc_id.clone(), task),
            )
            .await
        }
    }
}

/// The `oauth/callback` request: completes the flow and resumes the task.
/// The answer to the callback (for the browser page) goes out as soon as
/// the credential is stored; the tool call runs after it.
pub(super) fn on_callback(
    inner: &Arc<AgentInner>,
    id: Value,
    params: CallbackParams,
    caller: Caller,
    reply_to: String,
) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let Some(mcp) = &inner.mcp else {
            let error = crate::a2a::jsonrpc::RpcError::new(
                crate::a2a::jsonrpc::INVALID_PARAMS,
                format!("agent {} has no tools that need authorization", inner.name),
            );
            spawn_reply(&inner, reply_to, Response::err(id, error));
            return;
        };
        match mcp.on_callback(params, &caller.identity).await {
            Ok(ctx) => {
                let done = Message::agent(
                    vec![Part::text("authorization stored; the task continues")],
                    &ctx.task_id,
                    &ctx.context_id,
                );
                spawn_reply(&inner, reply_to, Response::ok(id, done));
                resume(&inner, ctx, caller).await;
            }
            Err((ctx, error)) => {
                tracing::info!(agent = %inner.name, user = %caller.user_id, error = %error.message, "tool authorization callback refused");
                let text = error.message.clone();
                spawn_reply(&inner, reply_to, Response::err(id, error));
                if let Some(ctx) = ctx {
                    fail(&inner, &ctx, &caller.user_id, &text).await;
                }
            }
        }
    });
}

/// Runs the waiting tool call again, for the identity that completed the
/// authorization (the flow guarantees it is the task's user).
async fn resume(inner: &Arc<AgentInner>, ctx: ResumeContext, caller: Caller) {
    let task = Task::new(&ctx.task_id, &ctx.context_id, TaskState::Working);
    let Some(cancel) = inner.tasks.resume(task, &caller.user_id) else {
        tracing::info!(agent = %inner.name, task = %ctx.task_id, "task ended while it waited for authorization");
        return;
    };
    let job = Job {
        rpc_id: ctx.rpc_id,
        task_id: ctx.task_id,
        context_id: ctx.context_id,
        reply_to: ctx.reply_to,
        status_topic: ctx.status_topic,
        call: ToolCall {
            tool: ctx.tool.clone(),
            arguments: ctx.arguments,
        },
        tool: ToolRef::Mcp(ctx.tool),
        caller: Caller {
            call_depth: ctx.call_depth,
            ..caller
        },
        cancel,
    };
    inner.tracker.spawn(run(inner.clone(), job));
}

/// Ends a waiting task as failed (the provider refused, the code exchange
/// failed) and tells the user on the task's own topics.
async fn fail(inner: &Arc<AgentInner>, ctx: &ResumeContext, user_id: &str, text: &str) {
    let task = Task::new(&ctx.task_id, &ctx.context_id, TaskState::Working);
    if inner.tasks.resume(task, user_id).is_none() {
        return;
    }
    let status = TaskStatus::new(
        TaskState::Failed,
        Some(agent_text(&ctx.task_id, &ctx.context_id, text)),
    );
    let Some(task) = inner.tasks.set_status(&ctx.task_id, status) else {
        return;
    };
    if let Some(topic) = &ctx.status_topic {
        let ev =
            TaskStatusUpdateEvent::new(&ctx.task_id, &ctx.context_id, task.status.clone(), true);
        publish(inner, topic, &Response::ok(ctx.rpc_id.clone(), ev)).await;
    }
    publish(
        inner,
        &ctx.reply_to,
        &Response::ok(ctx.rpc_id.clone(), task),
    )
    .await;
}
