//! Log output as the `log:` block asks: stdout at one level, optionally a
//! file at another. `RUST_LOG`, when set, overrides the stdout level.

use std::fs::OpenOptions;

use anyhow::Context;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogLevel};

fn level(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Paho logs its connect options (with the password) and every outgoing
/// message (with the identity token) at debug level: never let those
/// through, whatever level the operator asks for.
fn quiet_paho() -> tracing_subscriber::filter::Directive {
    "paho_mqtt=info".parse().expect("a valid static directive")
}

/// Installs the global subscriber. Call once, before starting apps.
pub fn init(cfg: &LogConfig) -> anyhow::Result<()> {
    let stdout_filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(spec).context("RUST_LOG")?,
        _ => EnvFilter::default().add_directive(level(cfg.stdout_log_level).into()),
    }
    .add_directive(quiet_paho());
    let stdout = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_filter(stdout_filter);
    let file = match &cfg.log_file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log_file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .with_filter(
                        EnvFilter::default()
                            .add_directive(level(cfg.log_file_level).into())
                            .add_directive(quiet_paho()),
                    ),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stdout)
        .with(file)
        .try_init()
        .context("logging already initialised")?;
    Ok(())
}
