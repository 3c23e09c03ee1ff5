//! Cross-crate integration tests and their harness (real Mosquitto, SQL
//! and HTTP servers, scripted model servers).

pub mod amesh_bin;
pub mod amesh_run;
pub mod browser;
pub mod doc_table;
pub mod faulty_mcp;
pub mod mcp_server;
pub mod model_server;
pub mod modern_mcp;
pub mod mosquitto;
pub mod oauth;
pub mod oidc;
pub mod pg_cluster;
pub mod raw;
pub mod stack;
