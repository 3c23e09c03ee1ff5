//! JSON-RPC 2.0 envelopes and the error codes A2A defines on top of them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
pub const TASK_NOT_FOUND: i64 = -32001;
pub const TASK_NOT_CANCELABLE: i64 = -32002;
pub const UNSUPPORTED_OPERATION: i64 = -32004;
/// amesh: the identity token was refused (strict verification).
pub const UNAUTHENTICATED: i64 = -32010;
/// amesh: a message exceeded `max_message_size_bytes`.
pub const MESSAGE_TOO_LARGE: i64 = -32011;
/// amesh: delegation exceeded `max_call_depth`.
pub const CALL_DEPTH_EXCEEDED: i64 = -32012;

/// A JSON-RPC request (a notification when `id` is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

impl Request {
    pub fn new(id: impl Into<Value>, method: &str, params: impl Serialize) -> Self {
        Request {
            jsonrpc: "2.0".to_string(),
            id: Some(id.into()),
            method: method.to_string(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// A JSON-RPC response: exactly one of `result` and `error` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: Value, result: impl Serialize) -> Self {
        match serde_json::to_value(result) {
            Ok(v) => Response {
                jsonrpc: "2.0".to_string(),
                id,
                result: Some(v),
                error: None,
            },
            Err(e) => Response::err(id, RpcError::new(INTERNAL_ERROR, e.to_string())),
        }
    }

    pub fn err(id: Value, error: RpcError) -> Self {
        Response {
            jsonrpc: "2.0".to_string(),
            id,
            result: None,
            error: Some(error),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing these plain data types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Parses a request payload. On failure returns the error to send back and
/// the request id when one could be read (JSON-RPC answers a request it
/// could not parse with `id: null`).
pub fn parse_request(payload: &[u8]) -> Result<Request, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        (
            Value::Null,
            RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
        )
    })?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
        return Err((
            Value::Null,
            RpcError::new(
                INVALID_REQUEST,
                "invalid request: id must be a string or number",
            ),
        ));
    }
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            id,
            RpcError::new(INVALID_REQUEST, "invalid request: jsonrpc must be \"2.0\""),
        ));
    }
    serde_json::from_value::<Request>(value).map_err(|e| {
        (
            id,
            RpcError::new(INVALID_REQUEST, format!("invalid request: {e}")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_a_parse_error_with_null_id() {
        let (id, e) = parse_request(b"{not json").unwrap_err();
        assert_eq!(id, Value::Null);
        assert_eq!(e.code, PARSE_ERROR);
    }

    #[test]
    fn missing_method_is_invalid_request_keeping_the_id() {
        let (id, e) = parse_request(br#"{"jsonrpc":"2.0","id":"7"}"#).unwrap_err();
        assert_eq!(id, Value::String("7".into()));
        assert_eq!(e.code, INVALID_REQUEST);
    }

    #[test]
    fn wrong_version_is_invalid_request() {
        let (_, e) = parse_request(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
    }

    #[test]
    fn response_serializes_only_one_of_result_and_error() {
        let r = Response::err(Value::from(1), RpcError::new(METHOD_NOT_FOUND, "nope"));
        let v: Value = serde_json::from_slice(&r.to_bytes()).unwrap();
        assert!(v.get("result").is_none());
        assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
    }
}
