//! What an agent's model may call, and running one call.
//!
//! Three kinds of tool, one namespace: the built-ins of `tools:`, the
//! agent's MCP tools (manifest entries, or `tools/list` of servers without
//! auth), and peer agents seen on discovery that `inter_agent_communication`
//! allows — offered as `peer_<agent>` like Solace Agent Mesh does. Every
//! call's arguments are parsed and checked against the tool's schema before
//! anything runs; a bad call becomes an error result the model can read
//! and correct.

use std::sync::{Arc, OnceLock};

use amesh_mcp::schema::ToolSchema;
use serde_json::{Value, json};

use super::AgentInner;
use super::artifacts::ArtifactError;
use super::handler::Caller;
use super::llm::{ToolCallRequest, ToolSpec};
use super::mcp::{AuthPrompt, InputPrompt, McpCall, McpOutcome};
use super::reasoning::state::CallResult;
use super::tools::{self, BuiltinTool};

/// Immediate retries of a call whose server answered input-required
/// without asking the user anything.
const MAX_IMMEDIATE_RETRIES: usize = 3;

/// Prefix of peer-agent tools.
pub(crate) const PEER_PREFIX: &str = "peer_";

/// How one tool call ended.
pub(crate) enum CallOutcome {
    Done(CallResult),
    /// The user must authorize the tool's server first.
    Auth(Box<AuthPrompt>),
    /// The tool's server needs the user at a page of its own first.
    Input(Box<InputPrompt>),
}

/// The tools offered to the model now (peers change as cards come and go).
pub(crate) fn specs(inner: &AgentInner) -> Vec<ToolSpec> {
    let mut out: Vec<ToolSpec> = inner
        .tools
        .iter()
        .map(|t| ToolSpec {
            name: t.name().to_owned(),
            description: t.description().to_owned(),
            parameters: builtin_schema(t).clone(),
        })
        .collect();
    if let Some(mcp) = &inner.mcp {
        out.extend(
            mcp.specs()
                .into_iter()
                .map(|(name, description, parameters)| ToolSpec {
                    name,
                    description,
                    parameters,
                }),
        );
    }
    for card in peers(inner) {
        let mut description = format!("Ask the agent {}", card.name);
        if !card.description.is_empty() {
            description.push_str(": ");
            description.push_str(&card.description);
        }
        let skills: Vec<&str> = card.skills.iter().map(|s| s.name.as_str()).collect();
        if !skills.is_empty() {
            description.push_str(&format!(" Skills: {}.", skills.join(", ")));
        }
        out.push(ToolSpec {
            name: peer_tool_name(&card.name),
            description,
            parameters: peer_schema().clone(),
        });
    }
    out
}

/// Whether `name` is a tool the model may call now.
pub(crate) fn specs_contain(inner: &AgentInner, name: &str) -> bool {
    inner.tools.get(name).is_some()
        || inner.mcp.as_ref().is_some_and(|m| m.has(name))
        || (name.starts_with(PEER_PREFIX)
            && peers(inner).iter().any(|c| peer_tool_name(&c.name) == name))
}

/// Peer agents this agent may call, itself excluded.
fn peers(inner: &AgentInner) -> Vec<crate::a2a::AgentCard> {
    if !inner.cfg.agent_discovery.enabled {
        return Vec::new();
    }
    inner
        .peers
        .list()
        .into_iter()
        .filter(|c| c.name != inner.name && super::delegate::may_call(inner, &c.name))
        .collect()
}

/// `peer_<name>`, with characters model APIs refuse in tool names
/// replaced (`[A-Za-z0-9_-]` only).
fn peer_tool_name(agent: &str) -> String {
    let clean: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PEER_PREFIX}{clean}")
}

/// Which server a tool name belongs to, for activity reports: `builtin`,
/// the MCP server's tool id, or `agent:<name>`.
pub(crate) fn server_of(inner: &AgentInner, name: &str) -> String {
    if inner.tools.get(name).is_some() {
        "builtin".to_owned()
    } else if let Some(id) = inner.mcp.as_ref().and_then(|m| m.tool_id_of(name)) {
        id.to_owned()
    } else if let Some(peer) = name.strip_prefix(PEER_PREFIX) {
        format!("agent:{peer}")
    } else {
        "unknown".to_owned()
    }
}

/// Runs one call for `caller`. Never panics on what the model wrote.
/// `session` is the task's context id (artifacts are kept per session).
pub(crate) async fn run(
    inner: &Arc<AgentInner>,
    caller: &Caller,
    session: &str,
    call: &ToolCallRequest,
    stepped_up: Option<&str>,
    retry: Option<amesh_mcp::client::Retry>,
) -> CallOutcome {
    let arguments: Value = match serde_json::from_str(&call.arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            return CallOutcome::Done(CallResult::error(format!(
                "the arguments of {} must be a JSON object, not {other}",
                call.name
            )));
        }
        Err(e) => {
            return CallOutcome::Done(CallResult::error(format!(
                "the arguments of {} are not valid JSON ({e}); write them as one JSON object",
                call.name
            )));
        }
    };
    dispatch(
        inner, caller, session, &call.name, arguments, stepped_up, retry,
    )
    .await
}

/// Runs a call whose arguments are already a JSON object.
async fn dispatch(
    inner: &Arc<AgentInner>,
    caller: &Caller,
    session: &str,
    name: &str,
    arguments: Value,
    stepped_up: Option<&str>,
    retry: Option<amesh_mcp::client::Retry>,
) -> CallOutcome {
    fn done<E: std::fmt::Display>(r: Result<Vec<crate::a2a::Part>, E>) -> CallOutcome {
        CallOutcome::Done(match r {
            Ok(parts) => CallResult::ok(parts),
            Err(e) => CallResult::error(e.to_string()),
        })
    }
    if let Some(tool) = inner.tools.get(name) {
        if let Err(e) = builtin_validator(tool).validate(&arguments) {
            return CallOutcome::Done(CallResult::error(e.to_string()));
        }
        return match tool {
            BuiltinTool::Delegate => done(super::delegate::call(inner, caller, &arguments).await),
            BuiltinTool::Whoami => CallOutcome::Done(CallResult::ok(vec![crate::a2a::Part::data(
                tools::whoami(&caller.identity),
            )])),
            t if t.is_artifact_tool() => {
                done(artifact_call(inner, caller, session, t, &arguments).await)
            }
            local => done(tools::run_local(local, &arguments).await),
        };
    }
    if let Some(mcp) = inner.mcp.as_ref().filter(|m| m.has(name)) {
        let mut call = McpCall {
            tool: name.to_owned(),
            arguments,
            stepped_up: stepped_up.is_some() && stepped_up == mcp.tool_id_of(name),
            retry,
        };
        // An input-required answer that asks the user nothing (only a
        // `requestState`) is retried at once, a few times at most.
        for _ in 0..=MAX_IMMEDIATE_RETRIES {
            return match mcp.call(&call, &caller.identity).await {
                McpOutcome::Done(parts) => CallOutcome::Done(CallResult::ok(parts)),
                McpOutcome::Failed(why) => CallOutcome::Done(CallResult::error(why.to_string())),
                McpOutcome::AuthRequired(prompt) => CallOutcome::Auth(prompt),
                McpOutcome::InputRequired(prompt) if prompt.input.elicitations.is_empty() => {
                    call.retry = Some(prompt.input.answer(amesh_mcp::client::ElicitAction::Accept));
                    continue;
                }
                McpOutcome::InputRequired(prompt) => CallOutcome::Input(prompt),
            };
        }
        return CallOutcome::Done(CallResult::error(format!(
            "tool {name} kept asking to be called again ({MAX_IMMEDIATE_RETRIES} retries); gave up"
        )));
    }
    if let Some(peer) = peers(inner)
        .into_iter()
        .find(|c| peer_tool_name(&c.name) == name)
    {
        let Some(task) = arguments.get("task_description").and_then(Value::as_str) else {
            return CallOutcome::Done(CallResult::error(format!(
                "{name} needs the argument task_description (a string)"
            )));
        };
        let args = json!({"agent": peer.name, "text": task});
        return done(super::delegate::call(inner, caller, &args).await);
    }
    let offered: Vec<String> = specs(inner).into_iter().map(|s| s.name).collect();
    CallOutcome::Done(CallResult::error(format!(
        "there is no tool named {name}; the tools are: {}",
        offered.join(", ")
    )))
}

/// An artifact tool call, for a verified user only (as stored credentials
/// are): a claimed user id must not open someone else's files.
async fn artifact_call(
    inner: &AgentInner,
    caller: &Caller,
    session: &str,
    tool: BuiltinTool,
    arguments: &Value,
) -> Result<Vec<crate::a2a::Part>, ArtifactError> {
    let Some(artifacts) = &inner.artifacts else {
        return Err(ArtifactError::NotConfigured(tool.name()));
    };
    let amesh_trust::RequestIdentity::Verified(who) = &caller.identity else {
        return Err(ArtifactError::Unverified);
    };
    artifacts
        .call(tool, who.user_id(), session, arguments)
        .await
}

fn peer_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        json!({"type": "object",
               "properties": {"task_description": {"type": "string",
                   "description": "What the agent should do, with every detail it needs."}},
               "required": ["task_description"]})
    })
}

/// The argument schema of a built-in, as offered to the model.
fn builtin_schema(tool: BuiltinTool) -> &'static Value {
    static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| BuiltinTool::ALL.into_iter().map(schema_of).collect());
    &all[builtin_index(tool)]
}

fn schema_of(tool: BuiltinTool) -> Value {
    let filename = json!({"type": "string", "description": "The artifact's name, like report.md."});
    let mime =
        json!({"type": "string", "description": "MIME type, like text/plain (the default)."});
    match tool {
        BuiltinTool::Echo => json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        BuiltinTool::Time | BuiltinTool::Whoami | BuiltinTool::ListArtifacts => {
            json!({"type": "object", "properties": {}})
        }
        BuiltinTool::Sleep => {
            json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 600000}}})
        }
        BuiltinTool::Delegate => json!({"type": "object",
               "properties": {"agent": {"type": "string"}, "text": {"type": "string"}, "data": {}},
               "required": ["agent"]}),
        BuiltinTool::CreateArtifact => json!({"type": "object",
               "properties": {"filename": filename, "content": {"type": "string"}, "mime_type": mime},
               "required": ["filename", "content"]}),
        BuiltinTool::AppendToArtifact => json!({"type": "object",
               "properties": {"filename": filename, "content_chunk": {"type": "string"}, "mime_type": mime},
               "required": ["filename", "content_chunk"]}),
        BuiltinTool::LoadArtifact => json!({"type": "object",
               "properties": {"filename": filename,
                              "version": {"description": "A version number, or \"latest\".",
                                          "anyOf": [{"type": "integer", "minimum": 0}, {"const": "latest"}]},
                              "max_content_length": {"type": "integer", "minimum": 100, "maximum": 100000}},
               "required": ["filename", "version"]}),
        BuiltinTool::DeleteArtifact => json!({"type": "object",
               "properties": {"filename": filename}, "required": ["filename"]}),
    }
}

fn builtin_index(tool: BuiltinTool) -> usize {
    BuiltinTool::ALL
        .iter()
        .position(|t| *t == tool)
        .unwrap_or_default()
}

/// The compiled schema of a built-in (compiled once per process).
fn builtin_validator(tool: BuiltinTool) -> &'static ToolSchema {
    static COMPILED: OnceLock<Vec<ToolSchema>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        BuiltinTool::ALL
            .into_iter()
            .map(|t| {
                ToolSchema::compile(t.name(), t.name(), builtin_schema(t))
                    .expect("built-in schemas are valid")
            })
            .collect()
    });
    &all[builtin_index(tool)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_are_safe_for_model_apis() {
        assert_eq!(peer_tool_name("billing.agent/v2"), "peer_billing_agent_v2");
        assert_eq!(peer_tool_name("Research-1"), "peer_Research-1");
    }

    #[test]
    fn builtin_schemas_compile_and_check_arguments() {
        assert!(
            builtin_validator(BuiltinTool::Sleep)
                .validate(&json!({"ms": 10}))
                .is_ok()
        );
        assert!(
            builtin_validator(BuiltinTool::Sleep)
                .validate(&json!({"ms": "ten"}))
                .is_err()
        );
        assert!(
            builtin_validator(BuiltinTool::Delegate)
                .validate(&json!({}))
                .is_err()
        );
    }
}
