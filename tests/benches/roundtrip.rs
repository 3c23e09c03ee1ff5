//! Round-trip benchmark: gateway API -> Mosquitto -> agent -> gateway,
//! measured in the same run beside the floor, a raw MQTT v5 QoS 1
//! request/reply between two paho clients on the same broker.
//!
//! Run: `cargo build --release -p amesh-runtime --bin amesh && cargo bench -p amesh-tests --bench roundtrip`
//! (the release binary is needed for the start-up and RSS rows; without it
//! they are skipped). Prints a markdown table.

#![recursion_limit = "256"]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amesh_runtime::broker::{Broker, DevBus, UserProperties};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::stack::Stack;
use paho_mqtt as mqtt;
use serde_json::json;

const NS: &str = "bench/ns";
const USERS: &[(&str, &str)] = &[
    ("gateway", "pw"),
    ("echo", "pw"),
    ("raw-a", "pw"),
    ("raw-b", "pw"),
    ("agent-rss", "pw"),
];
const SEQUENTIAL: usize = 3000;
const WARMUP: usize = 300;
const CONCURRENCY: usize = 64;
const CONCURRENT_TOTAL: usize = 30_000;

fn acl() -> String {
    USERS
        .iter()
        .map(|(u, _)| format!("user {u}\ntopic readwrite {NS}/#\ntopic readwrite raw/#\n"))
        .collect()
}

struct Row {
    name: String,
    p50: Option<Duration>,
    p99: Option<Duration>,
    rate: Option<f64>,
    note: String,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn latency_row(name: &str, mut samples: Vec<Duration>, note: &str) -> Row {
    samples.sort();
    Row {
        name: name.into(),
        p50: Some(pct(&samples, 0.5)),
        p99: Some(pct(&samples, 0.99)),
        rate: None,
        note: note.into(),
    }
}

/// A payload the size of a small A2A request.
fn payload() -> Vec<u8> {
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": "task-0123456789abcdef0123456789abcdef",
        "method": "message/send", "params": {"message": {"kind": "message",
        "messageId": "0b0e7c6a-6f3e-4c1e-9d0a-2d0f4a9d6b11", "role": "user",
        "parts": [{"kind": "text", "text": "hello mesh"}]}}}),
    )
    .unwrap_or_default()
}

async fn paho_client(
    mq: &MosquittoBroker,
    user: &str,
) -> (
    mqtt::AsyncClient,
    mqtt::AsyncReceiver<Option<mqtt::Message>>,
) {
    let opts = mqtt::CreateOptionsBuilder::new()
        .server_uri(mq.url())
        .client_id(format!("{user}-bench"))
        .mqtt_version(mqtt::MQTT_VERSION_5)
        .finalize();
    let mut cli = mqtt::AsyncClient::new(opts).expect("paho client");
    let stream = cli.get_stream(10_000);
    let conn = mqtt::ConnectOptionsBuilder::new_v5()
        .user_name(user)
        .password("pw")
        .clean_start(true)
        .finalize();
    cli.connect(conn).await.expect("paho connect");
    (cli, stream)
}

/// The floor: request/reply between two plain paho clients, QoS 1, with a
/// `replyTo` user property like amesh's.
async fn raw_floor(mq: &MosquittoBroker) -> Row {
    let (responder, rstream) = paho_client(mq, "raw-a").await;
    responder.subscribe("raw/req", 1).await.expect("sub");
    let r2 = responder.clone();
    tokio::spawn(async move {
        while let Ok(Some(msg)) = rstream.recv().await {
            let reply = msg
                .properties()
                .get_string_pair_at(mqtt::PropertyCode::UserProperty, 0)
                .map(|(_, v)| v)
                .unwrap_or_default();
            let out = mqtt::MessageBuilder::new()
                .topic(reply)
                .payload(msg.payload())
                .qos(1)
                .finalize();
            let _ = r2.publish(out).await;
        }
    });
    let (requester, qstream) = paho_client(mq, "raw-b").await;
    requester.subscribe("raw/rep/+", 1).await.expect("sub");
    let body = payload();
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for i in 0..(WARMUP + SEQUENTIAL) {
        let mut props = mqtt::Properties::new();
        let _ = props.push_string_pair(
            mqtt::PropertyCode::UserProperty,
            "replyTo",
            &format!("raw/rep/{i}"),
        );
        let msg = mqtt::MessageBuilder::new()
            .topic("raw/req")
            .payload(body.clone())
            .qos(1)
            .properties(props)
            .finalize();
        let t0 = Instant::now();
        requester.publish(msg).await.expect("publish");
        let _ = qstream.recv().await;
        if i >= WARMUP {
            samples.push(t0.elapsed());
        }
    }
    let _ = requester.disconnect(None).await;
    let _ = responder.disconnect(None).await;
    latency_row(
        "raw MQTT v5 QoS 1 request/reply (paho, the floor)",
        samples,
        "two paho clients, same broker",
    )
}

/// A2A request straight to the agent over the broker (no HTTP): where the
/// mesh itself spends its time.
async fn agent_only(mq: &MosquittoBroker) -> Row {
    let cfg = mq.broker_config("raw-b", "pw");
    let (client, mut rx) = Broker::connect(&cfg, "agent-only-bench", &DevBus::new())
        .await
        .expect("connect");
    let reply_filter = format!("{NS}/a2a/v1/gateway/response/raw/+");
    client.subscribe(&reply_filter).await.expect("sub");
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for i in 0..(WARMUP + SEQUENTIAL) {
        let id = format!("bench-{i}");
        let body = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": "message/send",
            "params": {"message": {"kind": "message", "messageId": id, "role": "user",
            "parts": [{"kind": "text", "text": "hello mesh"}]}}}),
        )
        .unwrap_or_default();
        let props = UserProperties::new()
            .with("replyTo", format!("{NS}/a2a/v1/gateway/response/raw/{id}"))
            .with("userId", "bench");
        let t0 = Instant::now();
        client
            .publish(
                &format!("{NS}/a2a/v1/agent/request/echo_nt"),
                body,
                props,
                false,
            )
            .await
            .expect("publish");
        let _ = rx.recv().await;
        if i >= WARMUP {
            samples.push(t0.elapsed());
        }
    }
    client.disconnect().await;
    latency_row(
        "A2A message/send to the agent over MQTT (no HTTP)",
        samples,
        "amesh broker layer + agent, trust disabled",
    )
}

async fn gateway_sequential(stack: &Stack, agent: &str, name: &str) -> Row {
    let url = format!("{}/api/v1/message:send", stack.url());
    let body = json!({"agent_name": agent, "text": "hello mesh"});
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for i in 0..(WARMUP + SEQUENTIAL) {
        let t0 = Instant::now();
        let resp = stack
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("http");
        assert!(resp.status().is_success(), "{}", resp.status());
        let _ = resp.bytes().await;
        if i >= WARMUP {
            samples.push(t0.elapsed());
        }
    }
    latency_row(name, samples, "POST /api/v1/message:send, 1 at a time")
}

async fn gateway_concurrent(stack: &Stack) -> Row {
    let url = Arc::new(format!("{}/api/v1/message:send", stack.url()));
    let t0 = Instant::now();
    let per = CONCURRENT_TOTAL / CONCURRENCY;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let http = stack.http.clone();
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut errors = 0usize;
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let s = Instant::now();
                match http
                    .post(url.as_str())
                    .json(&json!({"agent_name": "echo", "text": "hi"}))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                lat.push(s.elapsed());
            }
            (errors, lat)
        }));
    }
    let mut errors = 0;
    let mut lat = Vec::new();
    for w in workers {
        let (e, l) = w.await.expect("worker");
        errors += e;
        lat.extend(l);
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort();
    Row {
        name: format!("gateway throughput, {CONCURRENCY} concurrent"),
        p50: Some(pct(&lat, 0.5)),
        p99: Some(pct(&lat, 0.99)),
        rate: Some((per * CONCURRENCY) as f64 / secs),
        note: format!("{} requests, {errors} errors", per * CONCURRENCY),
    }
}

fn release_binary() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let bin = root.join("target/release/amesh");
    bin.exists().then_some(bin)
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

/// Start-up time of `amesh run` (process spawn until the gateway answers
/// and lists the agent) and its internal `ready_ms`, on the dev bus.
async fn startup(bin: &std::path::Path, dir: &std::path::Path) -> Row {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18000);
    let cfg = dir.join("startup.yaml");
    let yaml = format!(
        "apps:\n  - name: gw\n    app_module: gateway\n    broker: {{dev_mode: true}}\n    app_config: {{namespace: {NS}, port: {port}}}\n  - name: echo\n    app_module: agent\n    broker: {{dev_mode: true}}\n    app_config: {{namespace: {NS}, agent_name: echo}}\n"
    );
    let _ = std::fs::write(&cfg, yaml);
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .arg("run")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn amesh");
        loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/api/v1/agents"))
                .send()
                .await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["agents"].as_array().is_some_and(|a| !a.is_empty())
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(t0.elapsed());
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    latency_row(
        "`amesh run` ready (spawn -> gateway lists agent)",
        samples,
        "10 cold starts, dev bus, polled every 2 ms",
    )
}

/// RSS of an idle agent process connected to Mosquitto.
async fn agent_rss(bin: &std::path::Path, dir: &std::path::Path, mq: &MosquittoBroker) -> Row {
    let cfg = dir.join("agent.yaml");
    let yaml = format!(
        "apps:\n  - name: agent-rss\n    app_module: agent\n    broker: {{broker_url: \"{}\", broker_username: agent-rss, broker_password: pw}}\n    app_config: {{namespace: {NS}, agent_name: rss}}\n",
        mq.url()
    );
    let _ = std::fs::write(&cfg, yaml);
    let mut child = Command::new(bin)
        .arg("run")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn amesh");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = rss_kb(child.id());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    Row {
        name: "agent process RSS, idle".into(),
        p50: None,
        p99: None,
        rate: None,
        note: match rss {
            Some(kb) => format!(
                "{:.1} MB (VmRSS after 3 s, connected to Mosquitto)",
                kb as f64 / 1024.0
            ),
            None => "could not read /proc".into(),
        },
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.3}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into())
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; a filter argument is accepted and ignored.
    let mq = MosquittoBroker::start_with(USERS, &acl(), "max_queued_messages 100000\n")
        .expect("mosquitto");
    // Two stacks on the same broker: trust strict (every request carries a
    // gateway-signed token the agent verifies) and trust disabled.
    let stack_yaml = |suffix: &str, trust: &str| {
        format!(
            "apps:\n  - name: gw{suffix}\n    app_module: gateway\n    broker: {{broker_url: \"{url}\", broker_username: gateway, broker_password: pw}}\n    app_config: {{namespace: {NS}, gateway_id: gw{suffix}, port: 0, trust_manager: {trust}}}\n  - name: echo{suffix}\n    app_module: agent\n    broker: {{broker_url: \"{url}\", broker_username: echo, broker_password: pw}}\n    app_config: {{namespace: {NS}, agent_name: echo{suffix}, trust_manager: {trust}}}\n",
            url = mq.url()
        )
    };
    let stack = Stack::start(&stack_yaml("", "{verification_mode: strict}"))
        .await
        .expect("stack");
    stack
        .wait_for_agent("echo", Duration::from_secs(10))
        .await
        .expect("agent up");
    let plain = Stack::start(&stack_yaml("_nt", "{enabled: false}"))
        .await
        .expect("stack");
    plain
        .wait_for_agent("echo_nt", Duration::from_secs(10))
        .await
        .expect("agent up");

    let mut rows = vec![raw_floor(&mq).await];
    rows.push(agent_only(&mq).await);
    rows.push(
        gateway_sequential(
            &plain,
            "echo_nt",
            "gateway HTTP -> agent -> gateway, trust disabled",
        )
        .await,
    );
    rows.push(
        gateway_sequential(
            &stack,
            "echo",
            "gateway HTTP -> agent -> gateway, trust strict",
        )
        .await,
    );
    rows.push(gateway_concurrent(&stack).await);
    drop(stack);
    drop(plain);

    let dir = tempfile::tempdir().expect("tempdir");
    match release_binary() {
        Some(bin) => {
            rows.push(startup(&bin, dir.path()).await);
            rows.push(agent_rss(&bin, dir.path(), &mq).await);
        }
        None => eprintln!("target/release/amesh not built: skipping start-up and RSS rows"),
    }

    let floor = rows[0].p50.unwrap_or_default();
    println!("\n| measurement | p50 ms | p99 ms | req/s | notes |\n|---|---|---|---|---|");
    for r in &rows {
        let rate = r
            .rate
            .map(|x| format!("{x:.0}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name,
            ms(r.p50),
            ms(r.p99),
            rate,
            r.note
        );
    }
    let p50 = |prefix: &str| {
        rows.iter()
            .find(|r| r.name.starts_with(prefix))
            .and_then(|r| r.p50)
    };
    let strict = p50("gateway HTTP -> agent -> gateway, trust strict");
    let plain = p50("gateway HTTP -> agent -> gateway, trust disabled");
    if let (Some(strict), Some(plain)) = (strict, plain) {
        let ms = |d: f64| d * 1000.0;
        println!(
            "\nadded by amesh over the floor (p50, trust strict): {:.3} ms",
            ms(strict.as_secs_f64() - floor.as_secs_f64())
        );
        println!(
            "added by the trust manager (p50, strict vs disabled): {:.3} ms",
            ms(strict.as_secs_f64() - plain.as_secs_f64())
        );
    }
}
