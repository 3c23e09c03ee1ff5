//! The agent's record of its tasks, for `tasks/get` and `tasks/cancel`.
//!
//! A `TaskStore` is shared by every request handler of one agent app
//! (cloning is shallow). It uses a std `Mutex`: every critical section is a
//! few map operations and never spans an `.await`. Finished tasks are kept
//! for `tasks/get` up to a bound, oldest evicted first, so a long-running
//! agent's memory stays flat.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::a2a::{Task, TaskState, TaskStatus};

/// How many finished tasks stay answerable by `tasks/get`.
const FINISHED_KEPT: usize = 10_000;

struct Entry {
    task: Task,
    /// User the task runs for; `tasks/get` and `tasks/cancel` by another
    /// user are answered as if the task did not exist.
    user_id: String,
    cancel: CancellationToken,
    /// Set while the task waits for its user's authorization: until when,
    /// and where to say it ended if the user never comes back.
    waiting: Option<(Instant, super::reasoning::state::TaskRoute)>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    finished: VecDeque<String>,
}

#[derive(Clone, Default)]
pub struct TaskStore {
    inner: Arc<Mutex<Inner>>,
}

/// Why a task could not be started or canceled.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskStoreError {
    AlreadyExists,
    NotFound,
    NotCancelable(TaskState),
}

impl TaskStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters more than losing the agent, so recover.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new task; returns the token that cancels it.
    pub fn insert(&self, task: Task, user_id: &str) -> Result<CancellationToken, TaskStoreError> {
        let mut inner = self.lock();
        if inner.tasks.contains_key(&task.id) {
            return Err(TaskStoreError::AlreadyExists);
        }
        let cancel = CancellationToken::new();
        inner.tasks.insert(
            task.id.clone(),
            Entry {
                task,
                user_id: user_id.to_string(),
                cancel: cancel.clone(),
                waiting: None,
            },
        );
        Ok(cancel)
    }

    /// For resuming a task after an authorization (possibly on another
    /// replica, or after a restart): the running entry's cancel token, or a
    /// new entry for `task`. `None` when the task already ended (canceled
    /// while it waited for the user).
    pub fn resume(&self, task: Task, user_id: &str) -> Option<CancellationToken> {
        let mut inner = self.lock();
        if let Some(entry) = inner.tasks.get_mut(&task.id) {
            entry.waiting = None;
            return (!entry.task.status.state.is_terminal()).then(|| entry.cancel.clone());
        }
        let cancel = CancellationToken::new();
        inner.tasks.insert(
            task.id.clone(),
            Entry {
                task,
                user_id: user_id.to_string(),
                cancel: cancel.clone(),
                waiting: None,
            },
        );
        Some(cancel)
    }

    /// Records a status change. Terminal states are sticky: a task that was
    /// canceled stays canceled even if its tool finishes afterwards.
    /// Returns the task as stored after the update.
    pub fn set_status(&self, id: &str, status: TaskStatus) -> Option<Task> {
        let mut inner = self.lock();
        let entry = inner.tasks.get_mut(id)?;
        if entry.task.status.state.is_terminal() {
            return Some(entry.task.clone());
        }
        let terminal = status.state.is_terminal();
        if terminal {
            entry.waiting = None;
        }
        entry.task.status = status;
        let task = entry.task.clone();
        if terminal {
            inner.finished.push_back(id.to_string());
            while inner.finished.len() > FINISHED_KEPT {
                if let Some(old) = inner.finished.pop_front() {
                    inner.tasks.remove(&old);
                }
            }
        }
        Some(task)
    }

    /// Marks a task as waiting for its user until `until`; see
    /// [`TaskStore::expired_waits`].
    pub(crate) fn wait_for_user(
        &self,
        id: &str,
        until: Instant,
        route: super::reasoning::state::TaskRoute,
    ) {
        if let Some(entry) = self.lock().tasks.get_mut(id)
            && !entry.task.status.state.is_terminal()
        {
            entry.waiting = Some((until, route));
        }
    }

    /// Tasks that waited for their user past their deadline: no longer
    /// waiting, each with its route so the caller can end it and tell the
    /// requester. (A scan: only agents with many thousands of waiting tasks
    /// would notice, and the sweep runs twice a minute.)
    pub(crate) fn expired_waits(&self, now: Instant) -> Vec<super::reasoning::state::TaskRoute> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in inner.tasks.values_mut() {
            if entry
                .waiting
                .as_ref()
                .is_some_and(|(until, _)| *until <= now)
                && let Some((_, route)) = entry.waiting.take()
            {
                out.push(route);
            }
        }
        out
    }

    /// Appends an artifact to the stored task.
    pub fn add_artifact(&self, id: &str, artifact: crate::a2a::Artifact) {
        if let Some(entry) = self.lock().tasks.get_mut(id) {
            entry.task.artifacts.push(artifact);
        }
    }

    /// The task, if it exists and belongs to `user_id`.
    pub fn get(&self, id: &str, user_id: &str) -> Option<Task> {
        let inner = self.lock();
        let entry = inner.tasks.get(id)?;
        (entry.user_id == user_id).then(|| entry.task.clone())
    }

    /// Requests cancellation. The running handler observes the token, stops
    /// its tool and reports `canceled`.
    pub fn cancel(&self, id: &str, user_id: &str) -> Result<Task, TaskStoreError> {
        let inner = self.lock();
        let entry = inner.tasks.get(id).filter(|e| e.user_id == user_id);
        let entry = entry.ok_or(TaskStoreError::NotFound)?;
        if entry.task.status.state.is_terminal() {
            return Err(TaskStoreError::NotCancelable(entry.task.status.state));
        }
        entry.cancel.cancel();
        Ok(entry.task.clone())
    }

    /// Cancels every running task (shutdown after the grace period).
    pub fn cancel_all(&self) -> usize {
        let inner = self.lock();
        let mut n = 0;
        for entry in inner.tasks.values() {
            if !entry.task.status.state.is_terminal() {
                entry.cancel.cancel();
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
            .filter(|e| !e.task.status.state.is_terminal())
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
    }

    #[test]
    fn waits_past_their_deadline_are_handed_out_once() {
        let store = TaskStore::default();
        let route = |id: &str| super::super::reasoning::state::TaskRoute {
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
