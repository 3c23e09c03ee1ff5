//! Configuration: YAML app configs loaded into typed structs.
//!
//! [`load_files`] is the entry point: it parses YAML (anchors, merge keys,
//! `!include`, `${VAR, default}`), types it into the structs of [`model`],
//! checks it, and reports every problem as `file:line:column: key.path:
//! message` so an operator can fix a whole config in one pass.

mod artifact_service;
mod de;
mod de_error;
mod dictconfig;
mod error;
pub mod limits;
pub mod llm;
mod loader;
pub mod model;
mod node;
mod paste;
mod paths;
mod sam;
mod scalar;
mod start_checks;
pub mod telemetry;
mod tools;
mod validate;
mod vars;
mod yaml;

pub use error::{ConfigError, ConfigErrors, Pos};
pub use limits::{AgentLimits, GatewayLimits};
pub use llm::{ModelApi, ModelConfig, ModelConfigError, ResolvedModel};
pub use loader::{load_files, load_files_with, load_files_with_env, load_str, load_str_with_env};
pub use model::*;
pub use scalar::EnvLookup;
pub use telemetry::MetricsConfig;
