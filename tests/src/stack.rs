//! Starts amesh apps in the test process from YAML, against a real broker.
//!
//! Tests describe their apps in YAML (the same path `amesh run` takes, so
//! the config loader is exercised too), get back the running apps and the
//! gateway's base URL, and stop everything when done.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use amesh_runtime::broker::DevBus;
use amesh_runtime::config;
use amesh_runtime::run::{self, Running};

/// Running apps plus what a test needs to reach them.
pub struct Stack {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Stack {
    /// Loads `yaml` (a whole `apps:` file) and starts every app in it.
    pub async fn start(yaml: &str) -> anyhow::Result<Stack> {
        let dir = tempfile::tempdir()?;
        let path: PathBuf = dir.path().join("apps.yaml");
        std::fs::write(&path, yaml)?;
        let cfg = config::load_files(&[&path]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let running = run::start_apps(&cfg, &DevBus::new()).await?;
        Ok(Stack {
            running: Some(running),
            dir,
            http: reqwest::Client::new(),
        })
    }

    /// Base URL of the first gateway, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        let addr = self.running.as_ref().expect("running").gateway_addrs()[0];
        format!("http://{addr}")
    }

    /// Stops every app gracefully and waits for them.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.wait().await;
        }
    }

    /// Polls `GET /api/v1/agents` until `agent` is listed (or `timeout`).
    pub async fn wait_for_agent(&self, agent: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for_agent_as(agent, timeout, None).await
    }

    /// Like `wait_for_agent`, authenticating with a bearer token.
    pub async fn wait_for_agent_as(
        &self,
        agent: &str,
        timeout: Duration,
        token: Option<&str>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let listed = self.agents_as(token).await.unwrap_or_default();
            if listed.iter().any(|a| a == agent) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("agent {agent} not listed after {timeout:?}; listed: {listed:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Names listed by `GET /api/v1/agents`.
    pub async fn agents(&self) -> anyhow::Result<Vec<String>> {
        self.agents_as(None).await
    }

    /// Names listed by `GET /api/v1/agents`, as the token's user.
    pub async fn agents_as(&self, token: Option<&str>) -> anyhow::Result<Vec<String>> {
        let mut req = self.http.get(format!("{}/api/v1/agents", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let v: serde_json::Value = req.send().await?.error_for_status()?.json().await?;
        Ok(v["agents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `id:` of the event (the gateway numbers a task's events), if any.
    pub id: Option<String>,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads server-sent events from a response, one at a time.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        SseReader {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<SseEvent>> {
        use futures::StreamExt;
        loop {
            while let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut event = "message".to_string();
                let mut data = String::new();
                let mut id = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Ok(Some(SseEvent {
                        id,
                        event,
                        data: serde_json::from_str(&data)?,
                    }));
                }
            }
            match self.body.next().await {
                Some(chunk) => self.buf.push_str(&String::from_utf8_lossy(&chunk?)),
                None => return Ok(None),
            }
        }
    }
}

/// Reads a whole SSE response into events (the stream ends after the final
/// event).
pub async fn read_sse(resp: reqwest::Response) -> anyhow::Result<Vec<SseEvent>> {
    let mut reader = SseReader::new(resp);
    let mut out = Vec::new();
    while let Some(ev) = reader.next_event().await? {
        out.push(ev);
    }
    Ok(out)
}
