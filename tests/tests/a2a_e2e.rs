//! Gateway -> real Mosquitto -> agent -> gateway, end to end.
//!
//! Each test starts its own Mosquitto (password and ACL files, free port)
//! and its own apps, so tests run in parallel without sharing state.

use std::time::Duration;

use amesh_runtime::a2a::jsonrpc;
use amesh_runtime::broker::UserProperties;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::RawClient;
use amesh_tests::stack::{SseReader, Stack, read_sse};
use serde_json::{Value, json};

const NS: &str = "test/ns";

const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("echo", "echo-pass"),
    ("tester", "tester-pass"),
];

fn acl() -> String {
    format!(
        "user gateway\ntopic readwrite {NS}/a2a/v1/#\n\
         user echo\ntopic readwrite {NS}/a2a/v1/#\n\
         user tester\ntopic readwrite {NS}/a2a/v1/#\n"
    )
}

fn broker_yaml(mq: &MosquittoBroker, user: &str) -> String {
    let pass = USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or("");
    format!(
        "{{broker_url: \"{}\", broker_username: {user}, broker_password: \"{pass}\"}}",
        mq.url()
    )
}

fn gateway_yaml(mq: &MosquittoBroker, auth: bool) -> String {
    format!(
        r#"
  - name: gw
    app_module: gateway
    broker: {broker}
    app_config:
      namespace: {NS}
      gateway_id: gw1
      port: 0
      agent_card_ttl_seconds: 3
      request_timeout_seconds: 20
      frontend_use_authorization: {auth}
      users:
        - {{id: alice, token: alice-token}}
        - {{id: bob, token: bob-token}}
"#,
        broker = broker_yaml(mq, "gateway")
    )
}

fn agent_yaml(mq: &MosquittoBroker) -> String {
    format!(
        r#"
  - name: echo
    app_module: agent
    broker: {broker}
    app_config:
      namespace: {NS}
      agent_name: echo
      agent_card_publishing: {{interval_seconds: 1}}
      max_message_size_bytes: 4096
      max_call_depth: 3
      tools:
        - {{tool_type: builtin, tool_name: echo}}
        - {{tool_type: builtin, tool_name: sleep}}
        - {{tool_type: builtin, tool_name: delegate}}
"#,
        broker = broker_yaml(mq, "echo")
    )
}

async fn stack(mq: &MosquittoBroker, auth: bool) -> Stack {
    let yaml = format!("apps:{}{}", gateway_yaml(mq, auth), agent_yaml(mq));
    let stack = Stack::start(&yaml).await.expect("stack starts");
    stack
        .wait_for_agent_as(
            "echo",
            Duration::from_secs(10),
            auth.then_some("alice-token"),
        )
        .await
        .expect("agent discovered");
    stack
}

fn broker() -> MosquittoBroker {
    MosquittoBroker::start(USERS, &acl()).expect("mosquitto starts")
}

async fn send(stack: &Stack, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = stack
        .http
        .post(format!("{}/api/v1/message:send", stack.url()))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("http")
}

#[tokio::test]
async fn round_trip_through_mosquitto_returns_the_agents_answer() {
    let mq = broker();
    let mut stack = stack(&mq, false).await;
    let resp = send(
        &stack,
        None,
        json!({"agent_name": "echo", "text": "hello mesh"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["kind"], "task");
    assert_eq!(task["status"]["state"], "completed");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "hello mesh");
    stack.stop().await;
}

#[tokio::test]
async fn stream_delivers_status_events_in_order() {
    let mq = broker();
    let mut stack = stack(&mq, false).await;
    // What the agent puts on the broker for the task, beside the SSE.
    let mut wire = RawClient::connect(&mq.broker_config("tester", "tester-pass"), "wire", NS)
        .await
        .expect("observer");
    wire.broker
        .subscribe(&format!("{NS}/a2a/v1/gateway/+/gw1/#"))
        .await
        .unwrap();
    let resp = stack
        .http
        .post(format!("{}/api/v1/message:stream", stack.url()))
        .json(&json!({"agent_name": "echo", "data": {"tool": "sleep", "arguments": {"ms": 50}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp).await.unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "submitted",
            "status",
            "status",
            "status",
            "artifact",
            "status",
            "task"
        ]
    );
    assert_eq!(events[1].data["status"]["state"], "working");
    assert_eq!(events[1].data["final"], false);
    // Tool activity: the call, then its result with how long it took.
    let activity = |i: usize| events[i].data["status"]["message"]["parts"][0]["data"].clone();
    assert_eq!(activity(2)["type"], "tool_call");
    assert_eq!(activity(2)["tool"], "sleep");
    assert_eq!(activity(3)["type"], "tool_result");
    assert_eq!(activity(3)["ok"], true);
    assert!(activity(3)["duration_ms"].as_u64().unwrap() >= 50);
    assert_eq!(events[5].data["status"]["state"], "completed");
    assert_eq!(events[5].data["final"], true);
    assert_eq!(events[6].data["status"]["state"], "completed");
    assert_eq!(events[0].data["taskId"], events[6].data["id"]);
    // The SSE's artifact and final status are made by the gateway from
    // the final task: on the broker the agent sent three status updates
    // and the task, each once.
    let task_id = events[0].data["taskId"].as_str().unwrap();
    let status_topic = format!("{NS}/a2a/v1/gateway/status/gw1/{task_id}");
    let reply_topic = format!("{NS}/a2a/v1/gateway/response/gw1/{task_id}");
    let mut on_wire = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(500), wire.incoming.recv()).await
    {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let kind = v["result"]["kind"].as_str().unwrap_or("?").to_owned();
        on_wire.push((m.topic == status_topic, m.topic == reply_topic, kind));
    }
    let status = |k: &str| (true, false, k.to_owned());
    assert_eq!(
        on_wire,
        [
            status("status-update"),
            status("status-update"),
            status("status-update"),
            (false, true, "task".to_owned()),
        ],
        "the agent's messages for the task"
    );
    wire.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn discovery_lists_the_agent_and_drops_it_after_it_stops() {
    let mq = broker();
    let gw = Stack::start(&format!("apps:{}", gateway_yaml(&mq, false)))
        .await
        .unwrap();
    assert!(gw.agents().await.unwrap().is_empty());
    let mut agent = Stack::start(&format!("apps:{}", agent_yaml(&mq)))
        .await
        .unwrap();
    gw.wait_for_agent("echo", Duration::from_secs(5))
        .await
        .unwrap();
    agent.stop().await;
    // TTL is 3 s; cards came every second.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        if gw.agents().await.unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent still listed after TTL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn apps_reconnect_after_the_broker_restarts() {
    let mut mq = broker();
    // A request published after the gateway reconnected but before the
    // agent re-subscribed reaches nobody (the restarted broker kept no
    // sessions) and ends in a timeout: keep that short so the loop below
    // retries instead of waiting.
    let yaml = format!("apps:{}{}", gateway_yaml(&mq, false), agent_yaml(&mq))
        .replace("request_timeout_seconds: 20", "request_timeout_seconds: 3");
    let mut stack = Stack::start(&yaml).await.expect("stack starts");
    stack
        .wait_for_agent("echo", Duration::from_secs(10))
        .await
        .expect("agent discovered");
    let ok = send(
        &stack,
        None,
        json!({"agent_name": "echo", "text": "before"}),
    )
    .await;
    assert_eq!(ok.status(), 200);
    mq.restart().expect("restart mosquitto");
    // The apps reconnect with backoff; a request must succeed once they are
    // both back (bounded wait, no fixed sleep).
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let resp = send(&stack, None, json!({"agent_name": "echo", "text": "after"})).await;
        if resp.status() == 200 {
            let task: Value = resp.json().await.unwrap();
            assert_eq!(task["artifacts"][0]["parts"][0]["text"], "after");
            break;
        }
        let last = format!(
            "{} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no successful request after restart; last answer: {last}\nbroker log:\n{}",
            mq.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.stop().await;
}

/// Sends `payload` straight to the echo agent as the `tester` user and
/// returns its reply.
async fn raw_request(mq: &MosquittoBroker, payload: Vec<u8>, props: UserProperties) -> Value {
    let cfg = mq.broker_config("tester", "tester-pass");
    let mut client = RawClient::connect(&cfg, "raw-tester", NS)
        .await
        .expect("raw client");
    let reply = client
        .request("echo", payload, props)
        .await
        .expect("a reply");
    client.disconnect().await;
    reply
}

#[tokio::test]
async fn malformed_unknown_and_oversize_requests_get_json_rpc_errors() {
    let mq = broker();
    let mut stack = stack(&mq, false).await;

    let r = raw_request(&mq, b"{this is not json".to_vec(), UserProperties::new()).await;
    assert_eq!(r["error"]["code"], jsonrpc::PARSE_ERROR);
    assert_eq!(r["id"], Value::Null);

    let body = json!({"jsonrpc": "2.0", "id": "u1", "method": "tasks/frobnicate", "params": {}});
    let r = raw_request(
        &mq,
        serde_json::to_vec(&body).unwrap(),
        UserProperties::new(),
    )
    .await;
    assert_eq!(r["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
    assert_eq!(r["id"], "u1");

    let big = "x".repeat(5000);
    let body = json!({"jsonrpc": "2.0", "id": "big", "method": "message/send",
        "params": {"message": {"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": big}]}}});
    let r = raw_request(
        &mq,
        serde_json::to_vec(&body).unwrap(),
        UserProperties::new(),
    )
    .await;
    assert_eq!(r["error"]["code"], jsonrpc::MESSAGE_TOO_LARGE);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_message_size_bytes")
    );

    let body =
        json!({"jsonrpc": "2.0", "id": "bad", "method": "message/send", "params": {"nope": 1}});
    let r = raw_request(
        &mq,
        serde_json::to_vec(&body).unwrap(),
        UserProperties::new(),
    )
    .await;
    assert_eq!(r["error"]["code"], jsonrpc::INVALID_PARAMS);
    stack.stop().await;
}

#[tokio::test]
async fn delegation_loop_stops_at_max_call_depth() {
    let mq = broker();
    let mut stack = stack(&mq, false).await;
    // echo delegates to itself, whose request delegates again, ... The
    // agent's max_call_depth is 3, so the chain must end with an error.
    let mut inner = json!({"tool": "echo", "arguments": {"text": "bottom"}});
    for _ in 0..6 {
        inner = json!({"tool": "delegate", "arguments": {"agent": "echo", "data": inner}});
    }
    let resp = send(&stack, None, json!({"agent_name": "echo", "data": inner})).await;
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "failed");
    let why = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("max_call_depth"), "{why}");

    // Two hops stay within the limit and return the innermost answer.
    let two = json!({"tool": "delegate", "arguments": {"agent": "echo",
        "data": {"tool": "delegate", "arguments": {"agent": "echo", "text": "deep"}}}});
    let task: Value = send(&stack, None, json!({"agent_name": "echo", "data": two}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "deep");
    stack.stop().await;
}

#[tokio::test]
async fn users_authenticate_and_see_only_their_own_tasks() {
    let mq = broker();
    let mut stack = stack(&mq, true).await;
    let base = stack.url();
    let anon = send(&stack, None, json!({"agent_name": "echo", "text": "hi"})).await;
    assert_eq!(anon.status(), 401);
    let bad = send(
        &stack,
        Some("wrong"),
        json!({"agent_name": "echo", "text": "hi"}),
    )
    .await;
    assert_eq!(bad.status(), 401);

    let task: Value = send(
        &stack,
        Some("alice-token"),
        json!({"agent_name": "echo", "text": "mine"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    let own = stack
        .http
        .get(format!("{base}/api/v1/tasks/{id}"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(
        own.json::<Value>().await.unwrap()["status"]["state"],
        "completed"
    );
    let other = stack
        .http
        .get(format!("{base}/api/v1/tasks/{id}"))
        .bearer_auth("bob-token")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // Login exchanges the token for a session cookie.
    let login = stack
        .http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"token": "bob-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me: Value = stack
        .http
        .get(format!("{base}/api/v1/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["id"], "bob");
    stack.stop().await;
}

#[tokio::test]
async fn cancel_ends_a_running_task_as_canceled() {
    let mq = broker();
    let mut stack = stack(&mq, false).await;
    let base = stack.url();
    let resp = stack
        .http
        .post(format!("{base}/api/v1/message:stream"))
        .json(&json!({"agent_name": "echo", "data": {"tool": "sleep", "arguments": {"ms": 30000}}}))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    let first = events.next_event().await.unwrap().unwrap();
    assert_eq!(first.event, "submitted");
    let id = first.data["taskId"].as_str().unwrap().to_string();
    let working = events.next_event().await.unwrap().unwrap();
    assert_eq!(working.data["status"]["state"], "working");

    let cancel = stack
        .http
        .post(format!("{base}/api/v1/tasks/{id}:cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let mut last = None;
    while let Some(ev) = events.next_event().await.unwrap() {
        last = Some(ev);
    }
    let last = last.unwrap();
    assert_eq!(last.event, "task");
    assert_eq!(last.data["status"]["state"], "canceled");

    let again = stack
        .http
        .post(format!("{base}/api/v1/tasks/{id}:cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        409,
        "a finished task cannot be canceled again"
    );
    stack.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_tasks_finish() {
    let mq = broker();
    let stack = stack(&mq, false).await;
    let base = stack.url();
    let http = stack.http.clone();
    let pending = tokio::spawn(async move {
        http.post(format!("{base}/api/v1/message:send"))
            .json(
                &json!({"agent_name": "echo", "data": {"tool": "sleep", "arguments": {"ms": 700}}}),
            )
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stack = stack;
    stack.stop().await;
    let resp = pending.await.unwrap().expect("in-flight request answered");
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "completed");
}

/// A delegation to a peer none of whose replicas has a broker session left
/// fails at once with words, instead of waiting for an answer nobody will
/// send. The peer keeps no session (`session_expiry_seconds: 0`), so its
/// will comes as it stops, while its card is still fresh.
#[tokio::test]
async fn delegation_to_a_peer_with_no_session_left_fails_at_once() {
    let mq = broker();
    let mut stack = stack(&mq, false).await;
    let peer_yaml = format!(
        r#"apps:
  - name: peer
    app_module: agent
    broker: {{broker_url: "{}", broker_username: tester, broker_password: tester-pass, session_expiry_seconds: 0}}
    app_config:
      namespace: {NS}
      agent_name: peer
      agent_card_publishing: {{interval_seconds: 1}}
      tools:
        - {{tool_type: builtin, tool_name: echo}}
"#,
        mq.url()
    );
    let mut peer = Stack::start(&peer_yaml).await.expect("peer starts");
    stack
        .wait_for_agent("peer", Duration::from_secs(10))
        .await
        .expect("peer listed");
    let ask = || {
        json!({"agent_name": "echo", "data": {"tool": "delegate", "arguments": {"agent": "peer",
            "data": {"tool": "echo", "arguments": {"text": "via peer"}}}}})
    };
    // The echo agent knows the peer once its card came (every second).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let task: Value = send(&stack, None, ask()).await.json().await.unwrap();
        if task["status"]["state"] == "completed" {
            assert_eq!(task["artifacts"][0]["parts"][0]["text"], "via peer");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{task}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stopped: no session left, the broker sends its will at once.
    peer.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = std::time::Instant::now();
    let task: Value = send(&stack, None, ask()).await.json().await.unwrap();
    let took = asked.elapsed();
    assert_eq!(task["status"]["state"], "failed", "{task}");
    let why = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("agent peer is not connected"), "{why}");
    assert!(took < Duration::from_secs(2), "told after {took:?}");
    stack.stop().await;
}
