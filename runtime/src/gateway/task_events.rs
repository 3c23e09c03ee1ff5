//! What a streamed task said, kept for a while so a browser can come back:
//! after a reload, in another tab, or after its connection dropped, the
//! web page asks `GET /api/v1/tasks/{id}/events` with `Last-Event-ID` and
//! gets what it missed, then the rest as it comes.
//!
//! A recorder (one per `message:stream` task, see `stream.rs`) owns the
//! task's reply registration and appends every answer here, whether or
//! not a browser is connected; SSE responses only read. So a client that
//! goes away no longer cuts the task off from its result, and a client
//! that reads slowly costs nothing beyond the log itself.
//!
//! Bounded three ways, oldest task forgotten first: a count of tasks, a
//! total of bytes, and an age. One task's non-final events stop being kept
//! past a per-task budget (the final `task` event, which has the whole
//! answer, is always kept). A reader holds its task's log by `Arc`, so
//! forgetting a task never cuts off a stream already open; open streams
//! are bounded by the per-user stream quota.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

/// Bytes an event counts for at least (its slot, name, sequence number).
const EVENT_OVERHEAD: usize = 64;

#[derive(Clone, Copy, Debug)]
pub(crate) struct EventLimits {
    /// Tasks whose events are kept at most.
    pub max_tasks: usize,
    /// Bytes of events kept, all tasks together.
    pub max_bytes: usize,
    /// Non-final events kept per task.
    pub per_task_bytes: usize,
    /// A task's events are forgotten this long after it started.
    pub ttl: Duration,
}

/// One SSE event as it went out: `id: seq`, `event: name`, `data: json`.
#[derive(Debug)]
pub(crate) struct Logged {
    pub seq: u64,
    pub name: &'static str,
    pub data: String,
}

#[derive(Default)]
struct LogState {
    events: Vec<Arc<Logged>>,
    bytes: usize,
    /// Set by the final event (or the recorder giving up).
    done: bool,
    /// Non-final events left out past the per-task budget.
    dropped: u64,
    /// Forgotten by the store: its bytes no longer count there.
    evicted: bool,
    /// The last `state` of a status or task event.
    state: Option<String>,
}

/// The events of one task.
pub(crate) struct TaskLog {
    pub task_id: String,
    pub user_id: String,
    pub agent: String,
    pub context_id: Option<String>,
    started: Instant,
    started_ms: u64,
    state: Mutex<LogState>,
    /// The newest sequence number; readers wait on it.
    seq: watch::Sender<u64>,
}

/// A task in `GET /api/v1/tasks`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskSummary {
    pub task_id: String,
    pub agent: String,
    pub context_id: Option<String>,
    pub state: Option<String>,
    pub done: bool,
    pub started_ms: u64,
    pub events: u64,
    /// Events left out past the per-task budget.
    pub dropped: u64,
}

impl TaskLog {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events after `after`, and whether the log is complete.
    pub(crate) fn after(&self, after: u64) -> (Vec<Arc<Logged>>, bool) {
        let st = self.lock();
        // Sequence numbers are consecutive from 1 except for dropped ones,
        // so search rather than index.
        let start = st.events.partition_point(|e| e.seq <= after);
        (st.events[start..].to_vec(), st.done)
    }

    /// A receiver that wakes when an event is appended or the log ends.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.seq.subscribe()
    }

    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    fn summary(&self) -> TaskSummary {
        let st = self.lock();
        TaskSummary {
            task_id: self.task_id.clone(),
            agent: self.agent.clone(),
            context_id: self.context_id.clone(),
            state: st.state.clone(),
            done: st.done,
            started_ms: self.started_ms,
            events: *self.seq.borrow(),
            dropped: st.dropped,
        }
    }
}

#[derive(Default)]
struct Store {
    logs: HashMap<String, Arc<TaskLog>>,
    /// Task ids in the order they started (also age order).
    order: VecDeque<String>,
}

/// Every kept task log of one gateway.
pub(crate) struct TaskEvents {
    limits: EventLimits,
    store: Mutex<Store>,
    /// Bytes of the logs not yet forgotten.
    bytes: Arc<AtomicUsize>,
}

impl TaskEvents {
    pub(crate) fn new(limits: EventLimits) -> Self {
        TaskEvents {
            limits,
            store: Mutex::default(),
            bytes: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the log of a new task.
    pub(crate) fn open(
        &self,
        task_id: &str,
        user_id: &str,
        agent: &str,
        context_id: Option<String>,
    ) -> Arc<TaskLog> {
        let log = Arc::new(TaskLog {
            task_id: task_id.to_owned(),
            user_id: user_id.to_owned(),
            agent: agent.to_owned(),
            context_id,
            started: Instant::now(),
            started_ms: amesh_trust::now_unix_millis(),
            state: Mutex::default(),
            seq: watch::Sender::new(0),
        });
        let mut store = self.lock();
        store.logs.insert(task_id.to_owned(), log.clone());
        store.order.push_back(task_id.to_owned());
        self.expire(&mut store, Instant::now());
        log
    }

    /// Appends an event; `last` ends the log. Returns its sequence number
    /// (`None` when it was left out past the per-task budget; the first
    /// one left out is replaced by a `notice` saying so).
    pub(crate) fn append(
        &self,
        log: &TaskLog,
        name: &'static str,
        data: String,
        state: Option<&str>,
        last: bool,
    ) -> Option<u64> {
        let seq = {
            let mut st = log.lock();
            if st.done {
                return None;
            }
            if let Some(state) = state {
                st.state = Some(state.to_owned());
            }
            let size = data.len() + EVENT_OVERHEAD;
            let over = !last && st.bytes + size > self.limits.per_task_bytes;
            if over && st.dropped > 0 {
                st.dropped += 1;
                return None;
            }
            // The first event left out is replaced by a word saying so, so a
            // reader knows updates are missing (the final event has the
            // whole answer): nothing is left out without a word.
            let (name, data) = if over {
                st.dropped += 1;
                let note = serde_json::json!({
                    "message": format!(
                        "further updates of this task are not kept or streamed: they passed \
                         the gateway's {} bytes per task (limits.task_events_per_task_bytes); \
                         the final answer follows in full",
                        self.limits.per_task_bytes
                    ),
                });
                ("notice", note.to_string())
            } else {
                (name, data)
            };
            let size = data.len() + EVENT_OVERHEAD;
            let seq = *log.seq.borrow() + 1;
            st.events.push(Arc::new(Logged { seq, name, data }));
            st.bytes += size;
            st.done = last;
            if !st.evicted {
                self.bytes.fetch_add(size, Ordering::AcqRel);
            }
            seq
        };
        log.seq.send_replace(seq);
        if self.bytes.load(Ordering::Acquire) > self.limits.max_bytes {
            let mut store = self.lock();
            self.expire(&mut store, Instant::now());
        }
        Some(seq)
    }

    /// Ends a log without a final event (the recorder gave up); readers
    /// wake and stop.
    pub(crate) fn close(&self, log: &TaskLog) {
        log.lock().done = true;
        log.seq.send_modify(|_| {});
    }

    /// The log of `task_id`, only for its owner.
    pub(crate) fn get(&self, task_id: &str, user_id: &str) -> Option<Arc<TaskLog>> {
        let mut store = self.lock();
        self.expire(&mut store, Instant::now());
        store
            .logs
            .get(task_id)
            .filter(|l| l.user_id == user_id)
            .cloned()
    }

    /// The kept tasks of `user_id`, newest first.
    pub(crate) fn list(&self, user_id: &str) -> Vec<TaskSummary> {
        let mut store = self.lock();
        self.expire(&mut store, Instant::now());
        store
            .order
            .iter()
            .rev()
            .filter_map(|id| store.logs.get(id))
            .filter(|l| l.user_id == user_id)
            .map(|l| l.summary())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().logs.len()
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Forgets the oldest logs while there are too many, they hold too
    /// many bytes, or they are too old.
    fn expire(&self, store: &mut Store, now: Instant) {
        while let Some(oldest) = store.order.front() {
            let too_old = store
                .logs
                .get(oldest)
                .is_none_or(|l| now.saturating_duration_since(l.started) > self.limits.ttl);
            let too_many = store.order.len() > self.limits.max_tasks;
            let too_big = self.bytes.load(Ordering::Acquire) > self.limits.max_bytes;
            if !(too_old || too_many || too_big) {
                break;
            }
            let Some(id) = store.order.pop_front() else {
                break;
            };
            if let Some(log) = store.logs.remove(&id) {
                let mut st = log.lock();
                st.evicted = true;
                self.bytes.fetch_sub(st.bytes, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(max_tasks: usize, max_bytes: usize, per_task_bytes: usize) -> TaskEvents {
        TaskEvents::new(EventLimits {
            max_tasks,
            max_bytes,
            per_task_bytes,
            ttl: Duration::from_secs(3600),
        })
    }

    #[test]
    fn a_reader_gets_what_came_after_its_last_event_id() {
        let ev = events(10, 1 << 20, 1 << 20);
        let log = ev.open("t", "alice", "echo", None);
        for i in 0..5 {
            ev.append(
                &log,
                "status",
                format!("{{\"n\":{i}}}"),
                Some("working"),
                false,
            );
        }
        let (after2, done) = log.after(2);
        assert_eq!(
            after2.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(!done);
        ev.append(&log, "task", "{}".into(), Some("completed"), true);
        let (rest, done) = log.after(5);
        assert_eq!(rest.len(), 1);
        assert!(done);
        // Nothing is appended after the end.
        assert_eq!(ev.append(&log, "status", "{}".into(), None, false), None);
        assert_eq!(ev.list("alice")[0].state.as_deref(), Some("completed"));
    }

    #[test]
    fn only_the_owner_finds_a_log() {
        let ev = events(10, 1 << 20, 1 << 20);
        ev.open("t", "alice", "echo", Some("c".into()));
        assert!(ev.get("t", "bob").is_none());
        assert!(ev.list("bob").is_empty());
        assert!(ev.get("t", "alice").is_some());
    }

    #[test]
    fn logs_are_bounded_by_count_and_bytes_oldest_first() {
        let ev = events(3, 10_000, 1 << 20);
        for i in 0..5 {
            ev.open(&format!("t{i}"), "alice", "echo", None);
        }
        assert_eq!(ev.len(), 3);
        assert!(ev.get("t1", "alice").is_none());
        let newest = ev.get("t4", "alice").unwrap();
        // One big final event pushes the others out, and then itself.
        ev.append(&newest, "task", "x".repeat(20_000), None, true);
        assert_eq!(ev.len(), 0);
        assert_eq!(ev.approx_bytes(), 0);
        // A reader that held it still has it.
        assert_eq!(newest.after(0).0.len(), 1);
    }

    #[test]
    fn non_final_events_past_the_task_budget_are_left_out_but_the_end_is_kept() {
        let ev = events(10, 1 << 20, 1000);
        let log = ev.open("t", "alice", "echo", None);
        for _ in 0..20 {
            ev.append(&log, "status", "y".repeat(100), None, false);
        }
        assert!(log.dropped() > 0);
        assert!(
            ev.append(&log, "task", "z".repeat(5000), None, true)
                .is_some()
        );
        let (all, done) = log.after(0);
        assert!(done);
        assert_eq!(all.last().unwrap().name, "task");
        // Readers are told, once, that updates were left out.
        let notices: Vec<_> = all.iter().filter(|e| e.name == "notice").collect();
        assert_eq!(notices.len(), 1, "{all:?}");
        assert!(notices[0].data.contains("not kept"), "{}", notices[0].data);
    }

    #[test]
    fn logs_expire_with_age() {
        let ev = TaskEvents::new(EventLimits {
            max_tasks: 10,
            max_bytes: 1 << 20,
            per_task_bytes: 1 << 20,
            ttl: Duration::from_millis(1),
        });
        ev.open("t", "alice", "echo", None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(ev.get("t", "alice").is_none());
    }
}
