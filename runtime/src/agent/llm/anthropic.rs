//! The Anthropic Messages API, streamed.
//!
//! Written on reqwest and `eventsource-stream` (the SSE parser
//! `async-openai` also uses): the maintained Anthropic crates pull a
//! second reqwest major version, which the lean-build rule forbids, and
//! the protocol is small — one POST, a fixed sequence of typed events.

use secrecy::ExposeSecret as _;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::openai::reqwest_reason;
use super::{
    ChatMessage, ModelError, ModelReply, ModelRequest, Sampling, ToolCallRequest, host_of,
    retry_after, retry_delay, short,
};
use crate::config::ResolvedModel;

/// The API version header amesh speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the config sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// One Anthropic model. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct AnthropicModel {
    http: reqwest::Client,
    url: url::Url,
    key: Option<secrecy::SecretString>,
    name: String,
    host: String,
    sampling: Sampling,
}

impl AnthropicModel {
    pub(super) fn new(
        http: reqwest::Client,
        resolved: &ResolvedModel,
        key: Option<secrecy::SecretString>,
        sampling: Sampling,
    ) -> AnthropicModel {
        let mut url = resolved.base_url.clone();
        let path = format!("{}/v1/messages", url.path().trim_end_matches('/'));
        url.set_path(&path);
        AnthropicModel {
            http,
            host: host_of(&url),
            url,
            key,
            name: resolved.name.clone(),
            sampling,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn url(&self) -> &url::Url {
        &self.url
    }

    pub(super) fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    pub(super) async fn complete(
        &self,
        request: &ModelRequest<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelReply, ModelError> {
        let body = self.body(request);
        let response = self.send(&body).await?;
        let mut events = eventsource_stream::EventStream::new(response.bytes_stream());
        let mut reply = ModelReply::default();
        // Content blocks by index: text is streamed out, tool_use input is
        // collected as partial JSON until its block stops.
        let mut blocks: Vec<(u64, Option<ToolCallRequest>)> = Vec::new();
        let mut stopped = false;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| ModelError::Protocol(short(&e.to_string())))?;
            let data: Value = match serde_json::from_str(&event.data) {
                Ok(v) => v,
                Err(_) if event.data.trim().is_empty() => continue,
                Err(e) => {
                    return Err(ModelError::Protocol(format!(
                        "event {:?}: {e}",
                        event.event
                    )));
                }
            };
            let kind = data
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or(&event.event);
            match kind {
                "content_block_start" => {
                    let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let block = &data["content_block"];
                    let call = (block.get("type").and_then(Value::as_str) == Some("tool_use"))
                        .then(|| ToolCallRequest {
                            id: block
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            name: block
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            arguments: String::new(),
                        });
                    if let Some(text) = block.get("text").and_then(Value::as_str)
                        && !text.is_empty()
                    {
                        on_text(text);
                        reply.text.push_str(text);
                    }
                    blocks.push((index, call));
                }
                "content_block_delta" => {
                    let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let delta = &data["delta"];
                    match delta.get("type").and_then(Value::as_str) {
                        Some("text_delta") => {
                            if let Some(text) = delta.get("text").and_then(Value::as_str) {
                                on_text(text);
                                reply.text.push_str(text);
                            }
                        }
                        Some("input_json_delta") => {
                            let part = delta
                                .get("partial_json")
                                .and_then(Value::as_str)
                                .unwrap_or("");
                            if let Some((_, Some(call))) =
                                blocks.iter_mut().find(|(i, _)| *i == index)
                            {
                                call.arguments.push_str(part);
                            }
                        }
                        _ => {}
                    }
                }
                "message_stop" => {
                    stopped = true;
                    break;
                }
                "error" => {
                    let error = &data["error"];
                    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
                    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
                    return Err(match kind {
                        "overloaded_error" | "api_error" => ModelError::Server {
                            status: 529,
                            retries: 0,
                        },
                        "rate_limit_error" => ModelError::RateLimited { retries: 0 },
                        _ => ModelError::Refused {
                            status: 200,
                            message: short(message),
                        },
                    });
                }
                // message_start, content_block_stop, message_delta, ping
                _ => {}
            }
        }
        if !stopped {
            return Err(ModelError::Protocol(
                "the answer ended before message_stop".into(),
            ));
        }
        for (n, (_, call)) in blocks.into_iter().enumerate() {
            if let Some(mut call) = call {
                if call.id.is_empty() {
                    call.id = format!("toolu_{n}");
                }
                if call.arguments.trim().is_empty() {
                    call.arguments = "{}".into();
                }
                reply.tool_calls.push(call);
            }
        }
        Ok(reply)
    }

    /// POSTs the request, retrying 429, 5xx (and 529 overloaded) and
    /// connection failures a bounded number of times.
    async fn send(&self, body: &Value) -> Result<reqwest::Response, ModelError> {
        let mut attempt = 0u32;
        loop {
            let mut request = self
                .http
                .post(self.url.clone())
                .headers(crate::telemetry::propagation::http_headers())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .header("accept", "text/event-stream")
                .json(body);
            if let Some(key) = &self.key {
                let mut value = reqwest::header::HeaderValue::from_str(key.expose_secret())
                    .map_err(|_| {
                        ModelError::Config("the API key is not a valid header value".into())
                    })?;
                value.set_sensitive(true);
                request = request.header("x-api-key", value);
            }
            let (wait, failure) = match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let after = retry_after(r.headers());
                    let retryable = status == 429 || status >= 500;
                    let message = error_message(r).await;
                    let failure = match status {
                        429 => ModelError::RateLimited { retries: attempt },
                        500..=599 => ModelError::Server {
                            status,
                            retries: attempt,
                        },
                        _ => ModelError::Refused { status, message },
                    };
                    if !retryable {
                        return Err(failure);
                    }
                    (after, failure)
                }
                Err(e) if e.is_connect() => (
                    None,
                    ModelError::Unreachable {
                        host: self.host.clone(),
                        reason: reqwest_reason(&e),
                    },
                ),
                Err(e) if e.is_timeout() => return Err(ModelError::Timeout(self.sampling.timeout)),
                Err(e) => {
                    return Err(ModelError::Unreachable {
                        host: self.host.clone(),
                        reason: reqwest_reason(&e),
                    });
                }
            };
            if attempt >= self.sampling.retries {
                return Err(failure);
            }
            let delay = retry_delay(attempt, wait);
            tracing::info!(
                attempt = attempt + 1,
                delay_ms = delay.as_millis() as u64,
                "model request refused or failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn body(&self, request: &ModelRequest<'_>) -> Value {
        let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
        for m in request.messages {
            let (role, blocks) = match m {
                ChatMessage::User { text } => ("user", vec![json!({"type": "text", "text": text})]),
                ChatMessage::Assistant { text, tool_calls } => {
                    let mut blocks = Vec::new();
                    if !text.is_empty() {
                        blocks.push(json!({"type": "text", "text": text}));
                    }
                    for c in tool_calls {
                        // The API wants the input as an object; a malformed
                        // call is sent back as {} beside the error result.
                        let input = serde_json::from_str::<Value>(&c.arguments)
                            .ok()
                            .filter(Value::is_object)
                            .unwrap_or_else(|| json!({}));
                        blocks.push(
                            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                        );
                    }
                    ("assistant", blocks)
                }
                ChatMessage::Tool {
                    call_id,
                    content,
                    is_error,
                    ..
                } => (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": call_id,
                                "content": content, "is_error": is_error})],
                ),
            };
            // Consecutive same-role messages (several tool results) merge:
            // the API wants strictly alternating turns.
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(content) = last["content"].as_array_mut() {
                        content.extend(blocks);
                    }
                }
                _ => messages.push(json!({"role": role, "content": blocks})),
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.name));
        body.insert(
            "max_tokens".into(),
            json!(self.sampling.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        );
        body.insert("stream".into(), json!(true));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(system) = request.system.filter(|s| !s.is_empty()) {
            body.insert("system".into(), json!(system));
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            if self.sampling.parallel_tool_calls == Some(false) {
                body.insert(
                    "tool_choice".into(),
                    json!({"type": "auto", "disable_parallel_tool_use": true}),
                );
            }
        }
        if let Some(t) = self.sampling.temperature {
            body.insert("temperature".into(), json!(t.min(1.0)));
        }
        if let Some(p) = self.sampling.top_p {
            body.insert("top_p".into(), json!(p));
        }
        Value::Object(body)
    }
}

/// The `error.message` of an Anthropic error body, bounded in size.
async fn error_message(response: reqwest::Response) -> String {
    let read = tokio::time::timeout(Duration::from_secs(5), response.bytes()).await;
    let Ok(Ok(bytes)) = read else {
        return "no details".into();
    };
    let bytes = &bytes[..bytes.len().min(64 * 1024)];
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(short))
        .unwrap_or_else(|| short(&String::from_utf8_lossy(bytes)))
}
