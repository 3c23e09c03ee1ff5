//! The guide's anomalous patterns, watched as audit events are recorded
//! and logged as warnings a SIEM can alert on:
//!
//! - repeated failed authorizations by one user (`authorization_failed`
//!   events, recorded under the user who tried): [`FAILED_AUTHORIZATIONS`]
//!   within [`WINDOW`]. `access_denied` is not counted: it is recorded
//!   under the owner of what was asked for, the victim, not the caller;
//!   the caller's refused callback is an `authorization_failed` of its own;
//! - rapid credential create/delete cycles (`acquired` followed by
//!   `deleted` or `revoked`): [`CHURN_CYCLES`] within [`WINDOW`].
//!
//! Each pattern is warned about at most once per window per user, so an
//! attack costs a log line, not a flood. Memory is bounded: at most
//! [`MAX_TRACKED_USERS`] users, each with a few timestamps; when full, users
//! quiet for a whole window go first, then the least recently seen.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{CredentialEvent, EventKind};

/// How far back a pattern looks.
pub const WINDOW: Duration = Duration::from_secs(600);
/// Failed authorizations by one user within [`WINDOW`] that are warned about.
pub const FAILED_AUTHORIZATIONS: usize = 5;
/// Create/delete cycles of one user within [`WINDOW`] that are warned about.
pub const CHURN_CYCLES: usize = 3;
/// Users tracked at once.
pub const MAX_TRACKED_USERS: usize = 10_000;

/// Which pattern a user showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anomaly {
    RepeatedFailedAuthorizations,
    CredentialChurn,
}

/// What one user did lately. Each queue keeps at most the threshold's
/// number of timestamps: enough to tell whether the threshold was reached
/// within the window.
#[derive(Default)]
struct Trail {
    failures: VecDeque<Instant>,
    acquired: VecDeque<Instant>,
    cycles: VecDeque<Instant>,
    last_seen: Option<Instant>,
    warned_failures: Option<Instant>,
    warned_churn: Option<Instant>,
}

/// The per-store watcher; one per [`crate::CredentialStore`].
#[derive(Default)]
pub(crate) struct AnomalyWatch {
    users: Mutex<HashMap<String, Trail>>,
}

impl AnomalyWatch {
    /// Looks at freshly recorded events and logs a warning for each
    /// pattern reached.
    pub(crate) fn observe(&self, events: &[CredentialEvent]) {
        let now = Instant::now();
        for event in events {
            if let Some(anomaly) = self.note(event, now) {
                warn(event, anomaly);
            }
        }
    }

    /// Counts `event` at `now`; the pattern it completes, if one is due a
    /// warning.
    pub(crate) fn note(&self, event: &CredentialEvent, now: Instant) -> Option<Anomaly> {
        let kind = event.kind;
        let counted = matches!(
            kind,
            EventKind::AuthorizationFailed
                | EventKind::AuthorizationRefused
                | EventKind::Acquired
                | EventKind::Deleted
                | EventKind::Revoked
        );
        if !counted {
            return None;
        }
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if !users.contains_key(&event.user_id) && users.len() >= MAX_TRACKED_USERS {
            evict(&mut users, now);
        }
        let trail = users.entry(event.user_id.clone()).or_default();
        trail.last_seen = Some(now);
        match kind {
            EventKind::AuthorizationFailed | EventKind::AuthorizationRefused => {
                push(&mut trail.failures, now, FAILED_AUTHORIZATIONS);
                due(
                    &trail.failures,
                    FAILED_AUTHORIZATIONS,
                    &mut trail.warned_failures,
                    now,
                )
                .then_some(Anomaly::RepeatedFailedAuthorizations)
            }
            EventKind::Acquired => {
                push(&mut trail.acquired, now, CHURN_CYCLES);
                None
            }
            _ => {
                // A deletion closes a cycle when a creation within the
                // window opened it.
                let opened = trail
                    .acquired
                    .iter()
                    .position(|t| now.duration_since(*t) <= WINDOW)?;
                trail.acquired.remove(opened);
                push(&mut trail.cycles, now, CHURN_CYCLES);
                due(&trail.cycles, CHURN_CYCLES, &mut trail.warned_churn, now)
                    .then_some(Anomaly::CredentialChurn)
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.users.lock().map(|u| u.len()).unwrap_or(0)
    }
}

/// Appends `now`, keeping the newest `keep`.
fn push(times: &mut VecDeque<Instant>, now: Instant, keep: usize) {
    if times.len() >= keep {
        times.pop_front();
    }
    times.push_back(now);
}

/// Whether `threshold` events fell within the window and no warning about
/// them was given within the window.
fn due(
    times: &VecDeque<Instant>,
    threshold: usize,
    warned: &mut Option<Instant>,
    now: Instant,
) -> bool {
    let reached = times.len() >= threshold
        && times
            .front()
            .is_some_and(|first| now.duration_since(*first) <= WINDOW);
    let quiet = warned.is_none_or(|at| now.duration_since(at) > WINDOW);
    if reached && quiet {
        *warned = Some(now);
        return true;
    }
    false
}

/// Makes room for one user: drops those quiet for a whole window, else the
/// least recently seen.
fn evict(users: &mut HashMap<String, Trail>, now: Instant) {
    users.retain(|_, t| {
        t.last_seen
            .is_some_and(|at| now.duration_since(at) <= WINDOW)
    });
    if users.len() >= MAX_TRACKED_USERS
        && let Some(oldest) = users
            .iter()
            .min_by_key(|(_, t)| t.last_seen)
            .map(|(user, _)| user.clone())
    {
        users.remove(&oldest);
    }
}

fn warn(event: &CredentialEvent, anomaly: Anomaly) {
    let window_secs = WINDOW.as_secs();
    match anomaly {
        Anomaly::RepeatedFailedAuthorizations => tracing::warn!(
            anomaly = "repeated_failed_authorizations",
            agent = %event.agent_id,
            user = %event.user_id,
            tool = %event.tool_id,
            count = FAILED_AUTHORIZATIONS,
            window_secs,
            "anomaly: repeated failed authorizations by one user"
        ),
        Anomaly::CredentialChurn => tracing::warn!(
            anomaly = "credential_churn",
            agent = %event.agent_id,
            user = %event.user_id,
            tool = %event.tool_id,
            count = CHURN_CYCLES,
            window_secs,
            "anomaly: rapid credential create/delete cycles"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, kind: EventKind) -> CredentialEvent {
        CredentialEvent {
            id: 0,
            at: std::time::SystemTime::now(),
            agent_id: "a".into(),
            user_id: user.into(),
            tool_id: "t".into(),
            kind,
            reason: None,
        }
    }

    fn fail_as(user: &str) -> CredentialEvent {
        event(user, EventKind::AuthorizationFailed)
    }

    #[test]
    fn the_fifth_failed_authorization_within_the_window_is_warned_once() {
        let watch = AnomalyWatch::default();
        let t0 = Instant::now();
        let fail = event("mallory", EventKind::AuthorizationFailed);
        for i in 0..4 {
            assert_eq!(watch.note(&fail, t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            watch.note(&fail, t0 + Duration::from_secs(4)),
            Some(Anomaly::RepeatedFailedAuthorizations)
        );
        assert_eq!(
            watch.note(&fail, t0 + Duration::from_secs(5)),
            None,
            "once per window"
        );
        // Another user is counted on their own; the owner of what was
        // asked for (access_denied) is not the one who failed.
        assert_eq!(watch.note(&fail_as("bob"), t0), None);
        for _ in 0..10 {
            assert_eq!(
                watch.note(&event("carol", EventKind::AccessDenied), t0),
                None
            );
        }
    }

    #[test]
    fn failures_spread_wider_than_the_window_are_not_an_anomaly() {
        let watch = AnomalyWatch::default();
        let t0 = Instant::now();
        let fail = event("alice", EventKind::AuthorizationFailed);
        for i in 0..10 {
            let at = t0 + WINDOW / 3 * i;
            assert_eq!(watch.note(&fail, at), None, "failure {i}");
        }
    }

    #[test]
    fn three_create_delete_cycles_within_the_window_are_warned() {
        let watch = AnomalyWatch::default();
        let t0 = Instant::now();
        let mut found = Vec::new();
        for i in 0..3u64 {
            let at = t0 + Duration::from_secs(i * 10);
            found.push(watch.note(&event("eve", EventKind::Acquired), at));
            found.push(watch.note(
                &event("eve", EventKind::Deleted),
                at + Duration::from_secs(1),
            ));
        }
        assert_eq!(
            found.iter().flatten().collect::<Vec<_>>(),
            [&Anomaly::CredentialChurn]
        );
        assert_eq!(found.last(), Some(&Some(Anomaly::CredentialChurn)));
        // Deletions without creations (the TTL sweeper) are not cycles.
        let watch = AnomalyWatch::default();
        for i in 0..5 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(watch.note(&event("eve", EventKind::Revoked), at), None);
        }
    }

    #[test]
    fn tracked_users_are_bounded() {
        let watch = AnomalyWatch::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_USERS + 50 {
            let at = t0 + Duration::from_millis(i as u64);
            watch.note(&fail_as(&format!("u{i}")), at);
        }
        assert_eq!(watch.tracked(), MAX_TRACKED_USERS);
    }
}
