//! The audit writer: `credential_events` rows written off the request path.
//!
//! Every credential read is audited (`used`). Writing that row inline would
//! put an INSERT — a commit, an fsync — on every tool call; instead events
//! go into a bounded channel and one task writes them in batches. The cost
//! is a short window where an event is queued but not yet stored:
//! [`AuditQueue::flush`] closes it (the operator `events()` query and
//! `close()` call it), and a database outage keeps events queued and
//! retried, up to a bound, rather than losing them silently.
//!
//! The task ends when the last queue handle is dropped, after writing what
//! is queued.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use tokio::sync::{mpsc, oneshot};

use super::entity::event;
use crate::config::DatabaseUrl;
use crate::model::{CredentialEvent, to_ms};

/// Queued messages before `record` waits (backpressure, not loss).
const CHANNEL: usize = 4096;
/// Events kept for retry while the database is down; older ones are
/// dropped beyond this (and counted in a warning).
const MAX_PENDING: usize = 10_000;
/// Rows per INSERT (well under every backend's parameter limit).
const BATCH: usize = 500;
const RETRY: Duration = Duration::from_secs(1);
/// How long the writer gathers events before an INSERT.
const GATHER: Duration = Duration::from_millis(100);
/// Longest `reason` stored (the column is `VARCHAR(512)`).
const MAX_REASON: usize = 500;

enum Msg {
    Events(Vec<CredentialEvent>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the writer task. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct AuditQueue {
    tx: mpsc::Sender<Msg>,
}

impl AuditQueue {
    /// Starts the writer for `db`.
    pub(crate) fn spawn(db: DatabaseConnection, url: Arc<DatabaseUrl>) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(
            Writer {
                db,
                url,
                pending: Vec::new(),
                failing: false,
            }
            .run(rx),
        );
        Self { tx }
    }

    pub(crate) async fn record(&self, events: Vec<CredentialEvent>) {
        if events.is_empty() {
            return;
        }
        if self.tx.send(Msg::Events(events)).await.is_err() {
            tracing::warn!("credential audit writer has stopped; events dropped");
        }
    }

    /// Returns once everything queued before the call was written (or the
    /// attempt failed and was logged).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Writer {
    db: DatabaseConnection,
    url: Arc<DatabaseUrl>,
    pending: Vec<CredentialEvent>,
    failing: bool,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            let msg = if self.pending.is_empty() {
                rx.recv().await
            } else {
                // Events are waiting on a failed write: retry on a timer.
                match tokio::time::timeout(RETRY, rx.recv()).await {
                    Ok(msg) => msg,
                    Err(_) => {
                        self.write().await;
                        continue;
                    }
                }
            };
            let Some(msg) = msg else { break };
            let mut acks = Vec::new();
            self.take(msg, &mut acks);
            // Gather for a moment: under load one INSERT carries many
            // events instead of every read paying for its own. A flush
            // (someone is waiting) ends the gathering at once.
            let deadline = tokio::time::Instant::now() + GATHER;
            while acks.is_empty() && self.pending.len() < BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(msg)) => self.take(msg, &mut acks),
                    // Closed: the outer loop sees it next and finishes.
                    Ok(None) | Err(_) => break,
                }
            }
            while let Ok(msg) = rx.try_recv() {
                self.take(msg, &mut acks);
            }
            self.write().await;
            for ack in acks {
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

    fn take(&mut self, msg: Msg, acks: &mut Vec<oneshot::Sender<()>>) {
        match msg {
            Msg::Events(events) => self.pending.extend(events),
            Msg::Flush(ack) => acks.push(ack),
        }
        if self.pending.len() > MAX_PENDING {
            let dropped = self.pending.len() - MAX_PENDING;
            self.pending.drain(..dropped);
            tracing::warn!(
                dropped,
                "credential audit backlog full while the database is unreachable; oldest events dropped"
            );
        }
    }

    async fn write(&mut self) {
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
        reason: Set(e.reason.as_ref().map(|r| clip(r, MAX_REASON))),
        at: Set(to_ms(e.at)),
        ..Default::default()
    }
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
