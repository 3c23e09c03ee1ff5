//! `app_config.metrics` of an agent: where it serves Prometheus metrics.
//! Off unless configured (a gateway serves `/metrics` on its HTTP port).
//!
//! ```yaml
//! app_config:
//!   metrics:
//!     port: 9464          # 0 picks a free port (tests)
//!     host: 127.0.0.1     # default; 0.0.0.0 in a container
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

/// The agent's metrics listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to bind; loopback unless a scraper elsewhere needs it.
    #[serde(default = "loopback")]
    pub host: IpAddr,
    pub port: u16,
}

impl MetricsConfig {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
