//! Authorization links that agents hand to users.
//!
//! When a tool needs the user's consent, the agent answers `auth-required`
//! with the authorization URL, in text and as a data part
//! `{"type": "oauth2_authorization_required", "authorization_url": ...}`,
//! and the page opens that URL. An agent is not trusted with the gateway's
//! origin: a `javascript:` link from a hostile or compromised agent would
//! run there with the user's session (and read `/api/v1/auth/me`). So every
//! agent answer passes [`scrub`] before it reaches a client or the task
//! index: a message whose `authorization_url` is not a plain http(s) URL
//! loses all its parts (the text repeats the URL) to [`REFUSED`].

use url::Url;

use crate::a2a::{Message, Part, StreamResult};

/// What the user sees instead of a refused link.
pub(crate) const REFUSED: &str =
    "the agent sent an authorization link that is not http(s); refused";

/// Why a link was refused. Never holds the URL itself: its query carries
/// the OAuth state, which stays out of logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkProblem {
    /// `authorization_url` is there but is not a string.
    #[error("authorization_url is not a string")]
    NotAString,
    /// Not an absolute URL (a relative one would open on the gateway).
    #[error("authorization_url is not an absolute URL: {0}")]
    NotAUrl(url::ParseError),
    /// `javascript:`, `data:`, `file:`, ...
    #[error("authorization_url has scheme {0:?}, not http or https")]
    Scheme(String),
    /// `https://user:password@host/...`: a phishing aid, never a real
    /// authorization endpoint.
    #[error("authorization_url carries credentials")]
    Credentials,
}

/// Checks a link the page will open: http or https, no user info.
pub(crate) fn check_link(raw: &str) -> Result<Url, LinkProblem> {
    // The `url` crate follows the WHATWG URL standard, as the browser's
    // `new URL()` does, so both see the same scheme.
    let url = Url::parse(raw).map_err(LinkProblem::NotAUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LinkProblem::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(LinkProblem::Credentials);
    }
    Ok(url)
}

/// Replaces, in every message and artifact of `result`, the parts that go
/// with a refused authorization link by the [`REFUSED`] text. Returns the
/// first problem found, for the caller to log.
pub(crate) fn scrub(result: &mut StreamResult) -> Option<LinkProblem> {
    let mut first = None;
    let mut visit = |parts: &mut Vec<Part>| {
        if let Some(problem) = scrub_parts(parts) {
            first.get_or_insert(problem);
        }
    };
    match result {
        StreamResult::Task(task) => {
            if let Some(message) = task.status.message.as_mut() {
                visit(&mut message.parts);
            }
            for message in &mut task.history {
                visit(&mut message.parts);
            }
            for artifact in &mut task.artifacts {
                visit(&mut artifact.parts);
            }
        }
        StreamResult::Status(update) => {
            if let Some(message) = update.status.message.as_mut() {
                visit(&mut message.parts);
            }
        }
        StreamResult::Artifact(update) => visit(&mut update.artifact.parts),
        StreamResult::Message(Message { parts, .. }) => visit(parts),
    }
    first
}

/// The data-part fields that hold a link the page opens: an authorization
/// URL, and a tool server's URL-mode elicitation page.
const LINK_FIELDS: [&str; 2] = ["authorization_url", "elicitation_url"];

fn scrub_parts(parts: &mut Vec<Part>) -> Option<LinkProblem> {
    let problem = parts.iter().find_map(|part| match part {
        Part::Data { data, .. } => LINK_FIELDS
            .iter()
            .find_map(|field| match data.get(*field)? {
                serde_json::Value::String(raw) => check_link(raw).err(),
                _ => Some(LinkProblem::NotAString),
            }),
        _ => None,
    })?;
    *parts = vec![Part::text(REFUSED)];
    Some(problem)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::a2a::{Task, TaskState, TaskStatus, TaskStatusUpdateEvent};

    fn prompt(url: serde_json::Value) -> Message {
        Message::agent(
            vec![
                Part::text(format!("Sign in:\n{url}")),
                Part::data(
                    json!({"type": "oauth2_authorization_required", "authorization_url": url}),
                ),
            ],
            "t",
            "c",
        )
    }

    fn refused() -> Vec<Part> {
        vec![Part::text(REFUSED)]
    }

    #[test]
    fn only_http_and_https_links_without_credentials_pass() {
        for ok in [
            "https://auth.example/authorize?state=s&client_id=c",
            "http://127.0.0.1:9100/authorize",
            "HTTPS://Auth.Example/authorize",
        ] {
            assert!(check_link(ok).is_ok(), "{ok}");
        }
        for (bad, problem) in [
            (
                "javascript:fetch('/api/v1/auth/me')",
                LinkProblem::Scheme("javascript".into()),
            ),
            (
                " JavaScript:alert(1)",
                LinkProblem::Scheme("javascript".into()),
            ),
            (
                "data:text/html,<script>alert(1)</script>",
                LinkProblem::Scheme("data".into()),
            ),
            ("vbscript:msgbox", LinkProblem::Scheme("vbscript".into())),
            ("file:///etc/passwd", LinkProblem::Scheme("file".into())),
            (
                "https://user:pw@auth.example/authorize",
                LinkProblem::Credentials,
            ),
            (
                "https://user@auth.example/authorize",
                LinkProblem::Credentials,
            ),
            (
                "/api/v1/auth/me",
                LinkProblem::NotAUrl(url::ParseError::RelativeUrlWithoutBase),
            ),
        ] {
            assert_eq!(check_link(bad).unwrap_err(), problem, "{bad}");
        }
    }

    #[test]
    fn a_refused_link_takes_its_messages_text_with_it() {
        let attack = json!("javascript:fetch('/api/v1/auth/me')");
        let status = TaskStatus::new(TaskState::AuthRequired, Some(prompt(attack.clone())));
        let mut update =
            StreamResult::Status(TaskStatusUpdateEvent::new("t", "c", status.clone(), false));
        assert_eq!(
            scrub(&mut update),
            Some(LinkProblem::Scheme("javascript".into()))
        );
        let StreamResult::Status(update) = &update else {
            unreachable!()
        };
        assert_eq!(
            update.status.message.as_ref().map(|m| &m.parts),
            Some(&refused())
        );

        let mut task = Task::new("t", "c", TaskState::AuthRequired);
        task.status = status;
        task.history = vec![Message::user_text("hi"), prompt(attack)];
        let mut task = StreamResult::Task(task);
        assert!(scrub(&mut task).is_some());
        let StreamResult::Task(task) = &task else {
            unreachable!()
        };
        assert_eq!(
            task.status.message.as_ref().map(|m| &m.parts),
            Some(&refused())
        );
        assert_eq!(task.history[0].text(), "hi", "other messages are kept");
        assert_eq!(task.history[1].parts, refused());
        assert!(
            !serde_json::to_string(task)
                .unwrap_or_default()
                .contains("javascript")
        );

        let mut not_a_string = StreamResult::Message(prompt(json!({"href": "javascript:x"})));
        assert_eq!(scrub(&mut not_a_string), Some(LinkProblem::NotAString));
    }

    #[test]
    fn an_elicitation_page_is_checked_like_an_authorization_link() {
        let page = |url: &str| {
            StreamResult::Message(Message::agent(
                vec![
                    Part::text(format!("Set your key:\n{url}")),
                    Part::data(json!({"type": "url_elicitation_required", "elicitation_url": url})),
                ],
                "t",
                "c",
            ))
        };
        let mut bad = page("javascript:fetch('/api/v1/auth/me')");
        assert_eq!(
            scrub(&mut bad),
            Some(LinkProblem::Scheme("javascript".into()))
        );
        let mut good = page("https://mcp.example/ui/key");
        assert_eq!(scrub(&mut good), None);
    }

    #[test]
    fn a_proper_link_is_relayed_untouched() {
        let good = prompt(json!("https://auth.example/authorize?state=s"));
        let mut message = StreamResult::Message(good.clone());
        assert_eq!(scrub(&mut message), None);
        let StreamResult::Message(message) = message else {
            unreachable!()
        };
        assert_eq!(message, good);
    }
}
