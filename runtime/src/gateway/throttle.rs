//! Slowing down credential guessing: failed logins and refused API tokens
//! or session cookies, counted per client address.
//!
//! A login takes only a token, which names no account until it matches,
//! so failures are counted by where they come from (an IPv4 address, or
//! an IPv6 /64, which one client usually holds whole). After
//! `max_login_failures_per_ip` failures the address waits 1 s, and each
//! further failure doubles the wait up to `login_backoff_max_seconds`.
//! A waiting address is answered 429 with `Retry-After` before any
//! credential is looked at, so guessing costs the attacker time, not us
//! CPU. Callers check, authenticate and record without an `.await` in
//! between, so a burst of parallel guesses slips through at most one per
//! runtime worker thread. Memory is bounded: at most [`MAX_ADDRESSES`]
//! addresses are kept, idle ones are forgotten, and at the cap the one
//! idle longest goes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Addresses remembered at most (about 50 bytes each).
pub(crate) const MAX_ADDRESSES: usize = 10_000;

/// Failures are forgotten after at least this long without another.
const MIN_FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Failed authentications per client address, shared by every request of
/// one gateway.
pub(crate) struct LoginThrottle {
    /// Failures an address may make before it has to wait; 0 turns the
    /// throttle off.
    free: u32,
    max_wait: Duration,
    forget_after: Duration,
    capacity: usize,
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
}

/// One address's recent failures.
struct Failures {
    count: u32,
    last: Instant,
    /// No attempt is looked at before this.
    until: Instant,
}

impl LoginThrottle {
    pub(crate) fn new(free: u32, max_wait: Duration) -> Self {
        Self::with_capacity(free, max_wait, MAX_ADDRESSES)
    }

    fn with_capacity(free: u32, max_wait: Duration, capacity: usize) -> Self {
        let max_wait = max_wait.max(Duration::from_secs(1));
        LoginThrottle {
            free,
            max_wait,
            forget_after: max_wait.max(MIN_FORGET_AFTER),
            capacity: capacity.max(1),
            by_addr: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.by_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `ip` has to wait before its next attempt counts.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.free == 0 {
            return Ok(());
        }
        match self.lock().get(&key(ip)) {
            Some(f) if f.until > now => Err(f.until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) {
        if self.free == 0 {
            return;
        }
        let ip = key(ip);
        let mut map = self.lock();
        if !map.contains_key(&ip) && map.len() >= self.capacity {
            self.make_room(&mut map, now);
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            until: now,
        });
        if now.saturating_duration_since(f.last) >= self.forget_after {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= self.free {
            let doublings = (f.count - self.free).min(31);
            let wait = Duration::from_secs(1u64 << doublings).min(self.max_wait);
            f.until = now + wait;
        }
    }

    /// Forgets idle addresses; if none is idle, the one idle longest.
    fn make_room(&self, map: &mut HashMap<IpAddr, Failures>, now: Instant) {
        map.retain(|_, f| now.saturating_duration_since(f.last) < self.forget_after);
        if map.len() >= self.capacity
            && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(ip, _)| *ip)
        {
            map.remove(&oldest);
        }
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The unit one client is counted by: its IPv4 address, or its IPv6 /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Whole seconds of `wait`, rounded up, for `Retry-After`.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let t = LoginThrottle::new(3, Duration::from_secs(5));
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..2 {
            t.failed(a, now);
            assert_eq!(t.check(a, now), Ok(()));
        }
        t.failed(a, now);
        assert_eq!(t.check(a, now), Err(Duration::from_secs(1)));
        let later = now + Duration::from_secs(1);
        assert_eq!(t.check(a, later), Ok(()));
        t.failed(a, later);
        assert_eq!(t.check(a, later), Err(Duration::from_secs(2)));
        for _ in 0..10 {
            t.failed(a, later);
        }
        assert_eq!(t.check(a, later), Err(Duration::from_secs(5)), "capped");
        // Forgotten after a quiet quarter of an hour.
        let much_later = later + MIN_FORGET_AFTER;
        t.failed(a, much_later);
        assert_eq!(t.check(a, much_later), Ok(()));
    }

    #[test]
    fn one_client_is_its_ipv4_address_or_its_ipv6_64() {
        let t = LoginThrottle::new(1, Duration::from_secs(60));
        let now = Instant::now();
        t.failed(ip("2001:db8:1:2::1"), now);
        assert!(t.check(ip("2001:db8:1:2:ffff::9"), now).is_err());
        assert!(t.check(ip("2001:db8:1:3::1"), now).is_ok());
        t.failed(ip("::ffff:192.0.2.7"), now);
        assert!(t.check(ip("192.0.2.7"), now).is_err());
        assert!(t.check(ip("192.0.2.8"), now).is_ok());
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_longest_idle_address() {
        let t = LoginThrottle::with_capacity(1, Duration::from_secs(60), 3);
        let now = Instant::now();
        for (i, last) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            t.failed(ip(last), now + Duration::from_secs(i as u64));
        }
        t.failed(ip("10.0.0.4"), now + Duration::from_secs(3));
        assert_eq!(t.len(), 3);
        assert!(t.check(ip("10.0.0.1"), now).is_ok(), "the oldest went");
        assert!(
            t.check(ip("10.0.0.4"), now + Duration::from_secs(3))
                .is_err()
        );
    }

    #[test]
    fn zero_free_failures_turns_it_off() {
        let t = LoginThrottle::new(0, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..100 {
            t.failed(ip("192.0.2.1"), now);
        }
        assert_eq!(t.check(ip("192.0.2.1"), now), Ok(()));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
