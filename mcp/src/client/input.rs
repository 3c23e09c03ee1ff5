//! Multi round-trip requests (MCP 2026-07-28): a server that needs the
//! user before it can finish a `tools/call` answers an
//! `InputRequiredResult` (`resultType: "input_required"`) instead of a
//! result; the client gathers what it asks for and sends the same call
//! again with `inputResponses` and the server's opaque `requestState`.
//!
//! amesh answers one kind of input request: URL-mode elicitation, where the
//! user opens a page of the server's (to enter an API key, pay, sign in to
//! a third party) and says when they are done. amesh has no form UI and no
//! sampling or roots to offer, so it declares only
//! `elicitation: {url: {}}`; a server that asks for anything else broke
//! the protocol and the call fails.
//!
//! The URL ends up as a link in the user's browser, so it passes the same
//! check as an authorization endpoint: https, or http to this machine, no
//! credentials in it. A `javascript:` link from a hostile server would
//! otherwise run in the gateway's origin.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use super::error::McpError;
use crate::secret::SecretString;

/// The client capabilities amesh declares on every 2026-07-28 request:
/// URL-mode elicitation only (`form` would need a form UI amesh has not).
pub fn client_capabilities() -> Value {
    json!({"elicitation": {"url": {}}})
}

/// A page of the server's the user must open (URL-mode elicitation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlElicitation {
    /// The server's key for this request in `inputRequests`; the answer
    /// goes under the same key.
    pub key: String,
    /// Why the server needs it, in the server's words (shown to the user).
    pub message: String,
    /// The page, already checked by [`check_url`].
    pub url: String,
}

/// An `InputRequiredResult` amesh can answer: the pages to open, and the
/// state to echo on the retry.
#[derive(Clone, Serialize, Deserialize)]
pub struct InputRequired {
    pub elicitations: Vec<UrlElicitation>,
    /// Opaque to amesh, echoed verbatim; kept out of Debug and logs.
    #[serde(default, serialize_with = "crate::secret::option::serialize")]
    pub request_state: Option<SecretString>,
}

impl std::fmt::Debug for InputRequired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputRequired")
            .field("elicitations", &self.elicitations)
            .field(
                "request_state",
                &self.request_state.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// What the user did about the pages (MCP's three elicitation actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElicitAction {
    /// They went and are done: the server checks on the retry.
    Accept,
    /// They said no.
    Decline,
    /// They dismissed it without choosing.
    Cancel,
}

/// The additions to a retried request: `inputResponses` and the echoed
/// `requestState`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Retry {
    pub input_responses: Map<String, Value>,
    #[serde(default, serialize_with = "crate::secret::option::serialize")]
    pub request_state: Option<SecretString>,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("input_responses", &self.input_responses)
            .field(
                "request_state",
                &self.request_state.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl InputRequired {
    /// The retry that answers every page with `action`.
    pub fn answer(&self, action: ElicitAction) -> Retry {
        let input_responses = self
            .elicitations
            .iter()
            .map(|e| (e.key.clone(), json!({ "action": action })))
            .collect();
        Retry {
            input_responses,
            request_state: self.request_state.clone(),
        }
    }
}

impl Retry {
    /// Adds `inputResponses` and `requestState` to a request's params
    /// (only what the server sent: no `requestState` when it sent none).
    pub(crate) fn apply(&self, params: &mut Value) {
        use crate::secret::ExposeSecret as _;
        let Value::Object(map) = params else { return };
        if !self.input_responses.is_empty() {
            map.insert(
                "inputResponses".into(),
                Value::Object(self.input_responses.clone()),
            );
        }
        if let Some(state) = &self.request_state {
            map.insert(
                "requestState".into(),
                Value::String(state.expose_secret().to_owned()),
            );
        }
    }
}

/// Longest `requestState` kept (it is stored with the paused task).
const MAX_REQUEST_STATE: usize = 64 * 1024;
/// Longest elicitation message shown.
const MAX_MESSAGE: usize = 2_000;

/// Reads an `input_required` result. Anything amesh did not declare
/// (form mode, sampling, roots), a URL that fails [`check_url`], or a
/// result with neither requests nor state is a protocol error.
pub(crate) fn parse(tool_id: &str, result: &Value) -> Result<InputRequired, McpError> {
    let refuse = |why: String| McpError::protocol(tool_id, why);
    let request_state = match result.get("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_REQUEST_STATE => {
            Some(SecretString::from(s.clone()))
        }
        Some(Value::String(_)) => {
            return Err(refuse(format!(
                "requestState longer than {MAX_REQUEST_STATE} bytes"
            )));
        }
        Some(_) => return Err(refuse("requestState is not a string".into())),
    };
    let mut elicitations = Vec::new();
    match result.get("inputRequests") {
        None | Some(Value::Null) => {}
        Some(Value::Object(requests)) => {
            for (key, request) in requests {
                elicitations.push(url_elicitation(key, request).map_err(&refuse)?);
            }
        }
        Some(_) => return Err(refuse("inputRequests is not an object".into())),
    }
    if elicitations.is_empty() && request_state.is_none() {
        return Err(refuse(
            "input_required result has neither inputRequests nor requestState".into(),
        ));
    }
    Ok(InputRequired {
        elicitations,
        request_state,
    })
}

fn url_elicitation(key: &str, request: &Value) -> Result<UrlElicitation, String> {
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    if method != "elicitation/create" {
        return Err(format!(
            "server asked for `{method}` input, which amesh did not declare (it answers URL-mode elicitation only)"
        ));
    }
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let mode = params.get("mode").and_then(Value::as_str).unwrap_or("form");
    if mode != "url" {
        return Err(format!(
            "server asked for a `{mode}` elicitation; amesh declared URL mode only (it has no form UI)"
        ));
    }
    let raw = params.get("url").and_then(Value::as_str).unwrap_or("");
    let url = check_url(raw)?;
    let message: String = params
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("The tool needs you to open a page.")
        .chars()
        .take(MAX_MESSAGE)
        .collect();
    Ok(UrlElicitation {
        key: key.to_owned(),
        message,
        url: url.into(),
    })
}

/// The check an elicitation URL passes before a user sees it: an absolute
/// https URL, or http to a loopback host; no user name or password. The
/// error names the scheme or host, never the whole URL.
pub fn check_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("elicitation URL is not a URL: {e}"))?;
    let secure = match url.scheme() {
        "https" => true,
        "http" => crate::oauth::is_loopback(&url),
        _ => false,
    };
    if !secure {
        return Err(format!(
            "elicitation URL refused: scheme `{}` (host {:?}); only https, or http on this machine, is opened",
            url.scheme(),
            url.host_str().unwrap_or("")
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("elicitation URL refused: it carries credentials".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ExposeSecret as _;

    fn elicit(url: &str) -> Value {
        json!({"resultType": "input_required", "requestState": "opaque-1",
               "inputRequests": {"key-1": {"method": "elicitation/create",
                   "params": {"mode": "url", "url": url, "message": "Set your API key"}}}})
    }

    #[test]
    fn a_url_elicitation_is_read_and_answered_under_its_key_with_the_state() {
        let input = parse("t", &elicit("https://mcp.example/ui/key")).expect("parsed");
        assert_eq!(input.elicitations[0].key, "key-1");
        assert_eq!(input.elicitations[0].message, "Set your API key");
        assert!(!format!("{input:?}").contains("opaque-1"));
        let retry = input.answer(ElicitAction::Accept);
        let mut params = json!({"name": "x", "arguments": {}});
        retry.apply(&mut params);
        assert_eq!(
            params["inputResponses"],
            json!({"key-1": {"action": "accept"}})
        );
        assert_eq!(params["requestState"], "opaque-1");
        let back: Retry = serde_json::from_value(serde_json::to_value(&retry).unwrap()).unwrap();
        assert_eq!(back.request_state.unwrap().expose_secret(), "opaque-1");
    }

    #[test]
    fn unsafe_urls_and_undeclared_requests_are_refused() {
        for bad in [
            "javascript:fetch('/api/v1/auth/me')",
            "data:text/html,hi",
            "http://mcp.example/ui",
            "https://user:pw@mcp.example/ui",
            "/relative",
        ] {
            assert!(parse("t", &elicit(bad)).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8080/ui").is_ok());
        let form = json!({"resultType": "input_required", "inputRequests": {"k": {
            "method": "elicitation/create", "params": {"message": "name?", "requestedSchema": {}}}}});
        assert!(parse("t", &form).is_err());
        let sampling =
            json!({"inputRequests": {"k": {"method": "sampling/createMessage", "params": {}}}});
        assert!(parse("t", &sampling).is_err());
        assert!(parse("t", &json!({"resultType": "input_required"})).is_err());
    }
}
