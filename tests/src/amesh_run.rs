//! `amesh` run as an operator runs it, with its output kept for a test to
//! read: `amesh config check` on a config that must fail, and `amesh run`
//! as a child process whose stdout and stderr go to a file the test polls
//! (amesh's log is what an operator reads, so tests that check it read the
//! same bytes, not an in-process subscriber).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::amesh_bin::amesh;

/// Variables of the test's own environment that would change what amesh does.
const CLEARED_VARS: [&str; 5] = [
    "SECRETS_TTL_SECONDS",
    "OAUTH_TOOL_REDIRECT_URI",
    "AMESH_AGENT_SECRET",
    "RUST_LOG",
    "NO_COLOR",
];

/// Text without ANSI colour sequences (amesh colours its log even in a file).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `amesh` in `dir`, with `env` on top of the test's environment minus
/// [`CLEARED_VARS`].
fn amesh_command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(amesh());
    cmd.current_dir(dir);
    for var in CLEARED_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `amesh config check` on `yaml` with `env`: whether it passed, and its
/// stdout and stderr without colours.
pub fn config_check_output(yaml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let out = amesh_command(dir.path(), env)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("amesh config check runs");
    let text = plain(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    (out.status.success(), text)
}

/// [`config_check_output`] of a config that must fail: its output.
pub fn config_check(yaml: &str, env: &[(&str, &str)]) -> String {
    let (passed, text) = config_check_output(yaml, env);
    assert!(
        !passed,
        "config check passed a config the doc says it refuses:\n{yaml}"
    );
    text
}

/// `amesh run` on one config file, its output in a file. Killed on drop.
pub struct AmeshRun {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AmeshRun {
    pub fn start(yaml: &str, env: &[(&str, &str)]) -> AmeshRun {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("apps.yaml");
        std::fs::write(&file, yaml).expect("write config");
        let log = dir.path().join("amesh.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = amesh_command(dir.path(), env)
            .arg("run")
            .arg(&file)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("amesh run starts");
        // The directory (config, log, databases) lives as long as the run.
        AmeshRun {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn output(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The output once it contains `needle` (panics after 30 s, or when
    /// amesh exits first).
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.output();
            if output.contains(needle) {
                return output;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("amesh exited ({status}) before printing {needle:?}:\n{output}");
            }
            assert!(
                Instant::now() < deadline,
                "amesh did not print {needle:?} within 30 s:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl AmeshRun {
    /// The process id (for reading its memory in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no shutdown of any kind, as when a
    /// host dies) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AmeshRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, read, released) for a gateway whose URL
/// the test must know before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `GET {url}/api/v1/agents` as the user of `token` until every one
/// of `agents` is listed; panics with the last listing after `timeout`.
/// For gateways run as processes (a [`crate::stack::Stack`] has its own).
pub async fn wait_listed(url: &str, token: &str, agents: &[&str], timeout: Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        let text = match http
            .get(format!("{url}/api/v1/agents"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            _ => String::new(),
        };
        if agents.iter().all(|a| text.contains(&format!("\"{a}\""))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agents {agents:?} not listed after {timeout:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
