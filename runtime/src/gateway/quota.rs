//! Per-user counts of things held open at once (SSE streams).
//!
//! A slot is taken when the stream opens and given back when its body is
//! dropped, whichever way it ends (task done, client gone, server closing).
//! Only users with an open stream have an entry, so the map never outgrows
//! the number of open connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open streams per user, capped at `limit` each.
pub(crate) struct UserSlots {
    limit: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why a slot was not given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{held} streams of this user are open (limit {limit})")]
pub(crate) struct SlotsFull {
    pub held: usize,
    pub limit: usize,
}

/// One held slot; dropping it gives the slot back.
pub(crate) struct Slot {
    user: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

fn lock(m: &Mutex<HashMap<String, usize>>) -> MutexGuard<'_, HashMap<String, usize>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UserSlots {
    pub(crate) fn new(limit: usize) -> Self {
        UserSlots {
            limit: limit.max(1),
            held: Arc::default(),
        }
    }

    pub(crate) fn acquire(&self, user: &str) -> Result<Slot, SlotsFull> {
        let mut held = lock(&self.held);
        let n = held.entry(user.to_string()).or_default();
        if *n >= self.limit {
            return Err(SlotsFull {
                held: *n,
                limit: self.limit,
            });
        }
        *n += 1;
        Ok(Slot {
            user: user.to_string(),
            held: self.held.clone(),
        })
    }

    /// Slots held, all users together.
    pub(crate) fn total(&self) -> usize {
        lock(&self.held).values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        if let Some(n) = held.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_limit_and_a_drop_frees_a_slot() {
        let slots = UserSlots::new(2);
        let a = slots.acquire("alice").unwrap();
        let _b = slots.acquire("alice").unwrap();
        assert_eq!(
            slots.acquire("alice").err(),
            Some(SlotsFull { held: 2, limit: 2 })
        );
        let _c = slots.acquire("bob").unwrap();
        drop(a);
        let _d = slots.acquire("alice").unwrap();
        assert_eq!(slots.total(), 3);
    }

    #[test]
    fn users_without_open_streams_leave_no_entry() {
        let slots = UserSlots::new(1);
        drop(slots.acquire("alice").unwrap());
        assert!(lock(&slots.held).is_empty());
    }
}
