//! The state of one task's reasoning loop, as a value.
//!
//! Everything the loop needs to go on is here — where to answer, the
//! conversation so far, the tool calls of the model's last turn and which
//! of them finished — and nothing else. When a tool needs the user's
//! authorization the whole value is stored with the pending flow
//! (encrypted, in the agent's database), so the callback can continue the
//! loop at the exact call, on any replica, after any restart.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::a2a::Part;
use crate::agent::llm::{ChatMessage, ToolCallRequest};

/// Where a task's answers go, and how deep in a delegation chain it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TaskRoute {
    pub task_id: String,
    pub context_id: String,
    pub rpc_id: Value,
    pub reply_to: String,
    pub status_topic: Option<String>,
    pub call_depth: u32,
}

/// How the task decides what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// No model: the one tool call the request named; its result is the
    /// task's artifact (an agent without `model:`).
    Direct,
    /// The model loop.
    Model,
}

/// One tool call of the model's last turn (or the direct call).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingCall {
    pub call: ToolCallRequest,
    /// Set once the call has finished; a resumed loop runs only the calls
    /// without one.
    #[serde(default)]
    pub result: Option<CallResult>,
    /// Set when the call's server answered input-required and the user
    /// answered it: the next run of the call is the retry. Taken by that run.
    #[serde(default)]
    pub retry: Option<amesh_mcp::client::Retry>,
}

impl PendingCall {
    /// A call not yet run.
    pub(crate) fn new(call: ToolCallRequest) -> Self {
        PendingCall {
            call,
            result: None,
            retry: None,
        }
    }
}

/// A finished tool call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CallResult {
    /// What the tool returned (an error's text as one text part).
    pub parts: Vec<Part>,
    pub is_error: bool,
}

impl CallResult {
    pub(crate) fn ok(parts: Vec<Part>) -> Self {
        CallResult {
            parts,
            is_error: false,
        }
    }

    pub(crate) fn error(text: impl Into<String>) -> Self {
        CallResult {
            parts: vec![Part::text(text)],
            is_error: true,
        }
    }

    /// The result as the model reads it: text parts as text, data parts
    /// as JSON.
    pub(crate) fn for_model(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            if !out.is_empty() {
                out.push('\n');
            }
            match part {
                Part::Text { text, .. } => out.push_str(text),
                Part::Data { data, .. } => out.push_str(&data.to_string()),
                Part::File { .. } => out.push_str("[file]"),
            }
        }
        out
    }
}

/// The loop's whole state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LoopState {
    pub route: TaskRoute,
    pub mode: Mode,
    /// The conversation: earlier turns of this context, then this task's.
    pub messages: Vec<ChatMessage>,
    /// How many of `messages` came from the stored conversation.
    pub history_len: usize,
    /// Calls of the model's last turn, in its order.
    pub pending: Vec<PendingCall>,
    /// Model requests made so far by this task.
    pub llm_calls: u32,
    /// Tool calls the model got wrong (unknown tool, bad JSON or
    /// arguments) so far: bounded, so a confused model cannot loop.
    pub corrections: u32,
    /// The server (tool id) whose authorization was a scope step-up: its
    /// next call fails rather than asking again for the same scope.
    #[serde(default)]
    pub stepped_up: Option<String>,
    /// The identity token (or delegation chain) the task came with. A task
    /// resumed after an authorization goes on with the callback's token,
    /// which is scoped to that callback and cannot be delegated; with this
    /// one, verified again, it acts with the authority it started with
    /// (peers included) until the token expires. Stored only inside the
    /// sealed flow record.
    #[serde(default, serialize_with = "amesh_mcp::secret::option::serialize")]
    pub presented_token: Option<SecretString>,
}

impl LoopState {
    /// The calls still to run.
    pub(crate) fn unfinished(&self) -> impl Iterator<Item = (usize, &PendingCall)> {
        self.pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.result.is_none())
    }

    /// Moves the finished turn's results into the conversation, in the
    /// model's order.
    pub(crate) fn commit_results(&mut self) {
        for p in self.pending.drain(..) {
            let result = p
                .result
                .unwrap_or_else(|| CallResult::error("the call did not run"));
            self.messages.push(ChatMessage::Tool {
                call_id: p.call.id,
                name: p.call.name,
                content: result.for_model(),
                is_error: result.is_error,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;
    use serde_json::json;

    #[test]
    fn state_survives_json_and_keeps_finished_results() {
        let mut s = LoopState {
            route: TaskRoute {
                task_id: "t".into(),
                context_id: "c".into(),
                rpc_id: json!("t"),
                reply_to: "r".into(),
                status_topic: None,
                call_depth: 0,
            },
            mode: Mode::Model,
            messages: vec![ChatMessage::User { text: "hi".into() }],
            history_len: 0,
            pending: vec![
                PendingCall {
                    call: ToolCallRequest {
                        id: "a".into(),
                        name: "one".into(),
                        arguments: "{}".into(),
                    },
                    result: Some(CallResult::ok(vec![Part::text("done")])),
                    retry: None,
                },
                PendingCall {
                    call: ToolCallRequest {
                        id: "b".into(),
                        name: "two".into(),
                        arguments: "{}".into(),
                    },
                    result: None,
                    retry: None,
                },
            ],
            llm_calls: 1,
            corrections: 0,
            stepped_up: Some("srv".into()),
            presented_token: Some(SecretString::from("tok.en.sig")),
        };
        assert!(!format!("{s:?}").contains("tok.en.sig"), "token in Debug");
        let back: LoopState = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        let left: Vec<usize> = back.unfinished().map(|(i, _)| i).collect();
        assert_eq!(left, vec![1]);
        assert_eq!(back.stepped_up.as_deref(), Some("srv"));
        assert_eq!(back.presented_token.unwrap().expose_secret(), "tok.en.sig");
        s.pending[1].result = Some(CallResult::error("no"));
        s.commit_results();
        assert!(s.pending.is_empty());
        assert!(
            matches!(&s.messages[2], ChatMessage::Tool { is_error: true, content, .. } if content == "no")
        );
    }
}
