//! What an operator watches from outside: Prometheus metrics (`metrics`)
//! and the HTTP listener that serves them for an agent (`endpoint`). The
//! gateway serves the same registry on its own port at `/metrics`.

pub mod endpoint;
pub mod metrics;
