//! The gateway's HTTP server span: a middleware (a layer, not code in each
//! handler) that opens one span per API request, continues the trace of a
//! client that sent a `traceparent`, and records the response status.
//! The handler runs inside the span, so the A2A request it publishes is
//! its child. A streamed answer's span ends when the response starts.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{propagation, spans, traces};

/// Wraps one request in an [`spans::http_server`] span. Only `/api/`
/// routes are traced: the page, its assets, health checks and scrapes
/// would be noise. `State` is the gateway id.
pub(crate) async fn trace_request(
    State(gateway): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    if !traces::enabled() || !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = spans::http_server(
        request.method().as_str(),
        &route,
        request.uri().path(),
        &gateway,
    );
    if let Some(parent) = propagation::from_http_headers(request.headers()) {
        let _ = span.set_parent(parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    spans::http_status(&span, response.status().as_u16());
    response
}
