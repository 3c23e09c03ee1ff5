//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf). Off by
//! default: no exporter, no export thread, no span is recorded and no
//! `traceparent` leaves the process.
//!
//! Switched on by the OpenTelemetry SDK's own environment variables, not
//! by a config key: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended). Why the
//! environment: the tracer is one per process (every app `amesh run`
//! starts shares it), collectors, the OpenTelemetry Operator and every
//! other service in a deployment are configured this way, and Solace Agent
//! Mesh has no trace setting to mirror (its `management_server.observability`
//! block configures Prometheus metrics only). Also read, as the
//! specification defines them: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`
//! (`otlp` or `none`), `OTEL_EXPORTER_OTLP_{TRACES_,}PROTOCOL` (only
//! `http/protobuf`), `OTEL_SERVICE_NAME` (default `amesh`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its `_ARG`
//! (default `parentbased_always_on`), `OTEL_EXPORTER_OTLP_{TRACES_,}HEADERS`
//! and `_TIMEOUT`, and the batch processor's `OTEL_BSP_*`.
//!
//! Only amesh's own spans are exported (target [`TARGET`]): not the spans
//! of the libraries underneath, and no log events.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{Layer, Registry};

/// The tracing target of every span amesh exports (see `spans.rs`); the
/// log outputs leave it out, so turning traces on changes no log line.
pub const TARGET: &str = "amesh::trace";

/// Whether spans are exported. Set once, by [`layer`].
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are on in this process: spans are recorded and the
/// trace context is propagated.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where spans go, as the environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// For the start-up log line; the exporter reads the variables itself.
    pub endpoint: String,
}

/// Reads the switch from `env`. `Ok(None)`: traces stay off.
///
/// # Errors
/// A setting amesh cannot honour (another exporter, another protocol):
/// better to refuse to start than to drop traces silently.
pub fn settings(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Settings>> {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => bail!(
            "OTEL_TRACES_EXPORTER={other:?}: amesh exports traces with `otlp` only (or `none` for no traces)"
        ),
    }
    let endpoint = match (
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => traces,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = var(name)
            && protocol != "http/protobuf"
        {
            bail!(
                "{name}={protocol:?}: amesh exports OTLP over HTTP as protobuf only (`http/protobuf`; a collector's port 4318)"
            );
        }
    }
    Ok(Some(Settings { endpoint }))
}

/// The layer [`layer`] builds, for the process's subscriber.
pub type TraceLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct TracesGuard {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl TracesGuard {
    /// Where spans are sent.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces not all exported at exit: {e}");
        }
    }
}

/// The tracing layer exporting amesh's spans, when the environment turns
/// traces on; `Ok(None)` otherwise (nothing is started).
///
/// # Errors
/// As [`settings`], and an exporter that cannot be built.
pub fn layer() -> anyhow::Result<Option<(TraceLayer, TracesGuard)>> {
    let Some(settings) = settings(&|name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    // The endpoint, headers, timeout and (for the provider) sampler and
    // batch settings come from the environment through the SDK itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .with_context(|| format!("OTLP trace exporter for {}", settings.endpoint))?;
    let exporter = super::export_log::LoggedExporter::new(exporter, &settings.endpoint);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer("amesh");
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(TARGET, LevelFilter::INFO))
        .boxed();
    let guard = TracesGuard {
        provider,
        endpoint: settings.endpoint,
    };
    Ok(Some((layer, guard)))
}

/// `service.name` from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`,
/// else `amesh`; `service.version` is amesh's.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if named {
        builder.build()
    } else {
        builder.with_service_name("amesh").build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> anyhow::Result<Option<Settings>> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settings(&move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(with(&[]).unwrap(), None);
        assert_eq!(with(&[("OTEL_SERVICE_NAME", "gw")]).unwrap(), None);
        assert_eq!(with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(), None);
    }

    #[test]
    fn the_traces_endpoint_is_used_as_is_and_the_base_gets_the_path() {
        let on = |vars| with(vars).unwrap().map(|s| s.endpoint);
        assert_eq!(
            on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            on(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://other:9/traces"
                ),
            ])
            .as_deref(),
            Some("http://other:9/traces")
        );
    }

    #[test]
    fn disabled_or_exporter_none_wins_over_an_endpoint() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            with(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(),
            None
        );
        assert_eq!(
            with(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[test]
    fn settings_amesh_cannot_honour_are_refused() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let grpc = with(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(grpc.to_string().contains("http/protobuf"), "{grpc}");
        let zipkin = with(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(zipkin.to_string().contains("otlp"), "{zipkin}");
    }
}
