//! Noticing that an authorization server forgot amesh's client.
//!
//! A provider that keeps dynamically registered clients in memory (FastMCP's
//! in-memory provider, the MCP SDK examples) forgets them when it restarts
//! and then answers every request of the stored `client_id` with
//! `invalid_client` or "client not found": at the token endpoint, and at the
//! authorization endpoint as an error page (RFC 6749 §4.1.2.1 forbids
//! redirecting for an unknown client) or, from laxer servers, a redirect
//! error. The user would be sent to that error page forever. So before a
//! stored registration is used for a new prompt, [`check_client`] loads the
//! authorization URL the user would open and reads the answer the way a
//! person would; the runtime drops a registration found unknown and
//! registers again.

use url::Url;

use super::discover::AuthServer;
use super::error::OAuthError;
use super::flow::authorization_request;
use super::http::{OAuthHttp, get_page};
use super::register::OAuthClient;

/// What the authorization endpoint made of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStatus {
    /// It showed a login or consent page (or anything that does not name
    /// the client as unknown): use the client.
    Known,
    /// It refused the client as unknown; `evidence` is a short excerpt of
    /// the answer, for the log.
    Unknown {
        /// The HTTP status and the words that gave it away.
        evidence: String,
    },
}

/// Whether an OAuth error (`error` and `error_description`, or an error
/// page's text as `description`) says the client is unknown:
/// `invalid_client`, or a description that pairs "client" with "not
/// found", "unknown", "not registered", ... in the wording servers use.
pub fn names_unknown_client(error: &str, description: Option<&str>) -> bool {
    if error == "invalid_client" {
        return true;
    }
    let Some(text) = description else {
        return false;
    };
    let text = text.to_ascii_lowercase();
    const SIGNS: [&str; 7] = [
        "invalid_client",
        "not found",
        "unknown client",
        "invalid client",
        "not registered",
        "does not exist",
        "no such client",
    ];
    text.contains("client") && SIGNS.iter().any(|sign| text.contains(sign))
}

/// Loads the authorization URL a prompt with `client` would send the user
/// to (a throwaway `state` and PKCE challenge, never redeemed) and says
/// whether the server refused the client as unknown. The redirect is not
/// followed. Any answer that does not clearly name the client as unknown
/// counts as known: this check must never make a working client churn.
pub async fn check_client(
    http: &OAuthHttp,
    server: &AuthServer,
    client: &OAuthClient,
    redirect_uri: &Url,
    scopes: &[String],
) -> Result<ClientStatus, OAuthError> {
    let (url, _verifier) =
        authorization_request(server, client, redirect_uri, scopes, "amesh-client-check");
    let page = get_page(http, &url, "authorization endpoint answer").await?;
    if (300..400).contains(&page.status) {
        let Some(location) = page.location.as_deref() else {
            return Ok(ClientStatus::Known);
        };
        return Ok(redirect_status(page.status, location, redirect_uri));
    }
    if (400..500).contains(&page.status) {
        let text = String::from_utf8_lossy(&page.body);
        if names_unknown_client("", Some(&text)) {
            return Ok(ClientStatus::Unknown {
                evidence: format!("HTTP {}: {}", page.status, excerpt_of(&text)),
            });
        }
    }
    Ok(ClientStatus::Known)
}

/// A redirect back to amesh with an `error` naming the client is a refusal;
/// a redirect anywhere else (a login page) is not.
fn redirect_status(status: u16, location: &str, redirect_uri: &Url) -> ClientStatus {
    let Ok(target) = redirect_uri.join(location) else {
        return ClientStatus::Known;
    };
    let back_to_us =
        target.origin() == redirect_uri.origin() && target.path() == redirect_uri.path();
    if !back_to_us {
        return ClientStatus::Known;
    }
    let param = |name: &str| {
        target
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let Some(error) = param("error") else {
        return ClientStatus::Known;
    };
    let description = param("error_description");
    if names_unknown_client(&error, description.as_deref()) {
        ClientStatus::Unknown {
            evidence: format!(
                "HTTP {status} redirect with error {error}{}",
                description
                    .map(|d| format!(": {}", excerpt_of(&d)))
                    .unwrap_or_default()
            ),
        }
    } else {
        ClientStatus::Known
    }
}

/// The text of an answer on one short line, markup stripped, for the log.
fn excerpt_of(text: &str) -> String {
    let mut plain = String::with_capacity(text.len().min(400));
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() => plain.push(' '),
            c => plain.push(c),
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    let line = words.join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_client_wordings_are_recognised_and_others_are_not() {
        assert!(names_unknown_client("invalid_client", None));
        assert!(names_unknown_client(
            "invalid_request",
            Some("Client ID 'abc' not found")
        ));
        assert!(names_unknown_client(
            "unauthorized_client",
            Some("unknown client \"demo-client-1\"")
        ));
        assert!(!names_unknown_client(
            "access_denied",
            Some("the user denied access")
        ));
        assert!(!names_unknown_client(
            "invalid_request",
            Some("redirect_uri not found")
        ));
        assert!(!names_unknown_client("invalid_scope", None));
    }

    #[test]
    fn only_a_redirect_back_with_a_client_error_is_a_refusal() {
        let ours = Url::parse("https://gw.example/api/v1/auth/tool/callback").unwrap();
        let refused = "https://gw.example/api/v1/auth/tool/callback?error=invalid_client&state=x";
        assert!(matches!(
            redirect_status(302, refused, &ours),
            ClientStatus::Unknown { .. }
        ));
        let login = "https://idp.example/login?next=%2Fauthorize";
        assert_eq!(redirect_status(302, login, &ours), ClientStatus::Known);
        let denied = "https://gw.example/api/v1/auth/tool/callback?error=access_denied";
        assert_eq!(redirect_status(302, denied, &ours), ClientStatus::Known);
    }

    #[test]
    fn error_pages_become_one_short_line() {
        let page = "<!doctype html><title>Error</title><h1>Error</h1>\n<p>unknown client \"x\"</p>";
        assert_eq!(excerpt_of(page), "Error Error unknown client \"x\"");
        assert!(excerpt_of(&"a ".repeat(500)).chars().count() <= 201);
    }
}
