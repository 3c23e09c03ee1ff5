//! The demo MCP server's JSON-RPC methods and tools, independent of transport.
//!
//! Both transports (Streamable HTTP and HTTP+SSE) hand each message here
//! with the caller their bearer token resolved to; the answer says whether
//! to reply, stay silent (notifications) or refuse with 403 for a missing
//! scope. `tools/list` pages two tools at a time so clients must follow
//! `nextCursor`.

use serde_json::{Value, json};

use super::store::Caller;

/// Protocol versions the demo speaks; it answers with the client's if known.
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What the transport should do with a message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Send this JSON-RPC response.
    Reply(Value),
    /// A notification or a response: nothing to send (HTTP 202).
    NoReply,
    /// The token lacks `scope`: HTTP 403 with an `insufficient_scope` challenge.
    InsufficientScope(&'static str),
}

struct Tool {
    name: &'static str,
    description: &'static str,
    input_schema: fn() -> Value,
    required_scope: Option<&'static str>,
}

const TOOLS: [Tool; 3] = [
    Tool {
        name: "whoami",
        description: "Tells who the signed-in user is.",
        input_schema: || json!({"type": "object", "properties": {}}),
        required_scope: None,
    },
    Tool {
        name: "echo",
        description: "Repeats the text, signed by the user.",
        input_schema: || {
            json!({
                "type": "object",
                "properties": {"text": {"type": "string", "description": "What to repeat"}},
                "required": ["text"]
            })
        },
        required_scope: None,
    },
    Tool {
        name: "profile",
        description: "The signed-in user's profile (needs scope `profile`).",
        input_schema: || json!({"type": "object", "properties": {}}),
        required_scope: Some("profile"),
    },
];

/// Handles one JSON-RPC message from `caller`.
pub(crate) fn handle(message: &Value, caller: &Caller, page_size: usize) -> Outcome {
    let Some(object) = message.as_object() else {
        return Outcome::Reply(error(
            Value::Null,
            -32600,
            "a JSON-RPC message must be an object",
        ));
    };
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        // A response to a server request (the demo sends none): ignore.
        return Outcome::NoReply;
    };
    let Some(id) = object.get("id").cloned() else {
        return Outcome::NoReply; // notifications/initialized and friends
    };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| VERSIONS.contains(v))
                .unwrap_or(VERSIONS[1]);
            Outcome::Reply(result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "amesh-demo-provider", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Demo tools that answer with the signed-in user's name.",
                }),
            ))
        }
        "ping" => Outcome::Reply(result(id, json!({}))),
        "tools/list" => Outcome::Reply(list_tools(id, &params, page_size.max(1))),
        "tools/call" => call_tool(id, &params, caller),
        other => Outcome::Reply(error(id, -32601, &format!("method {other:?} not found"))),
    }
}

fn list_tools(id: Value, params: &Value, page_size: usize) -> Value {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(cursor) => match cursor.as_str().and_then(|c| c.parse::<usize>().ok()) {
            Some(start) if start < TOOLS.len() => start,
            _ => return error(id, -32602, "invalid cursor"),
        },
    };
    let end = (start + page_size).min(TOOLS.len());
    let tools: Vec<Value> = TOOLS[start..end]
        .iter()
        .map(|tool| {
            let mut value = json!({
                "name": tool.name,
                "description": tool.description,
                "inputSchema": (tool.input_schema)(),
            });
            if tool.name == "profile" {
                value["outputSchema"] = json!({
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                    "required": ["name", "email"]
                });
            }
            value
        })
        .collect();
    let mut answer = json!({"tools": tools});
    if end < TOOLS.len() {
        answer["nextCursor"] = json!(end.to_string());
    }
    result(id, answer)
}

fn call_tool(id: Value, params: &Value, caller: &Caller) -> Outcome {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Outcome::Reply(error(id, -32602, "tools/call needs a tool name"));
    };
    let Some(tool) = TOOLS.iter().find(|t| t.name == name) else {
        return Outcome::Reply(error(id, -32602, &format!("unknown tool {name:?}")));
    };
    if let Some(scope) = tool.required_scope
        && !caller.scopes.iter().any(|s| s == scope)
    {
        return Outcome::InsufficientScope(scope);
    }
    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
    let user = &caller.user;
    let answer = match tool.name {
        "whoami" => text(format!("You are {user}")),
        "echo" => match arguments.get("text").and_then(Value::as_str) {
            Some(said) => text(format!("{user} said: {said}")),
            None => json!({
                "content": [{"type": "text", "text": "argument `text` (a string) is required"}],
                "isError": true
            }),
        },
        _ => {
            let profile = json!({"name": user, "email": format!("{user}@demo.amesh.invalid")});
            json!({
                "content": [{"type": "text", "text": profile.to_string()}],
                "structuredContent": profile,
            })
        }
    };
    Outcome::Reply(result(id, answer))
}

fn text(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}]})
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC error response.
pub(crate) fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(scopes: &[&str]) -> Caller {
        Caller {
            user: "alice".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn call(message: Value, scopes: &[&str]) -> Value {
        match handle(&message, &alice(scopes), 2) {
            Outcome::Reply(v) => v,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn tools_list_pages_two_at_a_time() {
        let first = call(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[]);
        assert_eq!(first["result"]["tools"].as_array().unwrap().len(), 2);
        let cursor = first["result"]["nextCursor"].clone();
        let second = call(
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":cursor}}),
            &[],
        );
        assert_eq!(second["result"]["tools"][0]["name"], "profile");
        assert!(second["result"].get("nextCursor").is_none());
    }

    #[test]
    fn whoami_names_the_caller_and_profile_needs_its_scope() {
        let who = call(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}),
            &[],
        );
        assert_eq!(who["result"]["content"][0]["text"], "You are alice");
        let message =
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"profile"}});
        assert_eq!(
            handle(&message, &alice(&["mcp"]), 2),
            Outcome::InsufficientScope("profile")
        );
        let profile = call(message, &["profile"]);
        assert_eq!(profile["result"]["structuredContent"]["name"], "alice");
    }

    #[test]
    fn notifications_get_no_reply_and_unknown_methods_an_error() {
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert_eq!(handle(&note, &alice(&[]), 2), Outcome::NoReply);
        let unknown = call(json!({"jsonrpc":"2.0","id":9,"method":"nope"}), &[]);
        assert_eq!(unknown["error"]["code"], -32601);
    }
}
