//! Streamed tasks: `POST /api/v1/message:stream` starts one and a recorder
//! that writes everything its agent says into the task's event log
//! (`task_events.rs`); the SSE answer, and `GET /api/v1/tasks/{id}/events`
//! for a client that comes back, read that log. Every SSE event carries
//! `id:` (its place in the log), so a client resumes with `Last-Event-ID`.
//!
//! The recorder also keeps the turn of the task's conversation up to date
//! (`conversations.rs`), so a page opened later shows the answer without
//! replaying events.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GatewayInner;
use super::agent_requests::{SendBody, start_task, timeout};
use super::api_error::ApiError;
use super::extract::AuthUser;
use super::quota::Slot;
use super::task_events::TaskLog;
use crate::a2a::client::Call;
use crate::a2a::client::Event;
use crate::a2a::jsonrpc;
use crate::a2a::{
    Part, StreamResult, Task, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent, liveness,
    methods,
};

/// `POST /api/v1/message:stream`.
pub(crate) async fn message_stream(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Json(body): Json<SendBody>,
) -> Result<Response, ApiError> {
    // Held by the SSE body: given back when the client goes away.
    let slot = acquire(&inner, &user.id)?;
    let context = body.context_id().map(str::to_owned);
    let prompt = body.prompt_text();
    let (sent, silence) = start_task(&inner, &user, body, methods::STREAM).await?;
    let log = inner
        .events
        .open(&sent.id, &user.id, &sent.peer, context.clone());
    let first = json!({ "taskId": sent.id, "agent": sent.peer, "contextId": context });
    inner.events.append(
        &log,
        "submitted",
        first.to_string(),
        Some("submitted"),
        false,
    );
    // A contextId naming one of the user's conversations adds a turn there.
    let conversation = context.filter(|c| inner.conversations.owns(&user.id, c));
    if let Some(conv) = &conversation {
        inner
            .conversations
            .start_turn(&user.id, conv, &sent.id, &sent.peer, &prompt);
    }
    let conversation = conversation.map(|c| (user.id.clone(), c));
    tokio::spawn(record(
        inner.clone(),
        sent,
        silence,
        log.clone(),
        conversation,
    ));
    Ok(follow(log, 0, slot))
}

/// `GET /api/v1/tasks/{id}/events`: the task's events after
/// `Last-Event-ID` (all without it), then the rest as they come.
pub(crate) async fn task_events(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let log = inner.events.get(&id, &user.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no events of task {id} are kept (unknown, another user's, or forgotten); \
                 GET /api/v1/tasks/{id} asks its agent"
            ),
        )
    })?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "Last-Event-ID is not a number")
            })?,
    };
    let slot = acquire(&inner, &user.id)?;
    Ok(follow(log, after, slot))
}

/// `GET /api/v1/tasks`: the user's tasks whose events are kept, newest
/// first (a page looks here for tasks still running).
pub(crate) async fn list_tasks(
    State(inner): State<Arc<GatewayInner>>,
    AuthUser(user): AuthUser,
) -> Json<Value> {
    Json(json!({ "tasks": inner.events.list(&user.id) }))
}

fn acquire(inner: &GatewayInner, user: &str) -> Result<Slot, ApiError> {
    inner.streams.acquire(user).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{e}: close one before opening another"),
        )
    })
}

/// The SSE answer: the log's events after `after`, then each new one,
/// until the log ends.
fn follow(log: Arc<TaskLog>, after: u64, slot: Slot) -> Response {
    struct St {
        _slot: Slot,
        log: Arc<TaskLog>,
        watch: tokio::sync::watch::Receiver<u64>,
        after: u64,
        queued: std::collections::VecDeque<Arc<super::task_events::Logged>>,
        done: bool,
    }
    let st = St {
        _slot: slot,
        watch: log.watch(),
        log,
        after,
        queued: Default::default(),
        done: false,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.queued.pop_front() {
                st.after = ev.seq;
                let sse = SseEvent::default()
                    .id(ev.seq.to_string())
                    .event(ev.name)
                    .data(ev.data.as_str());
                return Some((Ok::<_, std::convert::Infallible>(sse), st));
            }
            if st.done {
                return None;
            }
            // Marked seen before reading, so an append in between wakes us.
            st.watch.borrow_and_update();
            let (events, done) = st.log.after(st.after);
            st.queued.extend(events);
            if st.queued.is_empty() {
                if done {
                    return None;
                }
                if st.watch.changed().await.is_err() {
                    st.done = true;
                }
            } else {
                st.done = done;
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Reads the agent's answers to one streamed task until the final one (or
/// the request timeout) into its log and conversation turn. Owns the reply
/// registration, so the task's answers are taken whether or not a client
/// is connected.
///
/// With `silence` (the agent promised heartbeats, see `a2a::liveness`), a
/// task that is submitted or working and from which nothing came for that
/// long is failed here with the reason: its agent process is gone.
/// Heartbeats reset that clock and are not logged.
async fn record(
    inner: Arc<GatewayInner>,
    mut sent: Call,
    silence: Option<Duration>,
    log: Arc<TaskLog>,
    conversation: Option<(String, String)>,
) {
    let limit = timeout(&inner);
    let deadline = tokio::time::Instant::now() + limit;
    // Paused for the user: no process runs the task, nothing is expected.
    let mut paused = false;
    // Whether any replica said anything about the task yet (heartbeats too).
    let mut taken = false;
    // What the stream already carried of the task's end (see `ending`).
    let mut streamed = Streamed::default();
    let turn = |change: &dyn Fn(&mut super::conversations::Turn)| {
        if let Some((user, conv)) = &conversation {
            inner
                .conversations
                .update_turn(user, conv, &log.task_id, |t| change(t));
        }
    };
    loop {
        let now = tokio::time::Instant::now();
        let quiet_until = match silence {
            Some(s) if !paused => deadline.min(now + s),
            _ => deadline,
        };
        let event = match tokio::time::timeout_at(quiet_until, sent.recv()).await {
            Ok(Some(Event::Update(StreamResult::Status(s))))
                if liveness::is_heartbeat(s.metadata.as_ref()) =>
            {
                taken = true;
                continue;
            }
            Ok(Some(event)) => {
                taken = true;
                event
            }
            Ok(None) => {
                inner.events.close(&log);
                return;
            }
            Err(_) => {
                let quiet = silence.unwrap_or_default();
                let message = if quiet_until < deadline && !taken {
                    // The broker had no one to deliver to (the agent is not
                    // connected and left no session), or the replica that
                    // took it died at once: either way nobody runs it.
                    tracing::warn!(gateway = %inner.id, agent = %sent.peer, task = %log.task_id,
                        "task failed: its agent did not take it within {quiet:?}");
                    format!(
                        "agent {} did not take the task within {quiet:?}: no replica of it \
                         answered (it is not connected, or stopped); the task is failed, \
                         ask again once the agent is back",
                        sent.peer
                    )
                } else if quiet_until < deadline {
                    tracing::warn!(gateway = %inner.id, agent = %sent.peer, task = %log.task_id,
                        "task failed: its agent went silent for {quiet:?}");
                    format!(
                        "agent {} stopped answering: nothing about this task for {quiet:?} \
                         while it was running (the agent process may have stopped); \
                         the task is failed, ask again",
                        sent.peer
                    )
                } else {
                    format!("no answer within {limit:?}")
                };
                inner.tasks.set_state(&log.task_id, TaskState::Failed);
                turn(&|t| {
                    t.state = "failed".into();
                    t.answer = Some(message.clone());
                });
                let body = json!({ "code": jsonrpc::INTERNAL_ERROR, "message": message });
                inner
                    .events
                    .append(&log, "error", body.to_string(), Some("failed"), true);
                return;
            }
        };
        let (name, data, state, last) = match &event {
            Event::Update(StreamResult::Status(s)) => {
                paused = matches!(
                    s.status.state,
                    TaskState::AuthRequired | TaskState::InputRequired
                );
                let state = state_name(s.status.state);
                let parts = s.status.message.as_ref().map(|m| m.parts.as_slice());
                let tools: Vec<&Value> = parts
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| match p {
                        Part::Data { data, .. } => Some(data),
                        _ => None,
                    })
                    .filter(|d| {
                        matches!(
                            d.get("type").and_then(Value::as_str),
                            Some("tool_call" | "tool_result")
                        )
                    })
                    .collect();
                turn(&|t| {
                    t.state = state.clone();
                    for d in &tools {
                        t.tool(d);
                    }
                });
                streamed.final_status |= s.is_final;
                ("status", serde_json::to_string(s), Some(state), false)
            }
            Event::Update(StreamResult::Artifact(a)) => {
                streamed.artifacts.push(a.artifact.artifact_id.clone());
                ("artifact", serde_json::to_string(a), None, false)
            }
            Event::Update(other) => ("update", serde_json::to_string(other), None, false),
            Event::Final(result) => {
                if let StreamResult::Task(task) = result {
                    for (name, data, state) in ending(task, &streamed) {
                        inner
                            .events
                            .append(&log, name, data, state.as_deref(), false);
                    }
                }
                let (state, answer) = outcome(result);
                turn(&|t| {
                    if let Some(state) = &state {
                        t.state = state.clone();
                    }
                    t.answer = Some(answer.clone());
                });
                ("task", serde_json::to_string(result), state, true)
            }
            Event::Error(e) => {
                turn(&|t| {
                    t.state = "failed".into();
                    t.answer = Some(e.message.clone());
                });
                (
                    "error",
                    serde_json::to_string(e),
                    Some("failed".into()),
                    true,
                )
            }
        };
        let data = data.unwrap_or_else(|_| "null".to_owned());
        inner
            .events
            .append(&log, name, data, state.as_deref(), last);
        if last {
            return;
        }
    }
}

/// What a task's stream carried of its end before the final task came.
#[derive(Default)]
struct Streamed {
    /// `artifactId`s of the artifact updates.
    artifacts: Vec<String>,
    /// A status update marked `final`.
    final_status: bool,
}

/// The events an ended streamed task ends with before its `task` event —
/// an `artifact` event per artifact of a completed task and a `status`
/// event marked `final` — made from the final task when the stream did
/// not carry them.
///
/// An amesh agent does not publish them: the final task on `replyTo`
/// holds the same artifacts and status, and every message an agent sends
/// is signed by it, carried twice through the broker and verified here,
/// so leaving out the copies takes two of a plain task's six messages
/// away. An agent that does send them (SAM, an older amesh) gets no
/// duplicates: what the stream carried is not made again.
fn ending(task: &Task, streamed: &Streamed) -> Vec<(&'static str, String, Option<String>)> {
    let mut events = Vec::new();
    if task.status.state == TaskState::Completed {
        for artifact in &task.artifacts {
            if streamed.artifacts.contains(&artifact.artifact_id) {
                continue;
            }
            let ev = TaskArtifactUpdateEvent::new(&task.id, &task.context_id, artifact.clone());
            if let Ok(data) = serde_json::to_string(&ev) {
                events.push(("artifact", data, None));
            }
        }
    }
    // A task that stops in `auth-required` or `input-required` without
    // its stream saying so is another agent's way (amesh's streams that);
    // only an ended task gets a final status made for it.
    if task.status.state.is_terminal() && !streamed.final_status {
        let ev = TaskStatusUpdateEvent::new(&task.id, &task.context_id, task.status.clone(), true);
        if let Ok(data) = serde_json::to_string(&ev) {
            events.push(("status", data, Some(state_name(task.status.state))));
        }
    }
    events
}

/// `auth-required`, `completed`, ... as on the wire.
fn state_name(state: TaskState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A final answer's state and text: the artifacts' text, or for a task
/// that did not complete, its status message.
fn outcome(result: &StreamResult) -> (Option<String>, String) {
    let text = |parts: &[Part]| {
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match result {
        StreamResult::Task(task) => {
            let from_artifacts = task
                .artifacts
                .iter()
                .map(|a| text(&a.parts))
                .collect::<Vec<_>>()
                .join("\n");
            let answer = if from_artifacts.is_empty() {
                task.status
                    .message
                    .as_ref()
                    .map(|m| text(&m.parts))
                    .unwrap_or_default()
            } else {
                from_artifacts
            };
            (Some(state_name(task.status.state)), answer)
        }
        StreamResult::Message(m) => (Some("completed".into()), text(&m.parts)),
        StreamResult::Status(s) => (
            Some(state_name(s.status.state)),
            s.status
                .message
                .as_ref()
                .map(|m| text(&m.parts))
                .unwrap_or_default(),
        ),
        StreamResult::Artifact(a) => (None, text(&a.artifact.parts)),
    }
}
