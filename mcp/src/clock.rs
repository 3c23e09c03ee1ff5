//! The wall clock of the MCP client library.
//!
//! The rest of the workspace reads time through `amesh_trust::now_unix`;
//! this crate depends on no amesh crate (it is the MCP client library), so
//! it has its own single reader, used by token expiry and the demo
//! provider alike, instead of one inline `SystemTime` call per caller.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in unix seconds (0 if the clock is before 1970), the
/// same reading as `amesh_trust::now_unix`.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
