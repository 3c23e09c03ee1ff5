//! MCP 2026-07-28 from amesh's side, against real HTTP servers: protocol
//! negotiation (a stateless 2026-07-28 server, and the demo provider, which
//! speaks the handshake revisions), and URL-mode elicitation end to end — a
//! user asks the gateway, over a real Mosquitto, the agent's scripted model
//! calls a tool whose server first needs the user at a page; the task waits
//! in `input-required` showing the page, the user opens it and says done,
//! and the same call is retried with the server's `requestState`.

use std::time::Duration;

use amesh_demo::{DemoOptions, DemoProvider};
use amesh_mcp::client::{ElicitAction, McpError, Session};
use amesh_mcp::tool_config::McpToolConfig;
use amesh_tests::model_server::{Protocol, ScriptedModel, Turn};
use amesh_tests::modern_mcp::ModernMcp;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::stack::{SseEvent, SseReader, Stack};
use serde_json::{Value, json};

const NS: &str = "elicit/ns";

fn tool_config(url: &str) -> McpToolConfig {
    serde_json::from_value(json!({
        "id": "accounts",
        "connection_params": {"type": "streamable-http", "url": url, "timeout": 10},
    }))
    .expect("tool config")
}

async fn session(url: &str) -> Session {
    Session::connect(&tool_config(url), reqwest::Client::new(), None)
        .await
        .expect("session")
}

#[tokio::test]
async fn a_2026_07_28_server_is_spoken_to_statelessly_with_metadata_on_every_request() {
    let server = ModernMcp::start().await;
    let session = session(&server.url()).await;
    assert!(session.is_modern());
    assert_eq!(session.protocol_version(), "2026-07-28");
    assert_eq!(session.server_info().server_info["name"], "modern-test");
    assert_eq!(session.session_id(), None);
    let tools = session.list_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 2);
    let echoed = session
        .call_tool("echo", json!({"text": "hi"}))
        .await
        .expect("echo");
    assert_eq!(echoed.text(), "hi");

    let seen = server.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["server/discover", "tools/list", "tools/call"]);
    for s in &seen {
        assert_eq!(s.protocol_version.as_deref(), Some("2026-07-28"), "{s:?}");
        assert_eq!(s.mcp_method.as_deref(), Some(s.method.as_str()), "{s:?}");
        assert_eq!(s.session_id, None, "{s:?}");
        let meta = &s.body["params"]["_meta"];
        assert_eq!(
            meta["io.modelcontextprotocol/clientCapabilities"],
            json!({"elicitation": {"url": {}}}),
            "URL mode only: amesh has no form UI"
        );
        assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "amesh");
    }
    assert_eq!(seen[2].mcp_name.as_deref(), Some("echo"));
}

/// The probe is the first request a server sees, so its 401 must start the
/// authorization, as `initialize`'s did, not pass for a legacy server.
/// (The handshake fallback itself is proven against the MCP TypeScript SDK
/// and the fake server in `mcp/tests`.)
#[tokio::test]
async fn a_401_to_the_probe_asks_for_authorization_instead_of_falling_back() {
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider");
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "id": "demo",
        "connection_params": {"type": "streamable-http", "url": demo.mcp_url().as_str(), "timeout": 10},
    }))
    .unwrap();
    let err = Session::connect(&cfg, reqwest::Client::new(), None)
        .await
        .expect_err("no token");
    assert!(
        matches!(
            &err,
            McpError::Unauthorized {
                www_authenticate: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn url_elicitation_is_retried_with_the_request_state_and_a_wrong_state_is_refused() {
    let server = ModernMcp::start().await;
    let session = session(&server.url()).await;
    let input = match session.call_tool("connect_account", json!({})).await {
        Err(McpError::InputRequired { input, .. }) => input,
        other => panic!("expected InputRequired, got {other:?}"),
    };
    let page = &input.elicitations[0];
    assert_eq!(page.key, "account");
    assert_eq!(page.message, "Connect your account at the provider");
    assert!(page.url.starts_with("http://127.0.0.1:"), "{}", page.url);

    // A forged state is refused by the server; so is an answer without one.
    let mut forged = input.answer(ElicitAction::Accept);
    forged.request_state = Some("state:forged".to_owned().into());
    let refused = session
        .call_tool_with("connect_account", json!({}), Some(&forged))
        .await;
    assert!(
        matches!(&refused, Err(McpError::Rpc { code: -32602, message, .. }) if message.contains("invalid requestState")),
        "{refused:?}"
    );
    let mut stateless = input.answer(ElicitAction::Accept);
    stateless.request_state = None;
    let refused = session
        .call_tool_with("connect_account", json!({}), Some(&stateless))
        .await;
    assert!(
        matches!(&refused, Err(McpError::Rpc { code: -32602, .. })),
        "{refused:?}"
    );

    // Not yet at the page: the server asks again.
    let again = session
        .call_tool_with(
            "connect_account",
            json!({}),
            Some(&input.answer(ElicitAction::Accept)),
        )
        .await;
    assert!(
        matches!(again, Err(McpError::InputRequired { .. })),
        "{again:?}"
    );

    // The user opens the page, then the retry finishes.
    let visit = reqwest::get(&page.url).await.expect("page");
    assert_eq!(visit.status(), 200);
    let done = session
        .call_tool_with(
            "connect_account",
            json!({}),
            Some(&input.answer(ElicitAction::Accept)),
        )
        .await
        .expect("retried call");
    assert!(done.text().starts_with("connected "), "{}", done.text());
    let last = server.tool_calls().pop().unwrap();
    assert_eq!(
        last.body["params"]["inputResponses"],
        json!({"account": {"action": "accept"}})
    );
    assert!(
        last.body["params"]["requestState"]
            .as_str()
            .unwrap()
            .starts_with("state:")
    );
}

#[tokio::test]
async fn a_javascript_elicitation_url_never_reaches_the_caller() {
    let server = ModernMcp::start().await;
    server.send_page_url("javascript:fetch('/api/v1/auth/me')");
    let session = session(&server.url()).await;
    let err = session
        .call_tool("connect_account", json!({}))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, McpError::Protocol { message, .. } if message.contains("scheme `javascript`")),
        "{err:?}"
    );
}

// ---- end to end: gateway, Mosquitto, agent with a scripted model ----

const USERS: &[(&str, &str)] = &[("gateway", "gw-pass"), ("agent", "agent-pass")];

struct World {
    _mq: MosquittoBroker,
    model: ScriptedModel,
    server: ModernMcp,
    gw: Stack,
    _agent: Stack,
    _data: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
        let model = ScriptedModel::start(Protocol::OpenAi).await;
        let server = ModernMcp::start().await;
        let gw = Stack::start(&format!(
            r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      port: 0
      frontend_use_authorization: true
      session_secret_key: test-session-key
      users:
        - {{id: alice, token: alice-token}}
        - {{id: bob, token: bob-token}}
      trust_manager: {{card_publish_interval_seconds: 1}}
"#,
            url = mq.url()
        ))
        .await
        .expect("gateway");
        let data = tempfile::tempdir().unwrap();
        let agent = Stack::start(&format!(
            r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: keeper
      agent_card_publishing: {{interval_seconds: 1}}
      agent_secret_file: "{data}/agent.secret"
      session_service: {{type: sql, database_url: "sqlite:///{data}/agent.db"}}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      model: {{model: openai/test-model, api_base: "{model}", api_key: sk-test-key, timeout: 5, max_retries: 1}}
      tools:
        - tool_type: mcp
          id: accounts
          connection_params: {{type: streamable-http, url: "{mcp}"}}
"#,
            url = mq.url(),
            data = data.path().display(),
            model = model.base_url(),
            mcp = server.url(),
        ))
        .await
        .expect("agent");
        gw.wait_for_agent_as("keeper", Duration::from_secs(10), Some("alice-token"))
            .await
            .unwrap();
        World {
            _mq: mq,
            model,
            server,
            gw,
            _agent: agent,
            _data: data,
        }
    }

    async fn ask(&self, text: &str) -> SseReader {
        let resp = self
            .gw
            .http
            .post(format!("{}/api/v1/message:stream", self.gw.url()))
            .bearer_auth("alice-token")
            .json(&json!({"agent_name": "keeper", "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        SseReader::new(resp)
    }

    /// `POST /api/v1/tasks/{task}:{action}` as the token's user.
    async fn task_action(
        &self,
        token: &str,
        task: &str,
        action: &str,
        body: Value,
    ) -> reqwest::Response {
        self.gw
            .http
            .post(format!("{}/api/v1/tasks/{task}:{action}", self.gw.url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

async fn next(events: &mut SseReader) -> Option<SseEvent> {
    tokio::time::timeout(Duration::from_secs(30), events.next_event())
        .await
        .expect("an event in time")
        .unwrap()
}

/// Reads events up to the `input-required` status; returns the task id and
/// the page's data part.
async fn until_page(events: &mut SseReader) -> (String, Value) {
    loop {
        let ev = next(events).await.expect("stream open");
        assert!(
            ev.event != "task" && ev.event != "error",
            "ended without a page: {ev:?}"
        );
        if ev.event == "status" && ev.data["status"]["state"] == "input-required" {
            let parts = ev.data["status"]["message"]["parts"].as_array().unwrap();
            let page = parts
                .iter()
                .find(|p| p["data"]["type"] == "url_elicitation_required")
                .map(|p| p["data"].clone())
                .expect("a page part");
            let task = ev.data["taskId"].as_str().unwrap().to_owned();
            return (task, page);
        }
    }
}

async fn rest(events: &mut SseReader) -> Vec<SseEvent> {
    let mut out = Vec::new();
    while let Some(ev) = next(events).await {
        out.push(ev);
    }
    out
}

fn final_task(events: &[SseEvent]) -> &Value {
    &events
        .iter()
        .rev()
        .find(|e| e.event == "task")
        .unwrap_or_else(|| panic!("no final task in {events:?}"))
        .data
}

/// The tool results the model read in its last request.
fn tool_results(model: &ScriptedModel) -> Vec<String> {
    let requests = model.requests();
    requests.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_tool_that_needs_a_page_pauses_the_task_and_the_same_call_finishes_after_done() {
    let w = World::start().await;
    w.model
        .push(Turn::tool_calls([("connect_account", json!({}))]));
    w.model.push(Turn::text("your account is connected"));
    let mut events = w.ask("connect my account").await;
    let (task, page) = until_page(&mut events).await;
    assert_eq!(page["message"], "Connect your account at the provider");
    assert_eq!(page["tool"], "connect_account");
    let url = page["elicitation_url"].as_str().unwrap();
    let id = page["elicitation_id"].as_str().unwrap();
    assert!(id.len() >= 32, "{id}");

    // Another user cannot answer for alice.
    let bob = w
        .task_action(
            "bob-token",
            &task,
            "continue",
            json!({"elicitation_id": id, "action": "accept"}),
        )
        .await;
    assert_eq!(bob.status(), 404);

    // Alice opens the page, then says she is done.
    assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
    let done = w
        .task_action(
            "alice-token",
            &task,
            "continue",
            json!({"elicitation_id": id, "action": "accept"}),
        )
        .await;
    assert_eq!(done.status(), 200, "{:?}", done.text().await);
    let after = rest(&mut events).await;
    let finished = final_task(&after);
    assert_eq!(finished["status"]["state"], "completed", "{finished}");
    assert_eq!(
        finished["artifacts"][0]["parts"][0]["text"],
        "your account is connected"
    );
    let results = tool_results(&w.model);
    assert!(
        results.last().unwrap().starts_with("connected "),
        "{results:?}"
    );
    // Two calls of the tool: the first, and its retry with the state.
    let calls = w.server.tool_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].body["params"].get("requestState").is_none());
    assert!(
        calls[1].body["params"]["requestState"]
            .as_str()
            .unwrap()
            .starts_with("state:")
    );
    assert_eq!(
        w.model.request_count(),
        2,
        "the model is not asked again from scratch"
    );

    // The id was for one answer only.
    let replay = w
        .task_action(
            "alice-token",
            &task,
            "continue",
            json!({"elicitation_id": id, "action": "accept"}),
        )
        .await;
    assert_eq!(replay.status(), 400);
}

#[tokio::test]
async fn a_task_waiting_for_a_page_can_be_canceled_and_a_late_done_resumes_nothing() {
    let w = World::start().await;
    w.model
        .push(Turn::tool_calls([("connect_account", json!({}))]));
    let mut events = w.ask("connect my account").await;
    let (task, page) = until_page(&mut events).await;
    let canceled = w
        .task_action("alice-token", &task, "cancel", json!({}))
        .await;
    assert_eq!(canceled.status(), 200);
    let after = rest(&mut events).await;
    assert_eq!(final_task(&after)["status"]["state"], "canceled");
    let late = w
        .task_action(
            "alice-token",
            &task,
            "continue",
            json!({"elicitation_id": page["elicitation_id"], "action": "accept"}),
        )
        .await;
    assert_eq!(late.status(), 200);
    let said = late.text().await.unwrap();
    assert!(said.contains("task_ended"), "{said}");
    assert_eq!(w.server.tool_calls().len(), 1, "the call is not retried");
    assert_eq!(w.model.request_count(), 1);
}

#[tokio::test]
async fn a_declined_page_goes_back_to_the_model_as_the_tools_answer() {
    let w = World::start().await;
    w.model
        .push(Turn::tool_calls([("connect_account", json!({}))]));
    w.model.push(Turn::text("ok, not connected"));
    let mut events = w.ask("connect my account").await;
    let (task, page) = until_page(&mut events).await;
    let declined = w
        .task_action(
            "alice-token",
            &task,
            "continue",
            json!({"elicitation_id": page["elicitation_id"], "action": "decline"}),
        )
        .await;
    assert_eq!(declined.status(), 200);
    let after = rest(&mut events).await;
    assert_eq!(final_task(&after)["status"]["state"], "completed");
    let results = tool_results(&w.model);
    assert!(
        results.last().unwrap().contains("the user chose decline"),
        "{results:?}"
    );
    let calls = w.server.tool_calls();
    assert_eq!(
        calls[1].body["params"]["inputResponses"],
        json!({"account": {"action": "decline"}})
    );
}

#[tokio::test]
async fn a_javascript_page_is_refused_and_the_model_reads_why() {
    let w = World::start().await;
    w.server
        .send_page_url("javascript:fetch('/api/v1/auth/me')");
    w.model
        .push(Turn::tool_calls([("connect_account", json!({}))]));
    w.model.push(Turn::text("that tool is broken"));
    let events = rest(&mut w.ask("connect my account").await).await;
    assert!(
        events
            .iter()
            .all(|e| e.data["status"]["state"] != "input-required"),
        "no page shown: {events:?}"
    );
    assert!(
        !serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>())
            .unwrap()
            .contains("javascript:"),
        "the link never reaches the browser"
    );
    assert_eq!(final_task(&events)["status"]["state"], "completed");
    let results = tool_results(&w.model);
    assert!(
        results.last().unwrap().contains("scheme `javascript`"),
        "{results:?}"
    );
}
