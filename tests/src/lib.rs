//! Cross-crate integration tests and their harness (real Mosquitto, SQL
//! and HTTP servers).

pub mod mosquitto;
pub mod oauth;
pub mod raw;
pub mod stack;
