//! The MCP client library of amesh: the client itself over Streamable
//! HTTP, legacy HTTP+SSE and stdio (`client`), tool manifests and their
//! JSON Schemas (`manifest`, `schema`), the `tool_type: mcp` config block
//! (`tool_config`), and the OAuth 2.1 client an agent uses to get each
//! user's token for a server (`oauth`: discovery, registration, PKCE,
//! refresh, revocation). The demo provider the tests and `amesh run` talk
//! to lives in its own crate, `amesh-demo`, so nothing here is a server.
#![forbid(unsafe_code)]
pub mod client;
pub mod clock;
pub mod manifest;
pub mod oauth;
pub mod schema;
pub mod secret;
pub mod tool_config;
