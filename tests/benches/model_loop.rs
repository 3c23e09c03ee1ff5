//! The reasoning loop's cost: `POST /api/v1/message:stream` to the final
//! event, through a real Mosquitto, for an agent whose model is a local
//! fake that answers at once, beside the same request to an agent without
//! a model; and a task with one MCP tool call (the demo provider, a warm
//! credential) between two model turns.
//!
//! Run: `cargo bench -p amesh-tests --bench model_loop`. Prints a table.

#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::{Duration, Instant};

use amesh_demo::{DemoOptions, DemoProvider, consent_as};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::session_cookie;
use amesh_tests::stack::{SseReader, Stack};
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

const NS: &str = "bench/loop";
const USERS: &[(&str, &str)] = &[("gateway", "pw"), ("agent", "pw")];
const SEQUENTIAL: usize = 1000;
const WARMUP: usize = 100;
const CONCURRENCY: usize = 64;
const CONCURRENT_TOTAL: usize = 12_800;

/// A model that answers at once: a tool call to `demo_echo` when asked
/// "use the tool" (and no tool result is in yet), else fixed text. The
/// whole SSE body is written in one go.
async fn fake_model(body: axum::Json<Value>) -> impl IntoResponse {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    let wants_tool = last["role"] == "user"
        && last["content"]
            .as_str()
            .unwrap_or("")
            .contains("use the tool");
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut out = chunk(json!({"role": "assistant"}), Value::Null);
    if wants_tool {
        out.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "demo_echo", "arguments": "{\"text\":\"hi\"}"}}]}),
            Value::Null,
        ));
        out.push_str(&chunk(json!({}), json!("tool_calls")));
    } else {
        out.push_str(&chunk(json!({"content": "fixed answer"}), Value::Null));
        out.push_str(&chunk(json!({}), json!("stop")));
    }
    out.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], out)
}

async fn start_fake_model() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/chat/completions", post(fake_model));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn yaml(mq: &MosquittoBroker, model: &str, demo_mcp: &str, data: &std::path::Path) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: pw}}
    app_config:
      namespace: {NS}
      port: 0
      frontend_use_authorization: true
      session_secret_key: bench-session-key
      users: [{{id: alice, token: alice-token}}]
      # One bench user drives 64 concurrent streams.
      limits: {{max_streams_per_user: 1000, max_running_tasks_per_user: 1000}}
  - name: thinker
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: pw}}
    app_config:
      namespace: {NS}
      agent_name: thinker
      model: {{model: openai/fake, api_base: "{model}", api_key: k}}
      session_service: {{type: sql, database_url: "sqlite:///{data}/a.db", default_behavior: RUN_BASED}}
      agent_secret_file: "{data}/a.secret"
      oauth_tool_redirect_uri: "http://127.0.0.1:1/api/v1/auth/tool/callback"
      tools:
        - tool_type: mcp
          id: demo
          connection_params: {{type: streamable-http, url: "{demo_mcp}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: demo_
          manifest:
            - name: echo
              description: Echoes text.
              inputSchema: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
  - name: plain
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: pw}}
    app_config:
      namespace: {NS}
      agent_name: plain
"#,
        url = mq.url(),
        data = data.display(),
    )
}

/// One streamed request to its final event; returns the final task.
async fn stream(http: &reqwest::Client, url: &str, agent: &str, text: &str) -> Value {
    let resp = http
        .post(url)
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": agent, "text": text}))
        .send()
        .await
        .expect("http");
    let mut events = SseReader::new(resp);
    while let Some(ev) = events.next_event().await.expect("sse") {
        if ev.event == "task" {
            return ev.data;
        }
    }
    panic!("stream ended without a task")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

async fn sequential(
    http: &reqwest::Client,
    url: &str,
    agent: &str,
    text: &str,
) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for i in 0..(WARMUP + SEQUENTIAL) {
        let t0 = Instant::now();
        let task = stream(http, url, agent, text).await;
        assert_eq!(task["status"]["state"], "completed", "{task}");
        if i >= WARMUP {
            samples.push(t0.elapsed());
        }
    }
    samples.sort();
    (pct(&samples, 0.5), pct(&samples, 0.99))
}

async fn concurrent(
    http: &reqwest::Client,
    url: &str,
    agent: &str,
    text: &str,
) -> (Duration, Duration, f64, usize) {
    let url = Arc::new(url.to_owned());
    let per = CONCURRENT_TOTAL / CONCURRENCY;
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, url, agent, text) =
            (http.clone(), url.clone(), agent.to_owned(), text.to_owned());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut failed = 0;
            for _ in 0..per {
                let s = Instant::now();
                let task = stream(&http, &url, &agent, &text).await;
                if task["status"]["state"] != "completed" {
                    failed += 1;
                }
                lat.push(s.elapsed());
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.await.expect("worker");
        lat.extend(l);
        failed += f;
    }
    let rate = (per * CONCURRENCY) as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99), rate, failed)
}

/// RSS of an agent process (the amesh binary, release if built) with the
/// fake model, after 10,000 tasks through the bench's gateway.
async fn agent_rss(
    mq: &MosquittoBroker,
    model: &str,
    http: &reqwest::Client,
    url: &str,
    dir: &std::path::Path,
    extra: &str,
) -> (String, String, String, String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = root.join("target/release/amesh");
    let bin = if release.exists() {
        release
    } else {
        root.join("target/debug/amesh")
    };
    let name = if extra.is_empty() {
        "agent RSS after 10,000 model tasks".to_owned()
    } else {
        format!(
            "agent RSS after 10,000 model tasks, {}",
            extra.trim_end_matches(',')
        )
    };
    if !bin.exists() {
        return (
            name,
            "-".into(),
            "-".into(),
            "-".into(),
            "no amesh binary built".into(),
        );
    }
    let cfg = dir.join("rss.yaml");
    let yaml = format!(
        "apps:\n  - name: rss\n    app_module: agent\n    broker: {{broker_url: \"{}\", broker_username: agent, broker_password: pw}}\n    app_config: {{namespace: {NS}, agent_name: rss, {extra} model: {{model: openai/fake, api_base: \"{model}\", api_key: k}}}}\n",
        mq.url()
    );
    std::fs::write(&cfg, yaml).unwrap();
    let mut child = std::process::Command::new(&bin)
        .arg("run")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn amesh");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kb(child.id());
    let tasks = 10_000;
    let per = tasks / CONCURRENCY;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, url) = (http.clone(), url.to_owned());
        workers.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..per {
                if stream(&http, &url, "rss", "hello").await["status"]["state"] == "completed" {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for w in workers {
        ok += w.await.unwrap_or(0);
    }
    let after = rss_kb(child.id());
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let mb =
        |kb: Option<u64>| kb.map_or("?".to_owned(), |kb| format!("{:.1} MB", kb as f64 / 1024.0));
    let which = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        name,
        "-".into(),
        "-".into(),
        "-".into(),
        format!(
            "{} after {} completed tasks ({} idle), {which} binary",
            mb(after),
            ok,
            mb(before)
        ),
    )
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let acl: String = USERS
        .iter()
        .map(|(u, _)| format!("user {u}\ntopic readwrite {NS}/#\n"))
        .collect();
    let mq = MosquittoBroker::start_with(USERS, &acl, "max_queued_messages 100000\n")
        .expect("mosquitto");
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo");
    let model = start_fake_model().await;
    let data = tempfile::tempdir().unwrap();
    let stack = Stack::start(&yaml(&mq, &model, demo.mcp_url().as_str(), data.path()))
        .await
        .expect("stack");
    for agent in ["thinker", "plain"] {
        stack
            .wait_for_agent_as(agent, Duration::from_secs(10), Some("alice-token"))
            .await
            .expect("agent up");
    }
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/message:stream", stack.url());

    // Authorize alice once, so the tool rows run with a warm credential.
    let resp = http
        .post(&url)
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "thinker", "text": "use the tool"}))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(resp);
    while let Some(ev) = events.next_event().await.unwrap() {
        if ev.event == "status" && ev.data["status"]["state"] == "auth-required" {
            let parts = ev.data["status"]["message"]["parts"]
                .as_array()
                .unwrap()
                .clone();
            let auth: url::Url = parts
                .iter()
                .find_map(|p| p["data"]["authorization_url"].as_str())
                .unwrap()
                .parse()
                .unwrap();
            let mut callback = consent_as(&auth, "alice", true).await.unwrap();
            // The configured redirect points nowhere; send it to this gateway.
            callback
                .set_port(Some(
                    stack.url().rsplit(':').next().unwrap().parse().unwrap(),
                ))
                .unwrap();
            let cookie = session_cookie(&stack, "alice-token").await.unwrap();
            let page = http
                .get(callback)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200);
        }
        if ev.event == "task" {
            assert_eq!(ev.data["status"]["state"], "completed", "{}", ev.data);
            break;
        }
    }

    let mut rows: Vec<(String, String, String, String, String)> = Vec::new();
    let (p50_plain, p99) = sequential(&http, &url, "plain", "hello").await;
    rows.push((
        "agent without a model (echo)".into(),
        ms(p50_plain),
        ms(p99),
        "-".into(),
        "1 at a time".into(),
    ));
    let (p50_model, p99) = sequential(&http, &url, "thinker", "hello").await;
    rows.push((
        "agent with a model (fake, answers at once)".into(),
        ms(p50_model),
        ms(p99),
        "-".into(),
        "1 at a time".into(),
    ));
    let (p50_tool, p99) = sequential(&http, &url, "thinker", "use the tool").await;
    rows.push((
        "model -> MCP tool (warm credential) -> model".into(),
        ms(p50_tool),
        ms(p99),
        "-".into(),
        "1 at a time; demo provider over HTTP".into(),
    ));
    let (p50, p99, rate, failed) = concurrent(&http, &url, "plain", "hello").await;
    rows.push((
        format!("agent without a model, {CONCURRENCY} concurrent"),
        ms(p50),
        ms(p99),
        format!("{rate:.0}"),
        format!("{CONCURRENT_TOTAL} tasks, {failed} failed"),
    ));
    let (p50, p99, rate, failed) = concurrent(&http, &url, "thinker", "hello").await;
    rows.push((
        format!("agent with a model, {CONCURRENCY} concurrent"),
        ms(p50),
        ms(p99),
        format!("{rate:.0}"),
        format!("{CONCURRENT_TOTAL} tasks, {failed} failed"),
    ));
    rows.push(agent_rss(&mq, &model, &http, &url, data.path(), "").await);
    rows.push(
        agent_rss(
            &mq,
            &model,
            &http,
            &url,
            data.path(),
            "session_service: {type: memory, default_behavior: RUN_BASED},",
        )
        .await,
    );
    rows.push(agent_rss(&mq, &model, &http, &url, data.path(), "session_service: {type: memory, default_behavior: RUN_BASED}, limits: {finished_tasks_max_bytes: 65536},").await);

    println!(
        "\n| measurement (POST message:stream to the final event) | p50 ms | p99 ms | tasks/s | notes |\n|---|---|---|---|---|"
    );
    for (name, p50, p99, rate, note) in &rows {
        println!("| {name} | {p50} | {p99} | {rate} | {note} |");
    }
    println!(
        "\nadded by the model loop (p50, model vs no model): {:.3} ms",
        (p50_model.as_secs_f64() - p50_plain.as_secs_f64()) * 1000.0
    );
    drop(demo);
}
