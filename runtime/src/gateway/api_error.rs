//! The gateway's HTTP error: one type for every route, answered as JSON, and
//! the one place an agent's JSON-RPC refusal becomes an HTTP status.

use std::time::Duration;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::throttle;
use crate::a2a::jsonrpc::{self, RpcError};

/// An error answered as `{"error": message}` (plus the JSON-RPC code when
/// an agent refused).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub code: Option<i64>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            code: None,
            retry_after: None,
        }
    }

    /// 429 for a client address that must wait after failed authentications.
    pub(crate) fn throttled(wait: Duration) -> Self {
        let secs = throttle::retry_after_secs(wait);
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins or refused tokens from this address; \
                     try again in {secs} s"
                ),
            )
        }
    }

    /// Maps an agent's JSON-RPC refusal to the closest HTTP status.
    pub(crate) fn from_rpc(e: RpcError) -> Self {
        let status = match e.code {
            jsonrpc::INVALID_PARAMS | jsonrpc::INVALID_REQUEST | jsonrpc::METHOD_NOT_FOUND => {
                StatusCode::BAD_REQUEST
            }
            jsonrpc::CALL_DEPTH_EXCEEDED => StatusCode::BAD_REQUEST,
            jsonrpc::TASK_NOT_FOUND => StatusCode::NOT_FOUND,
            jsonrpc::TASK_NOT_CANCELABLE => StatusCode::CONFLICT,
            jsonrpc::UNAUTHENTICATED => StatusCode::FORBIDDEN,
            jsonrpc::MESSAGE_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError {
            status,
            message: e.message,
            code: Some(e.code),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(code) = self.code {
            body["code"] = json!(code);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}
