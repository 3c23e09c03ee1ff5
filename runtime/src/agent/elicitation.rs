//! Pause and resume for a tool server's URL-mode elicitation.
//!
//! An MCP 2026-07-28 server that needs the user at a page of its own (to
//! enter an API key, pay, connect a third-party account) answers a
//! `tools/call` with an input-required result: a URL, a message, and an
//! opaque `requestState` to echo on the retry. The task then waits exactly
//! as for an authorization ([`super::pause`]), in A2A's `input-required`
//! state: [`pause`] seals the reasoning loop's state and the server's
//! request in the agent's store (the pending-flow table, under a hash of a
//! fresh random elicitation id, bound to the user, single use, expiring
//! with the flow lifetime), shows the user the message and the URL, and
//! lets go. When the user says they are done, the gateway sends
//! `amesh/elicitation/complete` with the id and the user's own identity;
//! [`on_complete`] — on whichever replica gets it — takes the record back
//! and continues the loop at the paused call, which is retried with the
//! server's `requestState` and the user's answer. Calls that had finished
//! are not repeated, the model is not asked again. A task canceled while
//! it waits ends at once; one nobody answers for ends when its record
//! expires (the agent's sweeper).

use std::sync::Arc;

use amesh_credentials::{CredentialError, NewFlow, SecretJson};
use amesh_mcp::client::{ElicitAction, InputRequired};
use amesh_trust::RequestIdentity;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AgentInner;
use super::handler::{Caller, spawn_reply};
use super::mcp::InputPrompt;
use super::pause::{callback_answer, resumed_caller, wait_for_user};
use super::reasoning::{self, report, state::LoopState};
use crate::a2a::elicitation::{ElicitationParams, URL_ELICITATION_REQUIRED, UserAction};
use crate::a2a::jsonrpc::{INTERNAL_ERROR, INVALID_PARAMS, Response, RpcError, UNAUTHENTICATED};
use crate::a2a::{Message, Part, Task, TaskState};

/// A call of the turn whose server needs the user at a page.
pub(crate) struct Waiting {
    /// The model's id of the call (`direct` without a model).
    pub call_id: String,
    pub prompt: Box<InputPrompt>,
}

/// What is sealed with the wait. `amesh_elicitation` tells it from an
/// OAuth flow's record in the same table.
#[derive(Serialize, Deserialize)]
struct Resume {
    amesh_elicitation: u32,
    call_id: String,
    input: InputRequired,
    task: LoopState,
}

/// Stores `state` and the server's request, and moves the task to
/// `input-required` with the server's message and URL.
pub(crate) async fn pause(
    inner: &Arc<AgentInner>,
    state: LoopState,
    caller: &Caller,
    waiting: Waiting,
) {
    let route = state.route.clone();
    let Waiting { call_id, prompt } = waiting;
    let InputPrompt {
        tool_id,
        tool,
        input,
    } = *prompt;
    let RequestIdentity::Verified(who) = &caller.identity else {
        let text = format!(
            "tool {tool} needs you to open a page of its server, which needs a verified identity"
        );
        report::fail(inner, &route, &text).await;
        return;
    };
    let Some(store) = &inner.store else {
        let text = format!(
            "tool {tool} needs you to open a page of its server, but agent {} has no store to keep the task meanwhile",
            inner.name
        );
        report::fail(inner, &route, &text).await;
        return;
    };
    // 244 bits of randomness; only its hash is stored.
    let id = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let elicitations = input.elicitations.clone();
    let resume = Resume {
        amesh_elicitation: 1,
        call_id,
        input,
        task: state,
    };
    let recorded = match serde_json::to_value(&resume) {
        Ok(resume) => {
            let flow = NewFlow {
                state: id.clone().into(),
                tool_id: tool_id.clone(),
                task_id: route.task_id.clone(),
                pkce_verifier: String::new().into(),
                redirect_uri: String::new(),
                resume: SecretJson::new(resume),
            };
            store.start_flow(flow, who).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = recorded {
        let text = format!("the task could not wait for the page of tool {tool}: {why}");
        report::fail(inner, &route, &text).await;
        return;
    }
    let mut parts = vec![Part::text(
        elicitations
            .iter()
            .map(|e| format!("{}\n{}", e.message, e.url))
            .collect::<Vec<_>>()
            .join("\n"),
    )];
    parts.extend(elicitations.iter().map(|e| {
        Part::data(json!({
            "type": URL_ELICITATION_REQUIRED,
            "elicitation_id": id,
            "elicitation_url": e.url,
            "message": e.message,
            "tool": tool,
            "tool_id": tool_id,
        }))
    }));
    let prompt = Message::agent(parts, &route.task_id, &route.context_id);
    tracing::info!(agent = %inner.name, user = %caller.user_id, tool = %tool_id, task = %route.task_id,
        "task waits for the user at a page of the tool's server");
    wait_for_user(inner, &route, TaskState::InputRequired, prompt).await;
}

/// `amesh/elicitation/complete`: takes the waiting task back and retries
/// its call with the user's answer. Answers the gateway as soon as the
/// task goes on (or says truthfully that it ended), then runs the loop.
pub(crate) fn on_complete(
    inner: &Arc<AgentInner>,
    id: Value,
    params: ElicitationParams,
    caller: Caller,
    reply_to: String,
) {
    let inner = inner.clone();
    let tracker = inner.tracker.clone();
    tracker.spawn(async move {
        let refuse = |code: i64, text: String| {
            spawn_reply(&inner, reply_to.clone(), Response::err(id.clone(), RpcError::new(code, text)));
        };
        let Some(store) = &inner.store else {
            return refuse(INVALID_PARAMS, format!("agent {} has no task waiting for a page", inner.name));
        };
        // Only the user, through the gateway: not a peer acting for them.
        let who = match &caller.identity {
            RequestIdentity::Verified(who) if who.actors().is_empty() => who,
            _ => {
                return refuse(
                    UNAUTHENTICATED,
                    "only the user's own verified identity can answer for them".into(),
                );
            }
        };
        let flow = match store.take_flow(&params.elicitation_id, who).await {
            Ok(flow) => flow,
            Err(e) => {
                let (code, text) = refusal(&e);
                tracing::info!(agent = %inner.name, user = %caller.user_id, error = %e, "elicitation answer refused");
                return refuse(code, text);
            }
        };
        let resume: Resume = match serde_json::from_value(flow.resume.into_inner()) {
            Ok(resume) => resume,
            Err(_) => {
                return refuse(INVALID_PARAMS, "that id is not a page a task waits for".into());
            }
        };
        let action = match params.action {
            UserAction::Accept => ElicitAction::Accept,
            UserAction::Decline => ElicitAction::Decline,
        };
        let mut state = resume.task;
        let retry = resume.input.answer(action);
        for p in state
            .pending
            .iter_mut()
            .filter(|p| p.call.id == resume.call_id && p.result.is_none())
        {
            p.retry = Some(retry.clone());
        }
        let route = state.route.clone();
        let task = Task::new(&route.task_id, &route.context_id, TaskState::Working);
        let Some(cancel) = inner.tasks.resume(task, &caller.user_id) else {
            let text = "the task had already ended (canceled or expired); ask again";
            let reply = callback_answer(text, "task_ended", &route.task_id, &route.context_id);
            return spawn_reply(&inner, reply_to, Response::ok(id, reply));
        };
        tracing::info!(agent = %inner.name, user = %caller.user_id, task = %route.task_id, ?action, "user answered the tool server's page; the task continues");
        let reply = callback_answer("the task continues", "resumed", &route.task_id, &route.context_id);
        spawn_reply(&inner, reply_to, Response::ok(id, reply));
        let caller = resumed_caller(&inner, &mut state, caller);
        reasoning::run(inner.clone(), state, caller, cancel).await;
    });
}

/// A refused answer: the JSON-RPC code and what the user reads.
fn refusal(e: &CredentialError) -> (i64, String) {
    match e {
        CredentialError::FlowNotFound => (
            INVALID_PARAMS,
            "no task waits for that page (unknown id)".into(),
        ),
        CredentialError::FlowAlreadyUsed => {
            (INVALID_PARAMS, "that page was already answered".into())
        }
        CredentialError::FlowExpired { .. } => (
            INVALID_PARAMS,
            "the task stopped waiting for that page (expired); ask again".into(),
        ),
        CredentialError::FlowUserMismatch { .. } => (
            UNAUTHENTICATED,
            "that page was shown to another user".into(),
        ),
        other => (
            INTERNAL_ERROR,
            format!("the waiting task could not be read: {other}"),
        ),
    }
}
