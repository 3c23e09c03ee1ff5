//! Errors of the OAuth client, one variant per thing a caller can act on.
//!
//! Messages say what was expected and what was found, and name the URL that
//! answered, so an operator can fix a misconfigured provider from the log
//! line alone. No variant ever carries a token or a client secret: token
//! endpoint bodies are reduced to their RFC 6749 `error` fields, parse
//! failures to the JSON path that failed.

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
    /// A discovery or registration endpoint answered with an unexpected status.
    #[error("{url} answered HTTP {status}, expected 2xx: {body}")]
    Status {
        /// Where the request went.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
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
}

impl OAuthError {
    /// True when the stored grant is dead and the user must go through the
    /// authorization flow again (as opposed to a provider outage).
    pub fn needs_reauthorization(&self) -> bool {
        match self {
            Self::NoRefreshToken => true,
            Self::TokenRefused { error, .. } => error == "invalid_grant",
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

/// The first `max` characters of an HTTP body, for error messages.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
