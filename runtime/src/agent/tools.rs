//! The tools an agent can run, and how a request names one.
//!
//! An agent with a `model:` lets the model choose (`toolbox.rs`); one
//! without names its tool directly in a DataPart `{"tool": NAME,
//! "arguments": {...}}`, and a text-only message runs `echo` on the text.
//! The built-in set is small on purpose: enough to drive every path of the
//! runtime (a result, a slow cancellable call, a delegation to a peer
//! agent, who the request runs for, SAM's artifact tools) end to end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::a2a::{Message, Part};
use crate::config::ToolConfig;

/// A tool compiled into amesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTool {
    /// Returns its arguments (or `text`) unchanged.
    Echo,
    /// Returns the current UTC time (RFC 3339).
    Time,
    /// Waits `ms` milliseconds (max 600,000), then answers; cancellable.
    Sleep,
    /// Sends a message to a peer agent and returns its answer.
    Delegate,
    /// Tells who the request runs for and how that is known.
    Whoami,
    /// SAM's `artifact_management` group (see `artifacts.rs`): saves a new
    /// artifact (or a new version of one).
    CreateArtifact,
    ListArtifacts,
    LoadArtifact,
    AppendToArtifact,
    DeleteArtifact,
}

impl BuiltinTool {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "echo" => Some(Self::Echo),
            "time" => Some(Self::Time),
            "sleep" => Some(Self::Sleep),
            "delegate" => Some(Self::Delegate),
            "whoami" => Some(Self::Whoami),
            "create_artifact" => Some(Self::CreateArtifact),
            "list_artifacts" => Some(Self::ListArtifacts),
            "load_artifact" => Some(Self::LoadArtifact),
            "append_to_artifact" => Some(Self::AppendToArtifact),
            "delete_artifact" => Some(Self::DeleteArtifact),
            _ => None,
        }
    }

    /// Every built-in, in a fixed order (the index of its schema).
    pub const ALL: [Self; 10] = [
        Self::Echo,
        Self::Time,
        Self::Sleep,
        Self::Delegate,
        Self::Whoami,
        Self::CreateArtifact,
        Self::ListArtifacts,
        Self::LoadArtifact,
        Self::AppendToArtifact,
        Self::DeleteArtifact,
    ];

    /// The tools of SAM's `artifact_management` group.
    pub const ARTIFACT_TOOLS: [Self; 5] = [
        Self::CreateArtifact,
        Self::ListArtifacts,
        Self::LoadArtifact,
        Self::AppendToArtifact,
        Self::DeleteArtifact,
    ];

    pub fn is_artifact_tool(self) -> bool {
        Self::ARTIFACT_TOOLS.contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Time => "time",
            Self::Sleep => "sleep",
            Self::Delegate => "delegate",
            Self::Whoami => "whoami",
            Self::CreateArtifact => "create_artifact",
            Self::ListArtifacts => "list_artifacts",
            Self::LoadArtifact => "load_artifact",
            Self::AppendToArtifact => "append_to_artifact",
            Self::DeleteArtifact => "delete_artifact",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Echo => "Returns its arguments unchanged.",
            Self::Time => "Returns the current UTC time.",
            Self::Sleep => "Waits `ms` milliseconds, then answers.",
            Self::Delegate => "Asks a peer agent: arguments {agent, text | data}.",
            Self::Whoami => "Tells who the request runs for and whether that is verified.",
            Self::CreateArtifact => {
                "Saves content as an artifact (a file kept for this user and conversation); saving an existing name makes a new version. Text MIME types take text, others base64."
            }
            Self::ListArtifacts => {
                "Lists the artifacts of this conversation with their latest version, MIME type and size."
            }
            Self::LoadArtifact => {
                "Loads one version of an artifact (a number, or \"latest\"); text is returned up to max_content_length characters."
            }
            Self::AppendToArtifact => {
                "Appends a chunk to an existing artifact, making a new version. Text MIME types take text, others base64."
            }
            Self::DeleteArtifact => "Deletes an artifact, every version of it.",
        }
    }
}

/// The tools one agent offers, from its `tools:` config.
#[derive(Debug, Clone)]
pub struct ToolSet {
    tools: Vec<BuiltinTool>,
}

/// A tool name in `tools:` that amesh does not know.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown builtin tool `{0}`; known: echo, time, sleep, delegate, whoami, create_artifact, list_artifacts, load_artifact, append_to_artifact, delete_artifact"
)]
pub struct UnknownTool(pub String);

impl ToolSet {
    /// Without a `tools:` list an agent gets `echo`, `time`, `sleep` and
    /// `whoami`.
    pub fn from_config(cfg: &[ToolConfig]) -> Result<Self, UnknownTool> {
        if cfg.is_empty() {
            return Ok(ToolSet {
                tools: vec![
                    BuiltinTool::Echo,
                    BuiltinTool::Time,
                    BuiltinTool::Sleep,
                    BuiltinTool::Whoami,
                ],
            });
        }
        let mut tools = Vec::new();
        for t in cfg {
            match t {
                ToolConfig::Builtin { tool_name, .. } => {
                    let tool = BuiltinTool::from_name(tool_name)
                        .ok_or_else(|| UnknownTool(tool_name.clone()))?;
                    if !tools.contains(&tool) {
                        tools.push(tool);
                    }
                }
                // Served by the agent's MCP tool set.
                ToolConfig::Mcp(_) => {}
            }
        }
        Ok(ToolSet { tools })
    }

    pub fn get(&self, name: &str) -> Option<BuiltinTool> {
        self.tools.iter().copied().find(|t| t.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = BuiltinTool> + '_ {
        self.tools.iter().copied()
    }
}

/// A tool call read from a request message.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub tool: String,
    pub arguments: Value,
}

/// Why a message does not name a runnable tool call.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CallError {
    #[error("the message has no text and no DataPart {{\"tool\": NAME, \"arguments\": {{...}}}}")]
    Empty,
    #[error("DataPart field `tool` must be a string")]
    BadToolName,
    #[error("DataPart field `arguments` must be an object")]
    BadArguments,
}

/// Finds the tool call in a message: the first DataPart with a `tool` key,
/// else the message's text as `echo {text}`.
pub fn tool_call(message: &Message) -> Result<ToolCall, CallError> {
    for part in &message.parts {
        if let Part::Data { data, .. } = part
            && let Some(tool) = data.get("tool")
        {
            let tool = tool.as_str().ok_or(CallError::BadToolName)?.to_string();
            let arguments = match data.get("arguments") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => return Err(CallError::BadArguments),
            };
            return Ok(ToolCall { tool, arguments });
        }
    }
    let text = message.text();
    if text.is_empty() {
        return Err(CallError::Empty);
    }
    Ok(ToolCall {
        tool: "echo".to_string(),
        arguments: json!({ "text": text }),
    })
}

/// Why a built-in that needs nothing but its arguments failed.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("sleep: ms must be at most 600000, got {0}")]
    SleepTooLong(u64),
    #[error("{0} must be run by the request handler")]
    NotLocal(&'static str),
}

/// Runs a tool that needs nothing but its arguments (everything except
/// `delegate`, which the request handler runs through the peer client).
pub async fn run_local(tool: BuiltinTool, args: &Value) -> Result<Vec<Part>, BuiltinError> {
    match tool {
        BuiltinTool::Echo => Ok(vec![match args.get("text").and_then(Value::as_str) {
            Some(text) if args.as_object().is_some_and(|o| o.len() == 1) => Part::text(text),
            _ => Part::data(args.clone()),
        }]),
        BuiltinTool::Time => Ok(vec![Part::text(crate::a2a::now_rfc3339())]),
        BuiltinTool::Sleep => {
            let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(1000);
            if ms > 600_000 {
                return Err(BuiltinError::SleepTooLong(ms));
            }
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(vec![Part::text(format!("slept {ms} ms"))])
        }
        other => Err(BuiltinError::NotLocal(other.name())),
    }
}

/// The `whoami` answer: user id, whether it is verified, and how.
pub fn whoami(identity: &amesh_trust::RequestIdentity) -> Value {
    use amesh_trust::{Assurance, RequestIdentity};
    match identity {
        RequestIdentity::Verified(v) => {
            let how = match v.assurance() {
                Assurance::GatewaySigned { .. } => "gateway-signed token",
                Assurance::Delegated { .. } => "delegated token chain",
                Assurance::TrustDisabled => "trust manager disabled",
                _ => "other",
            };
            json!({"user_id": v.user_id(), "verified": true, "assurance": how,
                   "issuer": v.issuer(), "email": v.email(), "name": v.name(),
                   "delegation_chain": v.actors()})
        }
        RequestIdentity::Unverified(u) => json!({"user_id": u.claimed_user_id(), "verified": false,
            "reason": u.reason().to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_part_names_the_tool_and_text_falls_back_to_echo() {
        let mut m = Message::user_text("hello");
        assert_eq!(
            tool_call(&m).unwrap(),
            ToolCall {
                tool: "echo".into(),
                arguments: json!({"text": "hello"})
            }
        );
        m.parts.push(Part::data(json!({"tool": "time"})));
        assert_eq!(tool_call(&m).unwrap().tool, "time");
        m.parts = vec![Part::data(json!({"tool": 5}))];
        assert_eq!(tool_call(&m).unwrap_err(), CallError::BadToolName);
        m.parts = vec![Part::data(json!({"tool": "echo", "arguments": [1]}))];
        assert_eq!(tool_call(&m).unwrap_err(), CallError::BadArguments);
        m.parts = vec![];
        assert_eq!(tool_call(&m).unwrap_err(), CallError::Empty);
    }

    #[test]
    fn tool_set_defaults_and_rejects_unknown_names() {
        let set = ToolSet::from_config(&[]).unwrap();
        assert!(set.get("echo").is_some());
        assert!(set.get("delegate").is_none());
        let bad = [ToolConfig::Builtin {
            tool_name: "rm".into(),
            tool_config: None,
        }];
        assert!(ToolSet::from_config(&bad).is_err());
    }

    #[tokio::test]
    async fn echo_returns_text_or_data() {
        let parts = run_local(BuiltinTool::Echo, &json!({"text": "hi"}))
            .await
            .unwrap();
        assert_eq!(parts, vec![Part::text("hi")]);
        let parts = run_local(BuiltinTool::Echo, &json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(parts, vec![Part::data(json!({"a": 1}))]);
    }
}
