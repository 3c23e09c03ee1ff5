//! Log output as the `log:` block asks: stdout at one level, optionally a
//! file at another, each as text or JSON lines. `RUST_LOG`, when set,
//! overrides the stdout level; `AMESH_LOG_FORMAT` the formats.

use std::fs::OpenOptions;

use anyhow::Context;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogConfig, LogFormat, LogLevel};

fn level(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// The spans exported as traces (`telemetry::traces`) stay out of the
/// log outputs: turning traces on changes no log line.
fn no_trace_spans() -> tracing_subscriber::filter::Directive {
    format!("{}=off", crate::telemetry::traces::TARGET)
        .parse()
        .expect("a valid static directive")
}

/// Paho logs its connect options (with the password) and every outgoing
/// message (with the identity token) at debug level: never let those
/// through, whatever level the operator asks for.
fn quiet_paho() -> tracing_subscriber::filter::Directive {
    "paho_mqtt=info".parse().expect("a valid static directive")
}

/// `AMESH_LOG_FORMAT` (`text` or `json`), when set, overrides the
/// configured formats of both outputs: containers switch to JSON without
/// editing the config.
fn format_override() -> anyhow::Result<Option<LogFormat>> {
    match std::env::var("AMESH_LOG_FORMAT") {
        Ok(v) if v.eq_ignore_ascii_case("json") => Ok(Some(LogFormat::Json)),
        Ok(v) if v.eq_ignore_ascii_case("text") => Ok(Some(LogFormat::Text)),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => anyhow::bail!("AMESH_LOG_FORMAT={v:?}: expected `text` or `json`"),
        Err(_) => Ok(None),
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// One output: `writer` in `format`, through `filter`.
fn output<W>(format: LogFormat, ansi: bool, writer: W, filter: EnvFilter) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => layer.with_target(false).with_filter(filter).boxed(),
        // JSON lines for a collector: the event's fields at the top level,
        // the target kept (it names the module a line came from).
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
    }
}

/// What [`init`] started that must live as long as the process: the
/// trace exporter, flushed when this is dropped (at the end of `main`).
#[must_use = "dropping the guard stops the trace exporter"]
pub struct LoggingGuard {
    _traces: Option<crate::telemetry::traces::TracesGuard>,
}

/// Installs the global subscriber (and, when the environment turns them
/// on, the OpenTelemetry trace exporter). Call once, before starting apps;
/// keep the guard until the process ends.
pub fn init(cfg: &LogConfig) -> anyhow::Result<LoggingGuard> {
    let forced = format_override()?;
    let stdout_filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(spec).context("RUST_LOG")?,
        _ => EnvFilter::default().add_directive(level(cfg.stdout_log_level).into()),
    }
    .add_directive(quiet_paho())
    .add_directive(no_trace_spans());
    let stdout_format = forced.unwrap_or(cfg.stdout_log_format);
    let mut layers = vec![output(
        stdout_format,
        stdout_format == LogFormat::Text,
        std::io::stdout,
        stdout_filter,
    )];
    if let Some(path) = &cfg.log_file {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("log_file {}", path.display()))?;
        layers.push(output(
            forced.unwrap_or(cfg.log_file_format),
            false,
            std::sync::Mutex::new(f),
            EnvFilter::default()
                .add_directive(level(cfg.log_file_level).into())
                .add_directive(quiet_paho())
                .add_directive(no_trace_spans()),
        ));
    }
    let traces = crate::telemetry::traces::layer()?;
    let guard = traces.map(|(layer, guard)| {
        layers.push(layer);
        guard
    });
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("logging already initialised")?;
    if let Some(guard) = &guard {
        tracing::info!(endpoint = %guard.endpoint(), "exporting traces over OTLP/HTTP");
    }
    Ok(LoggingGuard { _traces: guard })
}

/// Lets one kind of warning through at most once per interval, counting
/// the ones held back, so a flood (of connections, of bogus cards) costs a
/// log line every few seconds instead of one per attempt.
pub struct Throttle {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    pub const fn new(every: std::time::Duration) -> Self {
        Throttle {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a warning may be logged now, `n` being how many were
    /// held back since the last one; `None` when this one is held back.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held) = &mut *state;
        match last {
            Some(t) if now.duration_since(*t) < self.every => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}
