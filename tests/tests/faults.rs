#![recursion_limit = "256"]

//! Faults, each under load where it matters, each printing its figures
//! (sent, completed, failed with the reason) and asserting that nothing is
//! lost without a word: every request ends, within a bound, either
//! answered or failed with a reason a person understands.
//!
//! - Mosquitto restarted under load (no persistence: every session lost);
//!   a request for an agent that is away waits in its broker session, or,
//!   once no session is left, fails: at once with 503 when the broker
//!   sent the will of its last session, after the gateway's silence limit
//!   when the broker itself lost every session (restart without
//!   persistence) and so sent no will.
//! - A private PostgreSQL cluster (never the machine's shared one) stopped
//!   and started under load: credential calls fail clearly, then recover.
//! - An agent killed with SIGKILL while its task waits for authorization
//!   (the task resumes on the restarted agent) and in the middle of a
//!   model stream (the user gets a failure, not silence).
//! - An MCP provider answering 5xx, never answering, or streaming slowly.
//! - Slow SSE consumers at the gateway.
//!
//! The credential database made unreachable (not restarted) is
//! `store_outage.rs`; a plain broker reconnect is `broker.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use amesh_demo::{DemoOptions, DemoProvider, consent_as};
use amesh_runtime::a2a::liveness;
use amesh_tests::amesh_bin::workspace_root;
use amesh_tests::amesh_run::{AmeshRun, free_port, wait_listed};
use amesh_tests::doc_table::anchored_rows;
use amesh_tests::faulty_mcp::FaultyMcp;
use amesh_tests::model_server::{Protocol, ScriptedModel, Turn};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::{answer, call_authorizing, session_cookie};
use amesh_tests::pg_cluster::PgCluster;
use amesh_tests::stack::{SseReader, Stack};
use serde_json::{Value, json};

const NS: &str = "faults/ns";
const BROKER_USERS: &[(&str, &str)] = &[("gateway", "gw-pass"), ("agent", "agent-pass")];
/// Users of the gateway: `{name}-token` signs each in.
const USERS: &[&str] = &["alice", "bob", "carol", "dave", "slow1", "slow2", "slow3"];
/// No request of these tests may take longer than this to end, one way
/// or the other: past it the request counts as lost without a word.
const ANSWER_WITHIN: Duration = Duration::from_secs(40);
/// How long the gateway waits without a word about a running task.
const SILENCE_LIMIT: Duration = Duration::from_secs(
    liveness::HEARTBEAT_INTERVAL.as_secs() * liveness::MISSED_HEARTBEATS as u64,
);

fn broker() -> MosquittoBroker {
    MosquittoBroker::for_namespace(BROKER_USERS, NS).expect("mosquitto")
}

/// A gateway app on `mq`; `extra` is added to its `app_config` (indented
/// six spaces), `port` 0 for any.
fn gateway_yaml(mq: &MosquittoBroker, port: u16, extra: &str) -> String {
    let users: String = USERS
        .iter()
        .map(|u| format!("        - {{id: {u}, token: {u}-token}}\n"))
        .collect();
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      port: {port}
      frontend_use_authorization: true
      session_secret_key: faults-session-key
      request_timeout_seconds: 60
      agent_card_ttl_seconds: 120
      trust_manager: {{card_publish_interval_seconds: 1}}
{extra}      users:
{users}"#,
        url = mq.url()
    )
}

/// An agent app `tools` on `mq`: `extra` lines go into its `app_config`
/// (indented six spaces) before `tools:`, `tools` lines after it.
fn agent_yaml(mq: &MosquittoBroker, extra: &str, tools: &str) -> String {
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: tools
      agent_card_publishing: {{interval_seconds: 1}}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
{extra}      tools:
        - {{tool_type: builtin, tool_name: echo}}
        - {{tool_type: builtin, tool_name: sleep}}
{tools}"#,
        url = mq.url()
    )
}

/// Asserts that `output` contains every quote of entry `id` of the
/// troubleshooting table in `docs/operations.md` (see `operator_docs.rs`).
fn assert_doc_quotes(id: &str, output: &str) {
    let doc = std::fs::read_to_string(workspace_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    let quotes = anchored_rows(&doc, "Troubleshooting", 2)
        .remove(id)
        .unwrap_or_else(|| panic!("docs/operations.md has no troubleshooting entry {id}"));
    assert!(!quotes.is_empty(), "entry {id} quotes nothing");
    for quote in &quotes {
        assert!(
            output.contains(quote.as_str()),
            "docs/operations.md, entry {id}, quotes\n  {quote}\nbut amesh printed:\n{output}"
        );
    }
}

/// The gateway as its own `amesh run` process (so its log can be read as
/// an operator reads it) and its base URL, once `tools` is listed there.
async fn gateway_process(mq: &MosquittoBroker, extra: &str) -> (AmeshRun, String) {
    let port = free_port();
    let mut gw = AmeshRun::start(&gateway_yaml(mq, port, extra), &[("RUST_LOG", "info")]);
    gw.wait_for("gateway listening");
    (gw, format!("http://127.0.0.1:{port}"))
}

/// The last lines of a log, for a failure message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// How one request ended.
#[derive(Debug, Clone)]
enum Outcome {
    Completed(String),
    /// Failed, with the reason the user was given.
    Failed(String),
    /// No end within [`ANSWER_WITHIN`]: what these tests forbid.
    Lost,
}

/// Streams one request as `user` and reads it to its end.
async fn stream(gw_url: &str, user: &str, body: Value) -> Outcome {
    let http = reqwest::Client::new();
    let run = async {
        let resp = http
            .post(format!("{gw_url}/api/v1/message:stream"))
            .bearer_auth(format!("{user}-token"))
            .json(&body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("HTTP request failed: {e}")),
        };
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Outcome::Failed(format!("HTTP {status}: {text}"));
        }
        let mut events = SseReader::new(resp);
        loop {
            match events.next_event().await {
                Ok(Some(ev)) if ev.event == "task" => return task_outcome(&ev.data),
                Ok(Some(ev)) if ev.event == "error" => {
                    return Outcome::Failed(format!(
                        "error event: {}",
                        ev.data["message"].as_str().unwrap_or_default()
                    ));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Outcome::Failed("stream ended without an end".into()),
                Err(e) => return Outcome::Failed(format!("stream broke: {e}")),
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, run)
        .await
        .unwrap_or(Outcome::Lost)
}

fn task_outcome(task: &Value) -> Outcome {
    let state = task["status"]["state"].as_str().unwrap_or_default();
    if state == "completed" {
        Outcome::Completed(answer(task))
    } else {
        Outcome::Failed(format!(
            "task {state}: {}",
            task["status"]["message"]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default()
        ))
    }
}

/// The figures of one test: what was sent and how each ended.
#[derive(Default)]
struct Tally {
    sent: usize,
    completed: usize,
    /// Failures by reason (numbers and ids blanked, so alike ones group).
    failed: BTreeMap<String, usize>,
    lost: usize,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        self.sent += 1;
        match outcome {
            Outcome::Completed(_) => self.completed += 1,
            Outcome::Failed(why) => *self.failed.entry(reason_kind(why)).or_default() += 1,
            Outcome::Lost => self.lost += 1,
        }
    }

    fn failed(&self) -> usize {
        self.failed.values().sum()
    }

    /// Prints the figures and asserts that every request is accounted for.
    fn report(&self, label: &str) {
        eprintln!(
            "{label}: sent {}, completed {}, failed {}, lost without a word {}",
            self.sent,
            self.completed,
            self.failed(),
            self.lost
        );
        for (why, n) in &self.failed {
            eprintln!("  {n:>4} × {why}");
        }
        assert_eq!(
            self.sent,
            self.completed + self.failed() + self.lost,
            "{label}"
        );
        assert_eq!(self.lost, 0, "{label}: requests ended without a word");
    }
}

/// A failure reason with digits and task ids blanked, for grouping.
fn reason_kind(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    let mut last_digit = false;
    for word in why.split_inclusive(' ') {
        if word.starts_with("task-") {
            out.push_str("task-… ");
            continue;
        }
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_digit {
                    out.push('#');
                }
                last_digit = true;
            } else {
                out.push(c);
                last_digit = false;
            }
        }
    }
    out.chars().take(200).collect()
}

/// Runs `workers` loops of `request` until `stop` is set; returns every
/// outcome with the time its request was sent.
fn load<F, Fut>(
    workers: usize,
    stop: Arc<AtomicBool>,
    request: F,
) -> tokio::task::JoinHandle<Vec<(Instant, Outcome)>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    tokio::spawn(async move {
        let mut loops = Vec::new();
        for w in 0..workers {
            let stop = stop.clone();
            let request = request.clone();
            loops.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let sent = Instant::now();
                    let outcome = request(w).await;
                    out.push((sent, outcome));
                    // A user's pace, not a busy loop of instant refusals.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                out
            }));
        }
        let mut all = Vec::new();
        for l in loops {
            all.extend(l.await.expect("worker"));
        }
        all
    })
}

/// A request for the `tools` agent's echo tool.
fn echo(text: &str) -> Value {
    json!({"agent_name": "tools", "data": {"tool": "echo", "arguments": {"text": text}}})
}

/// A request that must succeed now (recovery), retried briefly while the
/// components reconnect.
async fn eventually_completes(gw_url: &str, user: &str, body: Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match stream(gw_url, user, body.clone()).await {
            Outcome::Completed(text) => return text,
            other => assert!(Instant::now() < deadline, "no recovery: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------
// 1. Mosquitto

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_restart_under_load_ends_every_request_with_an_answer_or_a_reason() {
    let mut mq = broker();
    // Separate processes, as deployed (and so a crash names its component).
    let (gw, url) = gateway_process(&mq, "").await;
    let mut agent = AmeshRun::start(&agent_yaml(&mq, "", ""), &[("RUST_LOG", "info")]);
    agent.wait_for("agent ready");
    wait_listed(&url, "alice-token", &["tools"], Duration::from_secs(20)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(8, stop.clone(), {
        let url = url.clone();
        move |w| {
            let url = url.clone();
            async move {
                let user = USERS[w % 4];
                let body = json!({"agent_name": "tools",
                    "data": {"tool": "sleep", "arguments": {"ms": 200}}});
                stream(&url, user, body).await
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Killed (no DISCONNECT to anyone), down a moment, back without the
    // sessions, subscriptions and queued messages it had.
    let restarted = Instant::now();
    mq.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    mq.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Release);
    let outcomes = running.await.expect("load");
    eprintln!(
        "--- gateway:\n{}\n--- agent:\n{}",
        tail(&gw.output()),
        tail(&agent.output())
    );

    let mut tally = Tally::default();
    for (_, outcome) in &outcomes {
        tally.add(outcome);
    }
    tally.report("mosquitto restarted under load");
    for (_, outcome) in &outcomes {
        if let Outcome::Failed(why) = outcome {
            assert!(
                why.contains("not connected to the broker")
                    || why.contains("did not take the task")
                    || why.contains("stopped answering"),
                "a failure a person cannot act on: {why}"
            );
        }
    }
    // Requests sent well after the restart were answered.
    let late_ok = outcomes.iter().any(|(sent, o)| {
        *sent > restarted + Duration::from_secs(2) && matches!(o, Outcome::Completed(_))
    });
    assert!(late_ok, "nothing completed after the restart");
    assert!(tally.completed > 0);
    let after = eventually_completes(
        &url,
        "alice",
        json!({"agent_name": "tools", "data": {"tool": "echo", "arguments": {"text": "after"}}}),
    )
    .await;
    assert_eq!(after, "after");
    for (name, log) in [("gateway", gw.output()), ("agent", agent.output())] {
        assert!(!log.contains("panicked"), "{name}:\n{log}");
    }
}

#[tokio::test]
async fn a_request_for_an_agent_away_waits_in_its_session_or_fails_once_none_is_left() {
    let mut mq = broker();
    let (gw, url) = gateway_process(&mq, "").await;
    let agent_cfg = agent_yaml(&mq, "", "");
    let mut agent = Stack::start(&agent_cfg).await.expect("agent");
    wait_listed(&url, "alice-token", &["tools"], Duration::from_secs(20)).await;
    let mut tally = Tally::default();

    // The agent goes away; its broker session (and shared subscription)
    // stays, so the request waits there and is answered once it is back.
    agent.stop().await;
    let waiting = tokio::spawn({
        let url = url.clone();
        let body = echo("queued");
        async move { stream(&url, "alice", body).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the request did not wait");
    let mut agent = Stack::start(&agent_cfg).await.expect("agent back");
    let queued = waiting.await.unwrap();
    tally.add(&queued);
    assert!(
        matches!(&queued, Outcome::Completed(t) if t == "queued"),
        "{queued:?}"
    );

    // Away again, and the broker restarts without persistence: no session
    // is left to queue in, nobody takes the request, and the gateway says
    // so after the silence limit instead of the request timeout. (Mosquitto
    // would say it at once, PUBACK 0x10, but Paho C hides that reason code.)
    agent.stop().await;
    mq.restart().unwrap();
    let asked = Instant::now();
    let outcome = stream(&url, "alice", echo("nobody there")).await;
    let took = asked.elapsed();
    tally.add(&outcome);
    let Outcome::Failed(why) = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(why.contains("agent tools did not take the task"), "{why}");
    assert!(
        took < SILENCE_LIMIT + Duration::from_secs(10),
        "told after {took:?}"
    );
    eprintln!("  nobody took the request: the user was told after {took:?}");
    assert_doc_quotes("agent-not-connected", &format!("{why}\n{}", gw.output()));

    let mut agent = Stack::start(&agent_cfg).await.expect("agent back again");
    let back = eventually_completes(&url, "alice", echo("back")).await;
    assert_eq!(back, "back");
    tally.add(&Outcome::Completed(back));
    tally.report("agent away");
    agent.stop().await;
}

/// An agent whose broker sessions all ended (stopped for longer than its
/// `session_expiry_seconds`) is refused at once with 503: the broker's
/// will for its replica told the gateway nobody would receive the task
/// (the PUBACK's 0x10 that Paho C does not report). Back, it is answered
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_an_agent_with_no_session_left_fails_at_once_with_503() {
    let mq = broker();
    let (mut gw, url) = gateway_process(&mq, "").await;
    let agent_cfg = agent_yaml(&mq, "", "").replace(
        "broker_password: agent-pass}",
        "broker_password: agent-pass, session_expiry_seconds: 2}",
    );
    assert!(agent_cfg.contains("session_expiry_seconds: 2"));
    let mut agent = Stack::start(&agent_cfg).await.expect("agent");
    wait_listed(&url, "alice-token", &["tools"], Duration::from_secs(20)).await;
    let mut tally = Tally::default();
    let here = stream(&url, "alice", echo("here")).await;
    tally.add(&here);
    assert!(
        matches!(&here, Outcome::Completed(t) if t == "here"),
        "{here:?}"
    );

    // Stopped: its session lasts 2 s, then the broker sends its will.
    agent.stop().await;
    let stopped = Instant::now();
    let log = gw.wait_for("agent has no replica connected");
    eprintln!(
        "  the gateway knew the agent was gone {:?} after it stopped",
        stopped.elapsed()
    );
    let http = reqwest::Client::new();
    let asked = Instant::now();
    let resp = http
        .post(format!("{url}/api/v1/message:stream"))
        .bearer_auth("alice-token")
        .json(&echo("nobody there"))
        .send()
        .await
        .expect("http");
    let took = asked.elapsed();
    assert_eq!(resp.status(), 503);
    let why = resp.text().await.unwrap();
    assert!(why.contains("agent tools is not connected"), "{why}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    eprintln!("  refused in {took:?}: {why}");
    tally.add(&Outcome::Failed(why.clone()));
    assert_doc_quotes("agent-gone", &format!("{why}\n{log}"));

    let mut agent = Stack::start(&agent_cfg).await.expect("agent back");
    let back = eventually_completes(&url, "alice", echo("back")).await;
    assert_eq!(back, "back");
    tally.add(&Outcome::Completed(back));
    tally.report("agent with no session left");
    agent.stop().await;
}

// ---------------------------------------------------------------------------
// 2. PostgreSQL

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_fails_credential_calls_clearly_and_recovers() {
    if !PgCluster::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "initdb not found under CI=true"
        );
        eprintln!("skipping: no PostgreSQL server binaries (initdb)");
        return;
    }
    let mut pg = PgCluster::start().expect("private PostgreSQL");
    let mq = broker();
    let demo = DemoProvider::start(DemoOptions::default()).await.unwrap();
    let gw = Stack::start(&gateway_yaml(&mq, 0, "")).await.expect("gw");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      agent_secret_file: \"{dir}/secret\"\n      session_service: {{type: sql, database_url: \"{db}\"}}\n      oauth_tool_redirect_uri: \"{gw}/api/v1/auth/tool/callback\"\n",
        dir = dir.path().display(),
        db = pg.url(),
        gw = gw.url(),
    );
    let tools = format!(
        r#"        - tool_type: mcp
          id: demo
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          manifest:
            - name: whoami
              description: Who you are.
              inputSchema: {{type: object, properties: {{}}}}
"#,
        mcp = demo.mcp_url()
    );
    let mut agent = Stack::start(&agent_yaml(&mq, &extra, &tools))
        .await
        .expect("agent");
    gw.wait_for_agent_as("tools", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();
    for user in ["alice", "bob"] {
        let task = call_authorizing(&gw, &format!("{user}-token"), user, "tools", "whoami")
            .await
            .unwrap();
        assert_eq!(answer(&task), format!("You are {user}"), "{task}");
    }
    let url = gw.url();
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(6, stop.clone(), {
        let url = url.clone();
        move |w| {
            let url = url.clone();
            async move {
                // Half need the credential store, half do not.
                let (user, data) = match w % 3 {
                    0 => ("alice", json!({"tool": "whoami"})),
                    1 => ("bob", json!({"tool": "whoami"})),
                    _ => (
                        "carol",
                        json!({"tool": "echo", "arguments": {"text": "no store"}}),
                    ),
                };
                stream(&url, user, json!({"agent_name": "tools", "data": data})).await
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down_at = Instant::now();
    pg.stop().unwrap();
    // Longer than the store's 10 s wait for a connection, so calls made
    // meanwhile fail rather than wait it out.
    tokio::time::sleep(Duration::from_secs(12)).await;
    pg.start_again().unwrap();
    let up_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Release);
    let outcomes = running.await.expect("load");

    let mut tally = Tally::default();
    for (_, outcome) in &outcomes {
        tally.add(outcome);
        match outcome {
            Outcome::Failed(why) => {
                assert!(
                    why.contains("credential store unavailable")
                        || why.contains("session store unavailable"),
                    "unclear failure: {why}"
                );
                assert!(
                    !why.contains("postgres://"),
                    "the database URL leaked: {why}"
                );
                assert!(!why.contains("auth-required"), "{why}");
            }
            Outcome::Completed(text) => {
                assert!(
                    ["You are alice", "You are bob", "no store"].contains(&text.as_str()),
                    "{text}"
                );
            }
            Outcome::Lost => {}
        }
    }
    tally.report("PostgreSQL restarted under load");
    // While it was down, calls that need no store went on.
    let echo_while_down = outcomes.iter().any(|(sent, o)| {
        *sent > down_at + Duration::from_millis(500)
            && *sent < up_at
            && matches!(o, Outcome::Completed(t) if t == "no store")
    });
    assert!(echo_while_down, "calls without the store stopped too");
    assert!(tally.failed() > 0, "the outage was not noticed");
    // After it came back, the stored credentials work again, no new prompt.
    for user in ["alice", "bob"] {
        let back = eventually_completes(
            &url,
            user,
            json!({"agent_name": "tools", "data": {"tool": "whoami"}}),
        )
        .await;
        assert_eq!(back, format!("You are {user}"));
    }
    assert_eq!(demo.code_exchanges(), 2, "nobody authorized again");
    agent.stop().await;
}

// ---------------------------------------------------------------------------
// 3. An agent killed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_while_its_task_waits_for_authorization_resumes_after_restart() {
    let mq = broker();
    let demo = DemoProvider::start(DemoOptions::default()).await.unwrap();
    let gw = Stack::start(&gateway_yaml(&mq, 0, "")).await.expect("gw");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      agent_secret_file: \"{dir}/secret\"\n      session_service: {{type: sql, database_url: \"sqlite:///{dir}/agent.db\"}}\n      oauth_tool_redirect_uri: \"{gw}/api/v1/auth/tool/callback\"\n",
        dir = dir.path().display(),
        gw = gw.url(),
    );
    let tools = format!(
        r#"        - tool_type: mcp
          id: demo
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          manifest:
            - name: whoami
              description: Who you are.
              inputSchema: {{type: object, properties: {{}}}}
"#,
        mcp = demo.mcp_url()
    );
    let yaml = agent_yaml(&mq, &extra, &tools);
    let mut agent = AmeshRun::start(&yaml, &[("RUST_LOG", "info")]);
    agent.wait_for("agent ready");
    gw.wait_for_agent_as("tools", Duration::from_secs(20), Some("alice-token"))
        .await
        .unwrap();

    let resp = gw
        .http
        .post(format!("{}/api/v1/message:stream", gw.url()))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "tools", "data": {"tool": "whoami"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = SseReader::new(resp);
    let prompt = loop {
        let ev = events.next_event().await.unwrap().expect("an event");
        if ev.event == "status" && ev.data["status"]["state"] == "auth-required" {
            break ev.data;
        }
        assert_ne!(ev.event, "task", "ended before asking: {}", ev.data);
    };
    let url: url::Url = prompt["status"]["message"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p["data"]["authorization_url"].as_str())
        .expect("authorization URL")
        .parse()
        .unwrap();

    // The process dies while the task waits for its user, and a
    // supervisor starts it again; the pending flow and the paused loop are
    // in its SQL store, not in the dead process.
    agent.kill();
    let mut agent = AmeshRun::start(&yaml, &[("RUST_LOG", "info")]);
    agent.wait_for("agent ready");
    // The user takes longer than the gateway's silence limit: a paused
    // task has no process behind it and must not be failed for being quiet.
    tokio::time::sleep(SILENCE_LIMIT + Duration::from_secs(1)).await;

    let callback = consent_as(&url, "alice", true).await.unwrap();
    let cookie = session_cookie(&gw, "alice-token").await.unwrap();
    let page = gw
        .http
        .get(callback)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{}", agent.output());
    let end = tokio::time::timeout(ANSWER_WITHIN, async {
        loop {
            let ev = events.next_event().await.unwrap().expect("an event");
            if ev.event == "task" || ev.event == "error" {
                return ev;
            }
        }
    })
    .await
    .expect("an end in time");
    let mut tally = Tally::default();
    let outcome = if end.event == "task" {
        task_outcome(&end.data)
    } else {
        Outcome::Failed(end.data.to_string())
    };
    tally.add(&outcome);
    tally.report("agent killed during auth-required");
    assert!(
        matches!(&outcome, Outcome::Completed(t) if t == "You are alice"),
        "{outcome:?}\n{}",
        agent.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_model_stream_fails_the_task_with_a_reason() {
    let mq = broker();
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    // The first answer starts streaming and never ends; the second (the
    // check after the restart) answers.
    model.push(Turn::hang());
    model.push(Turn::text("back again"));
    let (gw, gw_url) = gateway_process(&mq, "").await;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      agent_secret_file: \"{dir}/secret\"\n      session_service: {{type: sql, database_url: \"sqlite:///{dir}/agent.db\"}}\n      instruction: You are a test agent.\n      model: {{model: openai/test-model, api_base: \"{base}\", api_key: sk-test-key, timeout: 60, max_retries: 0}}\n",
        dir = dir.path().display(),
        base = model.base_url(),
    );
    let yaml = agent_yaml(&mq, &extra, "");
    let mut agent = AmeshRun::start(&yaml, &[("RUST_LOG", "info")]);
    agent.wait_for("agent ready");
    wait_listed(&gw_url, "alice-token", &["tools"], Duration::from_secs(20)).await;

    let resp = http
        .post(format!("{gw_url}/api/v1/message:stream"))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "tools", "text": "tell me a long story"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events = SseReader::new(resp);
    // Wait until the model is streaming to the agent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the model was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.kill();
    let killed = Instant::now();

    let end = tokio::time::timeout(ANSWER_WITHIN, async {
        loop {
            match events.next_event().await.unwrap() {
                Some(ev) if ev.event == "task" || ev.event == "error" => return Some(ev),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .expect("the user heard of the dead agent in time")
    .expect("the stream ended with an event");
    let took = killed.elapsed();
    let mut tally = Tally::default();
    let outcome = match end.event.as_str() {
        "task" => task_outcome(&end.data),
        _ => Outcome::Failed(end.data["message"].as_str().unwrap_or_default().to_owned()),
    };
    tally.add(&outcome);
    tally.report("agent killed mid model stream");
    eprintln!("  the user was told {took:?} after the kill");
    let Outcome::Failed(why) = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(why.contains("agent tools stopped answering"), "{why}");
    assert_doc_quotes("agent-silent", &format!("{why}\n{}", gw.output()));
    assert!(
        took < SILENCE_LIMIT + Duration::from_secs(8),
        "told only after {took:?}"
    );
    // The gateway no longer counts the task as running: its user's tasks
    // list shows it failed.
    let tasks: Value = http
        .get(format!("{gw_url}/api/v1/tasks"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks["tasks"][0]["state"], "failed", "{tasks}");

    // A restarted agent takes new tasks.
    let mut agent = AmeshRun::start(&yaml, &[("RUST_LOG", "info")]);
    agent.wait_for("agent ready");
    let again = stream(
        &gw_url,
        "alice",
        json!({"agent_name": "tools", "text": "again"}),
    )
    .await;
    assert!(
        matches!(&again, Outcome::Completed(t) if t == "back again"),
        "{again:?}\n{}",
        agent.output()
    );
}

// ---------------------------------------------------------------------------
// 4. An MCP provider in trouble

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_provider_errors_timeouts_and_slow_streams_end_tasks_with_clear_messages() {
    let mq = broker();
    let mcp = FaultyMcp::start().await.unwrap();
    let gw = Stack::start(&gateway_yaml(&mq, 0, "")).await.expect("gw");
    let tools = format!(
        r#"        - tool_type: mcp
          id: faulty
          connection_params: {{type: streamable-http, url: "{url}", timeout: 3}}
"#,
        url = mcp.url()
    );
    let mut agent = Stack::start(&agent_yaml(&mq, "", &tools))
        .await
        .expect("agent");
    gw.wait_for_agent_as("tools", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();

    // Every fault at once, several times each, as different users.
    let cases = [
        ("ok", None),
        ("slow_ok", None),
        ("boom", Some("answered HTTP 500")),
        ("unavailable", Some("answered HTTP 503")),
        ("stall", Some("timed out after 3s")),
        ("trickle", Some("timed out after 3s")),
    ];
    let started = Instant::now();
    let mut runs = Vec::new();
    for round in 0..2 {
        for (i, &(tool, _)) in cases.iter().enumerate() {
            let url = gw.url();
            let user = USERS[(i + round) % 4];
            runs.push(tokio::spawn(async move {
                let began = Instant::now();
                let body = json!({"agent_name": "tools", "data": {"tool": tool}});
                (tool, stream(&url, user, body).await, began.elapsed())
            }));
        }
    }
    let mut ended = Vec::new();
    for run in runs {
        ended.push(run.await.unwrap());
    }
    for (tool, outcome, took) in &ended {
        eprintln!("  {tool:<12} {took:>8.2?} {outcome:?}");
    }
    let mut tally = Tally::default();
    for (tool, outcome, took) in ended {
        tally.add(&outcome);
        let expected = cases.iter().find(|(t, _)| *t == tool).unwrap().1;
        match (expected, &outcome) {
            (None, Outcome::Completed(text)) => assert_eq!(text, &format!("{tool} done")),
            (Some(needle), Outcome::Failed(why)) => {
                assert!(why.contains(needle), "{tool}: {why}");
                assert!(why.contains("faulty"), "{tool}: names no server: {why}");
            }
            _ => panic!("{tool}: {outcome:?}"),
        }
        // Bounded by the tool's timeout (3 s) and one retry at most.
        assert!(took < Duration::from_secs(20), "{tool} took {took:?}");
    }
    tally.report("MCP provider faults");
    eprintln!("  all ended within {:?}", started.elapsed());
    for tool in ["boom", "unavailable", "stall", "trickle", "ok", "slow_ok"] {
        assert!(mcp.calls(tool) >= 2, "{tool} was not called");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_told_of_a_failing_mcp_tool_goes_on_and_answers() {
    let mq = broker();
    let mcp = FaultyMcp::start().await.unwrap();
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    model.push(Turn::tool_calls([("boom", json!({}))]));
    model.push(Turn::text("The tool failed; here is what I know."));
    let gw = Stack::start(&gateway_yaml(&mq, 0, "")).await.expect("gw");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      session_service: {{type: sql, database_url: \"sqlite:///{dir}/agent.db\"}}\n      instruction: You are a test agent.\n      model: {{model: openai/test-model, api_base: \"{base}\", api_key: sk-test-key, timeout: 10, max_retries: 0}}\n",
        dir = dir.path().display(),
        base = model.base_url(),
    );
    let tools = format!(
        r#"        - tool_type: mcp
          id: faulty
          connection_params: {{type: streamable-http, url: "{url}", timeout: 3}}
"#,
        url = mcp.url()
    );
    let mut agent = Stack::start(&agent_yaml(&mq, &extra, &tools))
        .await
        .expect("agent");
    gw.wait_for_agent_as("tools", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();
    let outcome = stream(
        &gw.url(),
        "alice",
        json!({"agent_name": "tools", "text": "use boom"}),
    )
    .await;
    let mut tally = Tally::default();
    tally.add(&outcome);
    tally.report("model with a failing tool");
    assert!(
        matches!(&outcome, Outcome::Completed(t) if t.contains("The tool failed")),
        "{outcome:?}"
    );
    // The model was told what went wrong, in words.
    let requests = model.requests();
    let second = requests[1].to_string();
    assert!(second.contains("HTTP 500"), "{second}");
    agent.stop().await;
}

// ---------------------------------------------------------------------------
// 5. Slow SSE consumers

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Opens `message:stream` on a socket with a tiny receive buffer and reads
/// nothing: a client that stopped reading.
async fn stalled_stream(port: u16, user: &str, text: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let body = json!({"agent_name": "tools", "text": text}).to_string();
    let request = format!(
        "POST /api/v1/message:stream HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {user}-token\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_sse_consumers_cost_bounded_memory_and_hold_up_no_one() {
    const IDLE: u64 = 3;
    const PER_TASK: usize = 64 * 1024;
    let mq = broker();
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    // Each answer: about 500 kB of text in 500 streamed pieces.
    let story: String = (0..1000).map(|i| format!("{:0>499} ", i)).collect();
    for _ in 0..6 {
        model.push(Turn::text(story.clone()));
    }
    let limits = format!(
        "      limits: {{idle_timeout_seconds: {IDLE}, task_events_per_task_bytes: {PER_TASK}}}\n"
    );
    let (gw, gw_url) = gateway_process(&mq, &limits).await;
    let port: u16 = gw_url.rsplit(':').next().unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      session_service: {{type: sql, database_url: \"sqlite:///{dir}/agent.db\"}}\n      instruction: You are a test agent.\n      model: {{model: openai/test-model, api_base: \"{base}\", api_key: sk-test-key, timeout: 60, max_retries: 0}}\n",
        dir = dir.path().display(),
        base = model.base_url(),
    );
    let mut agent = Stack::start(&agent_yaml(&mq, &extra, ""))
        .await
        .expect("agent");
    let http = reqwest::Client::new();
    wait_listed(&gw_url, "alice-token", &["tools"], Duration::from_secs(20)).await;
    let rss_before = rss(gw.pid());

    // Three users stop reading their streams; two others read normally.
    let mut stalled = Vec::new();
    for user in ["slow1", "slow2", "slow3"] {
        stalled.push(stalled_stream(port, user, "a long story please").await);
    }
    let asked = Instant::now();
    let reader = tokio::spawn({
        let url = gw_url.clone();
        async move {
            let body = json!({"agent_name": "tools", "text": "a long story please"});
            stream(&url, "alice", body).await
        }
    });
    // Another user, asking meanwhile, is not held up either.
    let quick = tokio::spawn({
        let url = gw_url.clone();
        async move {
            let body = json!({"agent_name": "tools", "text": "anything"});
            stream(&url, "bob", body).await
        }
    });

    let fast = reader.await.unwrap();
    let quick = quick.await.unwrap();
    let mut tally = Tally::default();
    tally.add(&fast);
    tally.add(&quick);
    assert!(
        matches!(&fast, Outcome::Completed(t) if t.len() == story.len() - 1 || t.len() == story.len()),
        "the reading user did not get the whole answer: {}",
        match &fast {
            Outcome::Completed(t) => format!("{} bytes", t.len()),
            other => format!("{other:?}"),
        }
    );
    assert!(matches!(&quick, Outcome::Completed(_)), "{quick:?}");
    eprintln!(
        "  the reading users were done {:?} after they asked",
        asked.elapsed()
    );

    // The stalled streams cost the gateway no more than their tasks' logs:
    // hyper pulls an event from the log only when the socket takes it.
    // (Whether the kernel's buffers fill up, and `limits.idle_timeout_seconds`
    // then cuts the connection, depends on the answer's size: on loopback
    // 500 kB fits; the cut itself is `serve.rs`'s StallGuard, unit-tested.)
    for _ in &stalled {
        tally.add(&Outcome::Failed(
            "not read by its client (it may resume with Last-Event-ID)".into(),
        ));
    }
    // Their tasks completed all the same, and kept a bounded log that says
    // what it left out; a client that comes back gets the end.
    let tasks: Value = http
        .get(format!("{gw_url}/api/v1/tasks"))
        .bearer_auth("slow1-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = &tasks["tasks"][0];
    assert_eq!(task["state"], "completed", "{tasks}");
    assert!(task["dropped"].as_u64().unwrap_or(0) > 0, "{tasks}");
    let id = task["taskId"].as_str().unwrap();
    let resumed = http
        .get(format!("{gw_url}/api/v1/tasks/{id}/events"))
        .bearer_auth("slow1-token")
        .send()
        .await
        .unwrap();
    let resumed = amesh_tests::stack::read_sse(resumed).await.unwrap();
    assert!(
        resumed.iter().any(|e| e.event == "notice"),
        "no word of the gap"
    );
    assert_eq!(resumed.last().unwrap().event, "task");
    tally.report("slow SSE consumers");

    let rss_after = rss(gw.pid());
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "  gateway RSS {:.1} MB before, {:.1} MB after ({:.1} MB for 5 tasks of {:.1} MB answers)",
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        grown as f64 / 1e6,
        story.len() as f64 / 1e6
    );
    // Each task keeps its final answer (~0.5 MB, as the task and as its
    // artifact) and at most PER_TASK of updates; nothing buffers the
    // stalled streams' unread events on top.
    assert!(grown < 64 * 1024 * 1024, "gateway grew by {grown} bytes");
    agent.stop().await;
}
