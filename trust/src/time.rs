//! Time as the trust manager sees it: whole unix seconds, passed in.
//!
//! Every check takes `now` as an argument instead of reading the clock, so
//! tests can stand at any instant (a token's last valid second, a card's
//! first expired one) and the runtime reads the clock once per message.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The current time in unix milliseconds (0 if the clock is before 1970):
/// the one wall clock of the workspace for what is kept or sent in
/// milliseconds (the A2A `timestamp` property, stored rows, task logs).
pub fn now_unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
