//! Token revocation (RFC 7009): when a user disconnects a tool, the grant
//! ends at the provider too, not only in our store.
//!
//! Sent by hand rather than with `oauth2`'s revocation request, which
//! refuses non-https endpoints; the request still goes through
//! [`ReqwestAdapter`], so the same address policy and body limit apply as
//! for token requests.

use base64::Engine;
use oauth2::{AsyncHttpClient, HttpRequest};

use super::discover::AuthServer;
use super::error::excerpt;
use super::flow::TokenSet;
use super::http::{OAuthHttp, ReqwestAdapter};
use super::register::{OAuthClient, TokenEndpointAuth};
use crate::secret::ExposeSecret as _;

/// Asks the authorization server to revoke the grant of `tokens`: the
/// refresh token when there is one (revoking it ends the grant, RFC 7009
/// §2.1), else the access token. `Ok(false)` when the server advertises no
/// `revocation_endpoint`; `Err` is text for the user and the log (no
/// token material).
pub async fn revoke(
    http: &OAuthHttp,
    server: &AuthServer,
    client: &OAuthClient,
    tokens: &TokenSet,
) -> Result<bool, String> {
    let Some(url) = &server.metadata.revocation_endpoint else {
        return Ok(false);
    };
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh.expose_secret(), "refresh_token"),
        None => (tokens.access_token.expose_secret(), "access_token"),
    };
    let secret = client
        .client_secret
        .as_ref()
        .map(|s| s.expose_secret())
        .filter(|_| client.auth != TokenEndpointAuth::None);
    let (body, basic) = form(client, secret, token, hint);
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(url.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    if let Some(basic) = basic {
        request = request.header(http::header::AUTHORIZATION, basic);
    }
    let request: HttpRequest = request
        .body(body.into_bytes())
        .map_err(|e| format!("could not build the revocation request: {e}"))?;
    let secrets = std::iter::once(token).chain(secret);
    let adapter = ReqwestAdapter::new(http).redacting(secrets);
    let response = adapter
        .call(request)
        .await
        .map_err(|e| format!("revocation at {url} failed: {e}"))?;
    if response.status().is_success() {
        return Ok(true);
    }
    Err(format!(
        "the authorization server refused the revocation at {url} (HTTP {}): {}",
        response.status().as_u16(),
        excerpt(response.body(), adapter.secrets())
    ))
}

/// The request body and, for `client_secret_basic`, the Authorization
/// header: the client authenticates as at the token endpoint (RFC 7009 §2.1).
fn form(
    client: &OAuthClient,
    secret: Option<&str>,
    token: &str,
    hint: &str,
) -> (String, Option<String>) {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token)
        .append_pair("token_type_hint", hint);
    let mut basic = None;
    match (secret, client.auth) {
        (Some(secret), TokenEndpointAuth::ClientSecretBasic) => {
            // RFC 6749 §2.3.1: both parts form-encoded before base64.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&client.client_id), enc(secret));
            basic = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ));
        }
        (Some(secret), _) => {
            form.append_pair("client_id", &client.client_id)
                .append_pair("client_secret", secret);
        }
        (None, _) => {
            form.append_pair("client_id", &client.client_id);
        }
    }
    (form.finish(), basic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    #[test]
    fn clients_authenticate_as_at_the_token_endpoint() {
        let public = OAuthClient::configured("app", None);
        let (body, basic) = form(&public, None, "tok en", "refresh_token");
        assert_eq!(
            body,
            "token=tok+en&token_type_hint=refresh_token&client_id=app"
        );
        assert!(basic.is_none());
        let confidential = OAuthClient::configured("a:b", Some(SecretString::from("s&t")));
        let (body, basic) = form(&confidential, Some("s&t"), "x", "access_token");
        assert_eq!(body, "token=x&token_type_hint=access_token");
        let expected = base64::engine::general_purpose::STANDARD.encode("a%3Ab:s%26t");
        assert_eq!(basic.as_deref(), Some(format!("Basic {expected}").as_str()));
    }
}
