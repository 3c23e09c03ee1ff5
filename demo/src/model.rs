//! The demo model: an OpenAI-compatible Chat Completions endpoint that
//! answers deterministically, so an agent's LLM loop can be shown and tested
//! end to end without an API key, a GPU or a network. It is no language
//! model and says so: it picks a tool by matching the user's words against
//! tool names and descriptions, fills the required arguments from the
//! schema, and reports tool results back verbatim.
//!
//! It speaks the real wire protocol (the same request validation, JSON
//! shapes, SSE chunking and error bodies a client gets from OpenAI), because
//! its purpose is to exercise the client code that will later talk to a real
//! provider. Routes: `POST /v1/chat/completions`, `GET /v1/models`.
//!
//! Decision rules, on the validated conversation:
//! - last message `tool` (one or more results): text `"<tool> returned:
//!   <content>"`, one line per result;
//! - last message `user` with tools offered: the tool sharing most of the
//!   user's words (first on ties) is called with schema-built arguments; if
//!   no word matches, a sentence listing the tools;
//! - otherwise: a sentence echoing the user's last words.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::{Map, Value, json};

use super::App;

/// The one model the demo serves (any requested model name is accepted and
/// answered by it; responses name it, so nobody mistakes it for another).
pub const DEMO_MODEL: &str = "amesh-demo-model";

/// Largest request body accepted; real conversations with tool schemas stay
/// far below this, and the bound keeps a stray upload from filling memory.
pub(crate) const MAX_BODY: usize = 4 << 20;

/// Words too common to say anything about which tool is meant.
const STOPWORDS: [&str; 40] = [
    "the", "and", "for", "with", "that", "this", "these", "those", "from", "into", "your", "you",
    "are", "was", "were", "can", "could", "would", "should", "will", "please", "have", "has",
    "had", "not", "but", "about", "what", "which", "there", "their", "then", "than", "them", "its",
    "our", "any", "all", "some", "just",
];

/// Words per content chunk and characters per argument piece when
/// streaming, so clients see answers arrive in several chunks as they do
/// from a real model.
const WORDS_PER_CHUNK: usize = 3;
const ARGUMENT_PIECE_CHARS: usize = 16;

/// Counters shared by the handlers.
#[derive(Default)]
pub(crate) struct ModelState {
    completions: AtomicUsize,
}

impl ModelState {
    /// Completions answered so far (streamed or not, errors excluded).
    pub(crate) fn completions(&self) -> usize {
        self.completions.load(Ordering::Relaxed)
    }
}

/// An error in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(
        message: impl Into<String>,
        param: Option<String>,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }});
        (self.status, Json(body)).into_response()
    }
}

/// A function tool as offered in `tools`.
#[derive(Debug, Clone)]
struct ToolSpec {
    name: String,
    description: String,
    parameters: Value,
}

/// `tool_choice`: whether and which tool the model may call.
#[derive(Debug, Clone, PartialEq)]
enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

/// A request after validation: only what the decision and rendering need.
#[derive(Debug, Clone)]
struct ChatRequest {
    messages: Vec<Value>,
    tools: Vec<ToolSpec>,
    tool_choice: ToolChoice,
    stream: bool,
    include_usage: bool,
}

/// What the demo model says.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

/// `GET /v1/models`
pub(crate) async fn list_models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": DEMO_MODEL, "object": "model", "created": 0, "owned_by": "amesh"}],
    }))
}

/// `POST /v1/chat/completions`. An `Authorization` header is accepted and
/// ignored: clients configured for a real provider send one.
pub(crate) async fn chat_completions(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            return ApiError {
                status,
                message: rejection.body_text(),
                kind: "invalid_request_error",
                param: None,
                code: None,
            }
            .into_response();
        }
    };
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let answer = decide(&request);
    let number = app.model.completions.fetch_add(1, Ordering::Relaxed) + 1;
    let meta = Meta {
        id: format!("chatcmpl-demo-{number}"),
        created: amesh_mcp::clock::unix_now(),
        usage: usage(&request, &answer),
    };
    if request.stream {
        let events: Vec<Result<Event, Infallible>> =
            stream_chunks(&meta, &answer, request.include_usage)
                .into_iter()
                .map(|chunk| Ok(Event::default().data(chunk.to_string())))
                .chain(std::iter::once(Ok(Event::default().data("[DONE]"))))
                .collect();
        Sse::new(stream::iter(events)).into_response()
    } else {
        Json(completion(&meta, &answer)).into_response()
    }
}

/// Validates a request body the way the Chat Completions API does, with its
/// messages and `param` paths, so client bugs show up here and not only
/// against a paid endpoint.
fn parse_request(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
            None,
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid(
            "The request body must be a JSON object.",
            None,
            None,
        ));
    };
    match object.get("model") {
        Some(Value::String(_)) => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid type for 'model': expected a string.",
                Some("model".into()),
                Some("invalid_type"),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                None,
                None,
            ));
        }
    }
    let messages = match object.get("messages") {
        None => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages".into()),
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(ApiError::invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("messages".into()),
                Some("empty_array"),
            ));
        }
        Some(Value::Array(messages)) => messages.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid type for 'messages': expected an array of objects.",
                Some("messages".into()),
                Some("invalid_type"),
            ));
        }
    };
    check_messages(&messages)?;
    let tools = parse_tools(object.get("tools"))?;
    let tool_choice = parse_tool_choice(object.get("tool_choice"), &tools)?;
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid type for 'stream': expected a boolean.",
                Some("stream".into()),
                Some("invalid_type"),
            ));
        }
    };
    let include_usage = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        messages,
        tools,
        tool_choice,
        stream,
        include_usage,
    })
}

/// Roles, `tool_call_id`s, and the pairing of assistant tool calls with
/// tool results that the API enforces.
fn check_messages(messages: &[Value]) -> Result<(), ApiError> {
    // Tool call ids of the latest assistant message still waiting for results.
    let mut open: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let Some(object) = message.as_object() else {
            return Err(ApiError::invalid(
                format!("Invalid type for 'messages[{i}]': expected an object."),
                Some(format!("messages[{i}]")),
                Some("invalid_type"),
            ));
        };
        let role = match object.get("role").and_then(Value::as_str) {
            Some(role) => role,
            None => {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: 'messages[{i}].role'."),
                    Some(format!("messages[{i}].role")),
                    Some("missing_required_parameter"),
                ));
            }
        };
        if role != "tool" && !open.is_empty() {
            return Err(unanswered(&open, i));
        }
        match role {
            "system" | "developer" | "user" => {}
            "assistant" => {
                if let Some(calls) = object.get("tool_calls").and_then(Value::as_array) {
                    for (j, call) in calls.iter().enumerate() {
                        let Some(id) = call.get("id").and_then(Value::as_str) else {
                            return Err(ApiError::invalid(
                                format!(
                                    "Missing required parameter: 'messages[{i}].tool_calls[{j}].id'."
                                ),
                                Some(format!("messages[{i}].tool_calls[{j}].id")),
                                Some("missing_required_parameter"),
                            ));
                        };
                        open.push(id.to_owned());
                    }
                }
            }
            "tool" => {
                let Some(id) = object.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(ApiError::invalid(
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                        Some(format!("messages[{i}].tool_call_id")),
                        Some("missing_required_parameter"),
                    ));
                };
                let Some(at) = open.iter().position(|open| open == id) else {
                    return Err(ApiError::invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        Some(format!("messages.[{i}].role")),
                        None,
                    ));
                };
                open.remove(at);
            }
            other => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'."
                    ),
                    Some(format!("messages[{i}].role")),
                    Some("invalid_value"),
                ));
            }
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(unanswered(&open, messages.len()))
    }
}

fn unanswered(open: &[String], at: usize) -> ApiError {
    ApiError::invalid(
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            open.join(", ")
        ),
        Some(format!("messages.[{at}].role")),
        None,
    )
}

fn parse_tools(tools: Option<&Value>) -> Result<Vec<ToolSpec>, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid type for 'tools': expected an array of objects.",
                Some("tools".into()),
                Some("invalid_type"),
            ));
        }
    };
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::invalid(
                    format!("Invalid value for 'tools[{i}].type': expected 'function'."),
                    Some(format!("tools[{i}].type")),
                    Some("invalid_value"),
                ));
            }
            let function = tool.get("function").cloned().unwrap_or(Value::Null);
            let Some(name) = function.get("name").and_then(Value::as_str) else {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: 'tools[{i}].function.name'."),
                    Some(format!("tools[{i}].function.name")),
                    Some("missing_required_parameter"),
                ));
            };
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(ApiError::invalid(
                    format!("Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."),
                    Some(format!("tools[{i}].function.name")),
                    Some("invalid_value"),
                ));
            }
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(ApiError::invalid(
                        format!("Invalid type for 'tools[{i}].function.parameters': expected an object."),
                        Some(format!("tools[{i}].function.parameters")),
                        Some("invalid_type"),
                    ));
                }
            };
            Ok(ToolSpec {
                name: name.to_owned(),
                description: function
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                parameters,
            })
        })
        .collect()
}

fn parse_tool_choice(choice: Option<&Value>, tools: &[ToolSpec]) -> Result<ToolChoice, ApiError> {
    let invalid = || {
        ApiError::invalid(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named function.",
            Some("tool_choice".into()),
            Some("invalid_value"),
        )
    };
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(invalid()),
        },
        Some(named) => match named.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => return Err(invalid()),
        },
    };
    match &choice {
        ToolChoice::Required | ToolChoice::Named(_) if tools.is_empty() => Err(ApiError::invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            Some("tool_choice".into()),
            None,
        )),
        ToolChoice::Named(name) if !tools.iter().any(|t| &t.name == name) => {
            Err(ApiError::invalid(
                format!(
                    "Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter."
                ),
                Some("tool_choice".into()),
                None,
            ))
        }
        _ => Ok(choice),
    }
}

/// The demo model's whole "intelligence" (see the module comment).
fn decide(request: &ChatRequest) -> Answer {
    let messages = &request.messages;
    let results = messages
        .iter()
        .rev()
        .take_while(|m| role(m) == "tool")
        .count();
    if results > 0 {
        let start = messages.len() - results;
        let lines: Vec<String> = messages[start..]
            .iter()
            .map(|result| {
                let id = result.get("tool_call_id").and_then(Value::as_str);
                let name = id
                    .and_then(|id| tool_name_of(&messages[..start], id))
                    .unwrap_or("tool");
                format!("{name} returned: {}", text_of(result))
            })
            .collect();
        return Answer::Text(lines.join("\n"));
    }
    let last_user = messages.iter().rev().find(|m| role(m) == "user");
    let said = last_user.map(text_of).unwrap_or_default();
    let said = said.trim();
    let last_is_user = messages.last().is_some_and(|m| role(m) == "user");
    if last_is_user && !request.tools.is_empty() && request.tool_choice != ToolChoice::None {
        let chosen = match &request.tool_choice {
            ToolChoice::Named(name) => request.tools.iter().find(|t| &t.name == name),
            ToolChoice::Required => best_tool(&request.tools, said).or(request.tools.first()),
            _ => best_tool(&request.tools, said),
        };
        if let Some(tool) = chosen {
            let earlier_calls: usize = messages
                .iter()
                .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
                .map(Vec::len)
                .sum();
            return Answer::ToolCall {
                id: format!("call_{}", earlier_calls + 1),
                name: tool.name.clone(),
                arguments: arguments_for(&tool.parameters, said).to_string(),
            };
        }
        let names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
        return Answer::Text(format!(
            "I am the amesh demo model and none of your words matched a tool; I can call: {}.",
            names.join(", ")
        ));
    }
    if said.is_empty() {
        Answer::Text("I am the amesh demo model and there is no user message to answer.".into())
    } else {
        Answer::Text(format!("The amesh demo model heard you say: \"{said}\"."))
    }
}

fn role(message: &Value) -> &str {
    message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The name of the tool call `id` in the latest assistant message that made it.
fn tool_name_of<'a>(messages: &'a [Value], id: &str) -> Option<&'a str> {
    messages
        .iter()
        .rev()
        .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .find(|call| call.get("id").and_then(Value::as_str) == Some(id))
        .and_then(|call| call.pointer("/function/name"))
        .and_then(Value::as_str)
}

/// A message's text: `content` as a string or its text parts joined.
fn text_of(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Lowercased alphanumeric runs.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The user's words that can point at a tool: at least three characters,
/// no stopwords, each counted once.
fn content_words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    tokens(text)
        .filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.as_str()))
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

/// The tool sharing most words with `said` (first offered on ties), if any
/// shares one. Names are split on every non-alphanumeric (`_`, `-`, ...).
fn best_tool<'a>(tools: &'a [ToolSpec], said: &str) -> Option<&'a ToolSpec> {
    let words = content_words(said);
    let mut best: Option<(&ToolSpec, usize)> = None;
    for tool in tools {
        let vocabulary: HashSet<String> = tokens(&tool.name)
            .chain(tokens(&tool.description))
            .collect();
        let score = words.iter().filter(|w| vocabulary.contains(*w)).count();
        if score > 0 && best.is_none_or(|(_, top)| score > top) {
            best = Some((tool, score));
        }
    }
    best.map(|(tool, _)| tool)
}

/// Arguments for a tool: every required property of the schema, strings
/// holding what the user said, everything else a zero value.
fn arguments_for(schema: &Value, said: &str) -> Value {
    value_for(schema, said, 0)
}

/// Deep enough for any real tool schema; stops self-referencing ones.
const MAX_SCHEMA_DEPTH: usize = 8;

fn value_for(schema: &Value, said: &str, depth: usize) -> Value {
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(first) = ["anyOf", "oneOf"].iter().find_map(|k| {
        schema
            .get(*k)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
    }) {
        return value_for(first, said, depth + 1);
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "string" => {
            let limit = schema.get("maxLength").and_then(Value::as_u64);
            match limit.and_then(|l| usize::try_from(l).ok()) {
                Some(limit) => json!(said.chars().take(limit).collect::<String>()),
                None => json!(said),
            }
        }
        "integer" | "number" => {
            let floor = schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            let ceiling = schema.get("maximum").and_then(Value::as_f64);
            let mut zero = floor.max(0.0);
            if let Some(ceiling) = ceiling {
                zero = zero.min(ceiling);
            }
            if kind == "integer" {
                json!(zero.ceil() as i64)
            } else {
                json!(zero)
            }
        }
        "boolean" => json!(false),
        "null" => Value::Null,
        "array" => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = schema.get("items").cloned().unwrap_or(json!({}));
            let items: Vec<Value> = if depth < MAX_SCHEMA_DEPTH {
                (0..min)
                    .map(|_| value_for(&item, said, depth + 1))
                    .collect()
            } else {
                Vec::new()
            };
            Value::Array(items)
        }
        _ => {
            let mut object = Map::new();
            if depth < MAX_SCHEMA_DEPTH {
                let properties = schema.get("properties");
                for name in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                    object.insert(name.to_owned(), value_for(property, said, depth + 1));
                }
            }
            Value::Object(object)
        }
    }
}

/// What every completion and chunk of one answer shares.
struct Meta {
    id: String,
    created: u64,
    usage: Value,
}

/// Token counts, estimated as whitespace-separated words: the demo has no
/// tokenizer, and clients only need plausible, deterministic numbers.
fn usage(request: &ChatRequest, answer: &Answer) -> Value {
    let count = |text: &str| text.split_whitespace().count();
    let prompt: usize = request
        .messages
        .iter()
        .map(|m| count(&text_of(m)))
        .sum::<usize>()
        + request
            .tools
            .iter()
            .map(|t| 1 + count(&t.description))
            .sum::<usize>();
    let completion = match answer {
        Answer::Text(text) => count(text),
        Answer::ToolCall { arguments, .. } => 1 + count(arguments),
    };
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// The `chat.completion` object of a non-streamed answer.
fn completion(meta: &Meta, answer: &Answer) -> Value {
    let (message, finish) = match answer {
        Answer::Text(text) => (
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
        ),
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => (
            json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }],
            }),
            "tool_calls",
        ),
    };
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": DEMO_MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": meta.usage,
        "system_fingerprint": null,
    })
}

/// The `chat.completion.chunk` objects of a streamed answer, in order, as
/// OpenAI sends them: the role first, then content in word groups or the
/// tool call (id and name, then the arguments in pieces), then an empty
/// delta with the finish reason and, if asked for, a usage-only chunk.
fn stream_chunks(meta: &Meta, answer: &Answer, include_usage: bool) -> Vec<Value> {
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": DEMO_MODEL,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let mut chunks = Vec::new();
    let finish = match answer {
        Answer::Text(text) => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for piece in word_groups(text, WORDS_PER_CHUNK) {
                chunks.push(chunk(json!({"content": piece}), None));
            }
            "stop"
        }
        Answer::ToolCall {
            id,
            name,
            arguments,
        } => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": null, "refusal": null}),
                None,
            ));
            chunks.push(chunk(
                json!({"tool_calls": [{
                    "index": 0,
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                None,
            ));
            for piece in char_pieces(arguments, ARGUMENT_PIECE_CHARS) {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            "tool_calls"
        }
    };
    chunks.push(chunk(json!({}), Some(finish)));
    if include_usage {
        chunks.push(json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": DEMO_MODEL,
            "system_fingerprint": null,
            "choices": [],
            "usage": meta.usage,
        }));
    }
    chunks
}

/// `text` in groups of `per` words, whitespace kept, so the pieces
/// concatenate back to exactly `text`.
fn word_groups(text: &str, per: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    words
        .chunks(per.max(1))
        .map(|group| group.concat())
        .collect()
}

/// `text` in pieces of at most `size` characters (never splitting one).
fn char_pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|piece| piece.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ChatRequest {
        parse_request(body.to_string().as_bytes()).expect("valid request")
    }

    fn tool(name: &str, description: &str, parameters: Value) -> Value {
        json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
    }

    fn weather_tools() -> Value {
        json!([
            tool(
                "send_email",
                "Sends an email to someone.",
                json!({
                    "type": "object",
                    "properties": {"to": {"type": "string"}, "body": {"type": "string"}, "urgent": {"type": "boolean"}},
                    "required": ["to", "body"]
                })
            ),
            tool(
                "get-weather",
                "Current weather for a city.",
                json!({
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer", "minimum": 1},
                        "units": {"type": "string", "enum": ["metric", "imperial"]},
                        "verbose": {"type": "boolean"}
                    },
                    "required": ["city", "days", "units"]
                })
            ),
        ])
    }

    #[test]
    fn the_tool_sharing_most_words_is_called_with_required_arguments_only() {
        let r = request(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": weather_tools(),
        }));
        let Answer::ToolCall {
            id,
            name,
            arguments,
        } = decide(&r)
        else {
            panic!("expected a tool call")
        };
        assert_eq!((id.as_str(), name.as_str()), ("call_1", "get-weather"));
        let arguments: Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(
            arguments,
            json!({"city": "What is the weather in Paris?", "days": 1, "units": "metric"})
        );
    }

    #[test]
    fn ties_go_to_the_first_tool_and_no_match_lists_the_tools() {
        let tools = json!([
            tool("alpha", "Reads a report.", json!({})),
            tool("beta", "Writes a report.", json!({})),
        ]);
        let tie = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "the report"}], "tools": tools}),
        );
        assert!(matches!(decide(&tie), Answer::ToolCall { name, .. } if name == "alpha"));
        let none = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}], "tools": tools}),
        );
        assert_eq!(
            decide(&none),
            Answer::Text(
                "I am the amesh demo model and none of your words matched a tool; I can call: alpha, beta."
                    .into()
            )
        );
    }

    #[test]
    fn stopwords_and_short_words_do_not_count() {
        assert_eq!(
            content_words("Please get THE weather, the weather for me in NYC!"),
            ["get", "weather", "nyc"]
        );
    }

    #[test]
    fn tool_results_are_reported_by_tool_name_one_line_each() {
        let r = request(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather and email"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get-weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "send_email", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sent"}]}
        ]}));
        assert_eq!(
            decide(&r),
            Answer::Text("get-weather returned: sunny\nsend_email returned: sent".into())
        );
    }

    #[test]
    fn without_tools_the_user_is_echoed_and_call_ids_count_earlier_calls() {
        let r = request(
            json!({"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": " hi there "}]}),
        );
        assert_eq!(
            decide(&r),
            Answer::Text("The amesh demo model heard you say: \"hi there\".".into())
        );
        let second = request(json!({"model": "m", "tools": weather_tools(), "messages": [
            {"role": "user", "content": "weather"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get-weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "get-weather returned: sunny"},
            {"role": "user", "content": "weather again"}
        ]}));
        assert!(matches!(decide(&second), Answer::ToolCall { id, .. } if id == "call_2"));
    }

    #[test]
    fn tool_choice_none_required_and_named_are_honoured() {
        let with = |choice: Value| {
            request(
                json!({"model": "m", "tools": weather_tools(), "tool_choice": choice,
                "messages": [{"role": "user", "content": "weather"}]}),
            )
        };
        assert!(matches!(decide(&with(json!("none"))), Answer::Text(_)));
        assert!(
            matches!(decide(&with(json!({"type": "function", "function": {"name": "send_email"}}))), Answer::ToolCall { name, .. } if name == "send_email")
        );
        let required = request(
            json!({"model": "m", "tools": weather_tools(), "tool_choice": "required",
            "messages": [{"role": "user", "content": "nothing matches"}]}),
        );
        assert!(matches!(decide(&required), Answer::ToolCall { name, .. } if name == "send_email"));
    }

    #[test]
    fn schema_values_cover_nested_objects_arrays_and_unions() {
        let schema = json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                "limit": {"type": ["integer", "null"], "maximum": 10},
                "mode": {"anyOf": [{"const": "fast"}, {"type": "string"}]},
                "short": {"type": "string", "maxLength": 2},
                "flag": {"type": "boolean"},
                "untyped": {}
            },
            "required": ["tags", "where", "limit", "mode", "short", "untyped"]
        });
        assert_eq!(
            arguments_for(&schema, "abc"),
            json!({"tags": ["abc"], "where": {"lat": 0.0}, "limit": 0, "mode": "fast", "short": "ab", "untyped": "abc"})
        );
    }

    #[test]
    fn invalid_requests_are_refused_as_openai_does() {
        let refuse = |body: Value| parse_request(body.to_string().as_bytes()).unwrap_err();
        let e = refuse(json!({"model": "m"}));
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.code, Some("missing_required_parameter"));
        assert_eq!(
            refuse(json!({"model": "m", "messages": []})).code,
            Some("empty_array")
        );
        assert_eq!(
            refuse(json!({"messages": [{"role": "user", "content": "x"}]})).message,
            "you must provide a model parameter"
        );
        let orphan = refuse(
            json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}),
        );
        assert_eq!(orphan.param.as_deref(), Some("messages.[0].role"));
        let unanswered = refuse(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
            {"role": "user", "content": "y"}
        ]}));
        assert!(
            unanswered.message.contains("call_9"),
            "{}",
            unanswered.message
        );
        let bad_name = refuse(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [tool("has.dot", "", json!({}))]}),
        );
        assert_eq!(bad_name.param.as_deref(), Some("tools[0].function.name"));
        assert!(parse_request(b"{not json").is_err());
    }

    #[test]
    fn streamed_pieces_concatenate_to_the_answer() {
        let meta = Meta {
            id: "chatcmpl-demo-1".into(),
            created: 1,
            usage: json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
        };
        let text = "one two three four five six seven";
        let chunks = stream_chunks(&meta, &Answer::Text(text.into()), true);
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, text);
        assert!(chunks.len() >= 5, "role, 3 content chunks, finish, usage");
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 2);
        let call = Answer::ToolCall {
            id: "call_1".into(),
            name: "echo".into(),
            arguments: json!({"text": "a fairly long argument string ü"}).to_string(),
        };
        let chunks = stream_chunks(&meta, &call, false);
        let arguments: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(
            arguments,
            json!({"text": "a fairly long argument string ü"}).to_string()
        );
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }
}
