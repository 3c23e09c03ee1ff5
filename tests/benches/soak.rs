//! Soak: memory and latency under steady load for as long as an operator
//! would watch a dashboard. 1,000 users spread over 10 MCP servers (demo
//! providers, each its own OAuth server), every user authorized once through
//! the real flow first (credentials warm), then `POST /api/v1/message:send`
//! of a `whoami` tool call at a steady rate, each request for the next user
//! in turn on that user's server. The gateway and the agent are `amesh run`
//! processes of their own, so their RSS is theirs alone; it is sampled, with
//! the latency p50/p99 of each window, once a window (a minute by default).
//!
//! The verdicts: RSS flat within 10% after warm-up (the largest sample after
//! warm-up at most 1.10 × the first one, for the agent and the gateway) and
//! p99 stable (the median p99 of the last third of the windows at most 1.5 ×
//! that of the first third). The bench exits non-zero when RSS is not flat.
//!
//! Run (release binary, as operators run it):
//!
//! ```sh
//! cargo build --release -p amesh-runtime --bin amesh
//! AMESH_BIN=$PWD/target/release/amesh cargo bench -p amesh-tests --bench soak
//! ```
//!
//! Settings (environment): `AMESH_SOAK_SECONDS` (600), `AMESH_SOAK_RATE`
//! (requests/s, 50), `AMESH_SOAK_USERS` (1000), `AMESH_SOAK_SERVERS` (10),
//! `AMESH_SOAK_WARMUP_SECONDS` (60), `AMESH_SOAK_WINDOW_SECONDS` (60).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_tests::amesh_run::{AmeshRun, free_port};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::{answer, call_authorizing_at};
use serde_json::json;

const NS: &str = "bench/soak";
const BROKER_USERS: &[(&str, &str)] = &[("gateway", "pw"), ("agent", "pw")];
/// Requests in flight at most: below the gateway's 256 connections per
/// address. A tick that finds the cap reached is counted as skipped, so a
/// machine that cannot keep up shows it instead of queueing without end.
const MAX_IN_FLIGHT: usize = 200;
/// Users authorized at once before the soak.
const AUTHORIZE_CONCURRENCY: usize = 16;

struct Settings {
    seconds: u64,
    rate: u64,
    users: usize,
    servers: usize,
    warmup: u64,
    window: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let s = Settings {
            seconds: env_u64("AMESH_SOAK_SECONDS", 600),
            rate: env_u64("AMESH_SOAK_RATE", 50).max(1),
            users: env_u64("AMESH_SOAK_USERS", 1000).max(1) as usize,
            servers: env_u64("AMESH_SOAK_SERVERS", 10).max(1) as usize,
            warmup: env_u64("AMESH_SOAK_WARMUP_SECONDS", 60),
            window: env_u64("AMESH_SOAK_WINDOW_SECONDS", 60).max(1),
        };
        assert!(
            s.seconds >= s.warmup + 2 * s.window,
            "AMESH_SOAK_SECONDS must leave at least two windows after the warm-up"
        );
        s
    }
}

fn user(i: usize) -> String {
    format!("user{i}")
}

/// The MCP server (tool prefix) user `i` works with.
fn tool_of(i: usize, servers: usize) -> String {
    format!("s{}_whoami", i % servers)
}

fn gateway_yaml(mq: &MosquittoBroker, port: u16, users: usize) -> String {
    let users: String = (0..users)
        .map(|i| format!("        - {{id: {u}, token: {u}-token}}\n", u = user(i)))
        .collect();
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: pw}}
    app_config:
      namespace: {NS}
      gateway_id: gw
      port: {port}
      frontend_use_authorization: true
      session_secret_key: soak-session-key
      users:
{users}"#,
        url = mq.url()
    )
}

fn agent_yaml(mq: &MosquittoBroker, demos: &[DemoHandle], callback: &str) -> String {
    let tools: String = demos
        .iter()
        .enumerate()
        .map(|(k, demo)| {
            format!(
                r#"        - tool_type: mcp
          id: mcp{k}
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: s{k}_
          manifest:
            - name: whoami
              description: Who the provider says you are.
              inputSchema: {{type: object, properties: {{}}, additionalProperties: false}}
"#,
                mcp = demo.mcp_url()
            )
        })
        .collect();
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: pw}}
    app_config:
      namespace: {NS}
      agent_name: soak
      session_service: {{type: sql, database_url: "sqlite://soak.db"}}
      agent_secret_file: soak.secret
      oauth_tool_redirect_uri: "{callback}/api/v1/auth/tool/callback"
      trust_manager: {{verification_mode: strict}}
      tools:
{tools}"#,
        url = mq.url()
    )
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".into())
}

/// What the requests of the current window did; the sampler takes it.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    failed: usize,
    skipped: usize,
    reasons: Vec<String>,
}

/// One sampled window.
struct Row {
    end_s: u64,
    warm: bool,
    done: usize,
    failed: usize,
    skipped: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
    agent_kb: u64,
    gateway_kb: u64,
    load: String,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

async fn wait_listed(http: &reqwest::Client, base: &str, agent: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = http
            .get(format!("{base}/api/v1/agents"))
            .bearer_auth("user0-token")
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        if let Some(resp) = listed
            && let Ok(body) = resp.json::<serde_json::Value>().await
            && body["agents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["name"] == agent))
        {
            return;
        }
        assert!(Instant::now() < deadline, "agent {agent} never listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Authorizes every user at their server, a few at a time.
async fn authorize_all(http: &reqwest::Client, base: &str, s: &Settings) {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..AUTHORIZE_CONCURRENCY {
        let (http, base, next) = (http.clone(), base.to_owned(), next.clone());
        let (users, servers) = (s.users, s.servers);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    break;
                }
                let who = user(i);
                let task = call_authorizing_at(
                    &http,
                    &base,
                    &format!("{who}-token"),
                    &who,
                    "soak",
                    &tool_of(i, servers),
                )
                .await
                .unwrap_or_else(|e| panic!("{who}: authorizing: {e}"));
                assert_eq!(answer(&task), format!("You are {who}"), "{task}");
            }
        }));
    }
    for w in workers {
        w.await.expect("authorizing worker");
    }
    eprintln!(
        "authorized {} users at {} servers in {:.1} s",
        s.users,
        s.servers,
        started.elapsed().as_secs_f64()
    );
}

/// One request as user `i`, recorded in `window`.
async fn one_request(
    http: reqwest::Client,
    base: Arc<String>,
    i: usize,
    servers: usize,
    window: Arc<Mutex<Window>>,
) {
    let who = user(i);
    let started = Instant::now();
    let result = async {
        let resp = http
            .post(format!("{base}/api/v1/message:send"))
            .bearer_auth(format!("{who}-token"))
            .json(&json!({"agent_name": "soak", "data": {"tool": tool_of(i, servers)}}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let task: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
        if status.is_success()
            && task["status"]["state"] == "completed"
            && answer(&task) == format!("You are {who}")
        {
            Ok(())
        } else {
            Err(format!("{status}: {}", task["status"]["state"]))
        }
    }
    .await;
    let took = started.elapsed();
    let mut w = window.lock().expect("window");
    match result {
        Ok(()) => w.latencies.push(took),
        Err(reason) => {
            w.failed += 1;
            if w.reasons.len() < 5 {
                w.reasons.push(reason);
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let s = Settings::from_env();
    let mq = MosquittoBroker::for_namespace(BROKER_USERS, NS).expect("mosquitto");
    let mut demos = Vec::new();
    for _ in 0..s.servers {
        demos.push(
            DemoProvider::start(DemoOptions::default())
                .await
                .expect("demo provider"),
        );
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = AmeshRun::start(&gateway_yaml(&mq, port, s.users), &[]);
    gateway.wait_for("gateway listening");
    let mut agent = AmeshRun::start(&agent_yaml(&mq, &demos, &base), &[]);
    agent.wait_for("agent ready");
    let http = reqwest::Client::new();
    wait_listed(&http, &base, "soak").await;
    authorize_all(&http, &base, &s).await;

    let idle_agent = rss_kb(agent.pid());
    let idle_gateway = rss_kb(gateway.pid());
    eprintln!(
        "soak: {} s at {} requests/s ({} warm-up), window {} s; RSS after authorizing: agent {} MB, gateway {} MB",
        s.seconds,
        s.rate,
        s.warmup,
        s.window,
        mb(idle_agent),
        mb(idle_gateway)
    );

    let window = Arc::new(Mutex::new(Window::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let base = Arc::new(base);
    let started = Instant::now();
    let end = started + Duration::from_secs(s.seconds);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / s.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sample = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(s.window),
        Duration::from_secs(s.window),
    );
    let mut rows = Vec::new();
    let mut last_sample = Instant::now();
    let mut next_user = 0usize;
    let mut reasons = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= end {
                    continue;
                }
                if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    window.lock().expect("window").skipped += 1;
                    continue;
                }
                let i = next_user;
                next_user = (next_user + 1) % s.users;
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (http, base, window, in_flight) =
                    (http.clone(), base.clone(), window.clone(), in_flight.clone());
                let servers = s.servers;
                tokio::spawn(async move {
                    one_request(http, base, i, servers, window).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = sample.tick() => {
                let taken = std::mem::take(&mut *window.lock().expect("window"));
                let elapsed = last_sample.elapsed();
                last_sample = Instant::now();
                let mut lat = taken.latencies;
                lat.sort_unstable();
                let end_s = started.elapsed().as_secs_f64().round() as u64;
                let row = Row {
                    end_s,
                    warm: end_s > s.warmup,
                    done: lat.len(),
                    failed: taken.failed,
                    skipped: taken.skipped,
                    rate: lat.len() as f64 / elapsed.as_secs_f64(),
                    p50: pct(&lat, 0.50),
                    p99: pct(&lat, 0.99),
                    agent_kb: rss_kb(agent.pid()),
                    gateway_kb: rss_kb(gateway.pid()),
                    load: load_average(),
                };
                eprintln!(
                    "t={:>4} s: {} ok ({:.1}/s), {} failed, {} skipped, p50 {} ms, p99 {} ms, agent {} MB, gateway {} MB, load {}",
                    row.end_s, row.done, row.rate, row.failed, row.skipped, ms(row.p50), ms(row.p99),
                    mb(row.agent_kb), mb(row.gateway_kb), row.load
                );
                reasons.extend(taken.reasons);
                rows.push(row);
                if Instant::now() >= end {
                    break;
                }
            }
        }
    }

    println!();
    println!(
        "| window end s | requests ok | failed | skipped | req/s | p50 ms | p99 ms | agent RSS MB | gateway RSS MB | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {}{} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            r.end_s,
            if r.warm { "" } else { " (warm-up)" },
            r.done,
            r.failed,
            r.skipped,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            mb(r.agent_kb),
            mb(r.gateway_kb),
            r.load
        );
    }
    let warm: Vec<&Row> = rows.iter().filter(|r| r.warm).collect();
    let growth = |kb: &dyn Fn(&Row) -> u64| {
        let first = kb(warm[0]).max(1) as f64;
        let max = warm.iter().map(|r| kb(r)).max().unwrap_or(0) as f64;
        max / first - 1.0
    };
    let agent_growth = growth(&|r: &Row| r.agent_kb);
    let gateway_growth = growth(&|r: &Row| r.gateway_kb);
    let third = (warm.len() / 3).max(1);
    let median_p99 = |rows: &[&Row]| {
        let mut p: Vec<Duration> = rows.iter().map(|r| r.p99).collect();
        p.sort_unstable();
        p[p.len() / 2]
    };
    let early = median_p99(&warm[..third]);
    let late = median_p99(&warm[warm.len() - third..]);
    let total: usize = rows.iter().map(|r| r.done).sum();
    let failed: usize = rows.iter().map(|r| r.failed).sum();
    let skipped: usize = rows.iter().map(|r| r.skipped).sum();
    let flat = agent_growth <= 0.10 && gateway_growth <= 0.10;
    let stable = late.as_secs_f64() <= 1.5 * early.as_secs_f64();
    println!();
    println!(
        "{} users, {} MCP servers, {} s at {} requests/s asked ({:.1}/s done on average): {total} ok, {failed} failed, {skipped} skipped; binary {}",
        s.users,
        s.servers,
        s.seconds,
        s.rate,
        total as f64 / s.seconds as f64,
        amesh_tests::amesh_bin::amesh().display()
    );
    println!(
        "RSS after warm-up: agent +{:.1}%, gateway +{:.1}% over the first sample: {}",
        agent_growth * 100.0,
        gateway_growth * 100.0,
        if flat {
            "flat (within 10%)"
        } else {
            "NOT flat"
        }
    );
    println!(
        "p99: median of the first third of windows {} ms, of the last third {} ms: {}",
        ms(early),
        ms(late),
        if stable { "stable" } else { "NOT stable" }
    );
    if !reasons.is_empty() {
        println!("first failure reasons: {reasons:?}");
    }
    drop(agent);
    drop(gateway);
    if !flat {
        std::process::exit(1);
    }
}
