//! amesh runtime: the broker layer, A2A over MQTT v5, the agent and gateway
//! apps, broker ACL provisioning and the `amesh` command line.
#![forbid(unsafe_code)]

pub mod a2a;
pub mod config;
pub mod discovery;
pub mod topics;
pub mod broker;
pub mod acl;
pub mod agent;
pub mod cards;
pub mod gateway;
pub mod logging;
pub mod run;
