//! The audit writer: `credential_events` rows written off the request path.
//!
//! Every credential read is audited (`used`). Writing that row inline would
//! put an INSERT — a commit, an fsync — on every tool call. Instead a read
//! appends its event to a buffer under a std mutex (no `.await`, no task
//! wake-up: on two cores, waking a writer per read cost more than the read)
//! and one task writes the buffer in batches on a short tick, or at once
//! when the buffer is full or someone waits for it.
//!
//! The cost is a short window (at most [`TICK`]) where an event is buffered
//! but not stored: [`AuditQueue::flush`] closes it (the operator `events()`
//! query and `close()` call it). A database outage keeps events buffered
//! and retried, up to a bound, rather than losing them silently. The task
//! ends when the last queue handle is dropped, after writing the buffer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use tokio::sync::{Notify, mpsc, oneshot};

use super::entity::event;
use crate::config::DatabaseUrl;
use crate::model::{CredentialEvent, to_ms};

/// How often buffered events are written.
const TICK: Duration = Duration::from_millis(100);
/// Rows per INSERT (well under every backend's parameter limit); a buffer
/// this full is written without waiting for the tick.
const BATCH: usize = 500;
/// Events kept while the database is unreachable; beyond this the oldest
/// are dropped, with a warning.
const MAX_PENDING: usize = 10_000;
/// Longest `reason` stored (the column is `VARCHAR(512)`).
const MAX_REASON: usize = 500;

/// The buffer shared by the handles and the writer.
#[derive(Default)]
struct Buffer {
    events: Mutex<Vec<CredentialEvent>>,
    full: Notify,
}

/// Handle to the writer task. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct AuditQueue {
    buffer: Arc<Buffer>,
    /// Flush requests; when every handle is gone the channel closes and
    /// the writer finishes.
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl AuditQueue {
    /// Starts the writer for `db`.
    pub(crate) fn spawn(db: DatabaseConnection, url: Arc<DatabaseUrl>) -> Self {
        let buffer = Arc::new(Buffer::default());
        let (flushes, rx) = mpsc::channel(64);
        let writer = Writer {
            db,
            url,
            buffer: buffer.clone(),
            pending: Vec::new(),
            failing: false,
        };
        tokio::spawn(writer.run(rx));
        Self { buffer, flushes }
    }

    pub(crate) fn record(&self, events: Vec<CredentialEvent>) {
        if events.is_empty() {
            return;
        }
        let mut buf = self.buffer.events.lock().unwrap_or_else(|p| p.into_inner());
        buf.extend(events);
        if buf.len() > MAX_PENDING {
            let dropped = buf.len() - MAX_PENDING;
            buf.drain(..dropped);
            tracing::warn!(
                dropped,
                "credential audit backlog full (database unreachable?); oldest events dropped"
            );
        }
        if buf.len() >= BATCH {
            self.buffer.full.notify_one();
        }
    }

    /// Returns once everything recorded before the call was written (or
    /// the attempt failed and was logged).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Writer {
    db: DatabaseConnection,
    url: Arc<DatabaseUrl>,
    buffer: Arc<Buffer>,
    /// Taken from the buffer, not yet written (kept across failures).
    pending: Vec<CredentialEvent>,
    failing: bool,
}

impl Writer {
    async fn run(mut self, mut flushes: mpsc::Receiver<oneshot::Sender<()>>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ack = tokio::select! {
                _ = tick.tick() => None,
                () = self.buffer.full.notified() => None,
                request = flushes.recv() => match request {
                    Some(ack) => Some(ack),
                    None => break,
                },
            };
            self.write().await;
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
        self.write().await;
        if !self.pending.is_empty() {
            tracing::warn!(
                count = self.pending.len(),
                "credential audit events not written at shutdown"
            );
        }
    }

    async fn write(&mut self) {
        {
            let mut buf = self.buffer.events.lock().unwrap_or_else(|p| p.into_inner());
            if buf.is_empty() && self.pending.is_empty() {
                return;
            }
            self.pending.append(&mut buf);
        }
        if self.pending.len() > MAX_PENDING {
            let dropped = self.pending.len() - MAX_PENDING;
            self.pending.drain(..dropped);
            tracing::warn!(
                dropped,
                "credential audit backlog full (database unreachable?); oldest events dropped"
            );
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            let rows = self.pending[..n].iter().map(active_model);
            match event::Entity::insert_many(rows)
                .exec_without_returning(&self.db)
                .await
            {
                Ok(_) => {
                    self.pending.drain(..n);
                    if self.failing {
                        self.failing = false;
                        tracing::info!(
                            backend = self.url.backend_name(),
                            "credential audit writes resumed"
                        );
                    }
                }
                Err(err) => {
                    if !self.failing {
                        self.failing = true;
                        let err = super::errors::map_db_err(&self.url, &err);
                        tracing::warn!(error = %err, queued = self.pending.len(), "cannot write credential audit events; will retry");
                    }
                    return;
                }
            }
        }
    }
}

fn active_model(e: &CredentialEvent) -> event::ActiveModel {
    event::ActiveModel {
        agent_id: Set(e.agent_id.clone()),
        user_id: Set(e.user_id.clone()),
        tool_id: Set(e.tool_id.clone()),
        kind: Set(e.kind.as_str().to_owned()),
        reason: Set(e
            .reason
            .as_ref()
            .map(|r| r.chars().take(MAX_REASON).collect())),
        at: Set(to_ms(e.at)),
        ..Default::default()
    }
}
