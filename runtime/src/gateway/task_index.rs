//! The gateway's memory of the tasks it started: whose each one is, which
//! agent runs it and the last state seen. Never the task itself: history
//! and artifacts live at the agent, which answers `tasks/get`, and keeping
//! copies here let 10,000 small requests grow the gateway by 70 MB.
//!
//! Bounded by count and by age (oldest forgotten first); a forgotten task
//! is simply "not found". A record is small (~150 bytes with its id): the
//! id is one shared string for the map and the age order, agent names and
//! user ids are interned (one string per name however many tasks name it,
//! released with the last of them), because a full index is 20,000
//! records by default and the soak bench saw it as most of the gateway's
//! growth. The index also owns the per-user quota of
//! running tasks, since it is where the gateway learns that a task ended
//! (even when its client went away before the end).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::a2a::{Task, TaskState};

/// Bytes a record costs beyond its id (map and queue slots, the shared
/// id's counts, the record): an estimate for [`TaskIndex::approx_bytes`].
const RECORD_OVERHEAD: usize = 112;

#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexLimits {
    /// Records kept at most.
    pub max_tasks: usize,
    /// A record is forgotten this long after its task started.
    pub ttl: Duration,
    /// Tasks of one user that may run at once.
    pub running_per_user: usize,
    /// A task with no known end stops counting as running after this
    /// (the gateway's own request timeout: it has given up on it by then).
    pub running_window: Duration,
}

/// A user already has as many running tasks as allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{running} tasks of this user are still running (limit {limit})")]
pub(crate) struct TooManyRunning {
    pub running: usize,
    pub limit: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct TaskRecord {
    pub agent: Arc<str>,
    pub user_id: Arc<str>,
    /// The last state an answer of the agent carried; `None` before any.
    pub state: Option<TaskState>,
    pub started: Instant,
}

impl TaskRecord {
    fn running(&self, now: Instant, window: Duration) -> bool {
        !self.state.is_some_and(TaskState::is_terminal)
            && now.saturating_duration_since(self.started) < window
    }
}

#[derive(Default)]
struct Index {
    records: HashMap<Arc<str>, TaskRecord>,
    /// Task ids in the order they started (which is also age order).
    order: VecDeque<Arc<str>>,
    /// Per user, the ids that may still count against the quota. Trimmed
    /// when a task ends or is forgotten, so users without running tasks
    /// have no entry.
    running: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// The agent names and user ids the records hold, one string each.
    names: HashSet<Arc<str>>,
}

impl Index {
    /// The one shared copy of `name`.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.names.insert(name.clone());
        name
    }

    /// Drops the interned copy of `name` once nothing else holds it: the
    /// caller's handle and the set's are the last two.
    fn release(&mut self, name: Arc<str>) {
        if Arc::strong_count(&name) <= 2 {
            self.names.remove(&name);
        }
    }

    fn forget_running(&mut self, user_id: &str, task_id: &str) {
        if let Some(ids) = self.running.get_mut(user_id) {
            ids.retain(|id| &**id != task_id);
            if ids.is_empty() {
                self.running.remove(user_id);
            }
        }
    }

    /// Forgets the oldest records while there are too many or they are too old.
    fn expire(&mut self, limits: &IndexLimits, now: Instant) {
        while let Some(oldest) = self.order.front() {
            let too_old = self
                .records
                .get(oldest)
                .is_none_or(|r| now.saturating_duration_since(r.started) > limits.ttl);
            if !too_old && self.order.len() <= limits.max_tasks {
                break;
            }
            let Some(id) = self.order.pop_front() else {
                break;
            };
            if let Some(rec) = self.records.remove(&id) {
                self.forget_running(&rec.user_id, &id);
                self.release(rec.agent);
                self.release(rec.user_id);
            }
        }
    }

    fn set_state(&mut self, task_id: &str, state: TaskState) {
        let Some(rec) = self.records.get_mut(task_id) else {
            return;
        };
        rec.state = Some(state);
        if state.is_terminal() {
            let user = rec.user_id.clone();
            self.forget_running(&user, task_id);
        }
    }
}

pub(crate) struct TaskIndex {
    limits: IndexLimits,
    inner: Mutex<Index>,
}

impl TaskIndex {
    pub(crate) fn new(limits: IndexLimits) -> Self {
        TaskIndex {
            limits,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new task of `user_id` at `agent`, unless the user already
    /// has `running_per_user` tasks running.
    pub(crate) fn start(
        &self,
        task_id: &str,
        agent: &str,
        user_id: &str,
    ) -> Result<(), TooManyRunning> {
        self.start_at(task_id, agent, user_id, Instant::now())
    }

    fn start_at(
        &self,
        task_id: &str,
        agent: &str,
        user_id: &str,
        now: Instant,
    ) -> Result<(), TooManyRunning> {
        let limits = self.limits;
        let mut guard = self.lock();
        let index = &mut *guard;
        index.expire(&limits, now);
        let user = index.intern(user_id);
        let agent = index.intern(agent);
        let records = &index.records;
        let ids = index.running.entry(user.clone()).or_default();
        ids.retain(|id| {
            records
                .get(id)
                .is_some_and(|r| r.running(now, limits.running_window))
        });
        if ids.len() >= limits.running_per_user {
            let running = ids.len();
            if running == 0 {
                index.running.remove(&user);
            }
            index.release(agent);
            index.release(user);
            return Err(TooManyRunning {
                running,
                limit: limits.running_per_user,
            });
        }
        let id: Arc<str> = Arc::from(task_id);
        ids.push(id.clone());
        index.records.insert(
            id.clone(),
            TaskRecord {
                agent,
                user_id: user,
                state: None,
                started: now,
            },
        );
        index.order.push_back(id);
        index.expire(&limits, now);
        Ok(())
    }

    /// Notes the state of a task the agent answered with.
    pub(crate) fn update(&self, task: &Task) {
        self.set_state(&task.id, task.status.state);
    }

    /// Notes a task's new state (from a status update or a final answer).
    pub(crate) fn set_state(&self, task_id: &str, state: TaskState) {
        self.lock().set_state(task_id, state);
    }

    /// The record, only if it belongs to `user_id` and is not forgotten.
    pub(crate) fn get(&self, task_id: &str, user_id: &str) -> Option<TaskRecord> {
        self.get_at(task_id, user_id, Instant::now())
    }

    fn get_at(&self, task_id: &str, user_id: &str, now: Instant) -> Option<TaskRecord> {
        let mut index = self.lock();
        index.expire(&self.limits, now);
        index
            .records
            .get(task_id)
            .filter(|r| &*r.user_id == user_id)
            .cloned()
    }

    /// Records kept now.
    pub(crate) fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Approximate bytes the index holds.
    pub(crate) fn approx_bytes(&self) -> usize {
        let index = self.lock();
        let records: usize = index
            .records
            .keys()
            .map(|id| id.len() + RECORD_OVERHEAD)
            .sum();
        let names: usize = index.names.iter().map(|n| n.len() + 48).sum();
        let running: usize = index
            .running
            .values()
            .map(|ids| 48 + 16 * ids.capacity())
            .sum();
        records + names + running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(max_tasks: usize, running_per_user: usize) -> TaskIndex {
        TaskIndex::new(IndexLimits {
            max_tasks,
            ttl: Duration::from_secs(3600),
            running_per_user,
            running_window: Duration::from_secs(600),
        })
    }

    fn done(id: &str, state: TaskState) -> Task {
        Task::new(id, "ctx", state)
    }

    #[test]
    fn records_are_bounded_by_count_oldest_forgotten_first() {
        let idx = index(3, 100);
        for i in 0..5 {
            idx.start(&format!("t{i}"), "echo", "alice").unwrap();
        }
        assert_eq!(idx.len(), 3);
        assert!(idx.get("t1", "alice").is_none());
        assert!(idx.get("t2", "alice").is_some());
        assert!(idx.get("t4", "alice").is_some());
    }

    #[test]
    fn records_expire_after_the_ttl() {
        let idx = index(100, 100);
        let t0 = Instant::now();
        idx.start_at("old", "echo", "alice", t0).unwrap();
        idx.start_at("new", "echo", "alice", t0 + Duration::from_secs(3000))
            .unwrap();
        let later = t0 + Duration::from_secs(3601);
        assert!(idx.get_at("old", "alice", later).is_none());
        assert!(idx.get_at("new", "alice", later).is_some());
        idx.start_at("newer", "echo", "alice", later).unwrap();
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn only_the_owner_sees_a_record() {
        let idx = index(100, 100);
        idx.start("t", "echo", "alice").unwrap();
        assert!(idx.get("t", "bob").is_none());
        assert_eq!(&*idx.get("t", "alice").unwrap().agent, "echo");
    }

    #[test]
    fn names_are_shared_by_records_and_released_with_the_last() {
        let idx = index(3, 100);
        idx.start("t1", "echo", "alice").unwrap();
        idx.start("t2", "echo", "alice").unwrap();
        let (a, b) = (
            idx.get("t1", "alice").unwrap(),
            idx.get("t2", "alice").unwrap(),
        );
        assert!(Arc::ptr_eq(&a.user_id, &b.user_id));
        assert!(Arc::ptr_eq(&a.agent, &b.agent));
        drop((a, b));
        assert_eq!(idx.lock().names.len(), 2);
        // Bob's and carol's tasks push alice's out: her id and the agent
        // name "echo" go with them, bob's stays while his task is kept.
        idx.start("t3", "other", "bob").unwrap();
        idx.start("t4", "other", "carol").unwrap();
        idx.start("t5", "other", "carol").unwrap();
        let names: HashSet<String> = idx.lock().names.iter().map(|n| n.to_string()).collect();
        let want: HashSet<String> = ["other", "bob", "carol"].map(String::from).into();
        assert_eq!(names, want);
        // A refused start leaves no name behind.
        let capped = index(10, 0);
        assert!(capped.start("x", "echo", "dave").is_err());
        assert!(capped.lock().names.is_empty());
        assert!(capped.lock().running.is_empty());
    }

    #[test]
    fn running_tasks_per_user_are_capped_and_an_ended_task_frees_its_slot() {
        let idx = index(100, 2);
        idx.start("a1", "echo", "alice").unwrap();
        idx.start("a2", "echo", "alice").unwrap();
        assert_eq!(
            idx.start("a3", "echo", "alice"),
            Err(TooManyRunning {
                running: 2,
                limit: 2
            })
        );
        // Other users are not affected.
        idx.start("b1", "echo", "bob").unwrap();
        // Waiting for the user still counts; an end frees the slot.
        idx.set_state("a1", TaskState::AuthRequired);
        assert!(idx.start("a3", "echo", "alice").is_err());
        idx.update(&done("a1", TaskState::Completed));
        idx.start("a3", "echo", "alice").unwrap();
        assert_eq!(
            idx.get("a1", "alice").unwrap().state,
            Some(TaskState::Completed)
        );
    }

    #[test]
    fn a_task_with_no_end_stops_counting_after_the_running_window() {
        let idx = index(100, 1);
        let t0 = Instant::now();
        idx.start_at("a1", "echo", "alice", t0).unwrap();
        assert!(idx.start_at("a2", "echo", "alice", t0).is_err());
        idx.start_at("a2", "echo", "alice", t0 + Duration::from_secs(601))
            .unwrap();
    }

    #[test]
    fn the_index_keeps_no_task_content() {
        let idx = index(100, 100);
        idx.start("t", "echo", "alice").unwrap();
        let mut task = done("t", TaskState::Completed);
        task.artifacts.push(crate::a2a::Artifact {
            artifact_id: "a".into(),
            name: None,
            description: None,
            parts: vec![crate::a2a::Part::text("x".repeat(1_000_000))],
            metadata: None,
        });
        idx.update(&task);
        assert!(idx.approx_bytes() < 1000, "{} bytes", idx.approx_bytes());
        assert_eq!(
            idx.get("t", "alice").unwrap().state,
            Some(TaskState::Completed)
        );
    }
}
