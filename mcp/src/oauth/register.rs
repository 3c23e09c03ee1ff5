//! Dynamic client registration (RFC 7591) and the client identity a flow uses.
//!
//! An agent with no `client_id` in its tool's `auth:` block registers itself
//! once per authorization server as a public client (`none` auth, PKCE is
//! the proof) for the one redirect URI the gateway serves. The caller stores
//! the [`ClientRegistration`] so later flows, on any replica, reuse it.

use serde::{Deserialize, Serialize};
use url::Url;

use super::discover::AuthServer;
use super::error::{OAuthError, OAuthStep, excerpt};
use super::http::{OAuthHttp, post_json};
use super::redirect::is_loopback;
use crate::secret::SecretString;

/// How the client proves itself at the token endpoint (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    /// Public client: `client_id` in the form, no secret.
    None,
    /// HTTP Basic with client_id and client_secret.
    ClientSecretBasic,
    /// client_id and client_secret in the form.
    ClientSecretPost,
}

impl TokenEndpointAuth {
    fn parse(method: Option<&str>, has_secret: bool) -> Self {
        match method {
            Some("none") => Self::None,
            Some("client_secret_post") => Self::ClientSecretPost,
            Some("client_secret_basic") => Self::ClientSecretBasic,
            // RFC 7591 §2: the default is client_secret_basic.
            _ if has_secret => Self::ClientSecretBasic,
            _ => Self::None,
        }
    }
}

/// The client identity used on authorization and token requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthClient {
    /// The client identifier.
    pub client_id: String,
    /// The client secret, for confidential clients.
    #[serde(serialize_with = "crate::secret::option::serialize")]
    pub client_secret: Option<SecretString>,
    /// How the client authenticates at the token endpoint.
    pub auth: TokenEndpointAuth,
}

impl OAuthClient {
    /// A client from the tool's `auth:` block: with a secret it
    /// authenticates with HTTP Basic, without one it is public.
    pub fn configured(client_id: impl Into<String>, client_secret: Option<SecretString>) -> Self {
        let auth = TokenEndpointAuth::parse(None, client_secret.is_some());
        Self {
            client_id: client_id.into(),
            client_secret,
            auth,
        }
    }
}

/// What the registration endpoint issued.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClientRegistration {
    /// The issued client identifier.
    pub client_id: String,
    /// The issued secret, if the server made a confidential client.
    #[serde(serialize_with = "crate::secret::option::serialize")]
    pub client_secret: Option<SecretString>,
    /// The auth method the server settled on.
    pub auth: TokenEndpointAuth,
    /// The whole response, for the caller to keep (it may hold
    /// `registration_access_token`, expiry times, ...).
    pub raw: serde_json::Value,
}

impl std::fmt::Debug for ClientRegistration {
    // `raw` holds the secret too; show only what is safe.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("auth", &self.auth)
            .field("raw", &"[redacted]")
            .finish()
    }
}

impl ClientRegistration {
    /// The client identity for flows.
    pub fn client(&self) -> OAuthClient {
        OAuthClient {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            auth: self.auth,
        }
    }
}

/// The `client_name` amesh registers under.
pub fn client_name_for_agent(agent_name: &str) -> String {
    format!("amesh agent {agent_name}")
}

/// Registers a public client for `redirect_uri` at the server's
/// `registration_endpoint`.
pub async fn register(
    http: &OAuthHttp,
    server: &AuthServer,
    redirect_uri: &Url,
    client_name: &str,
) -> Result<ClientRegistration, OAuthError> {
    let endpoint = server
        .metadata
        .registration_endpoint
        .as_ref()
        .ok_or_else(|| OAuthError::RegistrationUnsupported {
            issuer: server.issuer().to_owned(),
        })?;
    let request = serde_json::json!({
        "redirect_uris": [redirect_uri.as_str()],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": client_name,
        "application_type": application_type(redirect_uri),
    });
    let (status, body) = post_json(http, endpoint, &request, "client registration answer").await?;
    let url = endpoint.to_string();
    if !(200..300).contains(&status) {
        #[derive(Deserialize)]
        struct Refusal {
            error: String,
            error_description: Option<String>,
        }
        return Err(match serde_json::from_slice::<Refusal>(&body) {
            // The server's words are kept for the log, short and on one line.
            Ok(refusal) => OAuthError::RegistrationRefused {
                url,
                status,
                error: excerpt(refusal.error.as_bytes(), &[]),
                description: refusal
                    .error_description
                    .map(|d| excerpt(d.as_bytes(), &[])),
            },
            Err(_) => OAuthError::Status {
                step: OAuthStep::Registration,
                url,
                status,
                body: excerpt(&body, &[]),
            },
        });
    }
    let raw: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| invalid(&url, e.to_string()))?;
    let client_id = raw
        .get("client_id")
        .and_then(|v| v.as_str())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(&url, "no client_id in the response".into()))?
        .to_owned();
    let client_secret = raw
        .get("client_secret")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(SecretString::from);
    let method = raw
        .get("token_endpoint_auth_method")
        .and_then(|v| v.as_str());
    let auth = TokenEndpointAuth::parse(method, client_secret.is_some());
    Ok(ClientRegistration {
        client_id,
        client_secret,
        auth,
        raw,
    })
}

/// OpenID Connect Registration `application_type`, which MCP 2026-07-28
/// asks registering clients to send: the gateway's callback is a web
/// server (`web`); only a redirect to this machine (`http://localhost`, a
/// developer's setup) is `native`, because OpenID providers refuse
/// loopback redirect URIs for `web` clients.
pub(crate) fn application_type(redirect_uri: &Url) -> &'static str {
    if is_loopback(redirect_uri) {
        "native"
    } else {
        "web"
    }
}

fn invalid(url: &str, reason: String) -> OAuthError {
    OAuthError::InvalidDocument {
        url: url.to_owned(),
        document: "client registration response",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_a_web_client_and_a_loopback_redirect_a_native_one() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            application_type(&url("https://gw.example/api/v1/auth/tool/callback")),
            "web"
        );
        assert_eq!(
            application_type(&url("http://localhost:8000/api/v1/auth/tool/callback")),
            "native"
        );
        assert_eq!(
            application_type(&url("http://127.0.0.1:8000/api/v1/auth/tool/callback")),
            "native"
        );
    }
}
