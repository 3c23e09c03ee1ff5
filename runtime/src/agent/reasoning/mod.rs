//! The agent's reasoning loop: ask the model, run the tool calls it asks
//! for, feed the results back, until it answers.
//!
//! The loop works on a [`LoopState`] value and nothing else, so it can
//! stop anywhere a tool needs the user's authorization and go on later —
//! from that value, on any replica ([`super::pause`]). Tool calls of one
//! model turn run concurrently; the ones that finished keep their results
//! in the state, so after a pause only the unfinished calls run again and
//! the model is not asked again from scratch.
//!
//! An agent without a model runs the same loop in [`Mode::Direct`]: the
//! request names one tool call, and its result is the answer.

pub(crate) mod history;
pub(crate) mod report;
pub(crate) mod state;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::AgentInner;
use super::handler::{Caller, agent_text};
use super::llm::{ChatMessage, ModelRequest};
use super::pause::Pause;
use super::toolbox::{self, CallOutcome};
use crate::a2a::{Artifact, Part, TaskState, TaskStatus};
use report::TextStream;
use state::{CallResult, LoopState, Mode, PendingCall};

/// Tool calls a model may get wrong in one task (unknown tool, arguments
/// that are not JSON) before the task ends: each is answered with an
/// error it can correct, but a model that keeps failing is stopped.
pub(crate) const MAX_CORRECTIONS: u32 = 5;

/// How a run of the loop ended.
enum End {
    /// The answer, as the task's artifact.
    Answer {
        name: String,
        parts: Vec<Part>,
    },
    Failed(String),
    /// A tool needs the user (an authorization, or a page of its server's);
    /// the state is as it stands.
    Paused(Pause),
}

/// Starts a new task: loads the conversation (model mode) and runs.
pub(crate) async fn start(
    inner: Arc<AgentInner>,
    mut state: LoopState,
    caller: Caller,
    cancel: CancellationToken,
) {
    if state.mode == Mode::Model {
        match history::load(&inner, &caller, &state.route.context_id).await {
            Ok(earlier) => {
                state.history_len = earlier.len();
                let mut messages = earlier;
                messages.append(&mut state.messages);
                state.messages = messages;
            }
            Err(refusal) => {
                report::fail(&inner, &state.route, &refusal.to_string()).await;
                return;
            }
        }
    }
    run(inner, state, caller, cancel).await
}

/// Runs (or resumes) the loop until the task ends or pauses.
pub(crate) async fn run(
    inner: Arc<AgentInner>,
    mut state: LoopState,
    caller: Caller,
    cancel: CancellationToken,
) {
    let route = state.route.clone();
    let first = match state.mode {
        Mode::Model => "thinking".to_owned(),
        Mode::Direct => format!(
            "running tool {}",
            state.pending.first().map_or("?", |p| p.call.name.as_str())
        ),
    };
    report::working(&inner, &route, &first).await;
    let end = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        end = drive(&inner, &mut state, &caller) => Some(end),
        never = report::heartbeat(&inner, &route) => match never {},
    };
    // On the request's span (`telemetry::spans::a2a_process`).
    let span = tracing::Span::current();
    let outcome = match &end {
        Some(End::Answer { .. }) => "completed",
        Some(End::Failed(_)) => "failed",
        Some(End::Paused(_)) => "auth-required",
        None => "canceled",
    };
    span.record("a2a.task.state", outcome);
    if outcome == "failed" {
        crate::telemetry::spans::failed(&span, "task_failed");
    }
    match end {
        Some(End::Answer { name, parts }) => {
            if state.mode == Mode::Model {
                history::save(&inner, &caller, &state).await;
            }
            let artifact = Artifact {
                artifact_id: uuid::Uuid::new_v4().to_string(),
                name: Some(name),
                description: None,
                parts,
                metadata: None,
            };
            let status = TaskStatus::new(TaskState::Completed, None);
            report::finish(&inner, &route, status, Some(artifact)).await;
        }
        Some(End::Failed(text)) => report::fail(&inner, &route, &text).await,
        Some(End::Paused(Pause::Auth(prompt))) => {
            super::pause::pause(&inner, state, &caller, *prompt).await
        }
        Some(End::Paused(Pause::Input(prompt))) => {
            super::elicitation::pause(&inner, state, &caller, prompt).await
        }
        // Canceled by `tasks/cancel` (the store already says canceled and
        // keeps it) or by shutdown after the grace period (failed).
        None => {
            let text = format!("agent {} shut down before the task finished", inner.name);
            let status = TaskStatus::new(
                TaskState::Failed,
                Some(agent_text(&route.task_id, &route.context_id, &text)),
            );
            report::finish(&inner, &route, status, None).await;
        }
    }
}

/// The loop itself. Returns at an answer, a failure or a pause; `state`
/// holds everything done so far in every case.
async fn drive(inner: &Arc<AgentInner>, state: &mut LoopState, caller: &Caller) -> End {
    loop {
        if let Some(prompt) = run_unfinished(inner, state, caller).await {
            return End::Paused(prompt);
        }
        let Some(model) = inner.model.as_ref().filter(|_| state.mode == Mode::Model) else {
            // Direct mode: the one call's result is the answer.
            return match state.pending.pop() {
                Some(PendingCall {
                    call,
                    result: Some(result),
                    ..
                }) if !result.is_error => End::Answer {
                    name: call.name,
                    parts: result.parts,
                },
                Some(PendingCall {
                    result: Some(result),
                    ..
                }) => End::Failed(result.for_model()),
                _ => End::Failed("the agent has no model configured".into()),
            };
        };
        state.commit_results();
        let max = inner.cfg.max_llm_calls_per_task;
        if state.llm_calls >= max {
            return End::Failed(format!(
                "the task stopped after {max} model calls without an answer \
                 (max_llm_calls_per_task of agent {})",
                inner.name
            ));
        }
        let tools = toolbox::specs(inner);
        let request = ModelRequest {
            system: inner.cfg.instruction.as_deref(),
            messages: &state.messages,
            tools: &tools,
        };
        let stream = TextStream::start(inner, &state.route);
        let started = Instant::now();
        let reply = {
            let mut on_text = |t: &str| {
                if let Some(s) = &stream {
                    s.push(t)
                }
            };
            model.complete(&request, &mut on_text).await
        };
        if let Some(s) = stream {
            s.finish().await;
        }
        state.llm_calls += 1;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(agent = %inner.name, task = %state.route.task_id, model = %model.name(), error = %e, "model request failed");
                return End::Failed(e.to_string());
            }
        };
        tracing::debug!(agent = %inner.name, task = %state.route.task_id, took_ms = started.elapsed().as_millis() as u64,
            tool_calls = reply.tool_calls.len(), "model answered");
        state.messages.push(ChatMessage::Assistant {
            text: reply.text.clone(),
            tool_calls: reply.tool_calls.clone(),
        });
        if reply.tool_calls.is_empty() {
            let text = if reply.text.trim().is_empty() {
                "(the model gave no answer)".to_owned()
            } else {
                reply.text
            };
            return End::Answer {
                name: "answer".into(),
                parts: vec![Part::text(text)],
            };
        }
        state.pending = reply.tool_calls.into_iter().map(PendingCall::new).collect();
        // Calls that cannot run are answered at once, and counted.
        for p in &mut state.pending {
            let unknown = !toolbox::specs_contain(inner, &p.call.name);
            let malformed = serde_json::from_str::<serde_json::Value>(&p.call.arguments)
                .map(|v| !v.is_object())
                .unwrap_or(true);
            if unknown || malformed {
                state.corrections += 1;
                if unknown {
                    p.result = Some(CallResult::error(format!(
                        "there is no tool named {}; call one of: {}",
                        p.call.name,
                        tools
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        if state.corrections > MAX_CORRECTIONS {
            return End::Failed(format!(
                "the model kept calling tools that do not exist or with arguments that are not JSON \
                 ({} times); the task was stopped",
                state.corrections
            ));
        }
    }
}

/// Runs every unfinished call of the turn concurrently, recording each
/// result in `state` as it comes. Returns the first pause (authorization
/// or elicitation), if any call needs the user; those calls stay unfinished.
async fn run_unfinished(
    inner: &Arc<AgentInner>,
    state: &mut LoopState,
    caller: &Caller,
) -> Option<Pause> {
    let todo: Vec<usize> = state.unfinished().map(|(i, _)| i).collect();
    if todo.is_empty() {
        return None;
    }
    // A step-up mark applies to the calls re-run right after it only, and
    // an answered elicitation to its call's next run only.
    let stepped_up = state.stepped_up.take();
    let retries: Vec<_> = todo
        .iter()
        .map(|&i| state.pending[i].retry.take())
        .collect();
    let route = state.route.clone();
    let runs = todo.iter().zip(retries).map(|(&i, retry)| {
        let call = state.pending[i].call.clone();
        let (route, stepped_up) = (&route, stepped_up.as_deref());
        async move {
            let server = toolbox::server_of(inner, &call.name);
            report::tool_activity(inner, route, &call.name, &server, &call.id, None).await;
            let started = Instant::now();
            let outcome =
                toolbox::run(inner, caller, &route.context_id, &call, stepped_up, retry).await;
            if let CallOutcome::Done(r) = &outcome {
                let ended = Some((started.elapsed(), !r.is_error));
                report::tool_activity(inner, route, &call.name, &server, &call.id, ended).await;
            }
            (i, outcome)
        }
    });
    let mut prompt = None;
    for (i, outcome) in futures::future::join_all(runs).await {
        match outcome {
            CallOutcome::Done(result) => state.pending[i].result = Some(result),
            CallOutcome::Auth(p) => {
                if prompt.is_none() {
                    prompt = Some(Pause::Auth(p));
                }
            }
            CallOutcome::Input(p) => {
                if prompt.is_none() {
                    let call_id = state.pending[i].call.id.clone();
                    prompt = Some(Pause::Input(super::elicitation::Waiting {
                        call_id,
                        prompt: p,
                    }));
                }
            }
        }
    }
    prompt
}
