//! The authorization code flow with PKCE, and refresh (OAuth 2.1, RFC 7636,
//! RFC 8707), built on the `oauth2` crate.
//!
//! Every step is a plain function over data the caller stores: the
//! authorization URL comes with the [`PkceVerifier`] to keep in the pending
//! flow, the exchange takes that verifier back, refresh takes the stored
//! [`TokenSet`]. Each request carries `resource` (the MCP server's canonical
//! URI) so the token is bound to that server.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::discover::AuthServer;
use super::error::{OAuthError, OAuthStep, excerpt};
use super::http::{AdapterError, OAuthHttp, ReqwestAdapter, request_failed};
use super::register::{OAuthClient, TokenEndpointAuth};
use crate::clock::unix_now;
use crate::secret::{ExposeSecret as _, SecretString};

/// Random bytes behind a PKCE verifier: 64 bytes give 86 base64url
/// characters (RFC 7636 allows 43 to 128).
const VERIFIER_BYTES: u32 = 64;

/// The PKCE code verifier of one pending flow; kept by the caller until the
/// callback and never sent anywhere but the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PkceVerifier(#[serde(serialize_with = "crate::secret::serialize")] SecretString);

impl From<SecretString> for PkceVerifier {
    /// A verifier the credential store kept.
    fn from(secret: SecretString) -> Self {
        Self(secret)
    }
}

impl PkceVerifier {
    /// Rebuilds a stored verifier.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The plain verifier, for the credential store.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The verifier as the secret the credential store keeps.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// Tokens of one grant. The caller stores them encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    /// The bearer token for the MCP server.
    #[serde(serialize_with = "crate::secret::serialize")]
    pub access_token: SecretString,
    /// The refresh token, if the server issued one.
    #[serde(serialize_with = "crate::secret::option::serialize")]
    pub refresh_token: Option<SecretString>,
    /// Always "Bearer" (other types are refused).
    pub token_type: String,
    /// When the access token expires (Unix seconds), if the server said.
    pub expires_at: Option<u64>,
    /// The granted scopes (the requested ones when the server did not say).
    pub scopes: Vec<String>,
}

impl TokenSet {
    /// True when the access token expires within `leeway` from now.
    pub fn expires_within(&self, leeway: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| unix_now().saturating_add(leeway.as_secs()) >= at)
    }

    /// The `Authorization` header value.
    pub fn authorization_header(&self) -> SecretString {
        SecretString::from(format!("Bearer {}", self.access_token.expose_secret()))
    }
}

/// The result of a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new token set; its refresh token is the new one if the server
    /// rotated it, else the old one.
    pub tokens: TokenSet,
    /// True when the server issued a new refresh token (the old one is now
    /// invalid and must be replaced in the store).
    pub rotated: bool,
}

/// Builds the URL to send the user to, with PKCE S256, `state` (from the
/// caller's pending flow), `scope` (omitted when empty) and `resource`.
pub fn authorization_request(
    server: &AuthServer,
    client: &OAuthClient,
    redirect_uri: &Url,
    scopes: &[String],
    state: &str,
) -> (Url, PkceVerifier) {
    let oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(
            server.metadata.authorization_endpoint.clone(),
        ))
        .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(VERIFIER_BYTES);
    let state = state.to_owned();
    let (url, _state) = oauth
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .add_extra_param("resource", server.resource.clone())
        .url();
    (url, PkceVerifier::new(verifier.secret().clone()))
}

/// Exchanges the code from the callback for tokens.
pub async fn exchange_code(
    http: &OAuthHttp,
    server: &AuthServer,
    client: &OAuthClient,
    code: &str,
    verifier: &PkceVerifier,
    redirect_uri: &Url,
    requested_scopes: &[String],
) -> Result<TokenSet, OAuthError> {
    let token_url = &server.metadata.token_endpoint;
    let oauth = with_credentials(
        BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone())),
        client,
    );
    let secrets = [code, verifier.expose()]
        .into_iter()
        .chain(client_secret(client));
    let adapter = ReqwestAdapter::new(http).redacting(secrets);
    let response = oauth
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()))
        .add_extra_param("resource", server.resource.clone())
        .request_async(&adapter)
        .await
        .map_err(|e| token_error(token_url, e, &adapter))?;
    token_set(&response, None, requested_scopes)
}

/// Uses the stored refresh token for a new access token. A server that
/// answers without a refresh token keeps the old one valid (RFC 6749 §6).
pub async fn refresh(
    http: &OAuthHttp,
    server: &AuthServer,
    client: &OAuthClient,
    previous: &TokenSet,
) -> Result<Refreshed, OAuthError> {
    let old_refresh = previous
        .refresh_token
        .as_ref()
        .ok_or(OAuthError::NoRefreshToken)?;
    let token_url = &server.metadata.token_endpoint;
    let oauth = with_credentials(
        BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(token_url.clone())),
        client,
    );
    let secrets = std::iter::once(old_refresh.expose_secret()).chain(client_secret(client));
    let adapter = ReqwestAdapter::new(http).redacting(secrets);
    let response = oauth
        .exchange_refresh_token(&RefreshToken::new(old_refresh.expose_secret().to_owned()))
        .add_extra_param("resource", server.resource.clone())
        .request_async(&adapter)
        .await
        .map_err(|e| token_error(token_url, e, &adapter))?;
    let tokens = token_set(&response, Some(old_refresh), &previous.scopes)?;
    let rotated = tokens.refresh_token.as_ref().map(|t| t.expose_secret())
        != Some(old_refresh.expose_secret());
    Ok(Refreshed { tokens, rotated })
}

type OAuthBasic<A, T> = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    A,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    T,
>;

fn with_credentials<A, T>(oauth: OAuthBasic<A, T>, client: &OAuthClient) -> OAuthBasic<A, T>
where
    A: oauth2::EndpointState,
    T: oauth2::EndpointState,
{
    let secret = client
        .client_secret
        .as_ref()
        .filter(|_| client.auth != TokenEndpointAuth::None);
    match secret {
        Some(secret) => oauth
            .set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()))
            .set_auth_type(match client.auth {
                TokenEndpointAuth::ClientSecretPost => AuthType::RequestBody,
                _ => AuthType::BasicAuth,
            }),
        None => oauth.set_auth_type(AuthType::RequestBody),
    }
}

fn token_set(
    response: &BasicTokenResponse,
    old_refresh: Option<&SecretString>,
    requested_scopes: &[String],
) -> Result<TokenSet, OAuthError> {
    let token_type = response.token_type().as_ref().to_owned();
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(OAuthError::UnsupportedTokenType(token_type));
    }
    let refresh_token = response
        .refresh_token()
        .map(|t| SecretString::from(t.secret().clone()))
        .or_else(|| old_refresh.cloned());
    let scopes = match response.scopes() {
        Some(scopes) => scopes.iter().map(|s| s.to_string()).collect(),
        None => requested_scopes.to_vec(),
    };
    Ok(TokenSet {
        access_token: SecretString::from(response.access_token().secret().clone()),
        refresh_token,
        token_type: "Bearer".into(),
        expires_at: response
            .expires_in()
            .map(|ttl| unix_now().saturating_add(ttl.as_secs())),
        scopes,
    })
}

/// The client secret a token request sends, if any.
fn client_secret(client: &OAuthClient) -> Option<&str> {
    client.client_secret.as_ref().map(|s| s.expose_secret())
}

fn token_error(
    token_url: &Url,
    error: RequestTokenError<AdapterError, BasicErrorResponse>,
    adapter: &ReqwestAdapter<'_>,
) -> OAuthError {
    let url = token_url.to_string();
    match error {
        RequestTokenError::ServerResponse(e) => OAuthError::TokenRefused {
            url,
            error: excerpt(e.error().as_ref().as_bytes(), &[]),
            // The server's words go to the log; a careless one may quote
            // what it was sent.
            description: e
                .error_description()
                .map(|d| excerpt(d.as_bytes(), adapter.secrets())),
        },
        RequestTokenError::Request(AdapterError::Transport(source)) => {
            request_failed(token_url, source)
        }
        RequestTokenError::Request(AdapterError::Refused(refused)) => {
            OAuthError::TargetRefused { url, refused }
        }
        RequestTokenError::Request(AdapterError::TooLarge { limit }) => OAuthError::BodyTooLarge {
            url,
            document: "token endpoint answer",
            limit,
        },
        RequestTokenError::Request(AdapterError::Status { status, body }) => OAuthError::Status {
            step: OAuthStep::Token,
            url,
            status,
            body,
        },
        RequestTokenError::Request(e @ AdapterError::Build(_)) => OAuthError::TokenResponse {
            url,
            reason: e.to_string(),
        },
        // The body may hold a token: report only where parsing failed.
        RequestTokenError::Parse(e, _body) => OAuthError::TokenResponse {
            url,
            reason: format!(
                "malformed JSON at `{}` ({:?} error, line {} column {})",
                e.path(),
                e.inner().classify(),
                e.inner().line(),
                e.inner().column()
            ),
        },
        RequestTokenError::Other(reason) => OAuthError::TokenResponse { url, reason },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Token sets, verifiers and clients are stored (sealed) by the caller:
    /// records written before the move to `secrecy` must read back, and new
    /// ones keep the plain-string shape.
    #[test]
    fn stored_token_sets_and_clients_keep_their_json_shape() {
        let stored = json!({
            "access_token": "at-1",
            "refresh_token": "rt-1",
            "token_type": "Bearer",
            "expires_at": 1_900_000_000u64,
            "scopes": ["mcp"],
        });
        let tokens: TokenSet = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(tokens.access_token.expose_secret(), "at-1");
        assert!(!format!("{tokens:?}").contains("at-1"));
        assert_eq!(serde_json::to_value(&tokens).unwrap(), stored);

        let client = json!({"client_id": "c", "client_secret": "s", "auth": "client_secret_basic"});
        let back: OAuthClient = serde_json::from_value(client.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), client);
        let public = json!({"client_id": "c", "client_secret": null, "auth": "none"});
        let back: OAuthClient = serde_json::from_value(public.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), public);

        let verifier = PkceVerifier::new("v".repeat(43));
        assert_eq!(
            serde_json::to_value(&verifier).unwrap(),
            json!("v".repeat(43))
        );
    }
}
