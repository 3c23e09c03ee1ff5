//! Errors of the OAuth client, one variant per thing a caller can act on.
//!
//! Messages say what was expected and what was found, and name the URL that
//! answered, so an operator can fix a misconfigured provider from the log
//! line alone. No variant ever carries a token or a client secret: token
//! endpoint bodies are reduced to their RFC 6749 `error` fields, parse
//! failures to the JSON path that failed, and a body kept for the log is a
//! short excerpt with the request's secrets blanked out.
//!
//! Those messages are for the log. What a user may read is
//! [`OAuthError::user_reason`]: which step failed and the HTTP status,
//! never a URL, a body or a server's own words, because a hostile server
//! can point amesh at an internal host and would otherwise read that
//! host's answer back through the user.

use super::target::TargetRefused;

/// Which request an [`OAuthError::Status`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthStep {
    /// Dynamic client registration (RFC 7591).
    Registration,
    /// A code exchange or refresh at the token endpoint.
    Token,
}

impl std::fmt::Display for OAuthStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Registration => "client registration",
            Self::Token => "token request",
        })
    }
}

/// What went wrong while discovering, registering or talking to a token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// A URL in configuration or in a server's answer does not parse.
    #[error("{what} is not a valid URL ({value:?}): {reason}")]
    InvalidUrl {
        /// Which URL (e.g. "resource_metadata in WWW-Authenticate").
        what: &'static str,
        /// The text that failed to parse.
        value: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The request never got an HTTP answer (DNS, connect, TLS, timeout).
    #[error("request to {url} failed: {source}")]
    Http {
        /// Where the request went.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registration or token endpoint answered an error status without
    /// the JSON error body its RFC defines.
    #[error("{step} at {url} answered HTTP {status}, expected 2xx: {body}")]
    Status {
        /// Which request it answered.
        step: OAuthStep,
        /// Where the request went.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body, without the request's secrets.
        body: String,
    },
    /// The answer ran past the size limit; no more of it was read.
    #[error("the {document} at {url} is larger than {limit} bytes; amesh stopped reading it")]
    BodyTooLarge {
        /// Where the answer came from.
        url: String,
        /// Which answer (`protected resource metadata`, `token endpoint answer`, ...).
        document: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's target is more internal than the MCP server (see
    /// [`super::permits`]); nothing was sent.
    #[error("refused to send a request to {url}: {refused}")]
    TargetRefused {
        /// The refused URL.
        url: String,
        /// What the host resolved to and why that is refused.
        #[source]
        refused: TargetRefused,
    },
    /// The `resource_metadata` of a challenge is not on the MCP server's
    /// origin. RFC 9728 lets it be elsewhere, but a foreign URL is how a
    /// server would send amesh to fetch an internal host; nothing was sent.
    #[error(
        "resource_metadata {url} in the MCP server's challenge is not on the server's origin {origin}; amesh fetches resource metadata only from there"
    )]
    ForeignResourceMetadata {
        /// The URL in the challenge.
        url: String,
        /// The MCP server's origin.
        origin: String,
    },
    /// An `auth.allowed_internal_hosts` entry is not a bare host.
    #[error(
        "auth.allowed_internal_hosts entry {value:?} is not a host name or IP address: {reason}"
    )]
    InvalidAllowedHost {
        /// The entry.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (the TLS backend did not start).
    #[error("cannot build the OAuth HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The answer was not the JSON document expected there.
    #[error("{url} did not return a valid {document}: {reason}")]
    InvalidDocument {
        /// Where the document came from.
        url: String,
        /// Which document was expected.
        document: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// No metadata was found at any of the locations the spec allows.
    #[error("no OAuth metadata found for MCP server {mcp_url}; tried {}", tried.join(", "))]
    DiscoveryFailed {
        /// The MCP server.
        mcp_url: String,
        /// Every URL tried, in order, with what each answered.
        tried: Vec<String>,
    },
    /// The resource metadata is about another resource (RFC 9728 §3.3).
    #[error(
        "protected resource metadata at {url} is for resource {found}, which does not cover the MCP server {expected}"
    )]
    ResourceMismatch {
        /// Where the metadata came from.
        url: String,
        /// The MCP server URL.
        expected: String,
        /// The `resource` in the document.
        found: String,
    },
    /// The resource metadata names no authorization server.
    #[error("protected resource metadata at {url} lists no authorization server")]
    NoAuthorizationServer {
        /// Where the metadata came from.
        url: String,
    },
    /// The metadata's `issuer` differs from the issuer it was fetched for (RFC 8414 §3.3).
    #[error("authorization server metadata at {url} has issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// Where the metadata came from.
        url: String,
        /// The issuer the URL was built from.
        expected: String,
        /// The `issuer` in the document.
        found: String,
    },
    /// The authorization server does not offer PKCE S256, which MCP requires.
    #[error(
        "authorization server {issuer} does not advertise PKCE S256 (code_challenge_methods_supported: {methods:?}); amesh refuses servers without it"
    )]
    PkceUnsupported {
        /// The issuer.
        issuer: String,
        /// What it advertises instead.
        methods: Vec<String>,
    },
    /// An endpoint would downgrade an https MCP server to plain http.
    #[error("{what} {url} is not https although the MCP server is; refusing the downgrade")]
    InsecureEndpoint {
        /// Which endpoint.
        what: &'static str,
        /// Its URL.
        url: String,
    },
    /// An endpoint or issuer URL that is neither https nor http to this
    /// machine ([`super::endpoint_url`]). The authorization endpoint becomes
    /// a link the user's browser opens, so a `javascript:` one would run in
    /// the gateway's page.
    #[error(
        "{field}{} must use https (http only for a loopback host: localhost, 127.0.0.0/8, ::1); found {}",
        located(document),
        found(scheme, host)
    )]
    UnsafeEndpoint {
        /// The field (`authorization_endpoint`, `issuer`, `token_url`, ...).
        field: &'static str,
        /// The URL's scheme (`javascript`, `data`, `http`, ...).
        scheme: String,
        /// The host, when the URL is plain http to a host that is not loopback.
        host: Option<String>,
        /// The document that named the URL, when a server sent it.
        document: Option<String>,
    },
    /// No client_id is configured and the server has no registration endpoint.
    #[error(
        "authorization server {issuer} offers no dynamic client registration; set client_id (and client_secret) in the tool's auth block"
    )]
    RegistrationUnsupported {
        /// The issuer.
        issuer: String,
    },
    /// The registration endpoint refused the client metadata (RFC 7591 §3.2.2).
    #[error(
        "client registration at {url} was refused (HTTP {status}): {error}{}",
        describe(description)
    )]
    RegistrationRefused {
        /// The registration endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// `invalid_redirect_uri`, `invalid_client_metadata`, ...
        error: String,
        /// The server's explanation.
        description: Option<String>,
    },
    /// The token endpoint answered with an RFC 6749 §5.2 error.
    #[error(
        "token endpoint {url} refused the request: {error}{}",
        describe(description)
    )]
    TokenRefused {
        /// The token endpoint.
        url: String,
        /// `invalid_grant`, `invalid_client`, `invalid_target`, ...
        error: String,
        /// The server's explanation.
        description: Option<String>,
    },
    /// The token endpoint's answer could not be used.
    #[error("token endpoint {url} gave an unusable answer: {reason}")]
    TokenResponse {
        /// The token endpoint.
        url: String,
        /// What was wrong (never the body itself).
        reason: String,
    },
    /// The token is not a Bearer token.
    #[error("token endpoint issued a {0:?} token; only Bearer tokens are supported")]
    UnsupportedTokenType(String),
    /// A refresh was asked for, but the stored token set has no refresh token.
    #[error("no refresh token is stored; the user must authorize again")]
    NoRefreshToken,
    /// RFC 9207: the authorization response names another issuer than the
    /// one the flow was started with (a mix-up attack, or a misrouted
    /// redirect), or none although the server promised to send it. The code
    /// was not redeemed.
    #[error(
        "the authorization response {}, expected the issuer {expected:?} the flow was started with; the code was not redeemed",
        match found {
            Some(found) => format!("names the issuer {found:?}"),
            None => "carries no `iss` although the server's metadata sets authorization_response_iss_parameter_supported".to_owned(),
        }
    )]
    ResponseIssuerMismatch {
        /// The issuer of the flow's authorization server.
        expected: String,
        /// The `iss` of the response, if it had one.
        found: Option<String>,
    },
}

impl OAuthError {
    /// What the user may be told: the step that failed and, for an HTTP
    /// answer, its status, pointing at the agent's log for the rest. Log
    /// the error itself (its `Display`) where this is shown.
    pub fn user_reason(&self) -> String {
        let reason = match self {
            Self::InvalidUrl { what, .. } => format!("the {what} is not a valid URL"),
            Self::Http { .. } => "an OAuth server could not be reached".into(),
            Self::Status {
                step: OAuthStep::Registration,
                status,
                ..
            }
            | Self::RegistrationRefused { status, .. } => {
                format!("the authorization server refused to register amesh (HTTP {status})")
            }
            Self::Status {
                step: OAuthStep::Token,
                status,
                ..
            } => format!("the authorization server's token endpoint answered HTTP {status}"),
            Self::BodyTooLarge { document, .. } => {
                format!("the {document} is larger than amesh accepts")
            }
            Self::TargetRefused { .. } => {
                "an OAuth endpoint is on an internal address this MCP server may not send amesh to"
                    .into()
            }
            Self::ForeignResourceMetadata { .. } => {
                "the MCP server named resource metadata on another origin, which amesh refuses"
                    .into()
            }
            Self::InvalidAllowedHost { .. } | Self::Client(_) => {
                "the agent's OAuth client is misconfigured".into()
            }
            Self::InvalidDocument { document, .. } => format!("the {document} is not valid"),
            Self::DiscoveryFailed { .. } => "no OAuth metadata was found for the MCP server".into(),
            Self::ResourceMismatch { .. } => {
                "the MCP server's resource metadata is about another resource".into()
            }
            Self::NoAuthorizationServer { .. } => {
                "the MCP server's resource metadata names no authorization server".into()
            }
            Self::IssuerMismatch { .. } => {
                "the authorization server's metadata names another issuer".into()
            }
            Self::PkceUnsupported { .. } => {
                "the authorization server does not offer PKCE S256, which amesh requires".into()
            }
            Self::InsecureEndpoint { .. } | Self::UnsafeEndpoint { .. } => {
                "an OAuth endpoint does not use https".into()
            }
            Self::RegistrationUnsupported { .. } => {
                "the authorization server offers no client registration and no client_id is configured"
                    .into()
            }
            Self::TokenRefused { .. } => "the authorization server refused the token request".into(),
            Self::TokenResponse { .. } => "the token endpoint gave an unusable answer".into(),
            Self::UnsupportedTokenType(_) => {
                "the authorization server issued a token type amesh does not support".into()
            }
            Self::NoRefreshToken => "no refresh token is stored".into(),
            Self::ResponseIssuerMismatch { found: Some(_), .. } => {
                "the sign-in came back from another authorization server than the one amesh sent you to, so it was refused".into()
            }
            Self::ResponseIssuerMismatch { found: None, .. } => {
                "the sign-in came back without the authorization server's name, which that server promised to send, so it was refused".into()
            }
        };
        format!("{reason}; the operator can find details in the agent's log")
    }

    /// True when the stored grant is dead and the user must go through the
    /// authorization flow again (as opposed to a provider outage).
    pub fn needs_reauthorization(&self) -> bool {
        match self {
            Self::NoRefreshToken => true,
            Self::TokenRefused { error, .. } => error == "invalid_grant",
            _ => false,
        }
    }

    /// True when the token endpoint refused the client itself (RFC 6749
    /// §5.2 `invalid_client`, or an error naming an unknown client). For a
    /// dynamically registered public client there is no secret to be
    /// wrong: the provider forgot the registration (a restart with an
    /// in-memory store), so it must be dropped and made again. For a
    /// configured client it is the operator's to fix, never the user's.
    pub fn is_client_rejected(&self) -> bool {
        match self {
            Self::TokenRefused {
                error, description, ..
            } => super::names_unknown_client(error, description.as_deref()),
            Self::Status {
                step: OAuthStep::Token,
                status: 400 | 401,
                body,
                ..
            } => super::names_unknown_client("", Some(body)),
            _ => false,
        }
    }

    /// Names the document an [`OAuthError::UnsafeEndpoint`] came from
    /// (`what` at `url`); other errors pass unchanged.
    pub(crate) fn in_document(mut self, what: &str, url: &url::Url) -> Self {
        if let Self::UnsafeEndpoint { document, .. } = &mut self {
            document.get_or_insert_with(|| format!("{what} at {url}"));
        }
        self
    }
}

fn located(document: &Option<String>) -> String {
    document
        .as_deref()
        .map(|d| format!(" in {d}"))
        .unwrap_or_default()
}

fn found(scheme: &str, host: &Option<String>) -> String {
    match host {
        Some(host) => format!("{scheme} to {host:?}, which is not a loopback host"),
        None => format!("scheme {scheme:?}"),
    }
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// The longest body excerpt kept in an error.
const EXCERPT: usize = 200;

/// The start of an HTTP body for the log: `secrets` (values the request
/// carried) blanked out, control characters escaped so the excerpt stays
/// on its log line, at most [`EXCERPT`] characters.
pub(crate) fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    let mut out = String::new();
    for (taken, c) in text.chars().enumerate() {
        if taken == EXCERPT {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_single_line_and_without_secrets() {
        let body = b"bad request\r\ncode=abc123&refresh_token=rt-9 rt-9";
        let text = excerpt(body, &["abc123", "rt-9", ""]);
        assert_eq!(
            text,
            "bad request\\r\\ncode=[redacted]&refresh_token=[redacted] [redacted]"
        );
        let long = excerpt("é".repeat(500).as_bytes(), &[]);
        assert_eq!(long.chars().count(), EXCERPT + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn user_reasons_name_the_step_and_status_but_no_body() {
        let refused = OAuthError::Status {
            step: OAuthStep::Registration,
            url: "http://10.0.0.5/register".into(),
            status: 400,
            body: "db-7.internal refused".into(),
        };
        let reason = refused.user_reason();
        assert_eq!(
            reason,
            "the authorization server refused to register amesh (HTTP 400); \
             the operator can find details in the agent's log"
        );
        assert!(refused.to_string().contains("db-7.internal refused"));
        let described = OAuthError::RegistrationRefused {
            url: "http://10.0.0.5/register".into(),
            status: 400,
            error: "invalid_client_metadata".into(),
            description: Some("db-7.internal refused".into()),
        };
        assert!(!described.user_reason().contains("db-7"));
        assert!(!described.user_reason().contains("10.0.0.5"));
    }
}
