//! The W3C trace context (`traceparent`, `tracestate`) in and out of
//! amesh: MQTT v5 user properties on A2A requests and replies, HTTP
//! headers to model APIs and MCP servers, and the header an HTTP client
//! may send the gateway.
//!
//! Everything here does nothing while traces are off ([`super::traces`]):
//! no property is added, no header sent, nothing read.
//!
//! What comes in is untrusted: a value is parsed strictly (the W3C
//! format, bounded lengths, one value per name) and anything malformed is
//! dropped — the span then starts a trace of its own. It is never an error
//! and never decides anything but which trace a span belongs to.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::broker::UserProperties;

/// User property and HTTP header names, as W3C Trace Context names them.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Longest `traceparent` read: version 00 is 55 characters; later
/// versions may append fields, which a version-00 parser ignores.
const MAX_TRACEPARENT: usize = 256;
/// Longest `tracestate` read or forwarded: W3C's 32 list members fit in
/// the 512 characters it asks every vendor to pass on.
const MAX_TRACESTATE: usize = 512;

static PROPAGATOR: LazyLock<TraceContextPropagator> = LazyLock::new(TraceContextPropagator::new);

/// The trace context of the current span, as name/value pairs; empty when
/// traces are off or the current span is not recorded.
fn current() -> Vec<(&'static str, String)> {
    if !super::traces::enabled() {
        return Vec::new();
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = Fields::default();
    PROPAGATOR.inject_context(&cx, &mut out);
    out.0
}

/// Adds the current span's trace context to an outgoing message.
pub(crate) fn inject_user_properties(props: &mut UserProperties) {
    for (name, value) in current() {
        props.push(name, value);
    }
}

/// The current span's trace context as HTTP headers, for a request to a
/// model API or an MCP server.
pub(crate) fn http_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in current() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

/// The remote parent named by a message's user properties, if it names a
/// valid one. A name given twice counts as malformed.
pub(crate) fn from_user_properties(props: &UserProperties) -> Option<Context> {
    if !super::traces::enabled() {
        return None;
    }
    let single = |name: &str| {
        let mut values = props.iter().filter(|(n, _)| *n == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    parse(single(TRACEPARENT), single(TRACESTATE))
}

/// The remote parent named by an HTTP request's headers, if valid.
pub(crate) fn from_http_headers(headers: &HeaderMap) -> Option<Context> {
    if !super::traces::enabled() {
        return None;
    }
    let single = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    parse(single(TRACEPARENT), single(TRACESTATE))
}

/// Strict parse: bounded lengths, then the W3C format as the SDK's
/// propagator reads it (version, 32 + 16 hex digits, neither all zeros,
/// flags). A `tracestate` that is too long or malformed is dropped and the
/// `traceparent` still used, as the W3C specification asks.
fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let traceparent = traceparent
        .filter(|v| v.len() <= MAX_TRACEPARENT)
        .and_then(version_00)?;
    let tracestate = tracestate.filter(|v| v.len() <= MAX_TRACESTATE);
    let cx = PROPAGATOR.extract(&Carrier {
        traceparent: &traceparent,
        tracestate,
    });
    let span = cx.span();
    let context = span.span_context();
    (context.is_valid() && context.is_remote()).then(|| cx.clone())
}

/// A `traceparent` checked against the W3C grammar (the SDK's parser is
/// lenient about lengths), as version 00: `version-traceid-parentid-flags`
/// in lowercase hex, 2-32-16-2 digits, ids not all zeros, version not `ff`;
/// version 00 is exactly that, a later version may append `-` fields.
fn version_00(value: &str) -> Option<String> {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let head = value.get(..55)?;
    let rest = &value[55..];
    let mut fields = head.split('-');
    let (version, trace, parent, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let well_formed = fields.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && if version == "00" {
            rest.is_empty()
        } else {
            rest.is_empty() || rest.starts_with('-')
        };
    well_formed.then(|| format!("00-{trace}-{parent}-{flags}"))
}

/// What [`parse`] hands the propagator.
struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = vec![TRACEPARENT];
        if self.tracestate.is_some() {
            keys.push(TRACESTATE);
        }
        keys
    }
}

/// What the propagator writes: only the two W3C names, and an empty
/// `tracestate` left out.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            TRACEPARENT => TRACEPARENT,
            TRACESTATE if !value.is_empty() && value.len() <= MAX_TRACESTATE => TRACESTATE,
            _ => return,
        };
        self.0.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parsed(traceparent: &str) -> Option<String> {
        parse(Some(traceparent), None).map(|cx| cx.span().span_context().trace_id().to_string())
    }

    #[test]
    fn a_valid_traceparent_names_its_trace() {
        assert_eq!(
            parsed(GOOD).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let cx = parse(Some(GOOD), Some("vendor=abc")).expect("parsed");
        assert_eq!(
            cx.span().span_context().trace_state().header(),
            "vendor=abc"
        );
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            // all-zero trace id and span id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // upper case, short, version ff
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(parsed(bad), None, "{bad:?}");
        }
        let long = format!("{GOOD}-{}", "a".repeat(MAX_TRACEPARENT));
        assert_eq!(parsed(&long), None, "over the length bound");
        assert_eq!(
            parsed(&format!("{GOOD}-extra")),
            None,
            "version 00 has 4 fields"
        );
        assert_eq!(parsed(&format!("{GOOD} ")), None);
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds";
        assert_eq!(
            parsed(later).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn an_oversized_tracestate_is_dropped_and_the_parent_kept() {
        let state = format!("v={}", "x".repeat(MAX_TRACESTATE));
        let cx = parse(Some(GOOD), Some(&state)).expect("traceparent still used");
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }
}
