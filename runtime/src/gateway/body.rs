//! Request bodies that keep coming: a "slow POST" (headers in time, then
//! the body a byte now and then) would otherwise hold a connection and a
//! handler for as long as the client likes, under every connection cap.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// How long a request body may pause, and how big it may be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyRules {
    pub idle_timeout: Duration,
    pub max_bytes: usize,
}

/// Middleware: reads the request body before the handler runs, answering
/// 408 when the client pauses longer than `idle_timeout` between two
/// pieces of it and 413 past `max_bytes`.
pub(crate) async fn timely_body(
    State(rules): State<BodyRules>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let mut data = body.into_data_stream();
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(rules.idle_timeout, data.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > rules.max_bytes {
                    return refusal(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "request body exceeds max_message_size_bytes ({})",
                            rules.max_bytes
                        ),
                    );
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Some(Err(e))) => {
                return refusal(StatusCode::BAD_REQUEST, format!("request body: {e}"));
            }
            Err(_) => {
                return refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body paused for longer than {:?}",
                        rules.idle_timeout
                    ),
                );
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(buf))).await
}

fn refusal(status: StatusCode, message: String) -> Response {
    super::api_error::ApiError::new(status, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(idle_ms: u64, max_bytes: usize) -> Router {
        let rules = BodyRules {
            idle_timeout: Duration::from_millis(idle_ms),
            max_bytes,
        };
        Router::new()
            .route("/", post(|body: String| async move { body }))
            .layer(axum::middleware::from_fn_with_state(rules, timely_body))
    }

    fn post_with(body: Body) -> Request {
        Request::builder()
            .method("POST")
            .uri("/")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_gets_a_408() {
        // One piece, then nothing, ever.
        let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("{"))])
            .chain(futures::stream::pending());
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            app(100, 1000).oneshot(post_with(Body::from_stream(stream))),
        )
        .await
        .expect("answered without waiting for the body")
        .unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_whole_body_reaches_the_handler_and_an_oversized_one_gets_a_413() {
        let resp = app(100, 1000)
            .oneshot(post_with(Body::from("hello")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 100).await.unwrap();
        assert_eq!(&body[..], b"hello");
        let resp = app(100, 4)
            .oneshot(post_with(Body::from("hello")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
