//! Hands incoming messages from paho's callback thread to the app.
//!
//! See the [module docs](super) for why the callback must not block: it
//! runs on paho's one receive thread, under the library's global mutex.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, mpsc, watch};

use super::INCOMING_CAPACITY;
use crate::broker::Message;

/// Hands messages from paho's callback thread to the app without blocking
/// it (see the module docs): the bounded channel first, an ordered overflow
/// queue when the app falls behind.
pub(super) struct Inbox {
    tx: mpsc::Sender<Message>,
    /// True while the overflow queue holds messages (or is being emptied).
    spilling: AtomicBool,
    overflow: Mutex<VecDeque<Message>>,
    /// Signals the callback, blocked at the limit, that there is room.
    room: Condvar,
    wake: Notify,
    closed: AtomicBool,
    /// [`OVERFLOW_LIMIT`](super::OVERFLOW_LIMIT), smaller in tests.
    limit: usize,
}

impl Inbox {
    pub(super) fn new(tx: mpsc::Sender<Message>, limit: usize) -> Self {
        Self {
            tx,
            limit,
            spilling: AtomicBool::new(false),
            overflow: Mutex::new(VecDeque::new()),
            room: Condvar::new(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Message>> {
        self.overflow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called on paho's receive thread only.
    pub(super) fn push(&self, mut msg: Message) {
        if !self.spilling.load(Ordering::Acquire) {
            match self.tx.try_send(msg) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(m)) => msg = m,
            }
        }
        if self.tx.is_closed() || self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut queue = self.queue();
        if queue.len() >= self.limit {
            tracing::error!(
                limit = self.limit,
                "the app is not reading MQTT messages; blocking the MQTT receive thread"
            );
            while queue.len() >= self.limit && !self.closed.load(Ordering::Acquire) {
                queue = self
                    .room
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        queue.push_back(msg);
        if !self.spilling.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                capacity = INCOMING_CAPACITY,
                "incoming MQTT channel full; buffering until the app catches up"
            );
            self.wake.notify_one();
        }
    }

    /// Moves spilled messages into the channel, in order, until shutdown.
    pub(super) async fn drain(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            loop {
                let next = {
                    let mut queue = self.queue();
                    let next = queue.pop_front();
                    if next.is_none() {
                        // Under the lock, so the callback cannot push in between.
                        self.spilling.store(false, Ordering::Release);
                    }
                    self.room.notify_one();
                    next
                };
                let Some(msg) = next else { break };
                let sent = tokio::select! {
                    r = self.tx.send(msg) => r.is_ok(),
                    _ = shutdown.wait_for(|s| *s) => false,
                };
                if !sent {
                    self.close();
                    return;
                }
            }
        }
        self.close();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut queue = self.queue();
        queue.clear();
        self.spilling.store(false, Ordering::Release);
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::broker::{Incoming, UserProperties};

    fn msg(i: usize) -> Message {
        Message {
            topic: "t".into(),
            payload: Bytes::from(i.to_string()),
            props: UserProperties::new(),
            retained: false,
        }
    }

    /// Pushes `n` messages from a plain thread, as paho's receive thread does.
    fn push_from_thread(inbox: &Arc<Inbox>, n: usize) -> std::thread::JoinHandle<()> {
        let inbox = inbox.clone();
        std::thread::spawn(move || (0..n).for_each(|i| inbox.push(msg(i))))
    }

    async fn recv_n(rx: &mut Incoming, n: usize) -> Vec<usize> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("timed out")
                .expect("closed");
            got.push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap());
        }
        got
    }

    #[tokio::test]
    async fn a_slow_reader_gets_spilled_messages_in_order() {
        let (tx, mut rx) = mpsc::channel(4);
        let inbox = Arc::new(Inbox::new(tx, 1000));
        // Nobody reads yet: the callback thread must not block.
        push_from_thread(&inbox, 100).join().unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(inbox.clone().drain(stop_rx));
        assert_eq!(recv_n(&mut rx, 100).await, (0..100).collect::<Vec<_>>());
        // Back on the fast path afterwards.
        push_from_thread(&inbox, 3).join().unwrap();
        assert_eq!(recv_n(&mut rx, 3).await, vec![0, 1, 2]);
        assert!(!inbox.spilling.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn the_callback_blocks_only_past_the_overflow_limit() {
        let (tx, mut rx) = mpsc::channel(2);
        let inbox = Arc::new(Inbox::new(tx, 8));
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(inbox.clone().drain(stop_rx));
        let pusher = push_from_thread(&inbox, 500);
        assert_eq!(recv_n(&mut rx, 500).await, (0..500).collect::<Vec<_>>());
        pusher.join().unwrap();
    }

    #[tokio::test]
    async fn a_dropped_receiver_never_blocks_the_callback() {
        let (tx, rx) = mpsc::channel(2);
        let inbox = Arc::new(Inbox::new(tx, 4));
        drop(rx);
        push_from_thread(&inbox, 100).join().unwrap();
    }

    #[tokio::test]
    async fn shutdown_releases_a_blocked_callback() {
        let (tx, _rx) = mpsc::channel(1);
        let inbox = Arc::new(Inbox::new(tx, 2));
        let (stop, stop_rx) = watch::channel(false);
        let drain = tokio::spawn(inbox.clone().drain(stop_rx));
        let pusher = push_from_thread(&inbox, 10);
        stop.send_replace(true);
        drain.await.unwrap();
        tokio::task::spawn_blocking(move || pusher.join().unwrap())
            .await
            .unwrap();
    }
}
