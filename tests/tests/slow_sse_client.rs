//! A client that stops reading its `message:stream` answer is cut off by
//! the gateway after `limits.idle_timeout_seconds`, over real sockets.
//!
//! `faults.rs` has slow SSE consumers too, but their 0.5 MB answers fit in
//! the kernel's socket buffers: the gateway's writes never blocked, so the
//! cut (`serve.rs`, `StallGuard`) was never seen end to end. Here the answer
//! is 9 MB, the client's receive buffer 4 KiB: the gateway's send queue
//! fills up, its write stays blocked, and after the idle timeout it closes
//! the connection. Everything is real: Mosquitto, the gateway and two agents
//! as `amesh run` processes, scripted OpenAI-compatible models, and a raw
//! HTTP/1.1 client on a TCP socket whose receive buffer is set before it
//! connects. The test watches the gateway's side of that connection in
//! `/proc/net/tcp` (the moment it leaves ESTABLISHED is the cut), the
//! gateway's log (the operator's warning), its resident memory, and a user
//! who reads normally meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use amesh_tests::amesh_run::{AmeshRun, free_port, wait_listed};
use amesh_tests::model_server::{Protocol, ScriptedModel, Turn};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::answer;
use amesh_tests::stack::{SseReader, read_sse};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "slowsse/ns";
const BROKER_USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("storyteller", "story-pass"),
    ("quick", "quick-pass"),
];
/// The agent that tells the stalled client's long story, and the one the
/// reading user asks meanwhile (its own process, so that what the first
/// agent still does with 9 MB does not count against the gateway).
const STORYTELLER: &str = "storyteller";
const QUICK: &str = "quick";
/// `limits.idle_timeout_seconds` of the gateway.
const IDLE: Duration = Duration::from_secs(5);
/// What "within idle_timeout + a few seconds" allows on top of [`IDLE`].
const CUT_SLACK: Duration = Duration::from_secs(3);
/// `limits.task_events_per_task_bytes`: the streamed pieces past it are
/// left out of the task's log (with a `notice`); the final event is kept.
const PER_TASK: usize = 256 * 1024;
/// The stalled client's answer: more than twice what the kernel buffers on
/// both ends of a loopback connection hold (the gateway's send buffer grows
/// to `net.ipv4.tcp_wmem`'s maximum, 4 MB by default; checked at the start).
const WORD: usize = 50_000;
const WORDS: usize = 180;
const ANSWER_BYTES: usize = WORD * WORDS;
/// The receive buffer the stalled client asks for before connecting.
const CLIENT_RCVBUF: u32 = 4096;
/// The reading user's answer, and how long it may take while the other
/// client is stalled (it must also end before that client is cut).
const NORMAL_WORDS: usize = 100;
const NORMAL_WORD: usize = 2_000;
const PROMPT: Duration = IDLE;
/// How much the gateway's resident memory may grow, all told, for one task
/// with a 9 MB answer. The answer passes through the broker client, JSON
/// decoding and encoding several times (as the artifact update, the final
/// task, the log's event, the SSE frame) and the allocator keeps what it
/// got: about ten times the answer whether or not the client reads
/// (measured while writing this test: +60 to +95 MB for 9 MB stalled; for
/// 12 MB, +127 MB reading and +136 MB stalled). The bound catches a
/// gateway that holds copies per write attempt or per retry; what the stall
/// itself may add is [`RSS_STALL_GROWTH_MAX`].
const RSS_GROWTH_MAX: u64 = 16 * ANSWER_BYTES as u64;
/// How much it may grow while the client is stalled, once the gateway has
/// written what the socket takes and only waits (measured: 0.1 MB).
const RSS_STALL_GROWTH_MAX: u64 = 8 << 20;
/// The gateway's send queue past this holds part of the final event (the
/// streamed pieces before it are at most [`PER_TASK`]): the gateway is
/// writing the answer, and the socket, its client reading nothing, will
/// take no more than its buffer.
const STALLED_QUEUE: u64 = 4 * PER_TASK as u64;
/// How long the agent and the gateway may take to produce and relay the
/// answer (debug builds on a busy machine).
const ANSWER_WITHIN: Duration = Duration::from_secs(90);

/// A line of the gateway's warning about a client cut off (`serve.rs`).
const STALL_WARNING: &str = "closed an HTTP connection whose client read nothing for";

/// TCP states of `/proc/net/tcp`.
const TCP_ESTABLISHED: u8 = 0x01;

fn gateway_yaml(mq: &MosquittoBroker, port: u16) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      port: {port}
      frontend_use_authorization: true
      session_secret_key: slow-sse-session-key
      request_timeout_seconds: 60
      agent_card_ttl_seconds: 120
      max_message_size_bytes: 67108864
      trust_manager: {{card_publish_interval_seconds: 1}}
      limits: {{idle_timeout_seconds: {idle}, task_events_per_task_bytes: {PER_TASK}}}
      users:
        - {{id: slow, token: slow-token}}
        - {{id: alice, token: alice-token}}
"#,
        url = mq.url(),
        idle = IDLE.as_secs(),
    )
}

/// Agent `name`, signed in to the broker as the user of that name (see
/// [`BROKER_USERS`]), answering with `model`.
fn agent_yaml(
    mq: &MosquittoBroker,
    name: &str,
    db: &std::path::Path,
    model: &ScriptedModel,
) -> String {
    let password = BROKER_USERS
        .iter()
        .find(|(u, _)| *u == name)
        .map(|(_, p)| *p)
        .expect("a broker user per agent");
    format!(
        r#"apps:
  - name: {name}
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: {name}, broker_password: {password}}}
    app_config:
      namespace: {NS}
      agent_name: {name}
      agent_card_publishing: {{interval_seconds: 1}}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      max_message_size_bytes: 67108864
      session_service: {{type: sql, database_url: "sqlite:///{db}"}}
      instruction: You are a test agent.
      model: {{model: openai/test-model, api_base: "{base}", api_key: sk-test-key, timeout: 60, max_retries: 0}}
      tools:
        - {{tool_type: builtin, tool_name: echo}}
"#,
        url = mq.url(),
        db = db.display(),
        base = model.base_url(),
    )
}

/// `count` words of `len` bytes each (the last byte a space), numbered so
/// no two are alike.
fn story(count: usize, len: usize) -> String {
    (0..count)
        .map(|i| format!("{i:0>w$} ", w = len - 1))
        .collect()
}

/// The largest buffer the kernel's autotuning gives a TCP socket
/// (`net.ipv4.tcp_wmem` for sending: its third figure).
fn tcp_buffer_max(which: &str) -> usize {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{which}"))
        .ok()
        .and_then(|v| v.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no /proc/sys/net/ipv4/{which}"))
}

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One socket of `/proc/net/tcp{,6}`: its state and its queues.
#[derive(Debug, Clone, Copy)]
struct TcpEntry {
    state: u8,
    /// Bytes sent and not acknowledged, or not sent yet.
    tx_queue: u64,
    /// Bytes received and not read by the process.
    rx_queue: u64,
}

/// The loopback socket whose local port is `local` and remote port
/// `remote`, if the kernel still has it.
fn tcp_entry(local: u16, remote: u16) -> Option<TcpEntry> {
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let hex = |h: &str| u64::from_str_radix(h, 16).ok();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let table = std::fs::read_to_string(file).unwrap_or_default();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || port(f[1]) != Some(local) || port(f[2]) != Some(remote) {
                continue;
            }
            let (tx, rx) = f[4].split_once(':')?;
            return Some(TcpEntry {
                state: u8::from_str_radix(f[3], 16).ok()?,
                tx_queue: hex(tx)?,
                rx_queue: hex(rx)?,
            });
        }
    }
    None
}

/// Opens `message:stream` as `user` on a socket whose receive buffer is
/// [`CLIENT_RCVBUF`] (set before connecting, so the window it advertises
/// is small from the start), sends the request and reads nothing.
async fn stalled_stream(port: u16, user: &str, text: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(CLIENT_RCVBUF).unwrap();
    let mut conn = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let body = json!({"agent_name": STORYTELLER, "text": text}).to_string();
    let request = format!(
        "POST /api/v1/message:stream HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\
         authorization: Bearer {user}-token\r\naccept: text/event-stream\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    conn
}

/// Streams a request to `agent` as `user` and reads it to its end: the
/// final task.
async fn read_answer(gw_url: &str, user: &str, agent: &str, text: &str) -> Result<Value, String> {
    let resp = reqwest::Client::new()
        .post(format!("{gw_url}/api/v1/message:stream"))
        .bearer_auth(format!("{user}-token"))
        .json(&json!({"agent_name": agent, "text": text}))
        .send()
        .await
        .map_err(|e| format!("HTTP request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut events = SseReader::new(resp);
    loop {
        match events.next_event().await {
            Ok(Some(ev)) if ev.event == "task" => return Ok(ev.data),
            Ok(Some(ev)) if ev.event == "error" => return Err(format!("error event: {}", ev.data)),
            Ok(Some(_)) => {}
            Ok(None) => return Err("stream ended without an end".into()),
            Err(e) => return Err(format!("stream broke: {e}")),
        }
    }
}

/// `GET /api/v1/tasks` as `user`.
async fn task_list(gw_url: &str, user: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{gw_url}/api/v1/tasks"))
        .bearer_auth(format!("{user}-token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Samples a process's resident memory every 20 ms until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    samples.push((Instant::now(), rss(pid)));
                    std::thread::sleep(Duration::from_millis(20));
                }
                samples.push((Instant::now(), rss(pid)));
                samples
            }
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> Vec<(Instant, u64)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("RSS sampler")
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    // What the kernel can hold of the answer: the gateway's send buffer at
    // its largest and the client's small receive buffer (doubled by Linux).
    let kernel_max = tcp_buffer_max("tcp_wmem") + 2 * CLIENT_RCVBUF as usize;
    assert!(
        kernel_max < ANSWER_BYTES / 2,
        "the kernel may buffer {kernel_max} bytes of a {ANSWER_BYTES}-byte answer: \
         this test could not tell a cut from a full buffer"
    );
    let mq = MosquittoBroker::for_namespace(BROKER_USERS, NS).expect("mosquitto");
    let model = ScriptedModel::start(Protocol::OpenAi).await;
    let quick_model = ScriptedModel::start(Protocol::OpenAi).await;
    let big = story(WORDS, WORD);
    let normal = story(NORMAL_WORDS, NORMAL_WORD);
    assert_eq!(big.len(), ANSWER_BYTES);
    model.push(Turn::text(big.clone()));
    quick_model.push(Turn::text(normal.clone()));

    let port = free_port();
    let mut gw = AmeshRun::start(&gateway_yaml(&mq, port), &[("RUST_LOG", "info")]);
    gw.wait_for("gateway listening");
    let gw_url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let agent = AmeshRun::start(
        &agent_yaml(&mq, STORYTELLER, &dir.path().join("story.db"), &model),
        &[("RUST_LOG", "warn")],
    );
    let _quick = AmeshRun::start(
        &agent_yaml(&mq, QUICK, &dir.path().join("quick.db"), &quick_model),
        &[("RUST_LOG", "warn")],
    );
    wait_listed(
        &gw_url,
        "alice-token",
        &[STORYTELLER, QUICK],
        Duration::from_secs(30),
    )
    .await;
    let rss_before = rss(gw.pid());
    assert!(
        rss_before > 0,
        "no VmRSS for the gateway's pid {}",
        gw.pid()
    );
    let sampler = RssSampler::start(gw.pid());

    // The client asks for the long answer and never reads.
    let asked = Instant::now();
    let mut stalled = stalled_stream(port, "slow", "a very long story please").await;
    let client_port = stalled.local_addr().unwrap().port();

    // The stall begins when the gateway's send queue holds more than the
    // streamed pieces could fill (PER_TASK): the final event, with the whole
    // answer, is being written, and the socket takes no more of it.
    let deadline = asked + ANSWER_WITHIN;
    let held = loop {
        let entry = tcp_entry(port, client_port);
        match entry {
            Some(e) if e.state == TCP_ESTABLISHED && e.tx_queue > STALLED_QUEUE => break e,
            Some(e) if e.state == TCP_ESTABLISHED => {}
            other => panic!(
                "the gateway's side of the stalled connection ended before it held the \
                 answer ({:?} after the request): {other:?}\n{}",
                asked.elapsed(),
                gw.output()
            ),
        }
        if Instant::now() > deadline {
            let tasks = task_list(&gw_url, "slow").await;
            panic!(
                "the gateway did not have the answer to send within {ANSWER_WITHIN:?} \
                 (its side of the connection: {entry:?}; the task: {tasks})\n\
                 gateway:\n{}\nagent:\n{}",
                gw.output(),
                agent.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stall_began = Instant::now();

    // Meanwhile another user asks and reads: the stalled client holds up no one.
    let reader = tokio::spawn({
        let url = gw_url.clone();
        async move {
            let started = Instant::now();
            let result = read_answer(&url, "alice", QUICK, "a short story please").await;
            (result, started, Instant::now())
        }
    });

    // Watch the gateway's side of the stalled connection until it leaves
    // ESTABLISHED (FIN_WAIT1 behind its unsent data, or gone): the cut.
    let mut last_seen = held;
    let mut client_side = tcp_entry(client_port, port);
    let cut_at = loop {
        match tcp_entry(port, client_port) {
            Some(e) if e.state == TCP_ESTABLISHED => last_seen = e,
            _ => break Instant::now(),
        }
        client_side = tcp_entry(client_port, port).or(client_side);
        assert!(
            stall_began.elapsed() < IDLE + CUT_SLACK + Duration::from_secs(10),
            "the gateway never closed the connection of a client that read nothing \
             (stalled for {:?}, idle timeout {IDLE:?}; its side: {last_seen:?})\n{}",
            stall_began.elapsed(),
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let after_cut = tcp_entry(port, client_port);
    let samples = sampler.finish();
    let rss_after = rss(gw.pid());

    // The reading user, served in full and promptly while the other
    // client's connection was still held.
    let (normal_result, normal_started, normal_done) = reader.await.unwrap();
    let normal_task = normal_result.unwrap_or_else(|e| panic!("the reading user: {e}"));

    // Then the stalled client reads again: what its kernel and the
    // gateway's held, then the end; never the whole answer.
    let resumed = Instant::now();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await {
            Ok(Ok(0)) => break "EOF".to_string(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break format!("{:?}", e.kind()),
            Err(_) => break "nothing for 10 s".to_string(),
        }
    };
    let read_for = resumed.elapsed();
    let head = String::from_utf8_lossy(&received[..received.len().min(200)]).to_string();

    // The operator's warning, once the log has it.
    let deadline = Instant::now() + Duration::from_secs(3);
    let log = loop {
        let log = gw.output();
        if log.contains(STALL_WARNING) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(STALL_WARNING)).collect();

    // The task itself: complete in the gateway's log, which a client that
    // comes back reads.
    let http = reqwest::Client::new();
    let tasks = task_list(&gw_url, "slow").await;
    let task = &tasks["tasks"][0];
    let id = task["taskId"].as_str().unwrap();
    let events = http
        .get(format!("{gw_url}/api/v1/tasks/{id}/events"))
        .bearer_auth("slow-token")
        .send()
        .await
        .unwrap();
    let events = read_sse(events).await.unwrap();

    // Memory: the peak, and while the gateway only waited for the socket
    // (from a second into the stall, when it has written what the socket
    // takes, to the cut).
    let peak = samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    let settled = stall_began + Duration::from_secs(1);
    let max_in = |from: Instant, to: Instant| {
        samples
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, r)| *r)
            .max()
    };
    let rss_stall_start = max_in(stall_began, settled).unwrap_or(0);
    let rss_stall_end = max_in(settled, cut_at);

    let to_cut = cut_at - stall_began;
    let normal_took = normal_done - normal_started;
    eprintln!("slow SSE client, {} MB answer:", mb(ANSWER_BYTES as u64));
    eprintln!(
        "  the gateway's write blocked {:.2} s after the request; it cut the connection \
         {:.2} s later (idle timeout {} s), {:.2} s after the request",
        (stall_began - asked).as_secs_f64(),
        to_cut.as_secs_f64(),
        IDLE.as_secs(),
        (cut_at - asked).as_secs_f64()
    );
    eprintln!(
        "  before the cut the kernel held {} bytes in the gateway's send queue and {} \
         unread at the client (receive buffer asked: {CLIENT_RCVBUF}); the gateway's \
         side after: {after_cut:?}",
        last_seen.tx_queue,
        client_side.map_or(0, |e| e.rx_queue),
    );
    eprintln!(
        "  the client read {} bytes ({:.1} % of the answer) when it read again, \
         {:.2} s, then {ended}",
        received.len(),
        100.0 * received.len() as f64 / ANSWER_BYTES as f64,
        read_for.as_secs_f64()
    );
    eprintln!(
        "  the reading user got {} bytes in {:.2} s, {:.2} s before the cut",
        normal.len(),
        normal_took.as_secs_f64(),
        (cut_at.max(normal_done) - normal_done).as_secs_f64()
    );
    eprintln!(
        "  gateway RSS {:.1} MB before, peak {:.1} MB; while stalled {:.1} MB at first, \
         {:.1} MB at most later; {:.1} MB after the cut",
        mb(rss_before),
        mb(peak),
        mb(rss_stall_start),
        mb(rss_stall_end.unwrap_or(0)),
        mb(rss_after)
    );
    for w in &warnings {
        eprintln!("  gateway log: {}", w.trim());
    }

    // The cut: not before the idle timeout, and within it and a few seconds.
    assert!(
        cut_at - asked >= IDLE,
        "cut {:?} after the request, before the idle timeout {IDLE:?}",
        cut_at - asked
    );
    assert!(
        to_cut <= IDLE + CUT_SLACK,
        "cut {to_cut:?} after the gateway's write blocked; the idle timeout is {IDLE:?}"
    );
    // The gateway reset the connection rather than closing it: nothing it
    // had queued for the client stays in its kernel (a graceful close kept
    // ~2.8 MB in FIN_WAIT1 until TCP gave up).
    assert!(
        after_cut.as_ref().is_none_or(|e| e.tx_queue == 0),
        "the gateway's side still holds data for the cut client: {after_cut:?}"
    );
    // The connection then ends (EOF or reset) having carried a fraction of
    // the answer (its final event alone is larger), and no end of the
    // chunked body.
    assert!(
        ended == "EOF" || ended == "ConnectionReset",
        "after the cut the client's read ended with {ended} ({} bytes)",
        received.len()
    );
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "not the start of an SSE answer: {head:?}"
    );
    assert!(
        received.len() < ANSWER_BYTES / 2,
        "the client received {} bytes of a {ANSWER_BYTES}-byte answer: not cut off",
        received.len()
    );
    assert!(
        !received.ends_with(b"\r\n0\r\n\r\n"),
        "the chunked body ended properly: not cut off"
    );
    // The operator is told, once, about this connection (not the reader's).
    assert_eq!(
        warnings.len(),
        1,
        "one warning about a stalled client expected:\n{log}"
    );
    assert!(
        warnings[0].contains(&format!("127.0.0.1:{client_port}")),
        "the warning does not name the stalled client (port {client_port}): {}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("limits.idle_timeout_seconds"),
        "{}",
        warnings[0]
    );
    // The reading user: the whole answer, promptly, before the cut.
    assert_eq!(normal_task["status"]["state"], "completed", "{normal_task}");
    assert_eq!(
        answer(&normal_task).trim_end(),
        normal.trim_end(),
        "the reading user did not get the whole answer"
    );
    assert!(
        normal_took < PROMPT,
        "the reading user waited {normal_took:?} while another client was stalled"
    );
    assert!(
        normal_done < cut_at,
        "the reading user was served only after the stalled client was cut \
         ({:?} after the stall began, cut after {to_cut:?})",
        normal_done - stall_began
    );
    // Memory: bounded all told, and flat while the client was stalled.
    let grown = peak.saturating_sub(rss_before);
    assert!(
        grown <= RSS_GROWTH_MAX,
        "the gateway grew by {:.1} MB for one {:.1} MB answer",
        mb(grown),
        mb(ANSWER_BYTES as u64)
    );
    let rss_stall_end = rss_stall_end.expect("no RSS sample in the stall: cut too soon");
    assert!(
        rss_stall_end.saturating_sub(rss_stall_start) <= RSS_STALL_GROWTH_MAX,
        "the gateway grew by {:.1} MB while it waited for the stalled client",
        mb(rss_stall_end.saturating_sub(rss_stall_start))
    );
    // The task completed all the same; its log left out the streamed pieces
    // past its budget, with a notice, and kept the whole answer.
    assert_eq!(task["state"], "completed", "{tasks}");
    assert_eq!(task["done"], true, "{tasks}");
    assert!(task["dropped"].as_u64().unwrap_or(0) > 0, "{tasks}");
    assert!(
        events.iter().any(|e| e.event == "notice"),
        "no word of the streamed pieces left out: {:?}",
        events.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    let last = events.last().expect("events");
    assert_eq!(last.event, "task");
    assert_eq!(
        answer(&last.data).trim_end(),
        big.trim_end(),
        "the kept final event lacks part of the answer"
    );
}
