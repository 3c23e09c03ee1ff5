//! Floods and memory: what one client, one user or one big message may
//! take from the gateway and the agent, through a real Mosquitto.
//!
//! The flood test is bounded (about 2,000 sockets) so it runs on a small
//! machine beside other tests; it prints its figures (run with
//! `-- --nocapture` to see them).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use amesh_runtime::broker::UserProperties;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::RawClient;
use amesh_tests::stack::{SseReader, Stack};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "test/floods";

const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("echo", "echo-pass"),
    ("tester", "tester-pass"),
];

fn broker() -> MosquittoBroker {
    let acl = format!(
        "user gateway\ntopic readwrite {NS}/a2a/v1/#\n\
         user echo\ntopic readwrite {NS}/a2a/v1/#\n\
         user tester\ntopic readwrite {NS}/a2a/v1/#\n"
    );
    MosquittoBroker::start(USERS, &acl).expect("mosquitto starts")
}

fn broker_yaml(mq: &MosquittoBroker, user: &str) -> String {
    let pass = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
    format!(
        "{{broker_url: \"{}\", broker_username: {user}, broker_password: \"{pass}\"}}",
        mq.url()
    )
}

/// A gateway (users alice and bob) and an echo agent; `gateway_limits` and
/// `agent_limits` are YAML flow mappings for their `limits:` blocks.
async fn stack(mq: &MosquittoBroker, gateway_limits: &str, agent_limits: &str) -> Stack {
    let yaml = format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {gw}
    app_config:
      namespace: {NS}
      gateway_id: gw1
      port: 0
      agent_card_ttl_seconds: 5
      request_timeout_seconds: 20
      frontend_use_authorization: true
      users:
        - {{id: alice, token: alice-token}}
        - {{id: bob, token: bob-token}}
      limits: {gateway_limits}
  - name: echo
    app_module: agent
    broker: {agent}
    app_config:
      namespace: {NS}
      agent_name: echo
      agent_card_publishing: {{interval_seconds: 1}}
      tools:
        - {{tool_type: builtin, tool_name: echo}}
        - {{tool_type: builtin, tool_name: sleep}}
      limits: {agent_limits}
"#,
        gw = broker_yaml(mq, "gateway"),
        agent = broker_yaml(mq, "echo"),
    );
    let stack = Stack::start(&yaml).await.expect("stack starts");
    stack
        .wait_for_agent_as("echo", Duration::from_secs(10), Some("alice-token"))
        .await
        .expect("agent discovered");
    stack
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// How one attacking socket ended, seen from the client.
#[derive(Debug, Clone, Copy)]
enum Fate {
    ConnectFailed,
    /// The gateway closed it, this long after the connect.
    Closed(Duration),
    /// Still open when the test stopped watching.
    Open,
}

/// Opens a socket from `from` to `to`; when `slowloris`, sends a request
/// line and then one header line every 500 ms, never finishing. Watches
/// until the gateway closes it or `watch` has passed.
async fn attacker(from: IpAddr, to: SocketAddr, slowloris: bool, watch: Duration) -> Fate {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut stream = match tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await {
        Ok(Ok(s)) => s,
        _ => return Fate::ConnectFailed,
    };
    let opened = Instant::now();
    let deadline = tokio::time::Instant::now() + watch;
    let mut buf = [0u8; 512];
    if slowloris {
        let _ = stream
            .write_all(b"POST /api/v1/message:send HTTP/1.1\r\nHost: x\r\n")
            .await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Fate::Open,
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Fate::Closed(opened.elapsed()),
                // A 503 (or 408) before the close: keep reading to the end.
                Ok(_) => continue,
            },
            _ = tick.tick(), if slowloris => {
                if stream.write_all(b"X-Slow: yes\r\n").await.is_err() {
                    return Fate::Closed(opened.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_flood_leaves_legit_requests_served() {
    let mq = broker();
    let mut stack = stack(
        &mq,
        "{header_read_timeout_seconds: 2, idle_timeout_seconds: 5, max_connections: 600, \
         max_connections_per_ip: 40}",
        "{}",
    )
    .await;
    let addr: SocketAddr = stack.url().trim_start_matches("http://").parse().unwrap();
    let watch = Duration::from_secs(7);

    // 2,000 idle sockets: 1,000 from two addresses (over the per-address
    // cap) and 1,000 from fifty addresses (20 each: under it, but together
    // over the global cap); and 100 slowloris sockets from five more.
    // Opened in batches of 100, so that the kernel's accept queue is not
    // what is tested: a socket it drops on overflow looks connected to the
    // client forever, and idle, it never finds out.
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for i in 0..2100u32 {
        let (from, slowloris) = match i % 21 {
            20 => (Ipv4Addr::new(127, 0, 1, (i % 5) as u8 + 1), true),
            n if n % 2 == 0 => (Ipv4Addr::new(127, 0, 2, (i % 2) as u8 + 1), false),
            _ => (Ipv4Addr::new(127, 0, 3, (i % 50) as u8 + 1), false),
        };
        let h = tokio::spawn(attacker(IpAddr::V4(from), addr, slowloris, watch));
        if slowloris {
            slow.push(h)
        } else {
            idle.push(h)
        }
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Let the flood land before the legitimate client starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A legitimate client: a new connection for each request, so each one
    // goes through the gateway's accept path during the flood.
    let legit = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut took = Vec::new();
    let mut failures = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let r = legit
            .post(format!("{}/api/v1/message:send", stack.url()))
            .bearer_auth("alice-token")
            .json(&json!({"agent_name": "echo", "text": format!("legit {i}")}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => took.push(t.elapsed()),
            Ok(r) => failures.push(format!(
                "{} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    let during = stack.running.as_ref().unwrap().gateways[0].stats();

    let mut idle_fates = Vec::new();
    for h in idle {
        idle_fates.push(h.await.unwrap());
    }
    let mut slow_fates = Vec::new();
    for h in slow {
        slow_fates.push(h.await.unwrap());
    }
    let after = stack.running.as_ref().unwrap().gateways[0].stats();

    let summary = |fates: &[Fate]| {
        let failed = fates
            .iter()
            .filter(|f| matches!(f, Fate::ConnectFailed))
            .count();
        let open = fates.iter().filter(|f| matches!(f, Fate::Open)).count();
        let mut closed: Vec<Duration> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Closed(d) => Some(*d),
                _ => None,
            })
            .collect();
        closed.sort();
        let at_once = closed
            .iter()
            .filter(|d| **d < Duration::from_millis(500))
            .count();
        (failed, open, closed, at_once)
    };
    let (idle_failed, idle_open, idle_closed, idle_at_once) = summary(&idle_fates);
    let (slow_failed, slow_open, slow_closed, _) = summary(&slow_fates);
    took.sort();
    println!(
        "flood figures (gateway: header_read_timeout 2 s, max_connections 600, per IP 40; \
         1,000 idle sockets from 2 addresses, 1,000 from 50, 100 slowloris from 5)"
    );
    println!(
        "  idle sockets:      opened {}, connect failed {idle_failed}, closed by the gateway {} \
         ({idle_at_once} within 500 ms, last after {:?}), still open after {watch:?}: {idle_open}",
        idle_fates.len() - idle_failed,
        idle_closed.len(),
        idle_closed.last().copied().unwrap_or_default(),
    );
    println!(
        "  slowloris sockets: opened {}, connect failed {slow_failed}, closed by the gateway {} \
         (p50 after {:?}, last after {:?}), still open: {slow_open}",
        slow_fates.len() - slow_failed,
        slow_closed.len(),
        percentile(&slow_closed, 0.5),
        slow_closed.last().copied().unwrap_or_default(),
    );
    println!(
        "  legitimate client: {}/20 ok, p50 {:?}, p90 {:?}, max {:?}; failures: {failures:?}",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        took.last().copied().unwrap_or_default(),
    );
    println!("  gateway during the flood: {during:?}");
    println!("  gateway after:            {after:?}");

    assert!(
        failures.is_empty(),
        "legitimate requests failed: {failures:?}"
    );
    assert!(
        took.last().copied().unwrap_or_default() < Duration::from_secs(5),
        "a legitimate request took {:?}",
        took.last()
    );
    assert_eq!(
        slow_open, 0,
        "slowloris sockets the gateway never closed (header read timeout 2 s)"
    );
    assert_eq!(idle_open, 0, "idle sockets the gateway never closed");
    assert!(
        after.connections.refused_per_ip > 0,
        "no connection over the per-address cap was refused"
    );
    assert!(
        after.connections.evicted_idle > 0,
        "no idle connection made room at the global cap"
    );
    assert!(during.connections.open <= 600, "{during:?}");
    stack.stop().await;
}

#[tokio::test]
async fn five_megabyte_echoes_do_not_stay_in_memory() {
    let mq = broker();
    let budget = 16 * 1024 * 1024;
    let mut stack = stack(
        &mq,
        "{}",
        &format!("{{finished_tasks_max_bytes: {budget}}}"),
    )
    .await;
    let big = "x".repeat(5_000_000);
    let mut ids = Vec::new();
    for _ in 0..6 {
        let resp = stack
            .http
            .post(format!("{}/api/v1/message:send", stack.url()))
            .bearer_auth("alice-token")
            .json(&json!({"agent_name": "echo", "text": big}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let task: Value = resp.json().await.unwrap();
        assert_eq!(task["status"]["state"], "completed");
        assert_eq!(
            task["artifacts"][0]["parts"][0]["text"]
                .as_str()
                .map(str::len),
            Some(big.len())
        );
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    let running = stack.running.as_ref().unwrap();
    let agent_bytes = running.agents[0].retained_task_bytes();
    let gateway = running.gateways[0].stats();
    println!(
        "after 6 echoes of 5 MB: agent keeps {agent_bytes} bytes of finished tasks \
         (budget {budget}); gateway: {gateway:?}"
    );
    assert!(
        agent_bytes <= budget,
        "the agent keeps {agent_bytes} bytes of finished tasks, over its budget of {budget}"
    );
    assert_eq!(gateway.tasks_indexed, 6);
    assert!(
        gateway.task_index_bytes < 64 * 1024,
        "the gateway's task index holds {} bytes for 6 tasks",
        gateway.task_index_bytes
    );
    // The newest task is still known to the agent; the oldest was
    // forgotten to make room.
    let get = |id: String| {
        let http = stack.http.clone();
        let url = format!("{}/api/v1/tasks/{id}", stack.url());
        async move {
            http.get(url)
                .bearer_auth("alice-token")
                .send()
                .await
                .unwrap()
        }
    };
    let newest = get(ids[5].clone()).await;
    assert_eq!(newest.status(), 200);
    let newest: Value = newest.json().await.unwrap();
    assert_eq!(newest["status"]["state"], "completed");
    assert_eq!(get(ids[0].clone()).await.status(), 404);
    stack.stop().await;
}

/// Opens `message:stream` for a sleeping task as `token`'s user; returns
/// the response (its stream open) when the gateway accepted it.
async fn open_stream(stack: &Stack, token: &str, ms: u64) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/api/v1/message:stream", stack.url()))
        .bearer_auth(token)
        .json(&json!({"agent_name": "echo", "data": {"tool": "sleep", "arguments": {"ms": ms}}}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn per_user_streams_and_running_tasks_are_capped_with_429() {
    let mq = broker();
    let mut stack = stack(
        &mq,
        "{max_streams_per_user: 2, max_running_tasks_per_user: 3}",
        "{}",
    )
    .await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let resp = open_stream(&stack, "alice-token", 3000).await;
        assert_eq!(resp.status(), 200);
        let mut reader = SseReader::new(resp);
        let first = reader.next_event().await.unwrap().unwrap();
        assert_eq!(first.event, "submitted");
        streams.push(reader);
    }
    let third = open_stream(&stack, "alice-token", 10).await;
    assert_eq!(third.status(), 429);
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("streams"),
        "{body}"
    );
    // Another user is not affected.
    let bobs = open_stream(&stack, "bob-token", 10).await;
    assert_eq!(bobs.status(), 200);

    // Alice's two streams are two running tasks; a third may run...
    let http = stack.http.clone();
    let url = format!("{}/api/v1/message:send", stack.url());
    let send = |ms: u64| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(url)
                .bearer_auth("alice-token")
                .json(&json!({"agent_name": "echo", "data": {"tool": "sleep", "arguments": {"ms": ms}}}))
                .send()
                .await
                .unwrap()
        }
    };
    let third_task = tokio::spawn(send(3000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...a fourth may not, even though its client would not stream.
    let fourth = send(10).await;
    assert_eq!(fourth.status(), 429);
    let body: Value = fourth.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("running"),
        "{body}"
    );
    // Dropping the streams does not free the slots: the tasks still run.
    drop(streams);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(send(10).await.status(), 429);
    // Once they end, alice may start tasks again.
    assert_eq!(third_task.await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(send(10).await.status(), 200);
    stack.stop().await;
}

#[tokio::test]
async fn oversized_and_surplus_agent_cards_are_ignored() {
    let mq = broker();
    let mut stack = stack(&mq, "{max_agent_card_bytes: 4096, max_agents: 3}", "{}").await;
    let cfg = mq.broker_config("tester", "tester-pass");
    let client = RawClient::connect(&cfg, "card-forger", NS).await.unwrap();
    let card = |name: &str, description: String| {
        serde_json::to_vec(&json!({
            "protocolVersion": "0.3.0", "name": name, "description": description,
            "url": format!("mqtt://{NS}/a2a/v1/agent/request/{name}"), "version": "1",
            "capabilities": {"streaming": true, "pushNotifications": false, "stateTransitionHistory": false},
        }))
        .unwrap()
    };
    let topic = format!("{NS}/a2a/v1/discovery/agentcards");
    client
        .broker
        .publish(
            &topic,
            card("huge", "x".repeat(100_000)),
            UserProperties::new(),
            false,
        )
        .await
        .unwrap();
    for i in 0..10 {
        client
            .broker
            .publish(
                &topic,
                card(&format!("fake-{i}"), String::new()),
                UserProperties::new(),
                false,
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = stack.agents_as(Some("alice-token")).await.unwrap();
    assert!(listed.contains(&"echo".to_string()), "{listed:?}");
    assert!(!listed.contains(&"huge".to_string()), "{listed:?}");
    assert_eq!(listed.len(), 3, "{listed:?}");
    client.disconnect().await;
    stack.stop().await;
}
