//! `/api/v1/auth/*`: exchanging an API token for a session cookie.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::GatewayInner;
use super::auth::{SESSION_COOKIE, SESSION_TTL_SECONDS, now_secs};
use super::http::{ApiError, AuthUser};

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
pub(crate) async fn login(
    State(inner): State<Arc<GatewayInner>>,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let user = inner.auth.login(&body.token).map_err(|e| {
        tracing::info!(gateway = %inner.id, "login refused");
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    })?;
    let value = inner.sessions.issue(&user, now_secs());
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_SECONDS}"
    );
    let mut resp = Json(json!({ "user": user })).into_response();
    let header_value = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    resp.headers_mut().insert(header::SET_COOKIE, header_value);
    tracing::info!(gateway = %inner.id, user = %user.id, "user logged in");
    Ok(resp)
}

/// `POST /api/v1/auth/logout` clears the cookie.
pub(crate) async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /api/v1/auth/me`: who the request is authenticated as.
pub(crate) async fn me(AuthUser(user): AuthUser) -> Json<serde_json::Value> {
    Json(json!({ "user": user }))
}
