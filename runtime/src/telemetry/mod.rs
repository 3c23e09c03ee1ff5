//! What an operator watches from outside: Prometheus metrics (`metrics`)
//! and the HTTP listener that serves them for an agent (`endpoint`); the
//! gateway serves the same registry on its own port at `/metrics`.
//! OpenTelemetry traces (`traces`: the switch and the OTLP exporter;
//! `export_log`: its failures in the log; `spans`: every span amesh exports; `propagation`: the W3C trace context
//! in MQTT user properties and HTTP headers; `http_span`: the gateway's
//! request span).

pub mod endpoint;
mod export_log;
pub(crate) mod http_span;
pub mod metrics;
pub(crate) mod propagation;
pub(crate) mod spans;
pub mod traces;
