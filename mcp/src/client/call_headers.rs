//! Headers one call adds to every HTTP request it makes to an MCP server:
//! the W3C trace context (`traceparent`, `tracestate`) of the agent's tool
//! call span, so the server's spans join the caller's trace.
//!
//! Why a task-local rather than a parameter: sessions are pooled per
//! (server, user) and shared by calls from many traces, and the requests
//! of one call (initialize on first use, a re-initialization after expiry,
//! the call itself) are made deep inside the session. The caller scopes
//! its future with [`with_call_headers`]; every request built while that
//! future runs carries the headers, and nothing else does. This crate
//! knows nothing of OpenTelemetry: the runtime decides what to send.

use std::future::Future;

use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, PROXY_AUTHORIZATION};

tokio::task_local! {
    static CALL_HEADERS: HeaderMap;
}

/// Runs `call` with `headers` added to each MCP request it makes. The
/// configured headers and the user's bearer token are set after these, so
/// a call header never replaces them.
pub async fn with_call_headers<F: Future>(headers: HeaderMap, call: F) -> F::Output {
    if headers.is_empty() {
        return call.await;
    }
    CALL_HEADERS.scope(headers, call).await
}

/// `rb` with the current call's headers, if a caller set any.
pub(crate) fn apply(rb: RequestBuilder) -> RequestBuilder {
    match CALL_HEADERS.try_with(HeaderMap::clone) {
        Ok(mut headers) => {
            // reqwest appends a later `Authorization` rather than replacing
            // this one, and a server reads the first: credentials never
            // come from a call's headers.
            for name in [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE] {
                headers.remove(name);
            }
            rb.headers(headers)
        }
        Err(_) => rb,
    }
}
