//! A2A 0.3.0 protocol objects (the subset amesh speaks), as serde types.
//!
//! Field names follow the A2A JSON schema (camelCase, `kind` discriminators)
//! so the payloads interoperate with other A2A implementations such as
//! Solace Agent Mesh. Unknown fields are ignored on input, as the spec asks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Protocol version amesh advertises in agent cards.
pub const PROTOCOL_VERSION: &str = "0.3.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
}

/// A file, inline (base64) or by reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// One part of a message or artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Part {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
    },
    Data {
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
    },
    File {
        file: FileContent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
    },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            metadata: None,
        }
    }

    pub fn data(data: Value) -> Self {
        Part::Data {
            data,
            metadata: None,
        }
    }
}

/// A2A `Message`. `kind` is always `"message"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(default = "kind_message")]
    pub kind: String,
    pub message_id: String,
    pub role: Role,
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_task_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

fn kind_message() -> String {
    "message".to_string()
}

impl Message {
    /// An agent-authored message with the given parts.
    pub fn agent(parts: Vec<Part>, task_id: &str, context_id: &str) -> Self {
        Message {
            kind: kind_message(),
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::Agent,
            parts,
            context_id: Some(context_id.to_string()),
            task_id: Some(task_id.to_string()),
            reference_task_ids: Vec::new(),
            metadata: None,
        }
    }

    /// A user-authored message with one text part.
    pub fn user_text(text: impl Into<String>) -> Self {
        Message {
            kind: kind_message(),
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::User,
            parts: vec![Part::text(text)],
            context_id: None,
            task_id: None,
            reference_task_ids: Vec::new(),
            metadata: None,
        }
    }

    /// Concatenated text of all text parts.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            if let Part::Text { text, .. } = part {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }
}

/// Lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    Completed,
    Canceled,
    Failed,
    Rejected,
    AuthRequired,
    Unknown,
}

impl TaskState {
    /// A terminal state never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Canceled | TaskState::Failed | TaskState::Rejected
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// RFC 3339 time of the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

impl TaskStatus {
    pub fn new(state: TaskState, message: Option<Message>) -> Self {
        TaskStatus {
            state,
            message,
            timestamp: Some(now_rfc3339()),
        }
    }
}

/// An output of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub artifact_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A2A `Task`. `kind` is always `"task"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    #[serde(default = "kind_task")]
    pub kind: String,
    pub id: String,
    pub context_id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

fn kind_task() -> String {
    "task".to_string()
}

impl Task {
    pub fn new(id: &str, context_id: &str, state: TaskState) -> Self {
        Task {
            kind: kind_task(),
            id: id.to_string(),
            context_id: context_id.to_string(),
            status: TaskStatus::new(state, None),
            history: Vec::new(),
            artifacts: Vec::new(),
            metadata: None,
        }
    }
}

/// Streaming event: the task's status changed. `kind: "status-update"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    #[serde(default = "kind_status")]
    pub kind: String,
    pub task_id: String,
    pub context_id: String,
    pub status: TaskStatus,
    #[serde(rename = "final", default)]
    pub is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

fn kind_status() -> String {
    "status-update".to_string()
}

impl TaskStatusUpdateEvent {
    pub fn new(task_id: &str, context_id: &str, status: TaskStatus, is_final: bool) -> Self {
        TaskStatusUpdateEvent {
            kind: kind_status(),
            task_id: task_id.to_string(),
            context_id: context_id.to_string(),
            status,
            is_final,
            metadata: None,
        }
    }
}

/// Streaming event: an artifact was produced. `kind: "artifact-update"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    #[serde(default = "kind_artifact")]
    pub kind: String,
    pub task_id: String,
    pub context_id: String,
    pub artifact: Artifact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_chunk: Option<bool>,
}

fn kind_artifact() -> String {
    "artifact-update".to_string()
}

impl TaskArtifactUpdateEvent {
    pub fn new(task_id: &str, context_id: &str, artifact: Artifact) -> Self {
        TaskArtifactUpdateEvent {
            kind: kind_artifact(),
            task_id: task_id.to_string(),
            context_id: context_id.to_string(),
            artifact,
            append: None,
            last_chunk: Some(true),
        }
    }
}

/// Any result an agent sends back: the `result` of a JSON-RPC response.
/// Each shape carries its own `kind` field, which is how a reader tells them
/// apart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StreamResult {
    Task(Task),
    Status(TaskStatusUpdateEvent),
    Artifact(TaskArtifactUpdateEvent),
    Message(Message),
}

impl<'de> Deserialize<'de> for StreamResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        let r = match kind {
            "task" => serde_json::from_value(v).map(StreamResult::Task),
            "status-update" => serde_json::from_value(v).map(StreamResult::Status),
            "artifact-update" => serde_json::from_value(v).map(StreamResult::Artifact),
            "message" => serde_json::from_value(v).map(StreamResult::Message),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown result kind `{other}`; expected task, status-update, artifact-update or message"
                )));
            }
        };
        r.map_err(D::Error::custom)
    }
}

/// `message/send` and `message/stream` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSendParams {
    pub message: Message,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `tasks/get` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskQueryParams {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_length: Option<usize>,
}

/// `tasks/cancel` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskIdParams {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub push_notifications: bool,
    #[serde(default)]
    pub state_transition_history: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// A2A `AgentCard`, published on the discovery topic. Gateways publish the
/// same shape for themselves on the gateway discovery topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    pub protocol_version: String,
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// For broker-native agents: `mqtt://{ns}/a2a/v1/agent/request/{name}`.
    pub url: String,
    pub version: String,
    pub capabilities: AgentCapabilities,
    #[serde(default)]
    pub default_input_modes: Vec<String>,
    #[serde(default)]
    pub default_output_modes: Vec<String>,
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// Current time as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_parses_a2a_spec_example() {
        let m: Message = serde_json::from_value(json!({
            "kind": "message", "messageId": "m1", "role": "user",
            "parts": [{"kind": "text", "text": "hi"},
                      {"kind": "data", "data": {"tool": "echo"}},
                      {"kind": "file", "file": {"uri": "https://x/y.png", "mimeType": "image/png"}}],
            "contextId": "c1", "somethingNew": 1
        }))
        .unwrap();
        assert_eq!(m.parts.len(), 3);
        assert_eq!(m.text(), "hi");
        assert_eq!(m.context_id.as_deref(), Some("c1"));
    }

    #[test]
    fn task_state_uses_kebab_case_on_the_wire() {
        let s = serde_json::to_string(&TaskState::AuthRequired).unwrap();
        assert_eq!(s, "\"auth-required\"");
        let s = serde_json::to_string(&TaskState::InputRequired).unwrap();
        assert_eq!(s, "\"input-required\"");
        assert!(TaskState::Canceled.is_terminal());
        assert!(!TaskState::AuthRequired.is_terminal());
    }

    #[test]
    fn stream_results_are_told_apart_by_kind() {
        let ev =
            TaskStatusUpdateEvent::new("t", "c", TaskStatus::new(TaskState::Working, None), false);
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "status-update");
        assert_eq!(v["final"], false);
        let back: StreamResult = serde_json::from_value(v).unwrap();
        assert!(matches!(back, StreamResult::Status(_)));
        let task = Task::new("t", "c", TaskState::Completed);
        let back: StreamResult =
            serde_json::from_value(serde_json::to_value(&task).unwrap()).unwrap();
        assert!(matches!(back, StreamResult::Task(t) if t.id == "t"));
    }
}
