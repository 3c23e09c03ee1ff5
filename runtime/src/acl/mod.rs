//! Broker access control: the ACL model derived from the configs, and its
//! renderings for Mosquitto (the dynamic-security plugin's config, or the
//! plugin-less password and ACL files) and Solace (a SEMP v2 plan).
//! `amesh acl generate` drives it through [`cli::generate`].

pub mod cli;
pub mod model;
pub mod mosquitto;
pub mod mosquitto_dynsec;
pub mod passwd;
pub mod solace;

pub use model::{AclModel, Component, Password, Principal};
