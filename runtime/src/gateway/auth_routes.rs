//! `/api/v1/auth/*`: exchanging an API token for a session cookie, how
//! the page may sign in, and ending the session (at the SSO provider too,
//! when it supports RP-initiated logout). The SSO sign-in itself is in
//! `sso.rs`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::GatewayInner;
use super::api_error::ApiError;
use super::auth::{SESSION_COOKIE, SESSION_TTL_SECONDS, session_cookie};
use super::extract::{AuthUser, ClientIp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    token: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginBody { token: [redacted] }")
    }
}

/// `POST /api/v1/auth/login {"token": "..."}` sets the session cookie.
/// Refused tokens count against the client's address (`throttle.rs`).
pub(crate) async fn login(
    State(inner): State<Arc<GatewayInner>>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    if let Some(ip) = ip {
        inner
            .throttle
            .check(ip, Instant::now())
            .map_err(ApiError::throttled)?;
    }
    let user = inner.auth.login(&body.token).map_err(|e| {
        tracing::info!(gateway = %inner.id, "login refused");
        if let Some(ip) = ip {
            inner.throttle.failed(ip, Instant::now());
        }
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    })?;
    let value = inner.sessions.issue(&user, amesh_trust::now_unix());
    let cookie = format!(
        "{SESSION_COOKIE}={value}; {}; Max-Age={SESSION_TTL_SECONDS}",
        attributes(&inner)
    );
    let mut resp = Json(json!({ "user": user })).into_response();
    let header_value = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    resp.headers_mut().insert(header::SET_COOKIE, header_value);
    tracing::info!(gateway = %inner.id, user = %user.id, "user logged in");
    Ok(resp)
}

/// `POST /api/v1/auth/logout` ends the session on the server — a copy of
/// the cookie stops working too — and clears the cookie. A session made by
/// SSO is answered with `{"logout_url": ...}` when the provider has an
/// `end_session_endpoint`: the page goes there to end the provider's
/// session as well (RP-initiated logout), and comes back to
/// `post_logout_redirect_uri`. Otherwise the answer is 204.
pub(crate) async fn logout(State(inner): State<Arc<GatewayInner>>, headers: HeaderMap) -> Response {
    let now = amesh_trust::now_unix();
    let mut sso_session = false;
    if let Some(value) = session_cookie(&headers)
        && let Ok(claims) = inner.sessions.verify(&value, now)
    {
        inner.sessions.revoke(&claims, now);
        sso_session = claims.sso.is_some();
        tracing::info!(gateway = %inner.id, user = %claims.user.id, "user logged out");
    }
    let logout_url = match (&inner.sso, sso_session) {
        (Some(sso), true) => sso.logout_url().await,
        _ => None,
    };
    let mut resp = match logout_url {
        Some(url) => Json(json!({ "logout_url": url.as_str() })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    let cookie = format!("{SESSION_COOKIE}=; {}; Max-Age=0", attributes(&inner));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The session cookie's attributes: script cannot read it, other sites'
/// subrequests do not carry it, and it travels over https only unless the
/// gateway is served on loopback (`site.rs`).
pub(crate) fn attributes(inner: &GatewayInner) -> &'static str {
    if inner.site.secure_cookies() {
        "Path=/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "Path=/; HttpOnly; SameSite=Lax"
    }
}

/// `GET /api/v1/auth/config`: how the page may sign in (no
/// authentication needed): `sso` names the provider and the URL that
/// starts a sign-in there, when one is configured; `token_login` says
/// whether API tokens can be exchanged for a session.
pub(crate) async fn config(State(inner): State<Arc<GatewayInner>>) -> Json<serde_json::Value> {
    let sso = inner.sso.as_ref().map(|s| {
        json!({
            "provider": s.provider(),
            "login_url": "/api/v1/auth/login",
        })
    });
    Json(json!({
        "sso": sso,
        "token_login": inner.cfg.frontend_use_authorization && !inner.cfg.users.is_empty(),
    }))
}

/// `GET /api/v1/auth/me`: who the request is authenticated as.
pub(crate) async fn me(AuthUser(user): AuthUser) -> Json<serde_json::Value> {
    Json(json!({ "user": user }))
}
