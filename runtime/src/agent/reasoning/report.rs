//! What a running task tells its requester: status updates on the stream
//! (progress, the model's text as it is generated, tool activity) and the
//! final task on `replyTo`. Every message of a task goes through here, so
//! the wire shape of a task's life is in one file.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::state::TaskRoute;
use crate::a2a::jsonrpc::Response;
use crate::a2a::liveness;
use crate::a2a::{Artifact, Message, Part, TaskState, TaskStatus, TaskStatusUpdateEvent};
use crate::agent::AgentInner;
use crate::agent::handler::{agent_text, publish};

/// `metadata.amesh_event` of a status update that carries a piece of the
/// model's answer (clients append them; the final artifact has it whole).
pub(crate) const TEXT_DELTA: &str = "text_delta";

/// Streams a `working` status update marked `heartbeat` every
/// [`liveness::HEARTBEAT_INTERVAL`] while the task runs (see
/// `a2a::liveness` for why) (the caller drops this future when
/// the loop ends or pauses). Nothing when the request is not streamed.
/// Never completes.
pub(crate) async fn heartbeat(inner: &AgentInner, route: &TaskRoute) -> std::convert::Infallible {
    let mut tick = tokio::time::interval(liveness::HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate and the loop already said `working`.
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Some(topic) = &route.status_topic {
            let mut ev = TaskStatusUpdateEvent::new(
                &route.task_id,
                &route.context_id,
                TaskStatus::new(TaskState::Working, None),
                false,
            );
            ev.metadata = Some(Map::from_iter([(
                "amesh_event".to_owned(),
                Value::from(liveness::HEARTBEAT_EVENT),
            )]));
            publish(inner, topic, &Response::ok(route.rpc_id.clone(), ev)).await;
        }
    }
}

/// Records `working` with `text` and streams it (when streaming).
pub(crate) async fn working(inner: &AgentInner, route: &TaskRoute, text: &str) {
    let status = TaskStatus::new(
        TaskState::Working,
        Some(agent_text(&route.task_id, &route.context_id, text)),
    );
    inner.tasks.set_status(&route.task_id, status.clone());
    stream_status(inner, route, status).await;
}

/// A tool call starts (`ok: None`) or ended: a status update with a
/// DataPart `{type: tool_call | tool_result, tool, server, call_id,
/// duration_ms, ok}`, for clients that show tool activity.
pub(crate) async fn tool_activity(
    inner: &AgentInner,
    route: &TaskRoute,
    tool: &str,
    server: &str,
    call_id: &str,
    ended: Option<(Duration, bool)>,
) {
    if route.status_topic.is_none() {
        return;
    }
    let data = match ended {
        None => json!({"type": "tool_call", "tool": tool, "server": server, "call_id": call_id}),
        Some((took, ok)) => json!({"type": "tool_result", "tool": tool, "server": server,
            "call_id": call_id, "duration_ms": took.as_millis() as u64, "ok": ok}),
    };
    let message = Message::agent(vec![Part::data(data)], &route.task_id, &route.context_id);
    stream_status(
        inner,
        route,
        TaskStatus::new(TaskState::Working, Some(message)),
    )
    .await;
}

async fn stream_status(inner: &AgentInner, route: &TaskRoute, status: TaskStatus) {
    if let Some(topic) = &route.status_topic {
        let ev = TaskStatusUpdateEvent::new(&route.task_id, &route.context_id, status, false);
        publish(inner, topic, &Response::ok(route.rpc_id.clone(), ev)).await;
    }
}

/// Ends the task: records the status (terminal states are sticky, so a
/// task canceled meanwhile stays canceled) and answers on `replyTo` with
/// the task, its artifacts and final status in it.
///
/// Nothing more goes on the status stream: the artifact update and the
/// `final` status update a stream used to end with repeated what the
/// final task says, and each message costs a signature here, two broker
/// hops and a verification at the requester. The gateway's SSE still
/// ends with them: it makes them from the final task
/// (`gateway::stream::ending`).
pub(crate) async fn finish(
    inner: &AgentInner,
    route: &TaskRoute,
    status: TaskStatus,
    artifact: Option<Artifact>,
) {
    if let Some(a) = artifact {
        inner.tasks.add_artifact(&route.task_id, a);
    }
    let Some(task) = inner.tasks.set_status(&route.task_id, status) else {
        return;
    };
    crate::telemetry::metrics::task_ended(&inner.name, task.status.state);
    tracing::debug!(agent = %inner.name, task = %route.task_id, state = ?task.status.state, "task finished");
    publish(
        inner,
        &route.reply_to,
        &Response::ok(route.rpc_id.clone(), task),
    )
    .await;
}

/// Ends the task as failed with `text` for the user.
pub(crate) async fn fail(inner: &AgentInner, route: &TaskRoute, text: &str) {
    let status = TaskStatus::new(
        TaskState::Failed,
        Some(agent_text(&route.task_id, &route.context_id, text)),
    );
    finish(inner, route, status, None).await;
}

/// The model's text on its way to the stream while the model writes it.
/// Deltas go through a channel to one forwarder task, which sends what
/// has gathered as one status update per publish: a fast model never
/// waits on the broker, and the updates stay in order.
pub(crate) struct TextStream {
    tx: mpsc::UnboundedSender<String>,
    forwarder: JoinHandle<()>,
}

impl TextStream {
    /// `None` for a task nobody streams (`message/send`).
    pub(crate) fn start(inner: &Arc<AgentInner>, route: &TaskRoute) -> Option<TextStream> {
        let topic = route.status_topic.clone()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let inner = inner.clone();
        let route = route.clone();
        let forwarder = tokio::spawn(
            async move {
                while let Some(mut text) = rx.recv().await {
                    while let Ok(more) = rx.try_recv() {
                        text.push_str(&more);
                    }
                    let mut meta = Map::new();
                    meta.insert("amesh_event".into(), Value::from(TEXT_DELTA));
                    let part = Part::Text {
                        text,
                        metadata: Some(meta),
                    };
                    let message = Message::agent(vec![part], &route.task_id, &route.context_id);
                    let ev = TaskStatusUpdateEvent::new(
                        &route.task_id,
                        &route.context_id,
                        TaskStatus::new(TaskState::Working, Some(message)),
                        false,
                    );
                    publish(&inner, &topic, &Response::ok(route.rpc_id.clone(), ev)).await;
                }
            }
            .in_current_span(),
        );
        Some(TextStream { tx, forwarder })
    }

    pub(crate) fn push(&self, text: &str) {
        let _ = self.tx.send(text.to_owned());
    }

    /// Waits until every delta is published (before the final answer).
    pub(crate) async fn finish(self) {
        drop(self.tx);
        let _ = self.forwarder.await;
    }
}
