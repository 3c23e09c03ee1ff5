//! Single sign-on: OpenID Connect's authorization code flow with PKCE, for
//! a gateway with an `sso:` block.
//!
//! - `GET /api/v1/auth/login` (the URL SAM's web UI gateway signs in at)
//!   finds the provider's endpoints and keys by discovery, makes a state, a
//!   nonce and a PKCE verifier, keeps them in a short-lived cookie signed
//!   with the session key (`amesh_sso`, `login_timeout_seconds`, sent only
//!   to `/api/v1/auth/`), and redirects the browser to the provider. No
//!   server state: the callback can land on any replica sharing
//!   `session_secret_key`, and nothing grows per login.
//! - `GET /api/v1/auth/callback` checks that `state` is the cookie's,
//!   exchanges the code with the verifier, and checks the ID token: its
//!   signature against the provider's keys, issuer, audience (and `azp`),
//!   expiry and the cookie's nonce. The configured claims give the user's
//!   id, email and name; the session cookie then says the user signed in
//!   at this issuer, and the authenticator takes it while `sso:` names it.
//! - Logout (`POST /api/v1/auth/logout`, `auth_routes.rs`) ends the session
//!   here and, when the provider advertises an `end_session_endpoint`,
//!   answers with the URL of RP-initiated logout for the page to go to.
//!
//! The provider's metadata and keys are kept for `metadata_ttl_seconds`
//! (one entry), and dropped at once when a signature does not verify, so a
//! key the provider rotated in is picked up at the next sign-in. The
//! client secret goes only into the token request; errors from the token
//! endpoint are reported by their RFC 6749 code and description, never
//! with the answer's body (it may hold tokens).

use secrecy::ExposeSecret as _;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthType, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IdToken, IdTokenClaims, IssuerUrl, LogoutRequest,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use super::GatewayInner;
use super::api_error::ApiError;
use super::auth::{SESSION_COOKIE, SESSION_TTL_SECONDS, User, cookie};
use super::auth_routes::attributes;
use super::extract::ClientIp;
use super::tool_callback::page;
use crate::config::SsoConfig;

/// The cookie that carries one sign-in from its start to the callback.
pub(crate) const LOGIN_COOKIE: &str = "amesh_sso";
/// What the login cookie's MAC is bound to (no other signed value verifies).
const LOGIN_PURPOSE: &str = "amesh-sso-login-v1";
/// The largest answer read from the provider.
const MAX_BODY: usize = 1024 * 1024;
/// Time allowed for one request to the provider, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest user id, email or name taken from an ID token.
const MAX_CLAIM_LEN: usize = 256;

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Claims beyond the standard ones, so any claim can be the user id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct OtherClaims(HashMap<String, serde_json::Value>);
impl AdditionalClaims for OtherClaims {}

type SsoIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type SsoClaims = IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// A gateway's OpenID Connect relying party.
pub(crate) struct Sso {
    cfg: SsoConfig,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    post_logout: PostLogoutRedirectUrl,
    http: SsoHttp,
    /// What discovery found, and when.
    discovered: Mutex<Option<(Arc<Discovered>, Instant)>>,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso").field("cfg", &self.cfg).finish()
    }
}

/// The provider as discovery describes it.
struct Discovered {
    client: OidcClient,
    end_session: Option<EndSessionUrl>,
}

/// One sign-in under way, as the login cookie carries it.
#[derive(Serialize, Deserialize)]
struct PendingLogin {
    state: String,
    nonce: String,
    verifier: String,
    /// The page to go back to.
    back: String,
    /// Unix seconds.
    exp: u64,
}

/// Why a sign-in failed; the text is shown to the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoError {
    #[error("the sign-in provider cannot be reached or described itself wrongly: {0}")]
    Discovery(String),
    #[error("the sign-in provider did not accept the code: {0}")]
    Exchange(String),
    #[error("the sign-in provider's ID token was refused: {0}")]
    IdToken(String),
    #[error("{0}")]
    Claims(String),
}

impl Sso {
    pub(crate) fn new(cfg: &SsoConfig) -> anyhow::Result<Self> {
        let issuer = IssuerUrl::new(cfg.issuer.trim().to_owned())
            .map_err(|e| anyhow::anyhow!("sso.issuer: {e}"))?;
        let redirect = RedirectUrl::new(cfg.redirect_uri.trim().to_owned())
            .map_err(|e| anyhow::anyhow!("sso.redirect_uri: {e}"))?;
        let post_logout = match &cfg.post_logout_redirect_uri {
            Some(uri) => uri.trim().to_owned(),
            None => {
                let mut origin = redirect.url().origin().ascii_serialization();
                origin.push('/');
                origin
            }
        };
        let post_logout = PostLogoutRedirectUrl::new(post_logout)
            .map_err(|e| anyhow::anyhow!("sso.post_logout_redirect_uri: {e}"))?;
        Ok(Sso {
            cfg: cfg.clone(),
            issuer,
            redirect,
            post_logout,
            http: SsoHttp::new()?,
            discovered: Mutex::new(None),
        })
    }

    /// The issuer sessions of this provider name (the configured string).
    pub(crate) fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The provider's name for the page's button.
    pub(crate) fn provider(&self) -> &str {
        &self.cfg.provider
    }

    /// The provider's metadata, client and keys: kept for
    /// `metadata_ttl_seconds`, read again after.
    async fn discovered(&self) -> Result<Arc<Discovered>, SsoError> {
        let ttl = Duration::from_secs(self.cfg.metadata_ttl_seconds.max(1));
        let mut slot = self.discovered.lock().await;
        if let Some((d, at)) = slot.as_ref()
            && at.elapsed() < ttl
        {
            return Ok(d.clone());
        }
        let meta = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| SsoError::Discovery(error_chain(&e)))?;
        let end_session = meta.additional_metadata().end_session_endpoint.clone();
        // The client secret goes in the Authorization header (the default,
        // RFC 6749 2.3.1) unless the provider only takes it in the body.
        let auth_type = match meta.token_endpoint_auth_methods_supported() {
            Some(methods)
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                AuthType::RequestBody
            }
            _ => AuthType::BasicAuth,
        };
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(self.redirect.clone())
        .set_auth_type(auth_type);
        let d = Arc::new(Discovered {
            client,
            end_session,
        });
        *slot = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    /// Forgets the provider's metadata and keys (a signature that did not
    /// verify may mean new keys).
    async fn forget(&self) {
        *self.discovered.lock().await = None;
    }

    /// The provider's authorization URL for a new sign-in, and the login
    /// cookie's payload that goes with it.
    async fn start(&self, back: String, now: u64) -> Result<(url::Url, PendingLogin), SsoError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.cfg.scope.split_whitespace().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url,
            PendingLogin {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                back,
                exp: now.saturating_add(self.cfg.login_timeout_seconds),
            },
        ))
    }

    /// Exchanges `code` and checks the ID token against `pending`; the
    /// user it names.
    async fn finish(&self, code: String, pending: &PendingLogin) -> Result<User, SsoError> {
        let d = self.discovered().await?;
        let request = d
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| SsoError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()));
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Exchange(token_error(&e)))?;
        // Only the ID token is used; the access token is dropped here.
        let raw = response
            .id_token()
            .ok_or_else(|| {
                SsoError::IdToken("the token answer has no id_token (is `openid` a scope?)".into())
            })?
            .to_string();
        let token = SsoIdToken::from_str(&raw).map_err(|e| SsoError::IdToken(e.to_string()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match token.claims(&d.client.id_token_verifier(), &nonce) {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, ClaimsVerificationError::SignatureVerification(_)) {
                    self.forget().await;
                }
                return Err(SsoError::IdToken(e.to_string()));
            }
        };
        self.user(claims)
    }

    /// The user the configured claims name.
    fn user(&self, claims: &SsoClaims) -> Result<User, SsoError> {
        let id_claim = self.cfg.user_id_claim.as_str();
        let id = claim(claims, id_claim)
            .ok_or_else(|| SsoError::Claims(format!("the ID token has no {id_claim} claim")))?;
        if id_claim == "email" && claims.email_verified() == Some(false) {
            return Err(SsoError::Claims(
                "the provider says this email address is not verified".into(),
            ));
        }
        if id.is_empty() || id.len() > MAX_CLAIM_LEN || id.chars().any(char::is_control) {
            return Err(SsoError::Claims(format!(
                "the ID token's {id_claim} claim is not a usable user id (empty, longer than \
                 {MAX_CLAIM_LEN} bytes, or with control characters)"
            )));
        }
        let tidy = |v: Option<String>| {
            v.filter(|v| {
                !v.is_empty() && v.len() <= MAX_CLAIM_LEN && !v.chars().any(char::is_control)
            })
        };
        Ok(User {
            id,
            email: tidy(claim(claims, &self.cfg.email_claim)),
            name: tidy(claim(claims, &self.cfg.name_claim)),
        })
    }

    /// Where the browser goes to end the session at the provider too, when
    /// the provider advertises an `end_session_endpoint`.
    pub(crate) async fn logout_url(&self) -> Option<url::Url> {
        let d = match self.discovered().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "no RP-initiated logout: discovery failed");
                return None;
            }
        };
        let endpoint = d.end_session.clone()?;
        Some(
            LogoutRequest::from(endpoint)
                .set_client_id(ClientId::new(self.cfg.client_id.clone()))
                .set_post_logout_redirect_uri(self.post_logout.clone())
                .http_get_url(),
        )
    }
}

/// A claim of the ID token as text: the standard ones by name, any other
/// from the rest (strings, numbers and booleans).
fn claim(claims: &SsoClaims, name: &str) -> Option<String> {
    fn localized<T: std::ops::Deref<Target = String>>(
        c: Option<&openidconnect::LocalizedClaim<T>>,
    ) -> Option<String> {
        c.and_then(|c| c.get(None)).map(|v| v.to_string())
    }
    match name {
        "sub" => Some(claims.subject().to_string()),
        "email" => claims.email().map(|e| e.to_string()),
        "name" => localized(claims.name()),
        "given_name" => localized(claims.given_name()),
        "family_name" => localized(claims.family_name()),
        "nickname" => localized(claims.nickname()),
        "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
        "phone_number" => claims.phone_number().map(|p| p.to_string()),
        other => match claims.additional_claims().0.get(other)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        },
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A token endpoint failure without the answer's body.
fn token_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => r.to_string(),
        RequestTokenError::Request(e) => error_chain(e),
        RequestTokenError::Parse(e, _) => format!("its answer could not be read: {e}"),
        RequestTokenError::Other(s) => s.clone(),
    }
}

/// Query of `GET /api/v1/auth/login`.
#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    /// A page of this gateway to go back to (a path).
    #[serde(default)]
    return_to: Option<String>,
}

/// `GET /api/v1/auth/login`: starts a sign-in at the provider.
pub(crate) async fn login(
    State(inner): State<Arc<GatewayInner>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let Some(sso) = &inner.sso else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "this gateway has no single sign-on (sso:); POST an API token to /api/v1/auth/login",
        )
        .into_response();
    };
    let back = q
        .return_to
        .filter(|p| local_path(p))
        .unwrap_or_else(|| "/".to_owned());
    let now = amesh_trust::now_unix();
    let (url, pending) = match sso.start(back, now).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(gateway = %inner.id, error = %e, "SSO sign-in could not start");
            return page(
                StatusCode::BAD_GATEWAY,
                "Sign-in is unavailable",
                &e.to_string(),
            );
        }
    };
    let value = inner.sessions.sign(
        LOGIN_PURPOSE,
        &serde_json::to_vec(&pending).unwrap_or_default(),
    );
    let mut resp = redirect(url.as_str());
    set_cookie(
        &mut resp,
        &format!(
            "{LOGIN_COOKIE}={value}; {}; Max-Age={}",
            login_cookie_attributes(&inner),
            sso.cfg.login_timeout_seconds
        ),
    );
    resp
}

/// Query of the provider's redirect to `GET /api/v1/auth/callback`.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /api/v1/auth/callback`: the provider sends the browser back here.
pub(crate) async fn callback(
    State(inner): State<Arc<GatewayInner>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(sso) = &inner.sso else {
        return ApiError::new(StatusCode::NOT_FOUND, "this gateway has no single sign-on")
            .into_response();
    };
    if let Some(ip) = ip
        && let Err(wait) = inner.throttle.check(ip, Instant::now())
    {
        return ApiError::throttled(wait).into_response();
    }
    let mut resp = match callback_inner(&inner, sso, &headers, q).await {
        Ok((user, back)) => {
            let value =
                inner
                    .sessions
                    .issue_for(&user, amesh_trust::now_unix(), Some(sso.issuer()));
            tracing::info!(gateway = %inner.id, user = %user.id, "user signed in with SSO");
            let mut resp = redirect(&back);
            set_cookie(
                &mut resp,
                &format!(
                    "{SESSION_COOKIE}={value}; {}; Max-Age={SESSION_TTL_SECONDS}",
                    attributes(&inner)
                ),
            );
            resp
        }
        Err(Refused {
            status,
            message,
            guess,
        }) => {
            tracing::info!(gateway = %inner.id, reason = %message, "SSO sign-in refused");
            if guess && let Some(ip) = ip {
                inner.throttle.failed(ip, Instant::now());
            }
            page(
                status,
                "Sign-in failed",
                &format!("{message}. Go back to the gateway's page and sign in again."),
            )
        }
    };
    // One sign-in, one callback: the login cookie goes either way.
    set_cookie(
        &mut resp,
        &format!(
            "{LOGIN_COOKIE}=; {}; Max-Age=0",
            login_cookie_attributes(&inner)
        ),
    );
    resp
}

/// Why the callback refused; `guess`: counts as a failed authentication.
struct Refused {
    status: StatusCode,
    message: String,
    guess: bool,
}

fn refused(status: StatusCode, message: impl Into<String>, guess: bool) -> Refused {
    Refused {
        status,
        message: message.into(),
        guess,
    }
}

async fn callback_inner(
    inner: &GatewayInner,
    sso: &Sso,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<(User, String), Refused> {
    let no_login = || {
        refused(
            StatusCode::BAD_REQUEST,
            format!(
                "no sign-in was under way in this browser, or it took longer than {} s",
                sso.cfg.login_timeout_seconds
            ),
            false,
        )
    };
    let value = cookie(headers, LOGIN_COOKIE).ok_or_else(no_login)?;
    let pending: PendingLogin = inner
        .sessions
        .verify_signed(LOGIN_PURPOSE, &value)
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                "the sign-in cookie is not valid",
                true,
            )
        })?;
    if pending.exp <= amesh_trust::now_unix() {
        return Err(no_login());
    }
    let state_matches = q
        .state
        .as_deref()
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
    if !state_matches {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "the answer does not belong to the sign-in this browser started (state differs)",
            true,
        ));
    }
    if let Some(error) = q.error {
        let mut text = format!("the provider refused the sign-in: {}", clip(&error));
        if let Some(d) = q.error_description {
            text.push_str(&format!(" ({})", clip(&d)));
        }
        return Err(refused(StatusCode::FORBIDDEN, text, false));
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| refused(StatusCode::BAD_REQUEST, "the provider sent no code", false))?;
    let user = sso.finish(code, &pending).await.map_err(|e| {
        let status = match e {
            SsoError::Discovery(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::FORBIDDEN,
        };
        refused(status, e.to_string(), matches!(e, SsoError::IdToken(_)))
    })?;
    Ok((user, pending.back))
}

/// At most 200 characters of provider-sent text, for a message.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A path on this gateway (not `//host`, not a URL).
fn local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && p.len() <= 512
        && !p.chars().any(char::is_control)
}

fn login_cookie_attributes(inner: &GatewayInner) -> &'static str {
    if inner.site.secure_cookies() {
        "Path=/api/v1/auth/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "Path=/api/v1/auth/; HttpOnly; SameSite=Lax"
    }
}

fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn set_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The HTTP client of the relying party: the workspace reqwest, no
/// redirects followed (the openidconnect crate's advice against SSRF),
/// bounded time and answer size.
struct SsoHttp {
    client: reqwest::Client,
}

impl SsoHttp {
    fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(SsoHttp { client })
    }
}

/// Why a request to the provider got no answer `openidconnect` can read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoHttpError {
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("could not build the answer: {0}")]
    Build(String),
}

impl<'c> AsyncHttpClient<'c> for SsoHttp {
    type Error = SsoHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, SsoHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut response = self.client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(SsoHttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let mut builder = axum::http::Response::builder().status(status);
            if let Some(h) = builder.headers_mut() {
                *h = headers;
            }
            builder
                .body(body)
                .map_err(|e| SsoHttpError::Build(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_gone_back_to() {
        for ok in ["/", "/?c=1", "/assets/x"] {
            assert!(local_path(ok), "{ok}");
        }
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "x",
            "/\n",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }

    fn sso_with(claims: &[(&str, &str)]) -> Sso {
        let mut cfg = serde_json::json!({
            "issuer": "https://idp.example",
            "client_id": "gw",
            "redirect_uri": "https://gw.example/api/v1/auth/callback",
        });
        for (k, v) in claims {
            cfg[*k] = serde_json::json!(v);
        }
        Sso::new(&serde_json::from_value(cfg).unwrap()).unwrap()
    }

    fn claims(extra: serde_json::Value) -> SsoClaims {
        let mut c = serde_json::json!({
            "iss": "https://idp.example",
            "aud": "gw",
            "exp": 4_000_000_000u64,
            "iat": 1_700_000_000u64,
            "sub": "248289761001",
            "email": "jane@example.com",
            "email_verified": true,
            "name": "Jane Doe",
            "preferred_username": "jdoe",
            "oid": "00000000-aaaa-bbbb",
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        serde_json::from_value(c).unwrap()
    }

    #[test]
    fn the_configured_claims_make_the_user() {
        let user = sso_with(&[]).user(&claims(serde_json::json!({}))).unwrap();
        assert_eq!(user.id, "248289761001");
        assert_eq!(user.email.as_deref(), Some("jane@example.com"));
        assert_eq!(user.name.as_deref(), Some("Jane Doe"));

        let sso = sso_with(&[
            ("user_id_claim", "oid"),
            ("name_claim", "preferred_username"),
        ]);
        let user = sso.user(&claims(serde_json::json!({}))).unwrap();
        assert_eq!(user.id, "00000000-aaaa-bbbb");
        assert_eq!(user.name.as_deref(), Some("jdoe"));

        // A missing id claim, an unverified email as the id, an id that
        // is no id: refused, with the reason.
        let err = sso_with(&[("user_id_claim", "upn")])
            .user(&claims(serde_json::json!({})))
            .unwrap_err();
        assert!(err.to_string().contains("no upn claim"), "{err}");
        let by_email = sso_with(&[("user_id_claim", "email")]);
        assert_eq!(
            by_email.user(&claims(serde_json::json!({}))).unwrap().id,
            "jane@example.com"
        );
        let err = by_email
            .user(&claims(serde_json::json!({"email_verified": false})))
            .unwrap_err();
        assert!(err.to_string().contains("not verified"), "{err}");
        let long = "x".repeat(MAX_CLAIM_LEN + 1);
        let err = sso_with(&[("user_id_claim", "oid")])
            .user(&claims(serde_json::json!({"oid": long})))
            .unwrap_err();
        assert!(err.to_string().contains("not a usable user id"), "{err}");
        // An unusable name is dropped, not the sign-in.
        let user = sso_with(&[])
            .user(&claims(serde_json::json!({"name": "a\u{7}b"})))
            .unwrap();
        assert_eq!(user.name, None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let cfg: SsoConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example",
            "client_id": "gw",
            "client_secret": "s3cr3t-value",
            "redirect_uri": "https://gw.example/api/v1/auth/callback",
        }))
        .unwrap();
        let sso = Sso::new(&cfg).unwrap();
        let text = format!("{sso:?} {cfg:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        assert_eq!(sso.post_logout.as_str(), "https://gw.example/");
    }
}
