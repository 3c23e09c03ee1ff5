//! Broker access control: Mosquitto password files (and, later, the ACL model).

pub mod passwd;
