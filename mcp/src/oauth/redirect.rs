//! Validation of the OAuth redirect URI the gateway serves.
//!
//! Every tool grant comes back through one gateway route, so the URI is
//! checked once at startup rather than discovered wrong at the first login:
//! it must point at that route, and it must be https unless it stays on the
//! machine (OAuth 2.1 §8.4.2 allows http for loopback redirects only).

use std::net::IpAddr;

use url::{Host, Url};

/// The gateway route that receives tool grants.
pub const CALLBACK_PATH: &str = "/api/v1/auth/tool/callback";

/// Parses and checks `OAUTH_TOOL_REDIRECT_URI`; the error says what is wrong.
pub fn validate_redirect_uri(uri: &str) -> Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| format!("redirect URI {uri:?} is not a URL: {e}"))?;
    // Exactly the route: the gateway serves no other spelling (a trailing
    // slash is a 404 there), and providers compare redirect URIs byte for
    // byte against what was registered.
    if url.path() != CALLBACK_PATH {
        return Err(format!(
            "redirect URI {uri:?} must end in {CALLBACK_PATH}, found path {:?}",
            url.path()
        ));
    }
    if url.fragment().is_some() {
        return Err(format!("redirect URI {uri:?} must not have a fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "redirect URI {uri:?} must use https (http is allowed only for localhost, 127.0.0.0/8 and ::1)"
        )),
        other => Err(format!(
            "redirect URI {uri:?} must use https, found scheme {other:?}"
        )),
    }
}

/// True for `localhost` (and `*.localhost`), 127.0.0.0/8 and ::1: hosts
/// that never leave the machine, where plain http is acceptable.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_anywhere_and_http_on_loopback() {
        for ok in [
            "https://gw.example.com/api/v1/auth/tool/callback",
            "http://localhost:8000/api/v1/auth/tool/callback",
            "http://127.0.0.1/api/v1/auth/tool/callback",
            "http://127.5.6.7:9/api/v1/auth/tool/callback",
            "http://[::1]:8000/api/v1/auth/tool/callback",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_wrong_path_plain_http_and_other_schemes() {
        for (bad, needle) in [
            ("https://gw.example.com/callback", "must end in"),
            (
                "https://gw.example.com/api/v1/auth/tool/callback/",
                "must end in",
            ),
            (
                "http://gw.example.com/api/v1/auth/tool/callback",
                "must use https",
            ),
            (
                "http://10.0.0.1/api/v1/auth/tool/callback",
                "must use https",
            ),
            ("ftp://localhost/api/v1/auth/tool/callback", "scheme"),
            ("not a url", "not a URL"),
            (
                "https://gw.example.com/api/v1/auth/tool/callback#x",
                "fragment",
            ),
        ] {
            let err = validate_redirect_uri(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
