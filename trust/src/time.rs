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
