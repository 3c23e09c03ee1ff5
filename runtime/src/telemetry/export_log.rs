//! Trace export failures, said in the log.
//!
//! The SDK's batch processor drops a batch its exporter could not send and
//! reports it only through the SDK's own internal logs, which amesh does
//! not build (they would log through the very subscriber whose spans are
//! being exported, and every library debug line with them). So the
//! exporter is wrapped: a failed export is a warning naming the endpoint,
//! the reason and the spans lost, the first at once and then at most one
//! a minute with the count since (a collector that is down does not fill
//! the log every batch), and the first export that works again says so.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// At most one "not exported" line this often while exports keep failing.
const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// An exporter whose failures are logged (see the module doc).
#[derive(Debug)]
pub(super) struct LoggedExporter<E> {
    inner: E,
    /// The endpoint without any user info, for the log line.
    endpoint: String,
    outage: Mutex<Outage>,
}

impl<E> LoggedExporter<E> {
    pub(super) fn new(inner: E, endpoint: &str) -> Self {
        Self {
            inner,
            endpoint: without_userinfo(endpoint),
            outage: Mutex::new(Outage::default()),
        }
    }
}

impl<E: SpanExporter> SpanExporter for LoggedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let line = self
            .outage
            .lock()
            .map(|mut o| o.note(result.is_ok(), spans, Instant::now()))
            .unwrap_or(None);
        match (line, &result) {
            (Some(Line::Failing { batches, spans }), Err(err)) => tracing::warn!(
                endpoint = %self.endpoint,
                error = %err,
                batches,
                spans,
                "traces not exported: the collector did not take them (spans lost)"
            ),
            (Some(Line::Recovered { batches, spans }), _) => tracing::info!(
                endpoint = %self.endpoint,
                batches,
                spans,
                "traces exported again after a failure (batches and spans lost meanwhile)"
            ),
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What to log after an export.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Exports are failing: batches and spans lost since the last line.
    Failing { batches: u64, spans: u64 },
    /// The first success after failures: what was lost in all.
    Recovered { batches: u64, spans: u64 },
}

/// The current run of failed exports, if any.
#[derive(Debug, Default)]
struct Outage {
    /// When the last "failing" line was logged; `None` while exports work.
    logged_at: Option<Instant>,
    /// Lost since that line.
    batches: u64,
    spans: u64,
    /// Lost since the outage began.
    total_batches: u64,
    total_spans: u64,
}

impl Outage {
    fn note(&mut self, ok: bool, spans: u64, now: Instant) -> Option<Line> {
        if ok {
            self.logged_at?;
            let line = Line::Recovered {
                batches: self.total_batches,
                spans: self.total_spans,
            };
            *self = Outage::default();
            return Some(line);
        }
        self.batches += 1;
        self.spans += spans;
        self.total_batches += 1;
        self.total_spans += spans;
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < REPEAT_EVERY)
        {
            return None;
        }
        self.logged_at = Some(now);
        let line = Line::Failing {
            batches: self.batches,
            spans: self.spans,
        };
        (self.batches, self.spans) = (0, 0);
        Some(line)
    }
}

/// `scheme://user:pass@host/…` without `user:pass@`: the endpoint is logged.
fn without_userinfo(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => endpoint.to_owned(),
        Err(_) => "(the configured endpoint)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(batches: u64, spans: u64) -> Option<Line> {
        Some(Line::Failing { batches, spans })
    }

    #[test]
    fn the_first_failure_is_said_then_at_most_one_line_a_minute_then_the_recovery() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            o.note(true, 5, t0),
            None,
            "nothing to say while exports work"
        );
        assert_eq!(o.note(false, 3, t0), failing(1, 3));
        assert_eq!(o.note(false, 4, at(5)), None);
        assert_eq!(o.note(false, 1, at(30)), None);
        assert_eq!(
            o.note(false, 2, at(61)),
            failing(3, 7),
            "the lines between are counted in the next one"
        );
        let recovered = Some(Line::Recovered {
            batches: 4,
            spans: 10,
        });
        assert_eq!(o.note(true, 9, at(62)), recovered);
        assert_eq!(o.note(true, 9, at(63)), None);
        assert_eq!(
            o.note(false, 1, at(64)),
            failing(1, 1),
            "a new outage is said at once"
        );
    }

    #[test]
    fn the_logged_endpoint_has_no_credentials() {
        assert_eq!(
            without_userinfo("https://key:secret@collector.example:4318/v1/traces"),
            "https://collector.example:4318/v1/traces"
        );
        assert_eq!(
            without_userinfo("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
    }
}
