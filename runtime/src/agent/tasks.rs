//! The agent's record of its tasks, for `tasks/get` and `tasks/cancel`.
//!
//! A `TaskStore` is shared by every request handler of one agent app
//! (cloning is shallow). It uses a std `Mutex`: every critical section is a
//! few map operations and never spans an `.await`.
//!
//! Finished tasks stay answerable by `tasks/get` within a [`Retention`]:
//! a byte budget, a TTL and a count, oldest forgotten first. A finished
//! task is kept as its JSON, appended to one ring buffer (the *journal*)
//! in the order tasks finish, which is also the order they are forgotten
//! in. So the budget is exactly the memory held — not the dozens of small
//! strings a `Task` is made of, nor the holes they leave in the heap
//! between longer-lived allocations when they are freed (measured:
//! `benches/model_loop.rs`, agent RSS rows) — and an agent that goes idle
//! gives the buffer back. Counting tasks alone let 100 echoes of 5 MB keep
//! 2 GB.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::reasoning::state::TaskRoute;
use crate::a2a::{Task, TaskState, TaskStatus};

/// How many finished tasks stay answerable by `tasks/get`, however small.
const FINISHED_KEPT: usize = 10_000;

/// A task as the map holds it. Small on purpose: the map holds up to
/// 10,000 finished entries (measured with `benches/model_loop.rs`, agent
/// RSS rows: 72-byte slots, a user id and a second copy of the task id per
/// finished task were ~1 MB of an agent after 10,000 tasks).
enum Entry {
    /// Boxed, so finished entries do not each reserve its room.
    Running(Box<Running>),
    /// Ended (terminal states are sticky): its state, and where its
    /// journal record is (`start` counts every byte ever appended); the
    /// record holds the user and the task's JSON (see [`Journal`]).
    Finished {
        state: TaskState,
        start: u64,
        len: u32,
    },
}

struct Running {
    /// User the task runs for; `tasks/get` and `tasks/cancel` by another
    /// user are answered as if the task did not exist.
    user_id: String,
    task: Task,
    cancel: CancellationToken,
    /// Set while the task waits for its user's authorization: until when,
    /// and where to say it ended if the user never comes back.
    waiting: Option<(Instant, TaskRoute)>,
}

impl Entry {
    fn running(task: Task, user_id: &str, cancel: CancellationToken) -> Self {
        Entry::Running(Box::new(Running {
            user_id: user_id.to_string(),
            task,
            cancel,
            waiting: None,
        }))
    }

    fn running_mut(&mut self) -> Option<&mut Running> {
        match self {
            Entry::Running(r) => Some(r.as_mut()),
            Entry::Finished { .. } => None,
        }
    }

    /// The task as stored, if it is `user_id`'s (a finished one is read
    /// back from its journal record, which this store wrote).
    fn task_of(&self, journal: &Journal, user_id: &str) -> Option<Task> {
        match self {
            Entry::Running(r) => (r.user_id == user_id).then(|| r.task.clone()),
            Entry::Finished { start, len, .. } => {
                let record = journal.read(*start, *len as usize)?;
                let (owner, json) = Journal::split_record(&record)?;
                if owner != user_id.as_bytes() {
                    return None;
                }
                serde_json::from_slice(json).ok()
            }
        }
    }

    /// Whether the task is `user_id`'s.
    fn is_of(&self, journal: &Journal, user_id: &str) -> bool {
        match self {
            Entry::Running(r) => r.user_id == user_id,
            Entry::Finished { start, len, .. } => journal
                .read(*start, *len as usize)
                .and_then(|record| {
                    Journal::split_record(&record).map(|(owner, _)| owner == user_id.as_bytes())
                })
                .unwrap_or(false),
        }
    }
}

/// Finished tasks, oldest first, in one ring buffer: per task one record,
/// the user's id (4-byte little-endian length, then its bytes) followed
/// by the task's JSON.
#[derive(Default)]
struct Journal {
    bytes: VecDeque<u8>,
    /// Bytes dropped from the front so far: an entry appended at absolute
    /// offset `start` is at `start - dropped` in `bytes`.
    dropped: u64,
}

impl Journal {
    /// Appends `json` and returns its absolute offset. The buffer grows
    /// once to `max_bytes` rather than doubling past it.
    fn append(&mut self, json: &[u8], max_bytes: usize) -> u64 {
        let start = self.dropped + self.bytes.len() as u64;
        if self.bytes.capacity() < self.bytes.len() + json.len() {
            let room = max_bytes.max(self.bytes.len() + json.len()) - self.bytes.len();
            self.bytes.reserve_exact(room);
        }
        self.bytes.extend(json);
        start
    }

    /// Forgets the oldest `len` bytes.
    fn drop_front(&mut self, len: usize) {
        let len = len.min(self.bytes.len());
        self.bytes.drain(..len);
        self.dropped += len as u64;
        if self.bytes.is_empty() {
            // Idle: give the buffer back.
            self.bytes = VecDeque::new();
        }
    }

    /// A record for [`Journal::append`]: `user_id`, then `json`.
    fn record(user_id: &str, json: &[u8]) -> Vec<u8> {
        let mut record = Vec::with_capacity(4 + user_id.len() + json.len());
        record.extend_from_slice(&(user_id.len() as u32).to_le_bytes());
        record.extend_from_slice(user_id.as_bytes());
        record.extend_from_slice(json);
        record
    }

    /// A record's user id and JSON.
    fn split_record(record: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = record.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        (len <= rest.len()).then(|| rest.split_at(len))
    }

    fn read(&self, start: u64, len: usize) -> Option<Vec<u8>> {
        let from = usize::try_from(start.checked_sub(self.dropped)?).ok()?;
        let to = from.checked_add(len).filter(|&to| to <= self.bytes.len())?;
        Some(self.bytes.range(from..to).copied().collect())
    }
}

/// A finished task in the order tasks finished.
struct Finished {
    /// Shared with the map's key.
    id: Arc<str>,
    at: Instant,
    bytes: u32,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<Arc<str>, Entry>,
    finished: VecDeque<Finished>,
    /// Sum of `finished[..].bytes`: the journal's length.
    finished_bytes: usize,
    journal: Journal,
}

/// A finished entry's task, read back from its journal record (whoever's
/// it is: `set_status` is the agent's own call).
fn finished_task(entry: &Entry, journal: &Journal) -> Option<Task> {
    let Entry::Finished { start, len, .. } = entry else {
        return None;
    };
    let record = journal.read(*start, *len as usize)?;
    serde_json::from_slice(Journal::split_record(&record)?.1).ok()
}

/// How much of its finished work an agent remembers (`limits:` of its
/// config).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_bytes: usize,
    pub ttl: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        let d = crate::config::AgentLimits::default();
        Retention {
            max_bytes: d.finished_tasks_max_bytes,
            ttl: Duration::from_secs(d.finished_tasks_ttl_seconds),
        }
    }
}

#[derive(Clone, Default)]
pub struct TaskStore {
    inner: Arc<Mutex<Inner>>,
    retention: Retention,
}

/// Why a task could not be started or canceled.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskStoreError {
    AlreadyExists,
    NotFound,
    NotCancelable(TaskState),
}

impl TaskStore {
    pub fn new(retention: Retention) -> Self {
        TaskStore {
            inner: Arc::default(),
            retention,
        }
    }

    /// Bytes of the finished tasks kept (their JSON).
    pub fn retained_bytes(&self) -> usize {
        self.lock().finished_bytes
    }

    /// Forgets finished tasks older than the retention's TTL (the agent's
    /// sweeper calls it, so an idle agent lets go too).
    pub fn purge(&self, now: Instant) {
        let mut inner = self.lock();
        self.evict(&mut inner, now, 0);
    }

    /// Forgets finished tasks, oldest first, until they and `incoming`
    /// more bytes fit the retention.
    fn evict(&self, inner: &mut Inner, now: Instant, incoming: usize) {
        while let Some(oldest) = inner.finished.front() {
            let over = inner.finished_bytes + incoming > self.retention.max_bytes
                || inner.finished.len() > FINISHED_KEPT
                || now.saturating_duration_since(oldest.at) > self.retention.ttl;
            if !over {
                break;
            }
            let Some(old) = inner.finished.pop_front() else {
                break;
            };
            inner.finished_bytes -= old.bytes as usize;
            inner.journal.drop_front(old.bytes as usize);
            // Only the finished entry: a task resumed under the same id
            // after it was forgotten is a new entry.
            if inner
                .tasks
                .get(&old.id)
                .is_some_and(|e| matches!(e, Entry::Finished { .. }))
            {
                inner.tasks.remove(&old.id);
            }
        }
        // The map keeps its peak capacity otherwise (a burst of 10,000
        // tasks would hold their slots for good).
        if inner.tasks.capacity() > 64 && inner.tasks.capacity() > 4 * inner.tasks.len() {
            inner.tasks.shrink_to_fit();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters more than losing the agent, so recover.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new task; returns the token that cancels it.
    pub fn insert(&self, task: Task, user_id: &str) -> Result<CancellationToken, TaskStoreError> {
        let mut inner = self.lock();
        if inner.tasks.contains_key(task.id.as_str()) {
            return Err(TaskStoreError::AlreadyExists);
        }
        let cancel = CancellationToken::new();
        inner.tasks.insert(
            Arc::from(task.id.as_str()),
            Entry::running(task, user_id, cancel.clone()),
        );
        Ok(cancel)
    }

    /// For resuming a task after an authorization (possibly on another
    /// replica, or after a restart): the running entry's cancel token, or a
    /// new entry for `task`. `None` when the task already ended (canceled
    /// while it waited for the user).
    pub fn resume(&self, task: Task, user_id: &str) -> Option<CancellationToken> {
        let mut inner = self.lock();
        if let Some(entry) = inner.tasks.get_mut(task.id.as_str()) {
            let running = entry.running_mut()?;
            running.waiting = None;
            return Some(running.cancel.clone());
        }
        let cancel = CancellationToken::new();
        inner.tasks.insert(
            Arc::from(task.id.as_str()),
            Entry::running(task, user_id, cancel.clone()),
        );
        Some(cancel)
    }

    /// Records a status change. Terminal states are sticky: a task that was
    /// canceled stays canceled even if its tool finishes afterwards.
    /// Returns the task as stored after the update.
    pub fn set_status(&self, id: &str, status: TaskStatus) -> Option<Task> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let id = Arc::clone(inner.tasks.get_key_value(id)?.0);
        let entry = inner.tasks.get_mut(&id)?;
        let Entry::Running(running) = entry else {
            return finished_task(entry, &inner.journal);
        };
        running.task.status = status;
        if !running.task.status.state.is_terminal() {
            return Some(running.task.clone());
        }
        let state = running.task.status.state;
        let task = std::mem::replace(&mut running.task, Task::new("", "", state));
        let record = Journal::record(
            &running.user_id,
            &serde_json::to_vec(&task).unwrap_or_default(),
        );
        let len = record.len();
        if len > self.retention.max_bytes || u32::try_from(len).is_err() {
            // Keeping it would push out everything else and then itself.
            inner.tasks.remove(&id);
            return Some(task);
        }
        let now = Instant::now();
        self.evict(inner, now, len);
        let start = inner.journal.append(&record, self.retention.max_bytes);
        if let Some(entry) = inner.tasks.get_mut(&id) {
            *entry = Entry::Finished {
                state,
                start,
                len: len as u32,
            };
        }
        inner.finished.push_back(Finished {
            id,
            at: now,
            bytes: len as u32,
        });
        inner.finished_bytes += len;
        self.evict(inner, now, 0);
        Some(task)
    }

    /// Marks a task as waiting for its user until `until`; see
    /// [`TaskStore::expired_waits`].
    pub(crate) fn wait_for_user(&self, id: &str, until: Instant, route: TaskRoute) {
        if let Some(running) = self.lock().tasks.get_mut(id).and_then(Entry::running_mut) {
            running.waiting = Some((until, route));
        }
    }

    /// Stops a task's wait for its user and returns where its answers go:
    /// nothing runs for a waiting task, so whoever ends it (cancel) must
    /// tell its requester itself, or the requester's stream never ends.
    pub(crate) fn take_wait(&self, id: &str) -> Option<TaskRoute> {
        let mut inner = self.lock();
        let running = inner.tasks.get_mut(id)?.running_mut()?;
        running.waiting.take().map(|(_, route)| route)
    }

    /// Tasks that waited for their user past their deadline: no longer
    /// waiting, each with its route so the caller can end it and tell the
    /// requester. (A scan: only agents with many thousands of waiting tasks
    /// would notice, and the sweep runs twice a minute.)
    pub(crate) fn expired_waits(&self, now: Instant) -> Vec<TaskRoute> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for running in inner.tasks.values_mut().filter_map(Entry::running_mut) {
            if running
                .waiting
                .as_ref()
                .is_some_and(|(until, _)| *until <= now)
                && let Some((_, route)) = running.waiting.take()
            {
                out.push(route);
            }
        }
        out
    }

    /// Appends an artifact to the stored task, unless it already ended
    /// (a task canceled meanwhile keeps what it had, and its retained size
    /// stays what was counted).
    pub fn add_artifact(&self, id: &str, artifact: crate::a2a::Artifact) {
        if let Some(running) = self.lock().tasks.get_mut(id).and_then(Entry::running_mut) {
            running.task.artifacts.push(artifact);
        }
    }

    /// The task, if it exists and belongs to `user_id`.
    pub fn get(&self, id: &str, user_id: &str) -> Option<Task> {
        let inner = self.lock();
        inner.tasks.get(id)?.task_of(&inner.journal, user_id)
    }

    /// Requests cancellation. The running handler observes the token, stops
    /// its tool and reports `canceled`.
    pub fn cancel(&self, id: &str, user_id: &str) -> Result<Task, TaskStoreError> {
        let inner = self.lock();
        let entry = inner
            .tasks
            .get(id)
            .filter(|e| e.is_of(&inner.journal, user_id));
        match entry {
            None => Err(TaskStoreError::NotFound),
            Some(Entry::Finished { state, .. }) => Err(TaskStoreError::NotCancelable(*state)),
            Some(Entry::Running(running)) => {
                running.cancel.cancel();
                Ok(running.task.clone())
            }
        }
    }

    /// Cancels every running task (shutdown after the grace period).
    pub fn cancel_all(&self) -> usize {
        let inner = self.lock();
        let mut n = 0;
        for entry in inner.tasks.values() {
            if let Entry::Running(running) = entry {
                running.cancel.cancel();
                n += 1;
            }
        }
        n
    }

    /// Number of tasks not yet in a terminal state.
    pub fn running(&self) -> usize {
        self.lock()
            .tasks
            .values()
            .filter(|e| matches!(e, Entry::Running(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_state_is_sticky_and_other_users_see_nothing() {
        let store = TaskStore::default();
        let token = store
            .insert(Task::new("t1", "c1", TaskState::Submitted), "alice")
            .unwrap();
        assert_eq!(
            store.insert(Task::new("t1", "c1", TaskState::Submitted), "alice"),
            Err(TaskStoreError::AlreadyExists)
        );
        assert!(store.get("t1", "bob").is_none());
        assert_eq!(
            store.cancel("t1", "bob").unwrap_err(),
            TaskStoreError::NotFound
        );
        store.cancel("t1", "alice").unwrap();
        assert!(token.is_cancelled());
        store.set_status("t1", TaskStatus::new(TaskState::Canceled, None));
        let after = store
            .set_status("t1", TaskStatus::new(TaskState::Completed, None))
            .unwrap();
        assert_eq!(after.status.state, TaskState::Canceled);
        assert_eq!(
            store.cancel("t1", "alice").unwrap_err(),
            TaskStoreError::NotCancelable(TaskState::Canceled)
        );
        assert_eq!(store.running(), 0);
        // Finished, its owner is read from the journal record.
        assert_eq!(
            store.get("t1", "alice").map(|t| t.status.state),
            Some(TaskState::Canceled)
        );
        assert!(store.get("t1", "bob").is_none());
        assert!(store.get("t1", "alic").is_none(), "no prefix match");
        assert_eq!(
            store.cancel("t1", "bob").unwrap_err(),
            TaskStoreError::NotFound
        );
    }

    fn store(max_bytes: usize, ttl_secs: u64) -> TaskStore {
        TaskStore::new(Retention {
            max_bytes,
            ttl: std::time::Duration::from_secs(ttl_secs),
        })
    }

    /// Runs a task to completion with an artifact of `size` bytes of text.
    fn finish_with(store: &TaskStore, id: &str, size: usize) {
        store
            .insert(Task::new(id, "c", TaskState::Working), "u")
            .unwrap();
        store.add_artifact(
            id,
            crate::a2a::Artifact {
                artifact_id: format!("{id}-a"),
                name: None,
                description: None,
                parts: vec![crate::a2a::Part::text("x".repeat(size))],
                metadata: None,
            },
        );
        store.set_status(id, TaskStatus::new(TaskState::Completed, None));
    }

    #[test]
    fn finished_tasks_stay_under_the_byte_budget_oldest_out_first() {
        let store = store(10_000, 3600);
        for i in 0..10 {
            finish_with(&store, &format!("t{i}"), 3000);
        }
        let kept = store.retained_bytes();
        assert!(kept <= 10_000, "{kept} bytes kept");
        assert!(kept > 6000, "the newest fit: {kept} bytes kept");
        assert!(store.get("t0", "u").is_none());
        let newest = store.get("t9", "u").expect("kept");
        assert_eq!(newest.status.state, TaskState::Completed);
        assert!(
            matches!(&newest.artifacts[0].parts[0], crate::a2a::Part::Text { text, .. } if text.len() == 3000)
        );
        assert!(store.get("t8", "u").is_some());
        assert!(store.get("t9", "other").is_none());
    }

    #[test]
    fn the_journal_holds_at_most_the_budget_and_reads_back_every_kept_task() {
        let store = store(10_000, 3600);
        for i in 0..500 {
            finish_with(&store, &format!("t{i}"), 100 + (i % 7) * 300);
        }
        let inner = store.lock();
        assert!(inner.journal.bytes.len() <= 10_000);
        assert!(
            inner.journal.bytes.capacity() <= 2 * 10_000,
            "grew past the budget: {}",
            inner.journal.bytes.capacity()
        );
        assert_eq!(inner.journal.bytes.len(), inner.finished_bytes);
        let kept: Vec<String> = inner.finished.iter().map(|f| f.id.to_string()).collect();
        drop(inner);
        assert!(kept.len() > 3, "{kept:?}");
        for id in &kept {
            let task = store.get(id, "u").expect("kept task reads back");
            assert_eq!(&task.id, id);
        }
        assert!(store.get("t0", "u").is_none());
        // Idle: everything expires and the buffer is given back.
        store.purge(Instant::now() + std::time::Duration::from_secs(3601));
        assert_eq!(store.lock().journal.bytes.capacity(), 0);
    }

    #[test]
    fn a_task_larger_than_the_budget_is_not_kept_and_running_ones_are_untouched() {
        let store = store(10_000, 3600);
        store
            .insert(Task::new("running", "c", TaskState::Working), "u")
            .unwrap();
        finish_with(&store, "small", 100);
        finish_with(&store, "huge", 50_000);
        assert!(store.get("huge", "u").is_none());
        assert!(store.get("small", "u").is_some());
        assert!(store.get("running", "u").is_some());
        assert!(store.retained_bytes() < 1000);
    }

    #[test]
    fn finished_tasks_expire_after_the_ttl() {
        let store = store(1_000_000, 60);
        store
            .insert(Task::new("running", "c", TaskState::Working), "u")
            .unwrap();
        finish_with(&store, "done", 10);
        store.purge(Instant::now() + std::time::Duration::from_secs(30));
        assert!(store.get("done", "u").is_some());
        store.purge(Instant::now() + std::time::Duration::from_secs(61));
        assert!(store.get("done", "u").is_none());
        assert!(store.get("running", "u").is_some());
        assert_eq!(store.retained_bytes(), 0);
    }

    #[test]
    fn waits_past_their_deadline_are_handed_out_once() {
        let store = TaskStore::default();
        let route = |id: &str| TaskRoute {
            task_id: id.into(),
            context_id: "c".into(),
            rpc_id: serde_json::json!(id),
            reply_to: "r".into(),
            status_topic: None,
            call_depth: 0,
        };
        let now = Instant::now();
        for id in ["old", "new"] {
            store
                .insert(Task::new(id, "c", TaskState::AuthRequired), "u")
                .unwrap();
        }
        store.wait_for_user("old", now, route("old"));
        store.wait_for_user(
            "new",
            now + std::time::Duration::from_secs(600),
            route("new"),
        );
        let expired: Vec<String> = store
            .expired_waits(now)
            .into_iter()
            .map(|r| r.task_id)
            .collect();
        assert_eq!(expired, ["old"]);
        assert!(store.expired_waits(now).is_empty(), "handed out once");
        // A task that resumed is no longer waiting.
        store.resume(Task::new("new", "c", TaskState::Working), "u");
        assert!(
            store
                .expired_waits(now + std::time::Duration::from_secs(601))
                .is_empty()
        );
    }

    #[test]
    fn finished_tasks_are_bounded() {
        let store = TaskStore::default();
        for i in 0..(FINISHED_KEPT + 5) {
            let id = format!("t{i}");
            store
                .insert(Task::new(&id, "c", TaskState::Working), "u")
                .unwrap();
            store.set_status(&id, TaskStatus::new(TaskState::Completed, None));
        }
        assert!(store.get("t0", "u").is_none());
        assert!(store.get(&format!("t{}", FINISHED_KEPT + 4), "u").is_some());
    }
}
