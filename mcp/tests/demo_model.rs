//! The demo model over real HTTP, as an OpenAI client sees it: a tool picked
//! by the user's words with schema-valid arguments (streamed in SSE chunks
//! and not), tool results reported back, the answer when no tool matches,
//! the model list, and OpenAI-shaped refusals of bad requests.

use amesh_demo::{DEMO_MODEL, DemoHandle, DemoOptions, DemoProvider};
use serde_json::{Value, json};

async fn demo() -> DemoHandle {
    DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider starts")
}

/// The demo MCP server's own tools, offered the OpenAI way.
fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "whoami",
            "description": "Tells who the signed-in user is.",
            "parameters": {"type": "object", "properties": {}}
        }},
        {"type": "function", "function": {
            "name": "echo",
            "description": "Repeats the text, signed by the user.",
            "parameters": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "What to repeat"},
                    "times": {"type": "integer", "minimum": 1},
                    "loud": {"type": "boolean"}
                },
                "required": ["text", "times"]
            }
        }},
        {"type": "function", "function": {
            "name": "profile",
            "description": "The signed-in user's profile (needs scope `profile`).",
            "parameters": {"type": "object", "properties": {}}
        }}
    ])
}

async fn post(demo: &DemoHandle, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", demo.model_base_url()))
        .bearer_auth("sk-ignored-by-the-demo")
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// The `data:` payloads of an SSE body, `[DONE]` included as a string.
async fn sse_data(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let body = response.text().await.unwrap();
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let data = block
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {block:?}"));
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()))
        })
        .collect()
}

/// Accumulates streamed deltas the way an OpenAI client does: content,
/// tool calls by index (arguments concatenated), finish reason.
#[derive(Debug, Default)]
struct Assembled {
    role: Option<String>,
    content: String,
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
}

fn assemble(events: &[Value]) -> Assembled {
    assert_eq!(events.last(), Some(&json!("[DONE]")), "ends with [DONE]");
    let mut out = Assembled::default();
    for chunk in &events[..events.len() - 1] {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], DEMO_MODEL);
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            out.usage = Some(usage.clone());
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        if let Some(role) = delta["role"].as_str() {
            assert!(out.role.is_none(), "role sent once");
            out.role = Some(role.to_owned());
        }
        assert!(out.role.is_some(), "role delta comes first");
        if let Some(text) = delta["content"].as_str() {
            out.content.push_str(text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            if out.calls.len() <= index {
                assert_eq!(call["type"], "function");
                out.calls.push((
                    call["id"].as_str().unwrap().to_owned(),
                    call["function"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            if let Some(piece) = call["function"]["arguments"].as_str() {
                out.calls[index].2.push_str(piece);
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            out.finish = Some(finish.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn streams_a_tool_call_picked_by_the_users_words_with_schema_valid_arguments() {
    let demo = demo().await;
    let body = json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": true},
        "tools": tools(),
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Please echo this sentence back"}
        ]
    });
    let events = sse_data(post(&demo, &body).await).await;
    let argument_chunks = events
        .iter()
        .filter(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].is_string())
        .count();
    assert!(
        argument_chunks > 2,
        "arguments arrive in pieces: {events:#?}"
    );
    let answer = assemble(&events);
    assert_eq!(answer.role.as_deref(), Some("assistant"));
    assert_eq!(answer.finish.as_deref(), Some("tool_calls"));
    assert!(answer.usage.is_some(), "usage chunk when asked for");
    let [(id, name, arguments)] = answer.calls.as_slice() else {
        panic!("one tool call: {answer:?}")
    };
    assert_eq!((id.as_str(), name.as_str()), ("call_1", "echo"));
    let arguments: Value = serde_json::from_str(arguments).expect("arguments are JSON");
    assert_eq!(
        arguments,
        json!({"text": "Please echo this sentence back", "times": 1})
    );
    let schema = &tools()[1]["function"]["parameters"];
    assert!(jsonschema::is_valid(schema, &arguments), "{arguments}");
    assert_eq!(demo.model_completions(), 1);
}

#[tokio::test]
async fn reports_tool_results_by_name_then_answers_plain_text() {
    let demo = demo().await;
    let body = json!({
        "model": DEMO_MODEL,
        "stream": true,
        "tools": tools(),
        "messages": [
            {"role": "user", "content": "whoami and my profile"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "whoami", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "profile", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "You are alice"},
            {"role": "tool", "tool_call_id": "call_2", "content": "{\"name\":\"alice\"}"}
        ]
    });
    let events = sse_data(post(&demo, &body).await).await;
    let content_chunks = events
        .iter()
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert!(content_chunks > 1, "text arrives in several chunks");
    let answer = assemble(&events);
    assert_eq!(answer.finish.as_deref(), Some("stop"));
    assert!(answer.calls.is_empty());
    assert!(answer.usage.is_none(), "no usage unless asked for");
    assert_eq!(
        answer.content,
        "whoami returned: You are alice\nprofile returned: {\"name\":\"alice\"}"
    );
}

#[tokio::test]
async fn without_a_matching_tool_it_says_what_it_is_and_lists_its_tools() {
    let demo = demo().await;
    let body = json!({
        "model": DEMO_MODEL,
        "stream": true,
        "tools": tools(),
        "messages": [{"role": "user", "content": "Tell me a joke"}]
    });
    let answer = assemble(&sse_data(post(&demo, &body).await).await);
    assert_eq!(answer.finish.as_deref(), Some("stop"));
    assert!(
        answer.content.contains("amesh demo model"),
        "{}",
        answer.content
    );
    assert!(
        answer.content.contains("whoami, echo, profile"),
        "{}",
        answer.content
    );
}

#[tokio::test]
async fn non_streamed_answers_are_chat_completion_objects() {
    let demo = demo().await;
    let response = post(
        &demo,
        &json!({"model": DEMO_MODEL, "tools": tools(),
            "messages": [{"role": "user", "content": "who am I? whoami please"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], DEMO_MODEL);
    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "whoami");
    assert_eq!(call["function"]["arguments"], "{}");
    let usage = &completion["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );

    let echo: Value = post(
        &demo,
        &json!({"model": DEMO_MODEL, "stream": false,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(echo["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        echo["choices"][0]["message"]["content"],
        "The amesh demo model heard you say: \"hello\"."
    );
}

#[tokio::test]
async fn lists_the_demo_model() {
    let demo = demo().await;
    let models: Value = reqwest::get(format!("{}/models", demo.model_base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], DEMO_MODEL);
    assert_eq!(
        demo.model_base_url().as_str(),
        format!("{}v1", demo.base_url)
    );
}

#[tokio::test]
async fn bad_requests_get_400_with_openais_error_shape() {
    let demo = demo().await;
    let refusal = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let error = body["error"].as_object().expect("error object").clone();
        for field in ["message", "type", "param", "code"] {
            assert!(error.contains_key(field), "{field} in {body}");
        }
        (status, body["error"].clone())
    };
    let (status, error) = refusal(post(&demo, &json!({"model": DEMO_MODEL})).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], "messages");
    assert_eq!(error["code"], "missing_required_parameter");

    let (status, error) = refusal(
        post(
            &demo,
            &json!({"model": DEMO_MODEL, "messages": [{"role": "tool", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "messages[0].tool_call_id");

    let not_json = reqwest::Client::new()
        .post(format!("{}/chat/completions", demo.model_base_url()))
        .header("content-type", "application/json")
        .body("{\"model\":")
        .send()
        .await
        .unwrap();
    let (status, error) = refusal(not_json).await;
    assert_eq!(status, 400);
    assert!(error["message"].as_str().unwrap().contains("parse"));

    let huge = "x".repeat(5 << 20);
    let too_big = post(
        &demo,
        &json!({"model": DEMO_MODEL, "messages": [{"role": "user", "content": huge}]}),
    )
    .await;
    let (status, _) = refusal(too_big).await;
    assert_eq!(status, 413);
    assert_eq!(demo.model_completions(), 0, "refusals are not completions");
}
