//! The one check every OAuth endpoint and issuer URL passes, wherever it
//! comes from: authorization server metadata, protected resource metadata,
//! or the tool's `auth:` block.
//!
//! The authorization endpoint ends up as a link the gateway's page opens in
//! the user's browser, and the others receive codes, refresh tokens and
//! client secrets. So only https is accepted, plus plain http to this
//! machine for local setups (OAuth 2.1 §1.5, like the redirect URI in
//! [`super::redirect`]). A `javascript:` or `data:` authorization endpoint
//! from a hostile server would otherwise run in the gateway's origin with
//! the signed-in user's session.

use url::Url;

use super::error::OAuthError;
use super::redirect::is_loopback;

/// Parses `value` as the OAuth URL `field` and checks that it is https, or
/// http to a loopback host (localhost, 127.0.0.0/8, ::1). The error names
/// the field and the scheme (or the non-loopback host), never the whole URL.
pub fn endpoint_url(field: &'static str, value: &str) -> Result<Url, OAuthError> {
    let url = Url::parse(value).map_err(|e| OAuthError::InvalidUrl {
        what: field,
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    let refused = |host: Option<String>| OAuthError::UnsafeEndpoint {
        field,
        scheme: url.scheme().to_owned(),
        host,
        document: None,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(refused(url.host_str().map(str::to_owned))),
        _ => Err(refused(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_on_loopback_only() {
        for ok in [
            "https://auth.example.com/authorize",
            "https://10.0.0.1:8443/token",
            "http://localhost:9100/authorize",
            "http://LOCALHOST/authorize",
            "http://127.0.0.1:9100/token",
            "http://127.200.0.1/token",
            "http://[::1]:9100/register",
        ] {
            assert!(endpoint_url("token_endpoint", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn every_other_scheme_and_remote_http_is_refused_by_field_and_scheme() {
        for (bad, found) in [
            (
                "javascript:fetch('/api/v1/auth/me')",
                r#"scheme "javascript""#,
            ),
            ("JAVASCRIPT:alert(1)", r#"scheme "javascript""#),
            (
                "data:text/html,<script>alert(1)</script>",
                r#"scheme "data""#,
            ),
            ("file:///etc/passwd", r#"scheme "file""#),
            ("ftp://auth.example/x", r#"scheme "ftp""#),
            (
                "http://auth.example/authorize",
                r#"http to "auth.example", which is not a loopback host"#,
            ),
            (
                "http://10.0.0.1/authorize",
                r#"http to "10.0.0.1", which is not a loopback host"#,
            ),
            (
                "http://[::ffff:127.0.0.1]/authorize",
                "which is not a loopback host",
            ),
        ] {
            let err = endpoint_url("authorization_endpoint", bad).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(
                    err,
                    OAuthError::UnsafeEndpoint {
                        field: "authorization_endpoint",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
            assert!(
                message.starts_with("authorization_endpoint must use https"),
                "{message}"
            );
            assert!(message.contains(found), "{bad}: {message}");
        }
        let err = endpoint_url("token_endpoint", "/relative").unwrap_err();
        assert!(
            matches!(
                err,
                OAuthError::InvalidUrl {
                    what: "token_endpoint",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
