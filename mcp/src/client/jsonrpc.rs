//! The JSON-RPC 2.0 envelope MCP messages travel in.
//!
//! Kept as `serde_json::Value` plus a classifier rather than typed MCP
//! models: the client only needs the envelope (ids, result, error) and a
//! handful of result fields, and passing tool content through untyped
//! means a server on a newer MCP revision loses nothing on its way to the
//! model.

use serde_json::{Value, json};

/// A JSON-RPC request we send. Ids are numbers from a per-session counter.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub id: u64,
    pub method: String,
    pub params: Value,
}

impl Request {
    pub fn to_json(&self) -> Value {
        json!({"jsonrpc": "2.0", "id": self.id, "method": self.method, "params": self.params})
    }
}

/// A JSON-RPC notification (no id, no answer).
pub(crate) fn notification(method: &str, params: Option<Value>) -> Value {
    match params {
        Some(p) => json!({"jsonrpc": "2.0", "method": method, "params": p}),
        None => json!({"jsonrpc": "2.0", "method": method}),
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

/// What a received message is, as far as the client cares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    /// The answer to one of our requests.
    Response {
        id: Value,
        result: Result<Value, RpcError>,
    },
    /// Anything else: server requests (ping, sampling), notifications
    /// (progress, logging) or garbage. Logged and skipped.
    Other { method: Option<String> },
}

/// Classifies one message.
pub(crate) fn classify(message: Value) -> Incoming {
    let Value::Object(mut map) = message else {
        return Incoming::Other { method: None };
    };
    if let Some(method) = map.get("method") {
        return Incoming::Other {
            method: method.as_str().map(str::to_owned),
        };
    }
    let Some(id) = map.remove("id") else {
        return Incoming::Other { method: None };
    };
    if let Some(error) = map.remove("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let data = error.get("data").cloned();
        return Incoming::Response {
            id,
            result: Err(RpcError {
                code,
                message,
                data,
            }),
        };
    }
    Incoming::Response {
        id,
        result: Ok(map.remove("result").unwrap_or(Value::Null)),
    }
}

/// Parses a body or event payload: one message or a batch (arrays were
/// allowed by the 2025-03-26 revision).
pub(crate) fn parse_messages(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    match serde_json::from_str(text)? {
        Value::Array(items) => Ok(items),
        single => Ok(vec![single]),
    }
}

/// Whether `id` (as received) is the number we sent. Some servers echo
/// numeric ids as strings; accept that.
pub(crate) fn id_matches(id: &Value, ours: u64) -> bool {
    match id {
        Value::Number(n) => n.as_u64() == Some(ours),
        Value::String(s) => s.parse::<u64>().ok() == Some(ours),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_result_error_and_other() {
        let ok = classify(json!({"jsonrpc": "2.0", "id": 3, "result": {"x": 1}}));
        assert_eq!(
            ok,
            Incoming::Response {
                id: json!(3),
                result: Ok(json!({"x": 1}))
            }
        );
        let err = classify(
            json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32601, "message": "nope"}}),
        );
        assert!(matches!(
            err,
            Incoming::Response {
                result: Err(RpcError { code: -32601, .. }),
                ..
            }
        ));
        let ping = classify(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}));
        assert_eq!(
            ping,
            Incoming::Other {
                method: Some("ping".into())
            }
        );
    }

    #[test]
    fn string_ids_match_numbers() {
        assert!(id_matches(&json!("7"), 7));
        assert!(id_matches(&json!(7), 7));
        assert!(!id_matches(&json!(8), 7));
    }
}
