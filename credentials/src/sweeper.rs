//! The TTL sweeper: marks expired credentials deleted, purges old flows.
//!
//! A background task owned by the store, in the mini-redis way: the task
//! holds the shared state, the store's handles hold a [`SweeperGuard`], and
//! when the last handle is dropped the guard broadcasts shutdown and the
//! task ends. Reads never depend on it — they filter on `expires_at`
//! themselves — so the sweeper only turns "expired" into "deleted (ttl)"
//! for the audit trail and the operator listing, and keeps tables small.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::store::Shared;

/// Stops the sweeper when dropped (held by every store handle through an
/// `Arc`, so when the last one goes).
pub(crate) struct SweeperGuard {
    shutdown: broadcast::Sender<()>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SweeperGuard {
    /// Spawns the sweeper for `shared`, ticking every `interval`.
    pub(crate) fn spawn(shared: Arc<Shared>, interval: Duration) -> Self {
        let (shutdown, rx) = broadcast::channel(1);
        let task = tokio::spawn(run(shared, interval, rx));
        Self {
            shutdown,
            task: Mutex::new(Some(task)),
        }
    }

    /// Signals shutdown and waits for the task to finish its current sweep.
    pub(crate) async fn stop(&self) {
        let _ = self.shutdown.send(());
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        // No receiver left is fine: the task already ended.
        let _ = self.shutdown.send(());
    }
}

async fn run(shared: Arc<Shared>, interval: Duration, mut shutdown: broadcast::Receiver<()>) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once: expired rows from before a restart are
    // marked straight away.
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let _ = shared.sweep_once().await;
            }
            _ = shutdown.recv() => break,
        }
    }
    tracing::debug!(agent = %shared.agent_id, "credential sweeper stopped");
}
