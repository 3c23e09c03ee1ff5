//! placeholder crate root, replaced below
#![forbid(unsafe_code)]
pub mod client;
pub mod clock;
pub mod demo;
pub mod manifest;
pub mod oauth;
pub mod schema;
pub mod secret;
pub mod tool_config;
