//! stdio transport (MCP 2025-06-18, "Transports: stdio"): the server is a
//! child process of the agent; JSON-RPC messages travel as single lines
//! (no embedded newlines) on its stdin and stdout; whatever it writes to
//! stderr is its log.
//!
//! # Why here and not rmcp's child-process transport
//!
//! amesh already has one MCP client, written on reqwest for the two HTTP
//! transports (see [`super`] for why rmcp was not used there). Taking rmcp
//! for stdio alone would put two MCP clients in one codebase, with two
//! session layers, two error types and two sets of timeouts and limits to
//! keep in line, plus rmcp's dependency tree, for a transport that is a
//! line reader and a line writer. So stdio is a third transport behind the
//! same [`super::session::Session`]: initialize, paged `tools/list`,
//! `tools/call` and the per-tool timeout are shared with HTTP, and only
//! the process handling lives here.
//!
//! # The process
//!
//! One child per (agent, server), started when the session is (at agent
//! start: the agent lists its tools) and shared by every user of the
//! agent: a stdio server has no OAuth, it runs with the agent's rights and
//! its `environment_variables`. It is spawned with `kill_on_drop`, so
//! dropping the session (agent stop) kills it; grandchildren (`npx`'s own
//! node process, say) see their stdin close and are expected to exit as
//! the spec asks.
//!
//! Its environment is `PATH` and `HOME` from the agent (so `npx`, `uvx`
//! and their caches work) plus the configured `environment_variables`, and
//! nothing else: the agent's own environment holds its secrets (model API
//! keys, `AMESH_AGENT_SECRET`, database URLs, OAuth client secrets), and a
//! third-party server, often fetched by `npx -y` at start, must not read
//! them. A server that needs more is given it by name in
//! `environment_variables`.
//!
//! # Failure handling
//!
//! - Responses are matched to requests by id; at most [`MAX_PENDING`]
//!   requests wait at once (more is an error, not a bigger map).
//!   Notifications from the server are ignored; its requests are answered
//!   (`ping` with an empty result, anything else "method not found") so it
//!   never waits on us.
//! - A line longer than the agent's `max_message_size_bytes` is a protocol
//!   error: the child is stopped (the stream cannot be resynchronized
//!   without reading the rest) and waiting requests fail. Memory per line
//!   is bounded by that limit. Lines that are not JSON are logged at debug
//!   and skipped (servers that print banners to stdout still work).
//! - When the child exits, waiting requests fail with a tool error saying
//!   how it ended; the next request finds the process gone and reports
//!   [`McpError::SessionExpired`] before sending anything, so the session
//!   layer starts a new child, re-initializes and sends. A child that
//!   keeps dying before it answers anything is restarted with exponential
//!   backoff ([`restart_delay`]); until the delay has passed every call
//!   fails at once with an error saying so.
//! - stderr goes to `tracing` at debug, one event per line, each cut at
//!   [`MAX_STDERR_LINE`] bytes, with the values of `environment_variables`
//!   masked. Nothing here logs the environment.

use std::collections::HashMap;
use std::process::Stdio as PipeKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use super::error::McpError;
use super::jsonrpc::{self, Incoming, Request, RpcError};
use crate::secret::{ExposeSecret as _, SecretString};
use crate::tool_config::McpToolConfig;

type Answer = Result<Value, RpcError>;

/// Requests that may wait for an answer at once, per server.
pub(crate) const MAX_PENDING: usize = 256;

/// stderr lines are cut here before they are logged.
pub(crate) const MAX_STDERR_LINE: usize = 2048;

/// Longest wait between restarts of a child that keeps crashing.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// Environment variables passed through from the agent; see the module
/// documentation for why nothing else is.
const INHERITED_ENV: &[&str] = &["PATH", "HOME"];

/// Secret values shorter than this are not masked in stderr lines (a
/// value like `1` or `true` would mask half of every line).
const MIN_MASKED_LEN: usize = 6;

/// The wait before starting a child again after `crashes` consecutive
/// failures (exits or failed starts with no answer in between): the first
/// restart is immediate, then 0.5 s doubling up to [`MAX_RESTART_DELAY`].
pub(crate) fn restart_delay(crashes: u32) -> Duration {
    match crashes {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(500)
            .saturating_mul(1u32 << (n - 2).min(10))
            .min(MAX_RESTART_DELAY),
    }
}

/// How to start the server.
#[derive(Debug)]
struct Spawn {
    command: String,
    args: Vec<String>,
    cwd: Option<String>,
    /// Secrets: `Debug` is redacted.
    env: Vec<(String, SecretString)>,
}

/// Crash bookkeeping, shared with the reader task.
#[derive(Debug, Default)]
struct Health {
    /// Consecutive crashes with no answer from the server in between.
    crashes: u32,
    last_crash: Option<Instant>,
    /// How the last child ended, for error messages.
    last_exit: Option<String>,
}

/// Requests waiting for their answer, bounded.
#[derive(Debug, Default)]
struct Waiters {
    by_id: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    closed: std::sync::atomic::AtomicBool,
}

enum Register {
    Waiting(oneshot::Receiver<Answer>),
    Closed,
    Full,
}

impl Waiters {
    fn register(&self, id: u64) -> Register {
        let mut map = lock(&self.by_id);
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Register::Closed;
        }
        if map.len() >= MAX_PENDING {
            return Register::Full;
        }
        let (tx, rx) = oneshot::channel();
        map.insert(id, tx);
        Register::Waiting(rx)
    }

    fn answer(&self, id: u64, answer: Answer) -> bool {
        let tx = lock(&self.by_id).remove(&id);
        tx.is_some_and(|tx| tx.send(answer).is_ok())
    }

    fn forget(&self, id: u64) {
        lock(&self.by_id).remove(&id);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Fails every waiter (their receivers see the sender dropped).
    fn close(&self) {
        let mut map = lock(&self.by_id);
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        map.clear();
    }
}

/// Removes a waiter whose request was abandoned (timeout, write failure).
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.waiters.forget(self.id);
    }
}

/// One running child. Dropping it aborts the reader task, which owns the
/// `Child` (spawned with `kill_on_drop`), so the process is killed.
#[derive(Debug)]
struct Process {
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    waiters: Arc<Waiters>,
    reader: tokio::task::JoinHandle<()>,
    stderr: tokio::task::JoinHandle<()>,
}

impl Drop for Process {
    fn drop(&mut self) {
        self.reader.abort();
        self.stderr.abort();
        self.waiters.close();
    }
}

/// The stdio transport of one server.
#[derive(Debug)]
pub(crate) struct StdioTransport {
    tool_id: String,
    spawn: Spawn,
    max_line: usize,
    process: Mutex<Option<Arc<Process>>>,
    health: Arc<Mutex<Health>>,
}

impl StdioTransport {
    /// `max_line`: the longest message line accepted from the child.
    pub fn new(cfg: &McpToolConfig, max_line: usize) -> Self {
        let params = &cfg.connection_params;
        Self {
            tool_id: cfg.tool_id(),
            spawn: Spawn {
                command: params.command.clone().unwrap_or_default(),
                args: params.args.clone(),
                cwd: params.cwd.clone(),
                env: cfg
                    .environment_variables
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            max_line: max_line.max(1),
            process: Mutex::new(None),
            health: Arc::new(Mutex::new(Health::default())),
        }
    }

    /// Stops any running child and starts a new one (before initialize),
    /// unless the restart backoff has not yet passed.
    pub async fn reset(&self) -> Result<(), McpError> {
        self.close();
        {
            let health = lock(&self.health);
            let delay = restart_delay(health.crashes);
            if let Some(at) = health.last_crash {
                let waited = at.elapsed();
                if waited < delay {
                    return Err(self.transport(format!(
                        "the server process {}; {} failures in a row, next restart in {:.1} s",
                        health.last_exit.as_deref().unwrap_or("stopped"),
                        health.crashes,
                        (delay - waited).as_secs_f64()
                    )));
                }
            }
        }
        let process = self.start().map_err(|e| {
            let how = format!("could not be started ({e})");
            let mut health = lock(&self.health);
            health.crashes = health.crashes.saturating_add(1);
            health.last_crash = Some(Instant::now());
            health.last_exit = Some(how.clone());
            self.transport(format!("the server process {how}"))
        })?;
        *lock(&self.process) = Some(Arc::new(process));
        Ok(())
    }

    /// Stops the child (kill), failing whoever waits.
    pub fn close(&self) {
        lock(&self.process).take();
    }

    pub async fn request(&self, request: &Request) -> Result<Answer, McpError> {
        let process = self.live()?;
        let answer = match process.waiters.register(request.id) {
            Register::Waiting(rx) => rx,
            Register::Closed => return Err(self.expired()),
            Register::Full => {
                return Err(self.transport(format!(
                    "{MAX_PENDING} requests already wait for the server process; try again later"
                )));
            }
        };
        let _guard = WaiterGuard {
            waiters: &process.waiters,
            id: request.id,
        };
        self.write(&process, &request.to_json()).await?;
        answer.await.map_err(|_| {
            let how = lock(&self.health)
                .last_exit
                .clone()
                .unwrap_or_else(|| "stopped".into());
            self.transport(format!("the server process {how} before answering"))
        })
    }

    pub async fn notify(&self, message: &Value) -> Result<(), McpError> {
        let process = self.live()?;
        self.write(&process, message).await
    }

    fn live(&self) -> Result<Arc<Process>, McpError> {
        match lock(&self.process).as_ref() {
            Some(p) if !p.waiters.is_closed() => Ok(p.clone()),
            _ => Err(self.expired()),
        }
    }

    async fn write(&self, process: &Process, message: &Value) -> Result<(), McpError> {
        let mut line = message.to_string();
        if line.len() > self.max_line {
            return Err(McpError::protocol(
                &self.tool_id,
                format!(
                    "request of {} bytes is longer than the message limit ({} bytes)",
                    line.len(),
                    self.max_line
                ),
            ));
        }
        line.push('\n');
        let mut stdin = process.stdin.lock().await;
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        }
        .await;
        written.map_err(|e| self.transport(format!("cannot write to the server process: {e}")))
    }

    fn start(&self) -> Result<Process, String> {
        let spawn = &self.spawn;
        let mut cmd = Command::new(spawn.command.trim());
        cmd.args(&spawn.args)
            .env_clear()
            .stdin(PipeKind::piped())
            .stdout(PipeKind::piped())
            .stderr(PipeKind::piped())
            .kill_on_drop(true);
        for key in INHERITED_ENV {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        for (key, value) in &spawn.env {
            cmd.env(key, value.expose_secret());
        }
        if let Some(cwd) = &spawn.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("`{}`: {e}", spawn.command.trim()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the child's pipes are missing".into());
        };
        tracing::debug!(tool_id = %self.tool_id, pid = ?child.id(), "MCP stdio server started");
        let stdin = Arc::new(tokio::sync::Mutex::new(stdin));
        let waiters = Arc::new(Waiters::default());
        let masks: Vec<String> = spawn
            .env
            .iter()
            .map(|(_, v)| v.expose_secret().to_owned())
            .filter(|v| v.len() >= MIN_MASKED_LEN)
            .collect();
        let stderr = tokio::spawn(log_stderr(
            BufReader::new(stderr),
            self.tool_id.clone(),
            masks,
        ));
        let reader = tokio::spawn(read_loop(ReadLoop {
            child,
            stdout: BufReader::new(stdout),
            stdin: stdin.clone(),
            waiters: waiters.clone(),
            health: self.health.clone(),
            max_line: self.max_line,
            tool_id: self.tool_id.clone(),
        }));
        Ok(Process {
            stdin,
            waiters,
            reader,
            stderr,
        })
    }

    fn expired(&self) -> McpError {
        McpError::SessionExpired {
            tool_id: self.tool_id.clone(),
        }
    }

    fn transport(&self, message: String) -> McpError {
        McpError::Transport {
            tool_id: self.tool_id.clone(),
            message,
        }
    }
}

struct ReadLoop<R> {
    child: Child,
    stdout: R,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    waiters: Arc<Waiters>,
    health: Arc<Mutex<Health>>,
    max_line: usize,
    tool_id: String,
}

/// Owns the child: routes answers to waiters until stdout ends or breaks
/// the rules, then records how the child ended and fails whoever waits.
async fn read_loop<R: AsyncBufRead + Unpin>(mut r: ReadLoop<R>) {
    let mut line = Vec::new();
    let why = loop {
        line.clear();
        match read_line_bounded(&mut r.stdout, &mut line, r.max_line, false).await {
            Ok(Line::Eof) => break None,
            Ok(Line::TooLong) => {
                tracing::warn!(tool_id = %r.tool_id, limit = r.max_line, "MCP stdio server sent a line longer than the message limit; stopping it");
                break Some(format!(
                    "was stopped: it sent a message longer than {} bytes",
                    r.max_line
                ));
            }
            Ok(Line::Complete) => {}
            Err(e) => {
                tracing::debug!(tool_id = %r.tool_id, error = %e, "MCP stdio server stdout failed");
                break None;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let Ok(messages) = jsonrpc::parse_messages(text) else {
            tracing::debug!(tool_id = %r.tool_id, "MCP stdio server wrote a line that is not JSON; ignored");
            continue;
        };
        for message in messages {
            dispatch(&r, message).await;
        }
    };
    // stdout is done: the child is exiting (or must).
    let status = match tokio::time::timeout(Duration::from_secs(2), r.child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = r.child.start_kill();
            r.child.wait().await.ok()
        }
    };
    let how = why.unwrap_or_else(|| match status {
        Some(s) => format!("exited ({s})"),
        None => "exited".into(),
    });
    tracing::warn!(tool_id = %r.tool_id, status = %how, "MCP stdio server process ended");
    {
        let mut health = lock(&r.health);
        health.crashes = health.crashes.saturating_add(1);
        health.last_crash = Some(Instant::now());
        health.last_exit = Some(how);
    }
    r.waiters.close();
}

async fn dispatch<R>(r: &ReadLoop<R>, message: Value) {
    let server_request = message.get("id").filter(|id| !id.is_null()).cloned().zip(
        message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    match jsonrpc::classify(message) {
        Incoming::Response { id, result } => {
            let id = id
                .as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()));
            if id.is_some_and(|id| r.waiters.answer(id, result)) {
                lock(&r.health).crashes = 0;
            } else {
                tracing::debug!(tool_id = %r.tool_id, ?id, "MCP response nobody waits for; ignored");
            }
        }
        Incoming::Other { method } => match server_request {
            // A request from the server: answer so it does not wait on us.
            Some((id, method)) => {
                let reply = if method == "ping" {
                    json!({"jsonrpc": "2.0", "id": id, "result": {}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32601, "message": "method not supported by this client"}})
                };
                let mut line = reply.to_string();
                line.push('\n');
                let mut stdin = r.stdin.lock().await;
                if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                    tracing::debug!(tool_id = %r.tool_id, "cannot answer an MCP server request");
                }
            }
            None => tracing::debug!(tool_id = %r.tool_id, ?method, "MCP notification ignored"),
        },
    }
}

/// Logs the child's stderr at debug, line by line, cut and masked.
async fn log_stderr<R: AsyncBufRead + Unpin>(mut stderr: R, tool_id: String, masks: Vec<String>) {
    // Read past the cut by the longest secret, so a value straddling the
    // cut is still masked whole before the line is cut.
    let longest = masks.iter().map(String::len).max().unwrap_or(0);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_bounded(&mut stderr, &mut line, MAX_STDERR_LINE + longest, true).await {
            Ok(Line::Eof) | Err(_) => return,
            Ok(outcome) => {
                let (text, cut) =
                    stderr_text(&line, &masks, longest, matches!(outcome, Line::TooLong));
                tracing::debug!(%tool_id, cut, "MCP stdio server stderr: {text}");
            }
        }
    }
}

/// A stderr line as logged: lossy UTF-8, trailing space trimmed, every
/// `environment_variables` value replaced by `[redacted]`.
fn masked(line: &[u8], masks: &[String]) -> String {
    let mut text = String::from_utf8_lossy(line).trim_end().to_owned();
    for secret in masks {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "[redacted]");
        }
    }
    text
}

/// What is logged of one stderr line read with a limit of
/// `MAX_STDERR_LINE + longest` (`too_long`: the read stopped there):
/// masked, then cut at [`MAX_STDERR_LINE`]; and whether it was cut.
fn stderr_text(line: &[u8], masks: &[String], longest: usize, too_long: bool) -> (String, bool) {
    let mut text = masked(line, masks);
    // A read that stopped mid-line may end in the start of a secret, which
    // masking cannot recognize: its last `longest` bytes are dropped.
    let keep = if too_long {
        text.len().saturating_sub(longest)
    } else {
        text.len()
    }
    .min(MAX_STDERR_LINE);
    let mut cut = too_long;
    if text.len() > keep {
        let mut end = keep;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        cut = true;
    }
    (text, cut)
}

#[derive(Debug, PartialEq)]
enum Line {
    Complete,
    /// Longer than the limit. `buf` holds the first `limit` bytes; with
    /// `skip_rest` the rest of the line was read and dropped, else it is
    /// still unread.
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (without the newline),
/// keeping at most `limit` bytes in memory whatever the child sends.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
    skip_rest: bool,
) -> std::io::Result<Line> {
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (chunk, used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = limit.saturating_sub(buf.len());
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            too_long = true;
            if !skip_rest {
                reader.consume(used);
                return Ok(Line::TooLong);
            }
        } else if !too_long {
            buf.extend_from_slice(chunk);
        }
        reader.consume(used);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize, skip_rest: bool) -> Vec<(Line, Vec<u8>)> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let line = read_line_bounded(&mut reader, &mut buf, limit, skip_rest)
                .await
                .unwrap();
            if line == Line::Eof {
                return out;
            }
            let stop = line == Line::TooLong && !skip_rest;
            out.push((line, buf));
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let got = lines(b"ab\ncdefghij\nk", 5, true).await;
        assert_eq!(
            got,
            vec![
                (Line::Complete, b"ab".to_vec()),
                (Line::TooLong, b"cdefg".to_vec()),
                (Line::Complete, b"k".to_vec()),
            ]
        );
        let got = lines(b"ab\ncdefghij\nk", 5, false).await;
        assert_eq!(got.last().map(|l| &l.0), Some(&Line::TooLong));
        assert_eq!(got.last().map(|l| l.1.len()), Some(5));
        // A line of exactly the limit is fine.
        let got = lines(b"abcde\n", 5, false).await;
        assert_eq!(got, vec![(Line::Complete, b"abcde".to_vec())]);
    }

    #[test]
    fn stderr_lines_mask_environment_values() {
        let masks = vec!["s3cr3t-token".to_owned()];
        assert_eq!(
            masked(b"auth with s3cr3t-token failed; s3cr3t-token \r\n", &masks),
            "auth with [redacted] failed; [redacted]"
        );
        assert_eq!(masked(b"\xffplain", &masks), "\u{fffd}plain");
    }

    #[tokio::test]
    async fn long_stderr_lines_are_cut_after_masking() {
        let secret = "s3cr3t-token".to_owned();
        let longest = secret.len();
        let masks = vec![secret.clone()];
        // A secret straddling the cut, and one cut off by the read limit.
        for at in [MAX_STDERR_LINE - 4, MAX_STDERR_LINE + 4] {
            let mut raw = "a".repeat(at).into_bytes();
            raw.extend_from_slice(secret.as_bytes());
            raw.extend_from_slice(&[b'b'; 100]);
            raw.push(b'\n');
            let mut reader = BufReader::new(raw.as_slice());
            let mut line = Vec::new();
            let outcome =
                read_line_bounded(&mut reader, &mut line, MAX_STDERR_LINE + longest, true)
                    .await
                    .unwrap();
            let (text, cut) = stderr_text(&line, &masks, longest, outcome == Line::TooLong);
            assert!(cut);
            assert!(text.len() <= MAX_STDERR_LINE, "{}", text.len());
            for n in 3..=secret.len() {
                assert!(!text.ends_with(&secret[..n]), "partial secret at {at}");
            }
            assert!(!text.contains("s3cr3t"));
        }
        // Masking shrinks the text and pulls a secret the read cut off
        // into view: that tail is dropped.
        let long = "0123456789-long-secret-value-x".to_owned();
        let masks_long = vec![long.clone()];
        let mut raw = "a".repeat(MAX_STDERR_LINE - 45).into_bytes();
        raw.extend_from_slice(long.repeat(3).as_bytes());
        raw.push(b'\n');
        let mut reader = BufReader::new(raw.as_slice());
        let mut line = Vec::new();
        let outcome = read_line_bounded(&mut reader, &mut line, MAX_STDERR_LINE + long.len(), true)
            .await
            .unwrap();
        assert_eq!(outcome, Line::TooLong);
        let (text, _) = stderr_text(&line, &masks_long, long.len(), true);
        assert!(!text.contains("0123456"), "{}", &text[text.len() - 40..]);
        let (short, cut) = stderr_text(b"ok s3cr3t-token", &masks, longest, false);
        assert_eq!((short.as_str(), cut), ("ok [redacted]", false));
    }

    #[test]
    fn restart_delay_grows_and_is_capped() {
        assert_eq!(restart_delay(1), Duration::ZERO);
        assert_eq!(restart_delay(2), Duration::from_millis(500));
        assert_eq!(restart_delay(3), Duration::from_secs(1));
        assert_eq!(restart_delay(50), MAX_RESTART_DELAY);
    }
}
