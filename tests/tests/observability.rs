//! What an operator watches, over real sockets: the Prometheus `/metrics`
//! of a real gateway and agent (Mosquitto between them, a scripted model
//! behind the agent) after real traffic, and `amesh run`'s JSON log lines.
//!
//! The metrics registry is per process, and tests in this binary run in
//! parallel: each test uses its own agent and gateway names, so the series
//! it asserts are its own.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_runtime::a2a::jsonrpc::UNAUTHENTICATED;
use amesh_runtime::broker::UserProperties;
use amesh_tests::model_server::{Protocol, ScriptedModel, Turn};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::call_authorizing;
use amesh_tests::raw::{RawClient, tool_request};
use amesh_tests::stack::Stack;
use serde_json::{Value, json};

const NS: &str = "obs/ns";
const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("agent", "agent-pass"),
    ("tester", "tester-pass"),
];

fn yaml(mq: &MosquittoBroker, model: &ScriptedModel) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: obs-gw
      port: 0
      frontend_use_authorization: true
      session_secret_key: test-session-key
      users:
        - {{id: alice, token: alice-token}}
      trust_manager: {{card_publish_interval_seconds: 1}}
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: watched
      agent_card_publishing: {{interval_seconds: 1}}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      model: {{model: openai/obs-model, api_base: "{model}", api_key: sk-test-key, timeout: 5, max_retries: 0}}
      metrics: {{port: 0}}
"#,
        url = mq.url(),
        model = model.base_url(),
    )
}

/// `GET url`, the body as text (and the content type checked).
async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let resp = http.get(url).send().await.expect("scrape");
    assert_eq!(resp.status(), 200, "{url}");
    let kind = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    resp.text().await.expect("body")
}

/// The value of the sample whose line starts with `series` (0 if absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn gateway_and_agent_metrics_count_a_task_a_model_call_a_trust_denial_and_a_reconnect() {
    let mut mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    model.push(Turn::text("metrics are fine"));
    let mut stack = Stack::start(&yaml(&mq, &model)).await.expect("stack");
    stack
        .wait_for_agent_as("watched", Duration::from_secs(10), Some("alice-token"))
        .await
        .expect("agent discovered");
    let running = stack.running.as_ref().expect("running");
    let agent_metrics = format!(
        "http://{}/metrics",
        running.agents[0]
            .metrics_addr()
            .expect("metrics: {port: 0} serves")
    );
    let gateway_metrics = format!("{}/metrics", stack.url());

    // One task through gateway, broker, agent and model.
    let resp = stack
        .http
        .post(format!("{}/api/v1/message:send", stack.url()))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "watched", "text": "how are the metrics?"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.expect("json");
    assert_eq!(task["status"]["state"], "completed", "{task}");

    // A request with no identity token: the strict agent refuses it.
    let tester = mq.broker_config("tester", "tester-pass");
    let mut raw = RawClient::connect(&tester, "obs-raw", NS)
        .await
        .expect("raw");
    let refused = raw
        .request(
            "watched",
            tool_request("r1", "echo", json!({"text": "x"})),
            UserProperties::new(),
        )
        .await
        .expect("answer");
    assert_eq!(refused["error"]["code"], UNAUTHENTICATED, "{refused}");
    raw.disconnect().await;

    let gw = scrape(&stack.http, &gateway_metrics).await;
    assert_eq!(
        sample(
            &gw,
            r#"amesh_gateway_requests_total{gateway="obs-gw",agent="watched",method="message/send",state="completed"}"#
        ),
        1.0,
        "{gw}"
    );
    assert_eq!(
        sample(
            &gw,
            r#"amesh_gateway_round_trip_seconds_count{gateway="obs-gw",agent="watched"}"#
        ),
        1.0,
        "{gw}"
    );
    let agent = scrape(&stack.http, &agent_metrics).await;
    assert_eq!(
        sample(
            &agent,
            r#"amesh_agent_tasks_total{agent="watched",state="completed"}"#
        ),
        1.0,
        "{agent}"
    );
    assert_eq!(
        sample(
            &agent,
            r#"amesh_model_call_seconds_count{model="obs-model",outcome="ok"}"#
        ),
        1.0,
        "{agent}"
    );
    assert_eq!(
        sample(
            &agent,
            r#"amesh_trust_denials_total{component="agent",reason="missing_token",mode="strict"}"#
        ),
        1.0,
        "{agent}"
    );

    // The broker restarts: both clients reconnect, and say so.
    mq.restart().expect("restart");
    let reconnects = r#"amesh_broker_reconnects_total{client_id="agent-agent"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let agent = scrape(&stack.http, &agent_metrics).await;
        if sample(&agent, reconnects) >= 1.0 {
            assert!(
                sample(
                    &agent,
                    r#"amesh_broker_reconnects_total{client_id="gateway-gw"}"#
                ) >= 1.0,
                "{agent}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no reconnect counted: {agent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.stop().await;
}

/// A gateway and an agent whose one MCP tool needs each user's OAuth grant.
fn oauth_yaml(mq: &MosquittoBroker, demo: &DemoHandle, data: &std::path::Path) -> String {
    format!(
        r#"apps:
  - name: gw2
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: obs-gw2
      port: {port}
      frontend_use_authorization: true
      session_secret_key: test-session-key
      users:
        - {{id: alice, token: alice-token}}
      trust_manager: {{card_publish_interval_seconds: 1}}
  - name: agent2
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: keyed
      agent_card_publishing: {{interval_seconds: 1}}
      agent_secret_file: "{data}/agent.secret"
      session_service: {{type: sql, database_url: "sqlite:///{data}/agent.db"}}
      oauth_tool_redirect_uri: "http://127.0.0.1:{port}/api/v1/auth/tool/callback"
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      metrics: {{port: 0}}
      tools:
        - tool_type: mcp
          id: demo-http
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: http_
          manifest:
            - name: whoami
              description: Who the demo provider says you are.
              inputSchema: {{type: object, properties: {{}}, additionalProperties: false}}
"#,
        url = mq.url(),
        port = free_port(),
        data = data.display(),
        mcp = demo.mcp_url(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn agent_metrics_count_an_authorization_prompt_its_grant_and_the_mcp_calls() {
    let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider");
    let data = tempfile::tempdir().expect("dir");
    let mut stack = Stack::start(&oauth_yaml(&mq, &demo, data.path()))
        .await
        .expect("stack");
    stack
        .wait_for_agent_as("keyed", Duration::from_secs(10), Some("alice-token"))
        .await
        .expect("agent discovered");
    let running = stack.running.as_ref().expect("running");
    let agent_metrics = format!(
        "http://{}/metrics",
        running.agents[0].metrics_addr().expect("metrics")
    );

    let task = call_authorizing(&stack, "alice-token", "alice", "keyed", "http_whoami")
        .await
        .expect("authorized call");
    assert_eq!(task["status"]["state"], "completed", "{task}");

    let text = scrape(&stack.http, &agent_metrics).await;
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), value, "{series} in\n{text}");
    };
    expect(
        r#"amesh_authorization_prompts_total{agent="keyed",tool="demo-http"}"#,
        1.0,
    );
    expect(
        r#"amesh_authorization_callbacks_total{agent="keyed",state="granted"}"#,
        1.0,
    );
    expect(
        r#"amesh_mcp_call_seconds_count{agent="keyed",tool="demo-http",outcome="auth_required"}"#,
        1.0,
    );
    expect(
        r#"amesh_mcp_call_seconds_count{agent="keyed",tool="demo-http",outcome="ok"}"#,
        1.0,
    );
    expect(
        r#"amesh_agent_tasks_total{agent="keyed",state="completed"}"#,
        1.0,
    );
    for op in ["start_flow", "take_flow", "put", "get"] {
        let series =
            format!(r#"amesh_credential_store_seconds_count{{operation="{op}",outcome="ok"}}"#);
        assert!(sample(&text, &series) >= 1.0, "{series} in\n{text}");
    }
    stack.stop().await;

    // The same grant in the audit trail, as an operator exports it for a SIEM.
    let out = Command::new(amesh_tests::amesh_bin::amesh())
        .args(["credentials", "audit", "export"])
        .arg(stack.dir.path().join("apps.yaml"))
        .args(["--agent", "keyed", "--since", "1h"])
        .output()
        .expect("amesh credentials audit export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"acquired"), "{stdout}");
    assert!(kinds.contains(&"used"), "{stdout}");
    assert!(
        events.iter().all(|e| e["agent_id"] == "keyed"
            && e["user_id"] == "alice"
            && e["tool_id"] == "demo-http"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("access_token"),
        "no token material: {stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("exported {} event(s)", events.len())),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn amesh_run_writes_json_log_lines_when_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        "apps:\n  - name: gw\n    app_module: gateway\n    broker: {dev_mode: true}\n    app_config: {namespace: obs/json, port: 0}\n",
    )
    .expect("config");
    let mut child = Command::new(amesh_tests::amesh_bin::amesh())
        .args(["run"])
        .arg(&config)
        .env("AMESH_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("amesh run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let ready = line.contains("amesh ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    child.kill().ok();
    child.wait().ok();
    assert!(!lines.is_empty(), "amesh run printed nothing");
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    let ready: Value = serde_json::from_str(lines.last().expect("a line")).expect("json");
    assert_eq!(ready["message"], "amesh ready", "{ready}");
    assert_eq!(ready["level"], "INFO");
    assert!(
        ready["ready_ms"].is_number(),
        "fields at the top level: {ready}"
    );
}
