//! Legacy HTTP+SSE transport (MCP 2024-11-05), still what many hosted MCP
//! servers (and SAM configs with `type: sse`) speak.
//!
//! The client GETs an event stream; the server's first event, `endpoint`,
//! names (usually relatively) the URL to POST JSON-RPC messages to. POSTs
//! are acknowledged with 202 and the answers arrive on the stream, matched
//! to waiting requests by id. A reader task owns the stream; dropping the
//! connection aborts it.
//!
//! rmcp dropped its client for this transport, so it is written here,
//! beside [`super::streamable`] and behind the same session layer. The
//! announced endpoint must share the SSE URL's origin: the user's bearer
//! token goes with every POST, and a server (or a proxy injecting events)
//! must not be able to send it elsewhere.
//!
//! The stream is the session: when it ends, waiting requests fail and the
//! next request reports [`McpError::SessionExpired`] before sending
//! anything, so the session layer reconnects and re-initializes safely.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde_json::Value;
use tokio::sync::oneshot;
use url::Url;

use super::error::McpError;
use super::event_stream::{Event, EventParser};
use super::http::{ByteStream, Endpoint, byte_stream, media_type};
use super::jsonrpc::{self, Incoming, Request, RpcError};

type Answer = Result<Value, RpcError>;

/// Requests waiting for their answer on the stream.
#[derive(Debug, Default)]
struct Waiters {
    by_id: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    closed: AtomicBool,
}

impl Waiters {
    fn register(&self, id: u64) -> Option<oneshot::Receiver<Answer>> {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock so `close` cannot slip between check and insert.
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        map.insert(id, tx);
        Some(rx)
    }

    fn answer(&self, id: u64, answer: Answer) -> bool {
        let tx = self
            .by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        tx.map(|tx| tx.send(answer).is_ok()).unwrap_or(false)
    }

    fn forget(&self, id: u64) {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Fails every waiter (their receivers see the sender dropped).
    fn close(&self) {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::Release);
        map.clear();
    }
}

/// Removes a waiter whose request was abandoned (timeout, POST failure).
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.waiters.forget(self.id);
    }
}

/// One open event stream and the endpoint it announced.
#[derive(Debug)]
struct Connection {
    post_url: Url,
    waiters: Arc<Waiters>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.waiters.close();
    }
}

/// One legacy SSE session with one server, for one user.
#[derive(Debug)]
pub(crate) struct LegacySse {
    endpoint: Endpoint,
    read_timeout: Option<Duration>,
    connection: Mutex<Option<Arc<Connection>>>,
}

impl LegacySse {
    pub fn new(endpoint: Endpoint, read_timeout: Option<Duration>) -> Self {
        Self {
            endpoint,
            read_timeout,
            connection: Mutex::new(None),
        }
    }

    /// Drops any open stream and opens a new one (before initialize).
    pub async fn reset(&self) -> Result<(), McpError> {
        self.close();
        let connection = self.connect().await?;
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(connection));
        Ok(())
    }

    pub fn close(&self) {
        self.connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    pub async fn request(&self, request: &Request) -> Result<Answer, McpError> {
        let connection = self.live()?;
        let Some(answer) = connection.waiters.register(request.id) else {
            return Err(self.expired());
        };
        let _guard = WaiterGuard {
            waiters: &connection.waiters,
            id: request.id,
        };
        self.post(&connection, &request.to_json()).await?;
        answer.await.map_err(|_| McpError::Transport {
            tool_id: self.endpoint.tool_id.clone(),
            message: "event stream closed before the answer arrived".into(),
        })
    }

    pub async fn notify(&self, message: &Value) -> Result<(), McpError> {
        let connection = self.live()?;
        self.post(&connection, message).await
    }

    fn live(&self) -> Result<Arc<Connection>, McpError> {
        let guard = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(c) if !c.waiters.closed.load(Ordering::Acquire) => Ok(c.clone()),
            _ => Err(self.expired()),
        }
    }

    fn expired(&self) -> McpError {
        McpError::SessionExpired {
            tool_id: self.endpoint.tool_id.clone(),
        }
    }

    async fn post(&self, connection: &Connection, message: &Value) -> Result<(), McpError> {
        let rb = self
            .endpoint
            .http
            .post(connection.post_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(message.to_string());
        let response = self
            .endpoint
            .authorize(rb)?
            .send()
            .await
            .map_err(|e| self.endpoint.transport_error(e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            // The server no longer knows the endpoint's session.
            connection.waiters.close();
            return Err(self.expired());
        }
        if !status.is_success() {
            return Err(McpError::from_status(
                &self.endpoint.tool_id,
                status,
                response.headers(),
            ));
        }
        Ok(())
    }

    /// Opens the stream and waits for the `endpoint` event.
    async fn connect(&self) -> Result<Connection, McpError> {
        let rb = self
            .endpoint
            .http
            .get(self.endpoint.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        let response = self
            .endpoint
            .authorize(rb)?
            .send()
            .await
            .map_err(|e| self.endpoint.transport_error(e))?;
        if !response.status().is_success() {
            return Err(McpError::from_status(
                &self.endpoint.tool_id,
                response.status(),
                response.headers(),
            ));
        }
        let media = media_type(response.headers());
        if media.as_deref() != Some("text/event-stream") {
            return Err(self.endpoint.protocol_error(format!(
                "expected text/event-stream from the SSE URL, found {}",
                media.as_deref().unwrap_or("no Content-Type")
            )));
        }
        let mut stream = byte_stream(response);
        let mut parser = EventParser::new();
        let mut early = Vec::new();
        let post_url = 'found: loop {
            let Some(chunk) = stream.next().await else {
                return Err(self
                    .endpoint
                    .protocol_error("event stream ended before the `endpoint` event"));
            };
            let chunk = chunk.map_err(|e| self.endpoint.transport_error(e))?;
            let events = parser
                .push(&chunk)
                .map_err(|e| self.endpoint.protocol_error(e.to_string()))?;
            let mut events = events.into_iter();
            while let Some(event) = events.next() {
                if event.event == "endpoint" {
                    // Events in the same chunk after it are answers already.
                    early.extend(events);
                    break 'found self.resolve_endpoint(&event.data)?;
                }
            }
        };
        let waiters = Arc::new(Waiters::default());
        let reader = tokio::spawn(read_loop(
            stream,
            parser,
            early,
            waiters.clone(),
            self.read_timeout,
            self.endpoint.tool_id.clone(),
        ));
        Ok(Connection {
            post_url,
            waiters,
            reader,
        })
    }

    fn resolve_endpoint(&self, data: &str) -> Result<Url, McpError> {
        let url = self.endpoint.url.join(data.trim()).map_err(|e| {
            self.endpoint
                .protocol_error(format!("`endpoint` event is not a URL: {e}"))
        })?;
        if url.origin() != self.endpoint.url.origin() {
            return Err(self.endpoint.protocol_error(format!(
                "`endpoint` event points to another origin ({}); refusing to send credentials there",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }
}

/// Owns the stream: routes answers to waiters until the stream ends, then
/// fails whoever still waits.
async fn read_loop(
    mut stream: ByteStream,
    mut parser: EventParser,
    early: Vec<Event>,
    waiters: Arc<Waiters>,
    idle_limit: Option<Duration>,
    tool_id: String,
) {
    for event in early {
        dispatch(&waiters, event);
    }
    loop {
        let next = match idle_limit {
            Some(limit) => match tokio::time::timeout(limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(%tool_id, ?limit, "MCP event stream silent too long; closing");
                    break;
                }
            },
            None => stream.next().await,
        };
        match next {
            Some(Ok(chunk)) => match parser.push(&chunk) {
                Ok(events) => events.into_iter().for_each(|e| dispatch(&waiters, e)),
                Err(e) => {
                    tracing::warn!(%tool_id, error = %e, "MCP event stream refused; closing");
                    break;
                }
            },
            Some(Err(e)) => {
                tracing::debug!(%tool_id, error = %e.without_url(), "MCP event stream failed");
                break;
            }
            None => break,
        }
    }
    tracing::debug!(%tool_id, "MCP event stream closed");
    waiters.close();
}

fn dispatch(waiters: &Waiters, event: Event) {
    if event.event != "message" {
        tracing::debug!(event = %event.event, "MCP SSE event ignored");
        return;
    }
    let Ok(messages) = jsonrpc::parse_messages(&event.data) else {
        tracing::debug!("MCP SSE event with invalid JSON ignored");
        return;
    };
    for message in messages {
        match jsonrpc::classify(message) {
            Incoming::Response { id, result } => {
                let id = id
                    .as_u64()
                    .or_else(|| id.as_str().and_then(|s| s.parse().ok()));
                if !id.is_some_and(|id| waiters.answer(id, result)) {
                    tracing::debug!(?id, "MCP response nobody waits for; ignored");
                }
            }
            Incoming::Other { method } => {
                tracing::debug!(?method, "MCP server message ignored by the tool client");
            }
        }
    }
}
