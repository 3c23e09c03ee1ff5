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
