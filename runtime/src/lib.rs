//! amesh runtime: the broker layer, A2A over MQTT v5, the agent and gateway
//! apps, broker ACL provisioning and the `amesh` command line.
#![forbid(unsafe_code)]

pub mod a2a;
pub mod acl;
pub mod agent;
pub mod broker;
pub mod cards;
pub mod cli;
pub mod config;
pub mod credentials_cli;
pub mod discovery;
pub mod gateway;
pub mod glob;
pub mod logging;
pub mod oauth_state;
pub mod presence;
pub mod run;
mod stop;
pub mod telemetry;
pub mod topics;
pub mod trust_manager;
