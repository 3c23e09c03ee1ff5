//! Which web sites a browser may reach the gateway from.
//!
//! Browsers send the session cookie with any request to the gateway, also
//! one that a page of another site makes (CSRF), and a page whose own
//! domain name is re-pointed at the gateway's address (DNS rebinding) talks
//! to the gateway as its own origin. Two checks, one layer in front of
//! every route:
//!
//! - **Origin.** A request that changes state (POST, PUT, PATCH, DELETE)
//!   and carries the session cookie must name, in `Origin` (or failing
//!   that `Referer`), the gateway's own origin — the one in its `Host`
//!   header — or one of `allowed_origins`; else 403. Any such request whose
//!   Origin names another site is refused too, cookie or not (a
//!   development gateway trusts every caller). Calls with a bearer token
//!   and no cookie are not a browser's ambient credential and are exempt;
//!   so are requests without Origin or Referer and without the cookie
//!   (curl, scripts).
//! - **Host.** A development gateway (`frontend_use_authorization: false`)
//!   acts as its dev user for anyone who reaches it, so it answers only
//!   to `localhost`, IP addresses, its configured `host` and
//!   `allowed_hosts`; any other name gets a 421. Setting `allowed_hosts`
//!   turns the check on in any mode.
//!
//! The session cookie is `Secure` unless the gateway listens on loopback
//! only (plain http to localhost) and no `allowed_origins` entry is https.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, REFERER};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::GatewayInner;
use super::api_error::ApiError;
use super::auth::session_cookie;
use crate::config::GatewayConfig;
use crate::logging::Throttle;

/// The gateway's answer to "may this browser request go on?".
pub(crate) struct SitePolicy {
    /// `allowed_origins`, as browsers serialize origins.
    allowed_origins: Vec<String>,
    /// Host names answered to besides localhost and IP addresses; `None`:
    /// any Host.
    host_names: Option<Vec<String>>,
    secure_cookies: bool,
    refusals_logged: Throttle,
}

impl SitePolicy {
    pub(crate) fn new(cfg: &GatewayConfig) -> Self {
        let allowed_origins: Vec<String> = cfg
            .allowed_origins
            .iter()
            .filter_map(|o| normalize_origin(o))
            .collect();
        let check_hosts = !cfg.frontend_use_authorization || !cfg.allowed_hosts.is_empty();
        let host_names = check_hosts.then(|| {
            std::iter::once(&cfg.host)
                .chain(&cfg.allowed_hosts)
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        });
        let secure_cookies = !is_loopback_host(&cfg.host)
            || allowed_origins.iter().any(|o| o.starts_with("https://"));
        SitePolicy {
            allowed_origins,
            host_names,
            secure_cookies,
            refusals_logged: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// Whether the session cookie gets the `Secure` attribute.
    pub(crate) fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// Refuses a Host this gateway does not answer to (421).
    fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(names) = &self.host_names else {
            return Ok(());
        };
        // HTTP/1.0 clients may send none; browsers always do.
        let Some(value) = headers.get(HOST) else {
            return Ok(());
        };
        let host = value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<Authority>().ok())
            .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase());
        match host {
            Some(name)
                if name == "localhost"
                    || name.starts_with('[')
                    || name.parse::<Ipv4Addr>().is_ok()
                    || names.contains(&name) =>
            {
                Ok(())
            }
            Some(name) => Err(Refusal::UnknownHost(name)),
            None => Err(Refusal::InvalidHost),
        }
    }

    /// Refuses a state-changing browser request from another site (403).
    fn check_origin(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        if matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) {
            return Ok(());
        }
        let cookie = session_cookie(headers).is_some();
        if !cookie && headers.contains_key(AUTHORIZATION) {
            return Ok(());
        }
        let claimed = match headers.get(ORIGIN) {
            Some(origin) => Some(origin.to_str().unwrap_or("(not text)").to_owned()),
            None => headers
                .get(REFERER)
                .and_then(|r| r.to_str().ok())
                .map(|r| normalize_origin(r).unwrap_or_else(|| "(unreadable Referer)".into())),
        };
        match claimed {
            Some(origin) if self.allows(&origin, headers) => Ok(()),
            Some(origin) => Err(Refusal::ForeignOrigin(origin)),
            None if cookie => Err(Refusal::NoOrigin),
            None => Ok(()),
        }
    }

    /// Whether `origin` is one of `allowed_origins` or the origin the
    /// request's Host header names.
    fn allows(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Some(origin) = normalize_origin(origin) else {
            return false;
        };
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let (Ok(url), Some(host)) = (
            url::Url::parse(&origin),
            headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<Authority>().ok()),
        ) else {
            return false;
        };
        // Host does not say whether the client came by http or https (a
        // TLS proxy may be in front), so the scheme is not compared; one
        // host and port serve one of them anyway. A Host without a port
        // means the default port of the origin's scheme.
        let origin_port = url.port_or_known_default();
        url.host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(host.host()))
            && host.port_u16().or(origin_port) == origin_port
    }

    fn refused(&self, status: StatusCode, message: String, headers: &HeaderMap) -> Response {
        if let Some(held_back) = self.refusals_logged.allow() {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            let origin = headers.get(ORIGIN).and_then(|h| h.to_str().ok());
            tracing::warn!(
                status = status.as_u16(),
                host,
                origin,
                held_back,
                "browser request from another site refused"
            );
        }
        ApiError::new(status, message).into_response()
    }
}

/// The layer: Host first (a rebound name gets nothing), then Origin.
pub(crate) async fn guard(
    State(inner): State<Arc<GatewayInner>>,
    req: Request,
    next: Next,
) -> Response {
    let policy = &inner.site;
    let checked = policy
        .check_host(req.headers())
        .and_then(|()| policy.check_origin(req.method(), req.headers()));
    if let Err(refusal) = checked {
        return policy.refused(refusal.status(), refusal.to_string(), req.headers());
    }
    next.run(req).await
}

/// Why the site guard refused a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "this gateway does not answer to the host name {0:?}; add it to allowed_hosts if it is \
         one of the gateway's names (a guard against web pages that point their own name at \
         this address: DNS rebinding)"
    )]
    UnknownHost(String),
    #[error("the Host header is not a valid host name")]
    InvalidHost,
    #[error(
        "origin {0:?} may not send this request: requests that change state are accepted only \
         from the gateway's own origin or one in allowed_origins"
    )]
    ForeignOrigin(String),
    #[error(
        "a request that changes state with the session cookie must carry an Origin or Referer \
         header naming the gateway's own origin or one in allowed_origins"
    )]
    NoOrigin,
}

impl Refusal {
    /// 421 for a name the gateway does not answer to, 403 for the origin.
    fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownHost(_) | Refusal::InvalidHost => StatusCode::MISDIRECTED_REQUEST,
            Refusal::ForeignOrigin(_) | Refusal::NoOrigin => StatusCode::FORBIDDEN,
        }
    }
}

/// `scheme://host[:port]` of an http(s) URL, as a browser sends it in
/// `Origin`; `None` for anything else (`null`, other schemes).
pub(crate) fn normalize_origin(text: &str) -> Option<String> {
    let url = url::Url::parse(text.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// `localhost` or a loopback address: reachable from this machine only.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cfg(host: &str, auth: bool, origins: &[&str], hosts: &[&str]) -> GatewayConfig {
        let yaml = format!(
            "apps:\n  - name: gw\n    app_module: gateway\n    broker: {{dev_mode: true}}\n    app_config:\n      namespace: ns\n      host: \"{host}\"\n      frontend_use_authorization: {auth}\n      users: [{{id: a, token: t}}]\n      allowed_origins: {origins:?}\n      allowed_hosts: {hosts:?}\n"
        );
        let loaded = crate::config::load_str_with_env("gw.yaml", &yaml, &|_| None).expect("loads");
        match &loaded.apps[0].kind {
            crate::config::AppKind::Gateway(g) => (**g).clone(),
            crate::config::AppKind::Agent(_) => unreachable!(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_secure_unless_on_loopback_over_http() {
        for (host, origins, secure) in [
            ("127.0.0.1", &[][..], false),
            ("localhost", &[], false),
            ("::1", &[], false),
            ("0.0.0.0", &[], true),
            ("gw.example.com", &[], true),
            ("127.0.0.1", &["https://chat.example.com"], true),
            ("127.0.0.1", &["http://localhost:3000"], false),
        ] {
            let policy = SitePolicy::new(&cfg(host, true, origins, &[]));
            assert_eq!(policy.secure_cookies(), secure, "{host} {origins:?}");
        }
    }

    #[test]
    fn the_origin_must_match_the_host_or_the_allowed_list() {
        let p = SitePolicy::new(&cfg("0.0.0.0", true, &["https://chat.example.com"], &[]));
        let post = Method::POST;
        let cookie = ("cookie", "amesh_session=x.y");
        let host = ("host", "gw.example.com:8000");
        for ok in [
            vec![cookie, host, ("origin", "http://gw.example.com:8000")],
            vec![cookie, host, ("origin", "HTTP://GW.example.com:8000")],
            vec![
                cookie,
                ("host", "gw.example.com"),
                ("origin", "https://gw.example.com"),
            ],
            vec![cookie, host, ("origin", "https://chat.example.com")],
            vec![
                cookie,
                host,
                ("referer", "http://gw.example.com:8000/page?x=1"),
            ],
            vec![
                ("authorization", "Bearer t"),
                ("origin", "https://evil.example"),
            ],
            vec![host],
        ] {
            assert_eq!(p.check_origin(&post, &headers(&ok)), Ok(()), "{ok:?}");
        }
        for bad in [
            vec![cookie, host, ("origin", "http://gw.example.com:8001")],
            vec![cookie, host, ("origin", "null")],
            vec![cookie, host],
            vec![cookie, ("authorization", "Bearer t"), host],
            vec![host, ("origin", "https://evil.example")],
        ] {
            assert!(p.check_origin(&post, &headers(&bad)).is_err(), "{bad:?}");
        }
        let get = headers(&[cookie, host, ("origin", "https://evil.example")]);
        assert_eq!(p.check_origin(&Method::GET, &get), Ok(()));
    }

    #[test]
    fn only_dev_gateways_check_host_unless_hosts_are_listed() {
        let evil = headers(&[("host", "evil.example:8000")]);
        let dev = SitePolicy::new(&cfg("127.0.0.1", false, &[], &[]));
        assert!(dev.check_host(&evil).is_err());
        for ok in ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3"] {
            assert_eq!(dev.check_host(&headers(&[("host", ok)])), Ok(()), "{ok}");
        }
        let named = SitePolicy::new(&cfg("devbox.lan", false, &[], &[]));
        assert_eq!(
            named.check_host(&headers(&[("host", "DEVBOX.lan.:8000")])),
            Ok(())
        );
        let prod = SitePolicy::new(&cfg("0.0.0.0", true, &[], &[]));
        assert_eq!(prod.check_host(&evil), Ok(()));
        let listed = SitePolicy::new(&cfg("0.0.0.0", true, &[], &["gw.example.com"]));
        assert!(listed.check_host(&evil).is_err());
        assert_eq!(
            listed.check_host(&headers(&[("host", "gw.example.com")])),
            Ok(())
        );
    }
}
