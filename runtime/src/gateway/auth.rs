//! Who is calling the gateway: authenticators and signed session cookies.
//!
//! An [`Authenticator`] turns request headers into a [`User`]. Two ship
//! today: the dev authenticator (`frontend_use_authorization: false`: every
//! request is the configured dev user) and API tokens (stored as SHA-256
//! hashes, compared in constant time, presented as `Authorization: Bearer`
//! or exchanged for a session cookie); a gateway with `sso:` also takes
//! the sessions its OpenID Connect sign-in made (`sso.rs`). Sessions
//! are HMAC-signed cookies rather than server state, so a callback can land
//! on any gateway replica that shares `session_secret_key`; the one piece
//! of server state is the list of sessions ended by logout
//! (`revocation.rs`).

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::revocation::Revocations;
use crate::config::UserConfig;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "amesh_session";
/// How long a login session lasts.
pub const SESSION_TTL_SECONDS: u64 = 8 * 3600;

/// An authenticated gateway user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl From<&UserConfig> for User {
    fn from(u: &UserConfig) -> Self {
        User {
            id: u.id.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required: send `Authorization: Bearer <token>` or log in")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("session expired; log in again")]
    Expired,
    #[error("session ended by logout; log in again")]
    Revoked,
}

/// Turns a request into a user. Implementations must not log credentials.
pub trait Authenticator: Send + Sync + 'static {
    /// The user a request acts for.
    fn authenticate(&self, headers: &HeaderMap) -> Result<User, AuthError>;
    /// Checks a login credential (an API token) for `POST /api/v1/auth/login`.
    fn login(&self, token: &str) -> Result<User, AuthError>;
}

/// Every request is the dev user (`frontend_use_authorization: false`).
pub struct DevAuthenticator {
    pub user: User,
}

impl Authenticator for DevAuthenticator {
    fn authenticate(&self, _: &HeaderMap) -> Result<User, AuthError> {
        Ok(self.user.clone())
    }
    fn login(&self, _: &str) -> Result<User, AuthError> {
        Ok(self.user.clone())
    }
}

/// API tokens and session cookies.
pub struct TokenAuthenticator {
    users: Vec<([u8; 32], User)>,
    sessions: SessionCodec,
    /// The issuer whose SSO sessions are taken, when `sso:` is configured.
    sso_issuer: Option<String>,
}

/// A configured user whose token cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum UserTokenError {
    #[error("user {0}: token_sha256 must be 64 hex characters")]
    BadSha256(String),
    #[error("user {0} has no token or token_sha256")]
    NoToken(String),
}

impl TokenAuthenticator {
    /// `users` come from config; each has `token_sha256` (hex) or `token`
    /// (plain, hashed here and dropped).
    pub fn new(users: &[UserConfig], sessions: SessionCodec) -> Result<Self, UserTokenError> {
        let mut out = Vec::new();
        for u in users {
            let hash = match (&u.token_sha256, &u.token) {
                (Some(hex), _) => {
                    decode_hex32(hex).ok_or_else(|| UserTokenError::BadSha256(u.id.clone()))?
                }
                (None, Some(token)) => sha256(token.as_bytes()),
                (None, None) => return Err(UserTokenError::NoToken(u.id.clone())),
            };
            out.push((hash, User::from(u)));
        }
        Ok(TokenAuthenticator {
            users: out,
            sessions,
            sso_issuer: None,
        })
    }

    /// Also takes sessions made by signing in at `issuer` (`sso.rs`).
    pub fn with_sso(mut self, issuer: &str) -> Self {
        self.sso_issuer = Some(issuer.to_owned());
        self
    }

    /// Finds the user whose token hashes to the presented one. Every entry
    /// is compared (no early exit) in constant time.
    fn by_token(&self, token: &str) -> Option<User> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (hash, user) in &self.users {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(user.clone());
            }
        }
        found
    }
}

impl Authenticator for TokenAuthenticator {
    fn authenticate(&self, headers: &HeaderMap) -> Result<User, AuthError> {
        if let Some(value) = headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(AuthError::Invalid)?;
            return self.by_token(token.trim()).ok_or(AuthError::Invalid);
        }
        let cookie = session_cookie(headers).ok_or(AuthError::Missing)?;
        let claims = self.sessions.verify(&cookie, amesh_trust::now_unix())?;
        if let Some(issuer) = &claims.sso {
            // The provider vouched for this user at sign-in; a session of
            // another (or a since removed) provider is not taken.
            return match &self.sso_issuer {
                Some(configured) if configured == issuer => Ok(claims.user),
                _ => Err(AuthError::Invalid),
            };
        }
        // A user removed from the config loses their sessions too.
        self.users
            .iter()
            .find(|(_, u)| u.id == claims.user.id)
            .map(|(_, u)| u.clone())
            .ok_or(AuthError::Invalid)
    }

    fn login(&self, token: &str) -> Result<User, AuthError> {
        self.by_token(token).ok_or(AuthError::Invalid)
    }
}

/// Signed session cookie: `base64url(json claims).base64url(HMAC-SHA256)`.
/// Clones share the list of sessions ended by logout.
#[derive(Clone)]
pub struct SessionCodec {
    key: [u8; 32],
    revoked: Arc<Revocations>,
}

impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCodec([redacted])")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionClaims {
    pub user: User,
    /// Random id of this login, what logout revokes.
    pub sid: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    pub exp: u64,
    /// The OpenID Connect issuer the user signed in at, for a session made
    /// by SSO; `None` for an API token's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<String>,
}

impl SessionCodec {
    /// Derives the MAC key from the configured secret; without one a random
    /// key is used (sessions then end with the process).
    pub fn new(secret: Option<&str>) -> Self {
        let key = match secret {
            Some(s) => sha256(format!("amesh-session-v1:{s}").as_bytes()),
            None => rand::random(),
        };
        SessionCodec {
            key,
            revoked: Arc::default(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    pub fn issue(&self, user: &User, now: u64) -> String {
        self.issue_for(user, now, None)
    }

    /// A session for `user`, who signed in at the SSO provider `issuer`
    /// (`None`: with an API token).
    pub fn issue_for(&self, user: &User, now: u64, issuer: Option<&str>) -> String {
        let claims = SessionClaims {
            user: user.clone(),
            sid: B64.encode(rand::random::<[u8; 16]>()),
            iat: now,
            exp: now + SESSION_TTL_SECONDS,
            sso: issuer.map(str::to_owned),
        };
        let body = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// `payload` signed for one `purpose` (a cookie other than the
    /// session's): `base64url(payload).base64url(HMAC(purpose, payload))`.
    /// A value signed for one purpose does not verify for another, nor as
    /// a session.
    pub(crate) fn sign(&self, purpose: &str, payload: &[u8]) -> String {
        let body = B64.encode(payload);
        let mut mac = self.mac();
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(body.as_bytes());
        format!("{body}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// The payload of a value [`Self::sign`] made for `purpose`.
    pub(crate) fn verify_signed(&self, purpose: &str, value: &str) -> Option<Vec<u8>> {
        let (body, sig) = value.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        B64.decode(body).ok()
    }

    pub fn verify(&self, value: &str, now: u64) -> Result<SessionClaims, AuthError> {
        let (body, sig) = value.split_once('.').ok_or(AuthError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| AuthError::Invalid)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).map_err(|_| AuthError::Invalid)?;
        let json = B64.decode(body).map_err(|_| AuthError::Invalid)?;
        let claims: SessionClaims =
            serde_json::from_slice(&json).map_err(|_| AuthError::Invalid)?;
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        if self.revoked.is_revoked(&claims) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Ends the session of `claims` (logout): its cookie, and every copy of
    /// it, is refused from now on.
    pub fn revoke(&self, claims: &SessionClaims, now: u64) {
        self.revoked.revoke(claims, now);
    }
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie `name`, if the request has one.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Hex SHA-256 of an API token, as `token_sha256` in the config wants it.
pub fn token_hash_hex(token: &str) -> String {
    sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn users() -> Vec<UserConfig> {
        vec![
            UserConfig {
                id: "alice".into(),
                name: None,
                email: None,
                token_sha256: Some(token_hash_hex("alice-token")),
                token: None,
            },
            UserConfig {
                id: "bob".into(),
                name: None,
                email: None,
                token_sha256: None,
                token: Some("bob-token".into()),
            },
        ]
    }

    #[test]
    fn bearer_tokens_identify_their_user_only() {
        let auth = TokenAuthenticator::new(&users(), SessionCodec::new(Some("k"))).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(auth.authenticate(&h), Err(AuthError::Missing));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer alice-token"),
        );
        assert_eq!(auth.authenticate(&h).unwrap().id, "alice");
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer bob-token"));
        assert_eq!(auth.authenticate(&h).unwrap().id, "bob");
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert_eq!(auth.authenticate(&h), Err(AuthError::Invalid));
    }

    #[test]
    fn session_cookie_round_trip_and_tamper() {
        let codec = SessionCodec::new(Some("secret"));
        let user = User {
            id: "alice".into(),
            name: None,
            email: None,
        };
        let cookie = codec.issue(&user, 1000);
        assert_eq!(codec.verify(&cookie, 1001).unwrap().user, user);
        assert_eq!(
            codec
                .verify(&cookie, 1000 + SESSION_TTL_SECONDS)
                .unwrap_err(),
            AuthError::Expired
        );
        let other = SessionCodec::new(Some("other"));
        assert_eq!(other.verify(&cookie, 1001).unwrap_err(), AuthError::Invalid);
        let forged_body = B64.encode(br#"{"user":{"id":"bob"},"exp":99999999999}"#);
        let sig = cookie.split_once('.').unwrap().1;
        assert_eq!(
            codec
                .verify(&format!("{forged_body}.{sig}"), 1001)
                .unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn a_revoked_session_is_refused_by_every_clone_of_the_codec() {
        let codec = SessionCodec::new(Some("secret"));
        let user = User {
            id: "alice".into(),
            name: None,
            email: None,
        };
        let cookie = codec.issue(&user, 1000);
        let other = codec.issue(&user, 1000);
        let claims = codec.verify(&cookie, 1001).unwrap();
        codec.clone().revoke(&claims, 1001);
        assert_eq!(codec.verify(&cookie, 1002).unwrap_err(), AuthError::Revoked);
        assert!(codec.verify(&other, 1002).is_ok());
    }

    #[test]
    fn sso_sessions_are_taken_only_from_the_configured_issuer() {
        let codec = SessionCodec::new(Some("k"));
        let carol = User {
            id: "carol".into(),
            name: Some("Carol".into()),
            email: None,
        };
        let sso = codec.issue_for(&carol, amesh_trust::now_unix(), Some("https://idp.example"));
        let other = codec.issue_for(
            &carol,
            amesh_trust::now_unix(),
            Some("https://other.example"),
        );
        let with_cookie = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                COOKIE,
                HeaderValue::from_str(&format!("{SESSION_COOKIE}={v}")).unwrap(),
            );
            h
        };
        let plain = TokenAuthenticator::new(&users(), codec.clone()).unwrap();
        assert_eq!(
            plain.authenticate(&with_cookie(&sso)),
            Err(AuthError::Invalid)
        );
        let auth = TokenAuthenticator::new(&users(), codec.clone())
            .unwrap()
            .with_sso("https://idp.example");
        assert_eq!(auth.authenticate(&with_cookie(&sso)).unwrap(), carol);
        assert_eq!(
            auth.authenticate(&with_cookie(&other)),
            Err(AuthError::Invalid)
        );
        // A token session of an unknown user is still refused.
        let token_session = codec.issue(&carol, amesh_trust::now_unix());
        assert_eq!(
            auth.authenticate(&with_cookie(&token_session)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn signed_values_are_bound_to_their_purpose() {
        let codec = SessionCodec::new(Some("k"));
        let v = codec.sign("sso-login", b"payload");
        assert_eq!(codec.verify_signed("sso-login", &v).unwrap(), b"payload");
        assert_eq!(codec.verify_signed("other", &v), None);
        assert!(codec.verify(&v, 1).is_err());
        assert_eq!(
            SessionCodec::new(Some("x")).verify_signed("sso-login", &v),
            None
        );
        assert_eq!(codec.verify_signed("sso-login", "garbage"), None);
    }

    #[test]
    fn cookie_header_is_parsed_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; amesh_session=xyz.sig; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("xyz.sig"));
    }
}
