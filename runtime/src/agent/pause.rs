//! Pause and resume: a task whose tool needs the user's authorization.
//!
//! The one owner of both halves. [`pause`] stores the reasoning loop's
//! whole state with the pending OAuth flow (encrypted, in the agent's
//! store), moves the task to `auth-required` with the authorization link,
//! and lets go: nothing about the task has to stay in this process.
//! [`on_callback`] — the `oauth/callback` request, on whichever replica
//! the shared subscription hands it to — lets the MCP layer finish the
//! flow, takes the state back and continues the loop at the paused call:
//! calls that had finished are not repeated, the model is not asked again.
//! A scope step-up is marked in the state itself, so the re-run knows not
//! to ask a second time.
//!
//! A task nobody completes the authorization for ends when its flow
//! expires (the store's flow lifetime, 10 minutes by default): the agent's
//! sweeper fails it and tells the requester.

use secrecy::ExposeSecret as _;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument as _;

use amesh_trust::RequestIdentity;
use serde_json::{Value, json};

use super::AgentInner;
use super::handler::{Caller, publish, spawn_reply};
use super::mcp::AuthPrompt;
use super::reasoning::{
    self, report,
    state::{LoopState, TaskRoute},
};
use crate::a2a::jsonrpc::{INTERNAL_ERROR, INVALID_PARAMS, Response, RpcError};
use crate::a2a::oauth_callback::CallbackParams;
use crate::a2a::{Message, Part, Task, TaskState, TaskStatus, TaskStatusUpdateEvent};

/// Why a task's loop stopped to wait for its user.
pub(crate) enum Pause {
    /// A tool's server needs the user's OAuth authorization ([`pause`]).
    Auth(Box<AuthPrompt>),
    /// A tool's server needs the user at a page of its own
    /// ([`super::elicitation`]).
    Input(super::elicitation::Waiting),
}

/// Stores `state` with the flow of `prompt` and moves the task to
/// `auth-required`: a status update on the stream, or — for
/// `message/send`, which waits for one answer — the task on `replyTo`.
pub(crate) async fn pause(
    inner: &Arc<AgentInner>,
    state: LoopState,
    caller: &Caller,
    prompt: AuthPrompt,
) {
    let route = state.route.clone();
    let RequestIdentity::Verified(who) = &caller.identity else {
        // The MCP layer asks for authorization only for a verified identity.
        report::fail(inner, &route, "authorization needs a verified identity").await;
        return;
    };
    let (Some(mcp), Ok(snapshot)) = (&inner.mcp, serde_json::to_value(&state)) else {
        report::fail(
            inner,
            &route,
            "the task could not be paused for authorization",
        )
        .await;
        return;
    };
    let url = prompt.authorization_url.clone();
    let tool_id = prompt.tool_id.clone();
    let message = prompt.message.clone();
    let tool = state
        .unfinished()
        .map(|(_, p)| p.call.name.clone())
        .find(|name| mcp.tool_id_of(name) == Some(tool_id.as_str()))
        .unwrap_or_else(|| tool_id.clone());
    if let Err(why) = mcp
        .record_flow(&prompt, &route.task_id, who, snapshot)
        .await
    {
        report::fail(
            inner,
            &route,
            &format!("cannot start the authorization of {tool}: {why}"),
        )
        .await;
        return;
    }
    let prompt = Message::agent(
        vec![
            Part::text(format!("{message}\n{url}")),
            Part::data(json!({
                "type": "oauth2_authorization_required",
                "authorization_url": url,
                "tool_id": tool_id,
                "tool": tool,
                "message": message,
            })),
        ],
        &route.task_id,
        &route.context_id,
    );
    tracing::info!(agent = %inner.name, user = %caller.user_id, tool = %tool_id, task = %route.task_id,
        "task waits for the user's tool authorization");
    crate::telemetry::metrics::authorization_prompt(&inner.name, &tool_id);
    wait_for_user(inner, &route, TaskState::AuthRequired, prompt).await;
}

/// Moves the task to `state` (`auth-required`, `input-required`) with
/// `prompt`, marks it waiting for as long as its stored record lives, and
/// tells the requester: a status update on the stream, or — for
/// `message/send`, which waits for one answer — the task on `replyTo`.
pub(super) async fn wait_for_user(
    inner: &Arc<AgentInner>,
    route: &TaskRoute,
    state: TaskState,
    prompt: Message,
) {
    let status = TaskStatus::new(state, Some(prompt));
    let Some(task) = inner.tasks.set_status(&route.task_id, status.clone()) else {
        return;
    };
    // The task waits as long as its flow lives, not a moment longer.
    let lifetime = inner
        .store
        .as_ref()
        .map_or(amesh_credentials::DEFAULT_FLOW_TTL, |s| s.flow_ttl());
    inner
        .tasks
        .wait_for_user(&route.task_id, Instant::now() + lifetime, route.clone());
    match &route.status_topic {
        Some(topic) => {
            let ev = TaskStatusUpdateEvent::new(&route.task_id, &route.context_id, status, false);
            publish(inner, topic, &Response::ok(route.rpc_id.clone(), ev)).await;
        }
        None => {
            publish(
                inner,
                &route.reply_to,
                &Response::ok(route.rpc_id.clone(), task),
            )
            .await
        }
    }
}

/// Key of the stand-in task state of a flow started from the connected
/// accounts page (`accounts.rs`): nothing to resume, the account is
/// connected.
pub(crate) const CONNECT_MARKER: &str = "amesh_connect";

/// The answer to a callback: words for the page, and `outcome`
/// (`resumed`, `task_ended`, `connected`) for the gateway to pick its own.
pub(super) fn callback_answer(
    text: &str,
    outcome: &str,
    task_id: &str,
    context_id: &str,
) -> Message {
    Message::agent(
        vec![Part::text(text), Part::data(json!({ "outcome": outcome }))],
        task_id,
        context_id,
    )
}

/// The `oauth/callback` request: completes the flow and resumes the task.
/// The answer to the callback (for the browser page) goes out as soon as
/// the credential is stored — or says truthfully that the task is gone —
/// and the loop goes on after it. Runs under the agent's task tracker, so
/// a graceful shutdown waits for it.
pub(crate) fn on_callback(
    inner: &Arc<AgentInner>,
    id: Value,
    params: CallbackParams,
    caller: Caller,
    reply_to: String,
) {
    let inner = inner.clone();
    let tracker = inner.tracker.clone();
    tracker.spawn(async move {
        let Some(mcp) = &inner.mcp else {
            let error = RpcError::new(
                INVALID_PARAMS,
                format!("agent {} has no tools that need authorization", inner.name),
            );
            spawn_reply(&inner, reply_to, Response::err(id, error));
            return;
        };
        let outcome = mcp.on_callback(params, &caller.identity).await;
        crate::telemetry::metrics::authorization_callback(&inner.name, outcome.is_ok());
        match outcome {
            Ok(done) => {
                if let Some(tool) = done.task.get(CONNECT_MARKER).and_then(Value::as_str) {
                    tracing::info!(agent = %inner.name, user = %caller.user_id, tool, "account connected");
                    let text = format!("authorization stored; {tool} is connected");
                    let reply = callback_answer(&text, "connected", "", "");
                    spawn_reply(&inner, reply_to, Response::ok(id, reply));
                    return;
                }
                let mut state: LoopState = match serde_json::from_value(done.task) {
                    Ok(state) => state,
                    Err(e) => {
                        tracing::warn!(agent = %inner.name, error = ?e.classify(), "paused task state unreadable");
                        let error = RpcError::new(
                            INTERNAL_ERROR,
                            "the authorization is stored, but the paused task could not be read \
                             (written by another amesh version?); ask again",
                        );
                        spawn_reply(&inner, reply_to, Response::err(id, error));
                        return;
                    }
                };
                state.stepped_up = done.step_up.then_some(done.tool_id);
                let route = state.route.clone();
                let task = Task::new(&route.task_id, &route.context_id, TaskState::Working);
                let Some(cancel) = inner.tasks.resume(task, &caller.user_id) else {
                    tracing::info!(agent = %inner.name, task = %route.task_id, "task ended while it waited for authorization");
                    let text = "authorization stored; the task it was for had already ended \
                                (canceled or expired), so ask again to use it";
                    let reply = callback_answer(text, "task_ended", &route.task_id, &route.context_id);
                    spawn_reply(&inner, reply_to, Response::ok(id, reply));
                    return;
                };
                let done = callback_answer(
                    "authorization stored; the task continues",
                    "resumed",
                    &route.task_id,
                    &route.context_id,
                );
                spawn_reply(&inner, reply_to, Response::ok(id, done));
                let caller = resumed_caller(&inner, &mut state, caller);
                reasoning::run(inner.clone(), state, caller, cancel).await;
            }
            Err((task, error)) => {
                tracing::info!(agent = %inner.name, user = %caller.user_id, error = %error.message, "tool authorization callback refused");
                if let Some(store) = &inner.store {
                    store.authorization_failed(&caller.user_id, &tool_of(task.as_ref()), &error.message);
                }
                let text = error.message.clone();
                spawn_reply(&inner, reply_to, Response::err(id, error));
                if let Some(state) = task.and_then(|t| serde_json::from_value::<LoopState>(t).ok()) {
                    let route = state.route;
                    let task = Task::new(&route.task_id, &route.context_id, TaskState::Working);
                    if inner.tasks.resume(task, &caller.user_id).is_some() {
                        report::fail(&inner, &route, &text).await;
                    }
                }
            }
        }
    }.in_current_span());
}

/// The tool server a refused callback's paused task waited for (empty when
/// the flow was not found), for the audit event.
fn tool_of(task: Option<&Value>) -> String {
    task.and_then(|t| serde_json::from_value::<LoopState>(t.clone()).ok())
        .and_then(|s| s.unfinished().next().map(|(_, p)| p.call.name.clone()))
        .unwrap_or_default()
}

/// Who the resumed task runs as: the identity it started with when its
/// token still verifies for the same user and every hop of its chain is
/// still permitted — so it may delegate to peers as before the pause —
/// else the callback's own identity, which is scoped to the callback (tools
/// with stored credentials work, delegation does not).
pub(super) fn resumed_caller(
    inner: &AgentInner,
    state: &mut LoopState,
    callback: Caller,
) -> Caller {
    let call_depth = state.route.call_depth;
    let started = state.presented_token.take().and_then(|token| {
        let who = inner
            .trust
            .reverify(token.expose_secret(), &callback.user_id)?;
        let usable = who.user_id() == callback.user_id
            && who.check_use(crate::a2a::methods::STREAM, None).is_ok()
            && super::delegate::hops_permitted(inner, &who).is_ok();
        usable.then(|| Caller {
            user_id: callback.user_id.clone(),
            identity: RequestIdentity::Verified(who),
            auth_token: Some(token.expose_secret().to_owned()),
            call_depth,
        })
    });
    started.unwrap_or(Caller {
        call_depth,
        ..callback
    })
}

/// Fails the tasks whose authorization was never completed in time and
/// tells their requesters. Called periodically by the agent's sweeper.
pub(crate) async fn expire_waiting(inner: &AgentInner) {
    for route in inner.tasks.expired_waits(Instant::now()) {
        tracing::info!(agent = %inner.name, task = %route.task_id, "authorization not completed in time; task ends");
        report::fail(
            inner,
            &route,
            "the authorization (or the tool server's page) was not completed in time; ask again to get a new link",
        )
        .await;
    }
}
