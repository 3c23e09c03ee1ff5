//! Scripted model servers: an OpenAI Chat Completions or Anthropic Messages
//! endpoint on `127.0.0.1:0` that answers each request with the next turn a
//! test queued, so an agent's LLM loop can be driven through exactly the
//! answers, failures and stalls a test needs, over the real wire protocol.
//!
//! Why a script and not the demo model: loop tests need answers a
//! deterministic model would never give (parallel calls, broken argument
//! JSON, 429s, a stream that stalls), and need to see what the client sent
//! (every request body and its headers are recorded).
//!
//! What is faithful to the real APIs: paths, SSE framing (`data:` chunks
//! and `[DONE]` for OpenAI; `event:`/`data:` pairs in the documented
//! sequence, `ping` included, for Anthropic), text and tool-argument deltas
//! split over several chunks, sent a moment apart so they arrive in separate
//! reads, error bodies and `Retry-After`, and the request checks a client
//! must pass: `model` and `messages` (plus `max_tokens`, `x-api-key` and
//! `anthropic-version` for Anthropic). A request failing those checks is
//! answered like the real API would and does not consume a turn.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{Stream, stream};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The wire protocol a scripted server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI Chat Completions: `POST {base}/chat/completions`, base `…/v1`.
    OpenAi,
    /// Anthropic Messages: `POST {base}/v1/messages`, base without `/v1`.
    Anthropic,
}

/// The arguments string of [`Turn::malformed_tool_json`]: cut off mid-string.
pub const MALFORMED_ARGUMENTS: &str = "{\"text\": \"unterminated";

/// Pause between streamed chunks, so a client reads them one at a time.
const CHUNK_PAUSE: Duration = Duration::from_millis(2);

/// Bodies bigger than this are refused with 413 (real APIs have limits too).
const MAX_BODY: usize = 16 << 20;

/// One scripted answer; each request consumes one turn.
#[derive(Debug, Clone)]
pub struct Turn {
    reply: Reply,
    delay: Duration,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
enum Reply {
    /// Text, then tool calls (name, arguments as a JSON string).
    Answer {
        text: Option<String>,
        calls: Vec<(String, String)>,
    },
    Status {
        code: u16,
        message: Option<String>,
    },
    Hang,
}

impl Turn {
    fn new(reply: Reply) -> Turn {
        Turn {
            reply,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    /// A text answer, streamed in several chunks.
    pub fn text(text: impl Into<String>) -> Turn {
        Turn::new(Reply::Answer {
            text: Some(text.into()),
            calls: Vec::new(),
        })
    }

    /// One or more (parallel) tool calls; arguments are streamed in pieces.
    pub fn tool_calls<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Turn {
        Turn::new(Reply::Answer {
            text: None,
            calls: encode_calls(calls),
        })
    }

    /// Some text, then tool calls, in one answer.
    pub fn text_then_tools<N: Into<String>>(
        text: impl Into<String>,
        calls: impl IntoIterator<Item = (N, Value)>,
    ) -> Turn {
        Turn::new(Reply::Answer {
            text: Some(text.into()),
            calls: encode_calls(calls),
        })
    }

    /// An HTTP error with the protocol's own error body (429, 500, 401, …).
    pub fn status(code: u16) -> Turn {
        Turn::new(Reply::Status {
            code,
            message: None,
        })
    }

    /// A call of tool `name` whose arguments ([`MALFORMED_ARGUMENTS`]) are
    /// not valid JSON. Non-streamed Anthropic answers cannot carry a broken
    /// object, so there `input` is that string instead of an object.
    pub fn malformed_tool_json(name: impl Into<String>) -> Turn {
        Turn::new(Reply::Answer {
            text: None,
            calls: vec![(name.into(), MALFORMED_ARGUMENTS.to_owned())],
        })
    }

    /// Sends the headers and the first chunk, then nothing until the client
    /// goes away or the server is dropped (for timeout and cancel tests).
    pub fn hang() -> Turn {
        Turn::new(Reply::Hang)
    }

    /// Sets the error message of a [`Turn::status`] turn.
    pub fn with_message(mut self, text: impl Into<String>) -> Turn {
        if let Reply::Status { message, .. } = &mut self.reply {
            *message = Some(text.into());
        }
        self
    }

    /// Adds a `Retry-After: seconds` header to the answer.
    pub fn retry_after(mut self, seconds: u64) -> Turn {
        self.retry_after = Some(seconds);
        self
    }

    /// Waits this long before answering (before the response headers).
    pub fn delay(mut self, delay: Duration) -> Turn {
        self.delay = delay;
        self
    }
}

fn encode_calls<N: Into<String>>(
    calls: impl IntoIterator<Item = (N, Value)>,
) -> Vec<(String, String)> {
    calls
        .into_iter()
        .map(|(name, arguments)| (name.into(), arguments.to_string()))
        .collect()
}

/// One received request.
#[derive(Debug, Clone)]
struct Recorded {
    body: Value,
    headers: HeaderMap,
}

struct Shared {
    protocol: Protocol,
    turns: Mutex<VecDeque<Turn>>,
    requests: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    ids: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running scripted model server. Dropping it stops the server and ends
/// any hanging answer.
pub struct ScriptedModel {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl ScriptedModel {
    /// Starts a server for `protocol` on `127.0.0.1:0` with no turns queued.
    pub async fn start(protocol: Protocol) -> ScriptedModel {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a scripted model server");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, signal) = watch::channel(false);
        let shared = Arc::new(Shared {
            protocol,
            turns: Mutex::default(),
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
            shutdown: signal.clone(),
        });
        let path = match protocol {
            Protocol::OpenAi => "/v1/chat/completions",
            Protocol::Anthropic => "/v1/messages",
        };
        let router = Router::new()
            .route(path, post(answer))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let mut stop = signal;
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|down| *down).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %e, "scripted model server stopped");
            }
        });
        ScriptedModel {
            shared,
            addr,
            shutdown,
        }
    }

    /// The protocol this server speaks.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// What a client is configured with: `http://127.0.0.1:PORT/v1` for
    /// OpenAI, `http://127.0.0.1:PORT` for Anthropic.
    pub fn base_url(&self) -> String {
        match self.shared.protocol {
            Protocol::OpenAi => format!("http://{}/v1", self.addr),
            Protocol::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// The full URL requests go to.
    pub fn endpoint(&self) -> String {
        match self.shared.protocol {
            Protocol::OpenAi => format!("{}/chat/completions", self.base_url()),
            Protocol::Anthropic => format!("{}/v1/messages", self.base_url()),
        }
    }

    /// Queues a turn after those already queued.
    pub fn push(&self, turn: Turn) {
        lock(&self.shared.turns).push_back(turn);
    }

    /// Turns not yet consumed.
    pub fn pending_turns(&self) -> usize {
        lock(&self.shared.turns).len()
    }

    /// Every request body received, in order (refused ones included; a body
    /// that is not JSON is recorded as a JSON string).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The headers of every request, in order.
    pub fn headers(&self) -> Vec<HeaderMap> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| r.headers.clone())
            .collect()
    }

    /// The headers of the latest request.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        lock(&self.shared.requests)
            .last()
            .map(|r| r.headers.clone())
    }

    /// One header of the latest request (`authorization`, `x-api-key`, …).
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.last_headers()?
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Requests being answered right now: delayed, streaming or hanging.
    /// Drops to zero once clients that gave up are noticed as gone.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight; fails after `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.in_flight() > 0 {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "{} request(s) still in flight after {timeout:?}",
                    self.in_flight()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Counts a request as in flight until dropped with its handler or its
/// response body, whichever lives longer.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The one handler: record, check, take a turn, answer it.
async fn answer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let guard = InFlight::new(&shared);
    let protocol = shared.protocol;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error_response(
                protocol,
                rejection.status().as_u16(),
                &rejection.body_text(),
            );
        }
    };
    let parsed = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    lock(&shared.requests).push(Recorded {
        body: parsed.clone(),
        headers: headers.clone(),
    });
    if let Err((code, message)) = check(protocol, &headers, &parsed) {
        return error_response(protocol, code, &message);
    }
    let Some(turn) = lock(&shared.turns).pop_front() else {
        return error_response(protocol, 500, "no scripted turn left");
    };
    if !turn.delay.is_zero() {
        tokio::time::sleep(turn.delay).await;
    }
    let streaming = parsed.get("stream").and_then(Value::as_bool) == Some(true);
    let mut response = match turn.reply {
        Reply::Status { code, message } => {
            let message = message.unwrap_or_else(|| default_message(code).to_owned());
            error_response(protocol, code, &message)
        }
        Reply::Answer { text, calls } => {
            let ids: Vec<u64> = (0..=calls.len())
                .map(|_| shared.ids.fetch_add(1, Ordering::Relaxed) + 1)
                .collect();
            let answer = Answer {
                request: &parsed,
                text: text.as_deref(),
                calls: &calls,
                ids: &ids,
            };
            match (protocol, streaming) {
                (Protocol::OpenAi, false) => json_response(answer.openai_completion()),
                (Protocol::Anthropic, false) => json_response(answer.anthropic_message()),
                (Protocol::OpenAi, true) => {
                    sse_response(answer.openai_frames(), false, guard, &shared)
                }
                (Protocol::Anthropic, true) => {
                    sse_response(answer.anthropic_frames(), false, guard, &shared)
                }
            }
        }
        Reply::Hang => {
            let id = shared.ids.fetch_add(1, Ordering::Relaxed) + 1;
            let answer = Answer {
                request: &parsed,
                text: None,
                calls: &[],
                ids: &[id],
            };
            let first = match (protocol, streaming) {
                (Protocol::OpenAi, true) => answer.openai_frames().swap_remove(0),
                (Protocol::Anthropic, true) => answer.anthropic_frames().swap_remove(0),
                // A JSON answer cut short: valid start, never completed.
                (_, false) => Bytes::from_static(b"{\"id\": "),
            };
            let mut response = sse_response(vec![first], true, guard, &shared);
            if !streaming {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            response
        }
    };
    if let Some(seconds) = turn.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The checks the real API makes before looking at the conversation.
fn check(protocol: Protocol, headers: &HeaderMap, body: &Value) -> Result<(), (u16, String)> {
    if protocol == Protocol::Anthropic {
        if !headers.contains_key("x-api-key") {
            return Err((401, "x-api-key header is required".into()));
        }
        if !headers.contains_key("anthropic-version") {
            return Err((400, "anthropic-version: header is required".into()));
        }
    }
    let Some(object) = body.as_object() else {
        return Err((400, "the request body must be a JSON object".into()));
    };
    let mut required = vec!["model", "messages"];
    if protocol == Protocol::Anthropic {
        required.push("max_tokens");
    }
    for field in required {
        if !object.contains_key(field) {
            return Err((
                400,
                match protocol {
                    Protocol::OpenAi => format!("Missing required parameter: '{field}'."),
                    Protocol::Anthropic => format!("{field}: Field required"),
                },
            ));
        }
    }
    if !object.get("messages").is_some_and(Value::is_array) {
        return Err((400, "messages: Input should be a valid list".into()));
    }
    Ok(())
}

fn default_message(code: u16) -> &'static str {
    match code {
        401 => "invalid API key (scripted)",
        403 => "permission denied (scripted)",
        404 => "not found (scripted)",
        429 => "rate limit reached (scripted)",
        529 => "overloaded (scripted)",
        500..=599 => "internal server error (scripted)",
        _ => "request failed (scripted)",
    }
}

/// An error in the protocol's own shape.
fn error_response(protocol: Protocol, code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match protocol {
        Protocol::OpenAi => {
            let (kind, error_code) = match code {
                400 => ("invalid_request_error", Value::Null),
                401 => ("invalid_request_error", json!("invalid_api_key")),
                403 => (
                    "invalid_request_error",
                    json!("unsupported_country_region_territory"),
                ),
                404 => ("invalid_request_error", json!("model_not_found")),
                429 => ("requests", json!("rate_limit_exceeded")),
                500..=599 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": error_code}})
        }
        Protocol::Anthropic => {
            let kind = match code {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    json_response_with(status, body)
}

fn json_response(body: Value) -> Response {
    json_response_with(StatusCode::OK, body)
}

fn json_response_with(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An SSE response sending `frames` a moment apart; with `hang`, the body
/// then stays open until the client leaves or the server stops.
fn sse_response(frames: Vec<Bytes>, hang: bool, guard: InFlight, shared: &Shared) -> Response {
    let body = Body::from_stream(frame_stream(frames, hang, guard, shared.shutdown.clone()));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn frame_stream(
    frames: Vec<Bytes>,
    hang: bool,
    guard: InFlight,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let state = (VecDeque::from(frames), true, guard, shutdown);
    stream::unfold(
        state,
        move |(mut frames, first, guard, mut shutdown)| async move {
            if let Some(frame) = frames.pop_front() {
                if !first {
                    tokio::time::sleep(CHUNK_PAUSE).await;
                }
                return Some((Ok(frame), (frames, false, guard, shutdown)));
            }
            if hang {
                // Ends with the server; hyper drops the whole stream (and the
                // guard) earlier when the client closes the connection.
                let _ = shutdown.wait_for(|down| *down).await;
            }
            drop(guard);
            None
        },
    )
}

/// One answer to render in either protocol.
struct Answer<'a> {
    request: &'a Value,
    text: Option<&'a str>,
    /// Tool calls: name and arguments as a JSON string.
    calls: &'a [(String, String)],
    /// Fresh numbers: `ids[0]` for the message, then one per call.
    ids: &'a [u64],
}

impl Answer<'_> {
    fn model(&self) -> &str {
        self.request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("scripted-model")
    }

    fn call_id(&self, i: usize, prefix: &str) -> String {
        format!(
            "{prefix}{}",
            self.ids.get(i + 1).copied().unwrap_or_default()
        )
    }

    /// Rough, deterministic token counts (no tokenizer here).
    fn usage(&self) -> (usize, usize) {
        let input = self
            .request
            .get("messages")
            .map_or(0, |m| m.to_string().len() / 4);
        let output = self.text.map_or(0, |t| t.split_whitespace().count())
            + self
                .calls
                .iter()
                .map(|(_, a)| 1 + a.len() / 4)
                .sum::<usize>();
        (input, output)
    }

    fn include_usage(&self) -> bool {
        self.request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true)
    }

    fn openai_completion(&self) -> Value {
        let (prompt, completion) = self.usage();
        let mut message = json!({"role": "assistant", "content": self.text, "refusal": null});
        if !self.calls.is_empty() {
            let calls: Vec<Value> = self
                .calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    json!({"id": self.call_id(i, "call_"), "type": "function",
                        "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            message["tool_calls"] = json!(calls);
        }
        json!({
            "id": format!("chatcmpl-scripted-{}", self.ids[0]),
            "object": "chat.completion",
            "created": 0,
            "model": self.model(),
            "choices": [{"index": 0, "message": message, "logprobs": null,
                "finish_reason": if self.calls.is_empty() { "stop" } else { "tool_calls" }}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion},
        })
    }

    /// `data:` frames as OpenAI streams them: role, content pieces, each
    /// call's id and name then its argument pieces, finish reason, usage
    /// (if asked for), `[DONE]`.
    fn openai_frames(&self) -> Vec<Bytes> {
        let include_usage = self.include_usage();
        let chunk = |delta: Value, finish: Option<&str>| {
            let mut chunk = json!({
                "id": format!("chatcmpl-scripted-{}", self.ids[0]),
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model(),
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                chunk["usage"] = Value::Null;
            }
            chunk
        };
        let mut chunks = vec![chunk(
            json!({"role": "assistant", "content": if self.text.is_some() { json!("") } else { Value::Null }}),
            None,
        )];
        for piece in self.text.map(text_pieces).unwrap_or_default() {
            chunks.push(chunk(json!({"content": piece}), None));
        }
        for (i, (name, arguments)) in self.calls.iter().enumerate() {
            chunks.push(chunk(
                json!({"tool_calls": [{"index": i, "id": self.call_id(i, "call_"), "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in argument_pieces(arguments) {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
        let finish = if self.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        chunks.push(chunk(json!({}), Some(finish)));
        if include_usage {
            let (prompt, completion) = self.usage();
            let mut last = chunk(json!({}), None);
            last["choices"] = json!([]);
            last["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion});
            chunks.push(last);
        }
        chunks
            .iter()
            .map(|c| Bytes::from(format!("data: {c}\n\n")))
            .chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n")))
            .collect()
    }

    fn stop_reason(&self) -> &'static str {
        if self.calls.is_empty() {
            "end_turn"
        } else {
            "tool_use"
        }
    }

    fn anthropic_message(&self) -> Value {
        let (input, output) = self.usage();
        let mut content: Vec<Value> = self
            .text
            .map(|t| json!({"type": "text", "text": t}))
            .into_iter()
            .collect();
        for (i, (name, arguments)) in self.calls.iter().enumerate() {
            let input = serde_json::from_str::<Value>(arguments)
                .unwrap_or_else(|_| Value::String(arguments.clone()));
            content.push(json!({"type": "tool_use", "id": self.call_id(i, "toolu_"),
                "name": name, "input": input}));
        }
        json!({
            "id": format!("msg_scripted_{}", self.ids[0]),
            "type": "message",
            "role": "assistant",
            "model": self.model(),
            "content": content,
            "stop_reason": self.stop_reason(),
            "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output},
        })
    }

    /// `event:`/`data:` frames in the Messages API's documented order.
    fn anthropic_frames(&self) -> Vec<Bytes> {
        let (input, output) = self.usage();
        let mut events = vec![json!({"type": "message_start", "message": {
            "id": format!("msg_scripted_{}", self.ids[0]),
            "type": "message",
            "role": "assistant",
            "model": self.model(),
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": 1},
        }})];
        let mut index = 0;
        if let Some(text) = self.text {
            events.push(json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "ping"}));
            for piece in text_pieces(text) {
                events.push(json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece}}));
            }
            events.push(json!({"type": "content_block_stop", "index": index}));
            index += 1;
        }
        for (i, (name, arguments)) in self.calls.iter().enumerate() {
            events.push(json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": self.call_id(i, "toolu_"),
                    "name": name, "input": {}}}));
            if index == 0 {
                events.push(json!({"type": "ping"}));
            }
            for piece in argument_pieces(arguments) {
                events.push(json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}));
            }
            events.push(json!({"type": "content_block_stop", "index": index}));
            index += 1;
        }
        events.push(json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
            "usage": {"output_tokens": output}}));
        events.push(json!({"type": "message_stop"}));
        events
            .iter()
            .map(|e| {
                let kind = e["type"].as_str().unwrap_or("message");
                Bytes::from(format!("event: {kind}\ndata: {e}\n\n"))
            })
            .collect()
    }
}

/// Text in two-word pieces (whitespace kept, so they concatenate back).
fn text_pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    words.chunks(2).map(|w| w.concat()).collect()
}

/// Arguments in about three pieces, split on character boundaries.
fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
