//! amesh's OAuth Client ID Metadata Document (draft-ietf-oauth-client-id-
//! metadata-document; MCP authorization 2026-07-28 prefers it over dynamic
//! registration).
//!
//! The client identifier is a URL; the authorization server fetches it and
//! reads the client's metadata there, so there is no registration to store,
//! to lose when a provider restarts, or to keep per issuer. Every agent of a
//! deployment returns users through the same gateway callback, so the
//! gateway serves one document beside that callback and every agent uses
//! its URL as `client_id` with a server that advertises
//! `client_id_metadata_document_supported`. Both sides derive the URL from
//! the callback's origin with the functions here, so they cannot disagree.

use serde_json::{Value, json};
use url::Url;

use super::redirect::{CALLBACK_PATH, is_loopback};
use super::register::application_type;

/// The gateway route that serves the document, beside [`CALLBACK_PATH`].
pub const CLIENT_METADATA_PATH: &str = "/api/v1/auth/tool/client-metadata";

/// The name an authorization server shows on its consent page.
const CLIENT_NAME: &str = "amesh";

/// The `client_id` for the gateway at `redirect_uri`'s origin: the
/// document's URL. `None` when that URL would be neither https nor http to
/// this machine (the draft requires https; a loopback gateway is a
/// developer's, as for redirect URIs).
pub fn client_metadata_url(redirect_uri: &Url) -> Option<Url> {
    let allowed = match redirect_uri.scheme() {
        "https" => true,
        "http" => is_loopback(redirect_uri),
        _ => false,
    };
    if !allowed || redirect_uri.host().is_none() {
        return None;
    }
    let mut url = redirect_uri.clone();
    url.set_path(CLIENT_METADATA_PATH);
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// The document the gateway serves at `client_id`: a public client (PKCE
/// is its proof, so no secret and `none` at the token endpoint) whose one
/// redirect URI is the gateway's callback on the same origin.
pub fn client_metadata_document(client_id: &Url) -> Value {
    let mut redirect_uri = client_id.clone();
    redirect_uri.set_path(CALLBACK_PATH);
    let application_type = application_type(&redirect_uri);
    json!({
        "client_id": client_id.as_str(),
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri.as_str()],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": application_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_url_sits_beside_the_callback_and_names_it() {
        let redirect = Url::parse("https://gw.example/api/v1/auth/tool/callback").unwrap();
        let id = client_metadata_url(&redirect).expect("https");
        assert_eq!(
            id.as_str(),
            "https://gw.example/api/v1/auth/tool/client-metadata"
        );
        let doc = client_metadata_document(&id);
        assert_eq!(doc["client_id"], id.as_str());
        assert_eq!(doc["redirect_uris"][0], redirect.as_str());
        assert_eq!(doc["token_endpoint_auth_method"], "none");
        assert_eq!(doc["application_type"], "web");
    }

    #[test]
    fn plain_http_is_only_for_a_gateway_on_this_machine() {
        let local = Url::parse("http://127.0.0.1:8000/api/v1/auth/tool/callback").unwrap();
        let id = client_metadata_url(&local).expect("loopback");
        assert_eq!(client_metadata_document(&id)["application_type"], "native");
        let remote = Url::parse("http://gw.example/api/v1/auth/tool/callback").unwrap();
        assert_eq!(client_metadata_url(&remote), None);
    }
}
