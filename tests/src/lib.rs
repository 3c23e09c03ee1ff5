//! Cross-crate integration tests and their harness (real Mosquitto, SQL
//! and HTTP servers, scripted model servers).

pub mod amesh_bin;
pub mod amesh_run;
pub mod doc_table;
pub mod mcp_server;
pub mod model_server;
pub mod mosquitto;
pub mod oauth;
pub mod oidc;
pub mod raw;
pub mod stack;
