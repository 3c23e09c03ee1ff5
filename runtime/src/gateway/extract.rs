//! Request extractors: where a request came from, and who made it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::GatewayInner;
use super::api_error::ApiError;
use super::auth::{AuthError, User};

/// The address a request came from (set by the accept loop), if known.
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The authenticated user of a request; rejects with 401 otherwise, and
/// with 429 while the client's address must wait after failed attempts.
pub(crate) struct AuthUser(pub User);

impl FromRequestParts<Arc<GatewayInner>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<GatewayInner>,
    ) -> Result<Self, ApiError> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        if let Some(ip) = ip {
            state
                .throttle
                .check(ip, Instant::now())
                .map_err(ApiError::throttled)?;
        }
        match state.auth.authenticate(&parts.headers) {
            Ok(user) => Ok(AuthUser(user)),
            Err(e) => {
                // A wrong token or forged cookie is a guess; a missing,
                // expired or logged-out one is not.
                if e == AuthError::Invalid
                    && let Some(ip) = ip
                {
                    state.throttle.failed(ip, Instant::now());
                }
                Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
            }
        }
    }
}
