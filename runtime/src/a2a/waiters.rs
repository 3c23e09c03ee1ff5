//! The waiters of an [`super::client::A2aClient`]: who waits for the
//! answers to which request.
//!
//! Every request the client sends gets an id that is also the last level
//! of its reply topics; [`Waiters`] maps that id to the channel of the task
//! that waits, and to the peer the request went to (only that peer may
//! answer it).
//!
//! The pump never waits for a reader: answers queue up per request. A
//! queue may hold only so many bytes while its reader (an SSE client that
//! reads slowly, or not at all) falls behind; past that the request's
//! registration is dropped and its reader gets one error instead of the
//! rest, so a slow consumer costs a bounded amount of memory. A
//! registration lives exactly as long as its [`WaiterGuard`], so the map
//! holds no more entries than there are calls in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::a2a::StreamResult;
use crate::a2a::jsonrpc::RpcError;

/// One thing an agent said about a request.
#[derive(Debug, Clone)]
pub enum Event {
    /// A status or artifact update (streaming).
    Update(StreamResult),
    /// The final answer: a task (or another result for tasks/get etc.).
    Final(StreamResult),
    /// The agent refused the request.
    Error(RpcError),
}

/// Bytes an answer counts for at least (its parsed form and queue slot),
/// so many tiny answers are bounded too.
const MIN_EVENT_BYTES: usize = 256;

/// A task waiting for answers, and the peer its request went to.
struct Waiter {
    tx: mpsc::UnboundedSender<(Event, usize)>,
    peer: String,
    /// The A2A method asked (`message/stream`, `tasks/get`, ...).
    method: String,
    /// When the request was sent: its round trip ends at the final answer.
    sent: Instant,
    queue: Arc<Queue>,
}

/// What a waiting request asked, as its answers are checked and inspected.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    /// The agent the request went to: only it may answer.
    pub peer: String,
    pub method: String,
    pub sent: Instant,
}

/// What one request's queue holds, shared by the pump and the reader.
struct Queue {
    budget: usize,
    /// Bytes sent and not yet taken by the reader.
    bytes: AtomicUsize,
    /// Set when the reader fell more than `budget` behind.
    overflowed: AtomicBool,
}

/// The receiving end of one request's answers.
pub(crate) struct EventRx {
    rx: mpsc::UnboundedReceiver<(Event, usize)>,
    queue: Arc<Queue>,
}

impl EventRx {
    /// The next answer; `None` once the request is over. After the reader
    /// fell too far behind: one error, then `None`.
    pub(crate) async fn recv(&mut self) -> Option<Event> {
        if self.queue.overflowed.swap(false, Ordering::AcqRel) {
            self.rx.close();
            while self.rx.try_recv().is_ok() {}
            self.queue.bytes.store(0, Ordering::Release);
            return Some(Event::Error(RpcError::new(
                crate::a2a::jsonrpc::INTERNAL_ERROR,
                format!(
                    "the stream was closed because the client read too slowly: more than {} \
                     bytes of the agent's answers were waiting (the task goes on; \
                     GET /api/v1/tasks/{{id}} tells how it ends)",
                    self.queue.budget
                ),
            )));
        }
        let (event, bytes) = self.rx.recv().await?;
        self.queue.bytes.fetch_sub(bytes, Ordering::AcqRel);
        Some(event)
    }
}

/// Requests waiting for answers, by request id. Shared (through an `Arc`)
/// by the client that registers and the guards that unregister.
#[derive(Default)]
pub(crate) struct Waiters {
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request; at most `budget` bytes of its answers may wait
    /// for the handler to take them.
    pub(crate) fn register(&self, id: &str, peer: &str, method: &str, budget: usize) -> EventRx {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            budget,
            bytes: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
        });
        let waiter = Waiter {
            tx,
            peer: peer.to_string(),
            method: method.to_string(),
            sent: Instant::now(),
            queue: queue.clone(),
        };
        self.lock().insert(id.to_string(), waiter);
        EventRx { rx, queue }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The peer request `id` went to, while someone waits for it.
    pub(crate) fn asked(&self, id: &str) -> Option<Asked> {
        self.lock().get(id).map(|w| Asked {
            peer: w.peer.clone(),
            method: w.method.clone(),
            sent: w.sent,
        })
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Queues `event` (`bytes` long on the wire) for the request `id`.
    pub(crate) fn deliver(&self, id: &str, event: Event, last: bool, bytes: usize) {
        let mut waiting = self.lock();
        let Some(waiter) = waiting.get(id) else {
            tracing::debug!(id, "answer for a request nobody waits for");
            return;
        };
        let bytes = bytes.max(MIN_EVENT_BYTES);
        let queue = &waiter.queue;
        let queued = queue.bytes.load(Ordering::Acquire);
        // An answer always fits a queue the reader has emptied, however big.
        if queued > 0 && queued + bytes > queue.budget {
            tracing::info!(
                id,
                peer = %waiter.peer,
                queued,
                budget = queue.budget,
                "client reads too slowly; closing its stream"
            );
            queue.overflowed.store(true, Ordering::Release);
            // Dropping the sender wakes a reader that waits.
            waiting.remove(id);
            return;
        }
        queue.bytes.fetch_add(bytes, Ordering::AcqRel);
        let sent = waiter.tx.send((event, bytes)).is_ok();
        if last || !sent {
            waiting.remove(id);
        }
    }
}

/// Removes a registration when the call that made it ends, on every exit
/// path: answered, timed out, failed to publish, or abandoned (the HTTP
/// client hung up, the delegating task was canceled).
pub(crate) struct WaiterGuard {
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) id: String,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        self.waiters.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::{Message, Part};

    fn update() -> Event {
        Event::Update(StreamResult::Message(Message::agent(
            vec![Part::text("x")],
            "t",
            "c",
        )))
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_gets_an_error_and_nothing_more_is_kept() {
        let pending = Waiters::default();
        let mut rx = pending.register("t", "echo", "message/stream", 1000);
        for _ in 0..10 {
            pending.deliver("t", update(), false, 600);
        }
        // The registration is gone: later answers are dropped at once.
        assert_eq!(pending.len(), 0);
        match rx.recv().await {
            Some(Event::Error(e)) => assert!(e.message.contains("too slowly"), "{}", e.message),
            other => panic!("expected an error event, got {other:?}"),
        }
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_gets_everything_even_one_big_answer() {
        let pending = Waiters::default();
        let mut rx = pending.register("t", "echo", "message/stream", 1000);
        for _ in 0..5 {
            pending.deliver("t", update(), false, 600);
            assert!(matches!(rx.recv().await, Some(Event::Update(_))));
        }
        // An answer bigger than the budget still goes through to a reader
        // that has nothing waiting.
        pending.deliver("t", update(), true, 5000);
        assert!(matches!(rx.recv().await, Some(Event::Update(_))));
        assert!(rx.recv().await.is_none());
    }
}
