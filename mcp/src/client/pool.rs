//! Connection and session reuse across an agent's tool calls.
//!
//! Two levels, because they have different owners: HTTP connections
//! belong to a server (one `reqwest::Client` keeps keep-alive connections
//! per host, shared by every user), while an MCP session belongs to a
//! (server, user) pair, since it is initialized with that user's token and
//! the server may keep per-user state in it. The pool caches sessions by
//! (tool id, user id) and replaces one when the user's token changed
//! (refresh, re-authorization).
//!
//! A stdio server is different: one child process per (agent, server),
//! shared by every user (it has no OAuth, so there is no per-user token to
//! keep apart). Its session is cached under the tool id alone, started
//! when the agent lists its tools at start and kept for the agent's life.
//!
//! Sessions are bounded: one that no call has used for the idle lifetime
//! (default [`DEFAULT_IDLE_SESSION_TTL`]) is closed and forgotten by
//! [`McpClientPool::evict_idle`], which the agent's sweeper calls, and at
//! most [`DEFAULT_MAX_SESSIONS`] are kept (the least recently used idle one
//! goes first when a new (server, user) pair comes). A session a call is
//! still using is never closed under it. Without this, every user who ever
//! called a tool would keep a session, and for legacy SSE an open
//! connection and a reader task, for the agent's life.
//!
//! TLS verification is always on, except for a server whose config says
//! `tls_insecure_skip_verify: true`: that one gets a separate client, so
//! the exemption cannot leak to other servers, and a warning once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::error::McpError;
use super::session::Session;
use super::{ExposedTool, ToolDescriptor, apply_filters};
use crate::manifest::manifest_tools;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::tool_config::McpToolConfig;

/// Time allowed to open a TCP/TLS connection; requests as a whole are
/// bounded by each tool's `connection_params.timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A (server, user) session nobody called for this long is closed.
pub const DEFAULT_IDLE_SESSION_TTL: Duration = Duration::from_secs(300);

/// At most this many (server, user) sessions are kept.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

type SessionKey = (String, String);

/// The cached session of one (tool, user) and the token it was opened with.
struct Slot {
    session: Arc<Session>,
    token: Option<SecretString>,
}

/// One (tool, user) key: its session behind an async lock (two calls for
/// the same key open one session, other keys proceed) and when a call last
/// asked for it.
struct Entry {
    slot: tokio::sync::Mutex<Option<Slot>>,
    /// Milliseconds since the pool's `epoch`.
    last_used: AtomicU64,
}

impl Entry {
    fn new(now: u64) -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
            last_used: AtomicU64::new(now),
        }
    }

    /// Empties the slot if nothing uses it: nobody is opening it (the lock
    /// is free) and no call holds its session (only the pool's reference).
    /// `None` when in use; else the session to close, if one was open.
    fn take_unused(&self) -> Option<Option<Arc<Session>>> {
        let mut slot = self.slot.try_lock().ok()?;
        if slot
            .as_ref()
            .is_some_and(|s| Arc::strong_count(&s.session) > 1)
        {
            return None;
        }
        Some(slot.take().map(|s| s.session))
    }
}

/// The bounds of the session cache.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    idle_ttl: Duration,
    max_sessions: usize,
}

/// Shared by all of an agent's MCP tools; cloning is shallow.
#[derive(Clone)]
pub struct McpClientPool {
    inner: Arc<Inner>,
}

struct Inner {
    verified: reqwest::Client,
    insecure: OnceLock<reqwest::Client>,
    warned_insecure: Mutex<HashSet<String>>,
    sessions: Mutex<HashMap<SessionKey, Arc<Entry>>>,
    bounds: Mutex<Bounds>,
    /// `Entry::last_used` counts from here.
    epoch: Instant,
    /// The longest message line a stdio server may send.
    max_stdio_message: AtomicUsize,
}

impl std::fmt::Debug for McpClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClientPool")
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

impl McpClientPool {
    /// A pool with its own HTTP client: TLS verified, connect timeout,
    /// redirects followed only within the server's origin.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self::with_http_client(build_client(false)?))
    }

    /// A pool sending through `client` (e.g. one shared with the OAuth
    /// code). It must verify TLS and should not follow cross-origin
    /// redirects (see [`McpClientPool::new`]'s); the insecure client is
    /// built here.
    pub fn with_http_client(client: reqwest::Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                verified: client,
                insecure: OnceLock::new(),
                warned_insecure: Mutex::new(HashSet::new()),
                sessions: Mutex::new(HashMap::new()),
                bounds: Mutex::new(Bounds {
                    idle_ttl: DEFAULT_IDLE_SESSION_TTL,
                    max_sessions: DEFAULT_MAX_SESSIONS,
                }),
                epoch: Instant::now(),
                max_stdio_message: AtomicUsize::new(super::http::MAX_BODY_BYTES),
            }),
        }
    }

    /// Sets the longest message (one line) a stdio server may send; a
    /// longer one stops that server. The agent passes its
    /// `max_message_size_bytes`. Applies to processes started afterwards.
    pub fn set_max_stdio_message_bytes(&self, limit: usize) {
        self.inner
            .max_stdio_message
            .store(limit.max(1), Ordering::Relaxed);
    }

    /// The HTTP client for `cfg`'s server: the shared verifying one, or the
    /// separate non-verifying one when the config opts out.
    pub fn http_client(&self, cfg: &McpToolConfig) -> Result<reqwest::Client, McpError> {
        if !cfg.connection_params.tls_insecure_skip_verify {
            return Ok(self.inner.verified.clone());
        }
        let tool_id = cfg.tool_id();
        if self
            .inner
            .warned_insecure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tool_id.clone())
        {
            tracing::warn!(
                %tool_id,
                "TLS certificate verification is OFF for this MCP server \
                 (tls_insecure_skip_verify: true); its users' tokens can be intercepted"
            );
        }
        if let Some(client) = self.inner.insecure.get() {
            return Ok(client.clone());
        }
        let client = build_client(true).map_err(|e| McpError::transport(&tool_id, e))?;
        Ok(self.inner.insecure.get_or_init(|| client).clone())
    }

    /// The session of `user_id` with `cfg`'s server, opened (and
    /// initialized) on first use and re-opened when `access_token` differs
    /// from the one the cached session was opened with.
    pub async fn session(
        &self,
        cfg: &McpToolConfig,
        user_id: &str,
        access_token: Option<&SecretString>,
    ) -> Result<Arc<Session>, McpError> {
        let stdio = cfg.connection_params.transport.is_stdio();
        // One process per server for the whole agent: no user in the key.
        let user_key = if stdio { "" } else { user_id };
        let key = (cfg.tool_id(), user_key.to_owned());
        let entry = self.entry(key);
        let mut slot = entry.slot.lock().await;
        if stdio {
            if let Some(existing) = slot.as_ref() {
                return Ok(existing.session.clone());
            }
            let limit = self.inner.max_stdio_message.load(Ordering::Relaxed);
            let session = Arc::new(Session::connect_stdio(cfg, limit).await?);
            *slot = Some(Slot {
                session: session.clone(),
                token: None,
            });
            return Ok(session);
        }
        if let Some(existing) = slot.as_ref() {
            let same_token = match (&existing.token, access_token) {
                (Some(held), Some(given)) => held.expose_secret() == given.expose_secret(),
                (None, None) => true,
                _ => false,
            };
            if same_token {
                return Ok(existing.session.clone());
            }
        }
        if let Some(old) = slot.take() {
            // Token changed: the old session belongs to the old grant.
            tokio::spawn(async move { old.session.close().await });
        }
        let session = Arc::new(Session::connect(cfg, self.http_client(cfg)?, access_token).await?);
        *slot = Some(Slot {
            session: session.clone(),
            token: access_token.cloned(),
        });
        Ok(session)
    }

    /// Forgets the session of (tool, user), e.g. after a 401 cleared the
    /// user's credential.
    pub async fn invalidate(&self, tool_id: &str, user_id: &str) {
        let slot = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tool_id.to_owned(), user_id.to_owned()));
        if let Some(entry) = slot
            && let Some(old) = entry.slot.lock().await.take()
        {
            old.session.close().await;
        }
    }

    /// Sets how long an unused (server, user) session is kept and how many
    /// are kept at most (the agent's `limits:`).
    pub fn set_session_bounds(&self, idle_ttl: Duration, max_sessions: usize) {
        *self.inner.bounds.lock().unwrap_or_else(|p| p.into_inner()) = Bounds {
            idle_ttl,
            max_sessions: max_sessions.max(1),
        };
    }

    fn bounds(&self) -> Bounds {
        *self.inner.bounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The entry of `key`, created (after making room) if new, marked used.
    fn entry(&self, key: SessionKey) -> Arc<Entry> {
        let now = self.now_ms();
        let max = self.bounds().max_sessions;
        let mut closing = Vec::new();
        let entry = {
            let mut sessions = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !sessions.contains_key(&key) && sessions.len() >= max {
                closing.extend(make_room(&mut sessions, max - 1));
            }
            let entry = sessions
                .entry(key)
                .or_insert_with(|| Arc::new(Entry::new(now)))
                .clone();
            entry.last_used.store(now, Ordering::Relaxed);
            entry
        };
        close_later(closing);
        entry
    }

    /// Closes and forgets the sessions no call asked for within the idle
    /// lifetime (stdio servers' are kept: one per server, for the agent's
    /// life). Returns how many were forgotten. The agent's sweeper calls
    /// this every few seconds.
    pub async fn evict_idle(&self) -> usize {
        let ttl = u64::try_from(self.bounds().idle_ttl.as_millis()).unwrap_or(u64::MAX);
        // Idle means unused for `ttl` by now; not a cutoff `now - ttl`, which
        // saturates to 0 in a pool younger than `ttl` and then counted a
        // session used at its first millisecond as idle.
        let now = self.now_ms();
        let mut closing = Vec::new();
        let forgotten = {
            let mut sessions = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let before = sessions.len();
            sessions.retain(|(_, user), entry| {
                if user.is_empty()
                    || now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) < ttl
                {
                    return true;
                }
                match entry.take_unused() {
                    Some(session) => {
                        closing.extend(session);
                        false
                    }
                    None => true,
                }
            });
            before - sessions.len()
        };
        for session in closing {
            session.close().await;
        }
        forgotten
    }

    /// Number of (tool, user) keys with a cached or opening session.
    pub fn session_count(&self) -> usize {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Lists the server's tools over a short-lived session (not cached:
    /// discovery runs once, at start). A stdio server's session is the
    /// pooled one: listing starts its process, which then serves calls.
    pub async fn list_tools(
        &self,
        cfg: &McpToolConfig,
        access_token: Option<&SecretString>,
    ) -> Result<Vec<ToolDescriptor>, McpError> {
        if cfg.connection_params.transport.is_stdio() {
            // Starts the agent's process for this server, kept for calls.
            return self.session(cfg, "", None).await?.list_tools().await;
        }
        let session = Session::connect(cfg, self.http_client(cfg)?, access_token).await?;
        let tools = session.list_tools().await;
        session.close().await;
        tools
    }

    /// The tools the agent exposes for `cfg` at start: the manifest when
    /// there is one (required with `auth`, since listing needs a user's
    /// token), else the server's list; then prefix, allow and deny lists.
    pub async fn startup_tools(&self, cfg: &McpToolConfig) -> Result<Vec<ExposedTool>, McpError> {
        let tools = match cfg.manifest.as_deref() {
            Some(entries) if !entries.is_empty() => manifest_tools(cfg),
            _ if cfg.requires_user_auth() => Vec::new(),
            _ => self.list_tools(cfg, None).await?,
        };
        Ok(apply_filters(cfg, tools))
    }
}

/// Forgets the least recently used unused sessions until at most `keep`
/// remain (or none is left that may go); returns the sessions to close.
fn make_room(sessions: &mut HashMap<SessionKey, Arc<Entry>>, keep: usize) -> Vec<Arc<Session>> {
    let mut by_age: Vec<(u64, SessionKey)> = sessions
        .iter()
        .filter(|((_, user), _)| !user.is_empty())
        .map(|(key, e)| (e.last_used.load(Ordering::Relaxed), key.clone()))
        .collect();
    by_age.sort_unstable_by_key(|(used, _)| *used);
    let mut closing = Vec::new();
    for (_, key) in by_age {
        if sessions.len() <= keep {
            break;
        }
        if let Some(taken) = sessions.get(&key).and_then(|e| e.take_unused()) {
            sessions.remove(&key);
            closing.extend(taken);
        }
    }
    closing
}

/// Closes sessions in the background (a caller holding no lock must not
/// wait for a server's answer to a DELETE).
fn close_later(sessions: Vec<Arc<Session>>) {
    if sessions.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for session in sessions {
            session.close().await;
        }
    });
}

/// Redirects followed within one origin only (servers mounted at `/mcp`
/// often redirect to `/mcp/`). reqwest would drop `Authorization` on a
/// cross-origin hop but keep the static `headers`, which may hold an API
/// key; stopping there returns the 3xx as an error instead.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > 5 {
            attempt.error("too many redirects")
        } else if first.is_some_and(|o| o == attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

fn build_client(insecure: bool) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(same_origin_redirects())
        .user_agent(concat!("amesh-mcp/", env!("CARGO_PKG_VERSION")));
    if insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build()
}
