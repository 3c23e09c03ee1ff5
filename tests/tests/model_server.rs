//! The scripted model servers over real HTTP, for both protocols: every
//! turn kind streamed and not, the exact Anthropic event sequence, error
//! bodies with `Retry-After`, stalls that end when the client leaves, and
//! the record of what clients sent.

use std::pin::Pin;
use std::time::{Duration, Instant};

use amesh_tests::model_server::{MALFORMED_ARGUMENTS, Protocol, ScriptedModel, Turn};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

const BOTH: [Protocol; 2] = [Protocol::OpenAi, Protocol::Anthropic];

/// A minimal valid request body.
fn body(protocol: Protocol, stream: bool) -> Value {
    match protocol {
        Protocol::OpenAi => json!({
            "model": "gpt-test",
            "stream": stream,
            "stream_options": {"include_usage": stream},
            "messages": [{"role": "user", "content": "hi"}],
        }),
        Protocol::Anthropic => json!({
            "model": "claude-test",
            "max_tokens": 256,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }),
    }
}

/// Sends `body` with the headers a real client of the protocol sends.
async fn send(model: &ScriptedModel, body: &Value) -> reqwest::Response {
    let request = reqwest::Client::new().post(model.endpoint()).json(body);
    let request = match model.protocol() {
        Protocol::OpenAi => request.bearer_auth("sk-test"),
        Protocol::Anthropic => request
            .header("x-api-key", "ak-test")
            .header("anthropic-version", "2023-06-01"),
    };
    request.send().await.expect("request sent")
}

/// Server-sent events read one at a time: `(event name, data)`.
struct Events {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Events {
    fn new(response: reqwest::Response) -> Events {
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        Events {
            body: Box::pin(response.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next event; `None` at the end of the body (or on a broken one).
    async fn next(&mut self) -> Option<(Option<String>, String)> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("UTF-8 events");
                let mut event = None;
                let mut data = String::new();
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = Some(name.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                return Some((event, data));
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }
}

#[derive(Debug, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
    pieces: usize,
}

/// An answer put back together the way a client does it.
#[derive(Debug, Default)]
struct Assembled {
    text: String,
    text_chunks: usize,
    calls: Vec<Call>,
    stop: String,
    /// Anthropic event names in order (OpenAI: empty).
    events: Vec<String>,
    usage: Option<Value>,
}

async fn read_stream(protocol: Protocol, response: reqwest::Response) -> Assembled {
    let mut events = Events::new(response);
    let mut out = Assembled::default();
    match protocol {
        Protocol::OpenAi => {
            let mut done = false;
            let mut first = true;
            while let Some((event, data)) = events.next().await {
                assert_eq!(event, None, "OpenAI sends data lines only");
                assert!(!done, "nothing after [DONE]");
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let chunk: Value = serde_json::from_str(&data).expect("JSON chunk");
                assert_eq!(chunk["object"], "chat.completion.chunk");
                if !chunk["usage"].is_null() {
                    out.usage = Some(chunk["usage"].clone());
                }
                let Some(choice) = chunk["choices"].get(0) else {
                    continue;
                };
                let delta = &choice["delta"];
                assert_eq!(
                    first,
                    delta.get("role").is_some(),
                    "role in the first chunk only"
                );
                first = false;
                if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                    out.text.push_str(text);
                    out.text_chunks += 1;
                }
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let index = call["index"].as_u64().unwrap() as usize;
                    if let Some(id) = call["id"].as_str() {
                        assert_eq!(index, out.calls.len(), "a new call takes the next index");
                        assert_eq!(call["type"], "function");
                        out.calls.push(Call {
                            id: id.to_owned(),
                            name: call["function"]["name"].as_str().unwrap().to_owned(),
                            ..Call::default()
                        });
                    }
                    let piece = call["function"]["arguments"].as_str().unwrap_or_default();
                    if !piece.is_empty() {
                        out.calls[index].arguments.push_str(piece);
                        out.calls[index].pieces += 1;
                    }
                }
                if let Some(finish) = choice["finish_reason"].as_str() {
                    out.stop = finish.to_owned();
                }
            }
            assert!(done, "the stream ends with [DONE]");
        }
        Protocol::Anthropic => {
            let mut open: Option<(u64, String)> = None;
            while let Some((event, data)) = events.next().await {
                let event = event.expect("every Anthropic frame names its event");
                let data: Value = serde_json::from_str(&data).expect("JSON event");
                assert_eq!(data["type"], event.as_str(), "event name matches data.type");
                out.events.push(event.clone());
                match event.as_str() {
                    "message_start" => {
                        assert_eq!(out.events.len(), 1, "message_start comes first");
                        assert_eq!(data["message"]["role"], "assistant");
                        assert_eq!(data["message"]["content"], json!([]));
                    }
                    "content_block_start" => {
                        assert!(open.is_none(), "blocks do not overlap");
                        let index = data["index"].as_u64().unwrap();
                        let block = &data["content_block"];
                        let kind = block["type"].as_str().unwrap().to_owned();
                        if kind == "tool_use" {
                            assert_eq!(block["input"], json!({}));
                            out.calls.push(Call {
                                id: block["id"].as_str().unwrap().to_owned(),
                                name: block["name"].as_str().unwrap().to_owned(),
                                ..Call::default()
                            });
                        }
                        open = Some((index, kind));
                    }
                    "content_block_delta" => {
                        let (index, kind) = open.as_ref().expect("a delta inside a block");
                        assert_eq!(data["index"].as_u64(), Some(*index));
                        let delta = &data["delta"];
                        match (kind.as_str(), delta["type"].as_str()) {
                            ("text", Some("text_delta")) => {
                                out.text.push_str(delta["text"].as_str().unwrap());
                                out.text_chunks += 1;
                            }
                            ("tool_use", Some("input_json_delta")) => {
                                let call = out.calls.last_mut().unwrap();
                                call.arguments
                                    .push_str(delta["partial_json"].as_str().unwrap());
                                call.pieces += 1;
                            }
                            other => panic!("delta {other:?} in a {kind} block"),
                        }
                    }
                    "content_block_stop" => {
                        let (index, _) = open.take().expect("stop of an open block");
                        assert_eq!(data["index"].as_u64(), Some(index));
                    }
                    "message_delta" => {
                        assert!(open.is_none());
                        out.stop = data["delta"]["stop_reason"].as_str().unwrap().to_owned();
                        out.usage = Some(data["usage"].clone());
                    }
                    "message_stop" | "ping" => {}
                    other => panic!("unknown event {other}"),
                }
            }
            assert_eq!(out.events.last().map(String::as_str), Some("message_stop"));
        }
    }
    out
}

/// A non-streamed answer in the same terms.
async fn read_json(protocol: Protocol, response: reqwest::Response) -> Assembled {
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON answer");
    let mut out = Assembled::default();
    match protocol {
        Protocol::OpenAi => {
            assert_eq!(answer["object"], "chat.completion");
            let choice = &answer["choices"][0];
            out.text = choice["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            out.stop = choice["finish_reason"].as_str().unwrap().to_owned();
            for call in choice["message"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.calls.push(Call {
                    id: call["id"].as_str().unwrap().to_owned(),
                    name: call["function"]["name"].as_str().unwrap().to_owned(),
                    arguments: call["function"]["arguments"].as_str().unwrap().to_owned(),
                    pieces: 1,
                });
            }
            out.usage = Some(answer["usage"].clone());
        }
        Protocol::Anthropic => {
            assert_eq!(answer["type"], "message");
            assert_eq!(answer["role"], "assistant");
            for block in answer["content"].as_array().unwrap() {
                match block["type"].as_str() {
                    Some("text") => out.text.push_str(block["text"].as_str().unwrap()),
                    Some("tool_use") => out.calls.push(Call {
                        id: block["id"].as_str().unwrap().to_owned(),
                        name: block["name"].as_str().unwrap().to_owned(),
                        // A broken input is sent as a string (see Turn docs).
                        arguments: match &block["input"] {
                            Value::String(raw) => raw.clone(),
                            input => input.to_string(),
                        },
                        pieces: 1,
                    }),
                    other => panic!("unexpected block {other:?}"),
                }
            }
            out.stop = answer["stop_reason"].as_str().unwrap().to_owned();
            out.usage = Some(answer["usage"].clone());
        }
    }
    out
}

fn text_stop(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi => "stop",
        Protocol::Anthropic => "end_turn",
    }
}

fn tool_stop(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi => "tool_calls",
        Protocol::Anthropic => "tool_use",
    }
}

#[tokio::test]
async fn text_streams_in_several_chunks_and_the_request_is_recorded() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::text("Hello there from a scripted model"));
        let answer = read_stream(protocol, send(&model, &body(protocol, true)).await).await;
        assert_eq!(answer.text, "Hello there from a scripted model");
        assert!(answer.text_chunks >= 3, "{protocol:?}: {answer:?}");
        assert_eq!(answer.stop, text_stop(protocol));
        assert!(answer.calls.is_empty());
        assert!(answer.usage.is_some(), "{protocol:?} usage");
        if protocol == Protocol::Anthropic {
            let mut expected = vec!["message_start", "content_block_start", "ping"];
            expected.extend(std::iter::repeat_n(
                "content_block_delta",
                answer.text_chunks,
            ));
            expected.extend(["content_block_stop", "message_delta", "message_stop"]);
            assert_eq!(answer.events, expected);
        }

        assert_eq!(model.request_count(), 1);
        assert_eq!(model.requests()[0]["messages"][0]["content"], "hi");
        assert_eq!(model.pending_turns(), 0);
        match protocol {
            Protocol::OpenAi => {
                assert_eq!(model.base_url(), format!("http://{}/v1", host(&model)));
                assert_eq!(
                    model.last_header("authorization").as_deref(),
                    Some("Bearer sk-test")
                );
            }
            Protocol::Anthropic => {
                assert_eq!(model.base_url(), format!("http://{}", host(&model)));
                assert_eq!(model.last_header("x-api-key").as_deref(), Some("ak-test"));
                let headers = model.last_headers().unwrap();
                assert_eq!(headers["anthropic-version"], "2023-06-01");
            }
        }
    }
}

fn host(model: &ScriptedModel) -> String {
    let url = url::Url::parse(&model.base_url()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

#[tokio::test]
async fn parallel_tool_calls_stream_their_arguments_in_pieces() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        let weather = json!({"city": "Paris", "days": 3, "note": "ünïcödé text"});
        let email = json!({"to": "bob@example.com", "body": "see you"});
        model.push(Turn::tool_calls(vec![
            ("get_weather", weather.clone()),
            ("send_email", email.clone()),
        ]));
        let answer = read_stream(protocol, send(&model, &body(protocol, true)).await).await;
        assert_eq!(answer.stop, tool_stop(protocol));
        assert!(answer.text.is_empty());
        let [first, second] = answer.calls.as_slice() else {
            panic!("two calls: {answer:?}")
        };
        assert_eq!(
            (first.name.as_str(), second.name.as_str()),
            ("get_weather", "send_email")
        );
        assert_ne!(first.id, second.id);
        for (call, expected) in [(first, &weather), (second, &email)] {
            assert!(
                call.pieces > 1,
                "{protocol:?}: arguments in pieces: {call:?}"
            );
            let arguments: Value = serde_json::from_str(&call.arguments).unwrap();
            assert_eq!(&arguments, expected);
        }
        if protocol == Protocol::Anthropic {
            assert!(first.id.starts_with("toolu_"));
            assert_eq!(answer.events.iter().filter(|e| *e == "ping").count(), 1);
        } else {
            assert!(first.id.starts_with("call_"));
        }
    }
}

#[tokio::test]
async fn text_then_tools_streamed_and_not() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        for _ in 0..2 {
            model.push(Turn::text_then_tools(
                "Let me look that up.",
                vec![("search", json!({"query": "amesh"}))],
            ));
        }
        let streamed = read_stream(protocol, send(&model, &body(protocol, true)).await).await;
        let whole = read_json(protocol, send(&model, &body(protocol, false)).await).await;
        for answer in [streamed, whole] {
            assert_eq!(answer.text, "Let me look that up.");
            assert_eq!(answer.stop, tool_stop(protocol));
            assert_eq!(answer.calls.len(), 1);
            assert_eq!(answer.calls[0].name, "search");
            let arguments: Value = serde_json::from_str(&answer.calls[0].arguments).unwrap();
            assert_eq!(arguments, json!({"query": "amesh"}));
        }
    }
}

#[tokio::test]
async fn non_streamed_answers_have_the_protocols_shape() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::text("plain answer"));
        model.push(Turn::tool_calls(vec![("whoami", json!({}))]));
        let text = read_json(protocol, send(&model, &body(protocol, false)).await).await;
        assert_eq!(text.text, "plain answer");
        assert_eq!(text.stop, text_stop(protocol));
        let usage = text.usage.unwrap();
        match protocol {
            Protocol::OpenAi => assert!(usage["total_tokens"].is_u64()),
            Protocol::Anthropic => assert!(usage["input_tokens"].is_u64()),
        }
        let calls = read_json(protocol, send(&model, &body(protocol, false)).await).await;
        assert_eq!(calls.stop, tool_stop(protocol));
        assert_eq!(calls.calls[0].name, "whoami");
        assert_eq!(calls.calls[0].arguments, "{}");
    }
}

#[tokio::test]
async fn error_turns_carry_the_protocols_error_body_and_retry_after() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::status(429).retry_after(1));
        model.push(Turn::status(500));
        model.push(Turn::status(401).with_message("bad key"));
        for (status, retry_after, kind) in [
            (429, Some("1"), ("requests", "rate_limit_error")),
            (500, None, ("server_error", "api_error")),
            (401, None, ("invalid_request_error", "authentication_error")),
        ] {
            let response = send(&model, &body(protocol, true)).await;
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap()),
                retry_after
            );
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            let error: Value = response.json().await.unwrap();
            match protocol {
                Protocol::OpenAi => {
                    assert_eq!(error["error"]["type"], kind.0, "{error}");
                    for field in ["message", "param", "code"] {
                        assert!(error["error"].get(field).is_some(), "{field} in {error}");
                    }
                }
                Protocol::Anthropic => {
                    assert_eq!(error["type"], "error");
                    assert_eq!(error["error"]["type"], kind.1, "{error}");
                    assert!(error["error"]["message"].is_string());
                }
            }
            if status == 401 {
                let message = match protocol {
                    Protocol::OpenAi => &error["error"]["message"],
                    Protocol::Anthropic => &error["error"]["message"],
                };
                assert_eq!(message, "bad key");
            }
        }
        assert_eq!(model.request_count(), 3);
    }
}

#[tokio::test]
async fn malformed_tool_json_arrives_as_unparseable_arguments() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::malformed_tool_json("echo"));
        model.push(Turn::malformed_tool_json("echo"));
        let streamed = read_stream(protocol, send(&model, &body(protocol, true)).await).await;
        let whole = read_json(protocol, send(&model, &body(protocol, false)).await).await;
        for answer in [streamed, whole] {
            assert_eq!(answer.stop, tool_stop(protocol));
            assert_eq!(answer.calls[0].name, "echo");
            assert_eq!(answer.calls[0].arguments, MALFORMED_ARGUMENTS);
            assert!(serde_json::from_str::<Value>(&answer.calls[0].arguments).is_err());
        }
    }
}

#[tokio::test]
async fn delay_holds_the_answer_back() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::text("late").delay(Duration::from_millis(300)));
        let started = Instant::now();
        let answer = read_json(protocol, send(&model, &body(protocol, false)).await).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(answer.text, "late");
    }
}

#[tokio::test]
async fn hang_sends_the_first_chunk_then_stalls_until_the_client_leaves() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::hang());
        let mut events = Events::new(send(&model, &body(protocol, true)).await);
        let (event, data) = events.next().await.expect("a first chunk");
        let first: Value = serde_json::from_str(&data).unwrap();
        match protocol {
            Protocol::OpenAi => assert_eq!(first["choices"][0]["delta"]["role"], "assistant"),
            Protocol::Anthropic => {
                assert_eq!(event.as_deref(), Some("message_start"));
                assert_eq!(first["type"], "message_start");
            }
        }
        let stalled = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
        assert!(
            stalled.is_err(),
            "{protocol:?}: nothing after the first chunk"
        );
        assert_eq!(model.in_flight(), 1);
        drop(events);
        model
            .wait_idle(Duration::from_secs(5))
            .await
            .expect("the server notices the client left");

        // Not streamed: a 200 whose JSON body never completes.
        model.push(Turn::hang());
        let response = send(&model, &body(protocol, false)).await;
        assert_eq!(response.status(), 200);
        let mut chunks = response.bytes_stream();
        let first = chunks.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"{"));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), chunks.next())
                .await
                .is_err()
        );
        drop(chunks);
        model.wait_idle(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn dropping_the_server_ends_a_hanging_answer() {
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    model.push(Turn::hang());
    let mut events = Events::new(send(&model, &body(Protocol::OpenAi, true)).await);
    events.next().await.expect("a first chunk");
    drop(model);
    let end = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");
}

#[tokio::test]
async fn turns_are_consumed_in_order_and_an_empty_script_answers_500() {
    for protocol in BOTH {
        let model = ScriptedModel::start(protocol).await;
        model.push(Turn::text("first"));
        model.push(Turn::text("second"));
        assert_eq!(model.pending_turns(), 2);
        for expected in ["first", "second"] {
            let answer = read_json(protocol, send(&model, &body(protocol, false)).await).await;
            assert_eq!(answer.text, expected);
        }
        let response = send(&model, &body(protocol, true)).await;
        assert_eq!(response.status(), 500);
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["message"], "no scripted turn left",
            "{error}"
        );
        assert_eq!(model.request_count(), 3);
    }
}

#[tokio::test]
async fn requests_a_real_api_would_refuse_are_refused_without_using_a_turn() {
    let model = ScriptedModel::start(Protocol::Anthropic).await;
    model.push(Turn::text("kept"));
    let no_key = reqwest::Client::new()
        .post(model.endpoint())
        .header("anthropic-version", "2023-06-01")
        .json(&body(Protocol::Anthropic, false))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let error: Value = no_key.json().await.unwrap();
    assert_eq!(error["error"]["type"], "authentication_error");
    assert_eq!(model.last_header("x-api-key"), None);
    let no_version = reqwest::Client::new()
        .post(model.endpoint())
        .header("x-api-key", "ak-test")
        .json(&body(Protocol::Anthropic, false))
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 400);
    let mut no_max_tokens = body(Protocol::Anthropic, false);
    no_max_tokens.as_object_mut().unwrap().remove("max_tokens");
    let response = send(&model, &no_max_tokens).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(model.pending_turns(), 1, "refusals use no turn");
    assert_eq!(model.request_count(), 3, "refused requests are recorded");

    let openai = ScriptedModel::start(Protocol::OpenAi).await;
    openai.push(Turn::text("kept"));
    let response = send(&openai, &json!({"model": "gpt-test"})).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(openai.pending_turns(), 1);
    assert_eq!(openai.requests(), vec![json!({"model": "gpt-test"})]);
}
