//! Metadata documents and the well-known URLs they live at.
//!
//! Two documents drive discovery: the MCP server's Protected Resource
//! Metadata (RFC 9728) names its authorization servers, and each
//! authorization server's metadata (RFC 8414, or OpenID Connect Discovery)
//! names its endpoints. The URL builders here encode the MCP 2025-11-25
//! order of well-known locations, so the order is tested in one place.
//! The types are `Serialize` because the caller keeps the discovered server
//! with the pending flow (any agent replica may finish it).

use serde::{Deserialize, Serialize};
use url::Url;

use super::endpoint::endpoint_url;
use super::error::OAuthError;

/// RFC 9728 Protected Resource Metadata (the fields an MCP client uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The protected resource's identifier (an https URL without fragment).
    pub resource: String,
    /// Issuer URLs of the authorization servers that protect the resource.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes the resource understands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// How the resource accepts tokens (`header`, `body`, `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_methods_supported: Option<Vec<String>>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

impl ProtectedResourceMetadata {
    /// Checks every `authorization_servers` entry with [`endpoint_url`]: a
    /// document naming one hostile server is refused whole.
    pub fn check_urls(&self) -> Result<(), OAuthError> {
        for issuer in &self.authorization_servers {
            endpoint_url("authorization_servers", issuer)?;
        }
        Ok(())
    }
}

/// RFC 8414 Authorization Server Metadata (also read from OpenID Connect
/// Discovery documents, which share these field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier; must equal the URL the document was derived from.
    pub issuer: String,
    /// Where the user is sent to consent.
    pub authorization_endpoint: Url,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: Url,
    /// RFC 7591 dynamic client registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<Url>,
    /// RFC 7009 token revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<Url>,
    /// Scopes the server knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `code`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// `authorization_code`, `refresh_token`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// PKCE methods; MCP requires `S256` to be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// `none`, `client_secret_basic`, `client_secret_post`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the server puts `iss` in every authorization response, so
    /// a response without it is refused ([`super::check_response_issuer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// The server accepts a URL `client_id` and fetches the client's
    /// metadata there ([`super::client_metadata_url`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
}

impl AuthorizationServerMetadata {
    /// True when the server advertises PKCE with `S256`.
    pub fn supports_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| methods.iter().any(|m| m == "S256"))
    }

    /// Checks the issuer and every endpoint with [`endpoint_url`], the
    /// unused `revocation_endpoint` too: a server that names a `javascript:`
    /// URL anywhere is not one to send users or secrets to.
    pub fn check_urls(&self) -> Result<(), OAuthError> {
        endpoint_url("issuer", &self.issuer)?;
        let endpoints = [
            ("authorization_endpoint", Some(&self.authorization_endpoint)),
            ("token_endpoint", Some(&self.token_endpoint)),
            ("registration_endpoint", self.registration_endpoint.as_ref()),
            ("revocation_endpoint", self.revocation_endpoint.as_ref()),
        ];
        for (field, url) in endpoints {
            if let Some(url) = url {
                endpoint_url(field, url.as_str())?;
            }
        }
        Ok(())
    }
}

/// The canonical URI of an MCP server (RFC 8707 `resource`, MCP §"Canonical
/// Server URI"): lowercase scheme and host (the `url` crate does that), no
/// fragment, no query, and no trailing slash unless it is part of a path.
pub fn canonical_resource(url: &Url) -> String {
    let mut url = url.clone();
    url.set_fragment(None);
    url.set_query(None);
    let text = url.to_string();
    if url.path() == "/" {
        text.trim_end_matches('/').to_owned()
    } else {
        text
    }
}

/// RFC 9728 §3.1 well-known URLs for a resource, in the order MCP clients
/// try them: path-specific first (when the URL has a path), then the root.
pub fn protected_resource_metadata_urls(mcp_url: &Url) -> Vec<Url> {
    let path = mcp_url.path().trim_end_matches('/');
    let mut urls = Vec::with_capacity(2);
    if !path.is_empty() {
        urls.push(with_path(
            mcp_url,
            &format!("/.well-known/oauth-protected-resource{path}"),
        ));
    }
    urls.push(with_path(mcp_url, "/.well-known/oauth-protected-resource"));
    urls
}

/// Authorization server metadata URLs for an issuer, in the MCP 2025-11-25
/// order. With a path (`https://auth.example.com/tenant1`):
/// RFC 8414 path insertion, OpenID Connect path insertion, OpenID Connect
/// path appending. Without a path: RFC 8414, then OpenID Connect.
pub fn authorization_server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            with_path(issuer, "/.well-known/oauth-authorization-server"),
            with_path(issuer, "/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            with_path(
                issuer,
                &format!("/.well-known/oauth-authorization-server{path}"),
            ),
            with_path(issuer, &format!("/.well-known/openid-configuration{path}")),
            with_path(issuer, &format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

/// Same origin as `base`, with `path` and nothing after it.
fn with_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// RFC 9728 §3.3 / §7.3 check, relaxed the way MCP clients relax it: the
/// metadata's `resource` must be on the same origin as the MCP URL and its
/// path must be the MCP URL's path or a parent of it on a segment boundary
/// (a server may name `https://host` as the resource for `https://host/mcp`).
pub fn resource_covers(resource: &Url, mcp_url: &Url) -> bool {
    if resource.origin() != mcp_url.origin() {
        return false;
    }
    let parent = resource.path().trim_end_matches('/');
    let child = mcp_url.path().trim_end_matches('/');
    child == parent || child.starts_with(&format!("{parent}/"))
}

/// Compares issuer identifiers, ignoring one trailing slash.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn resource_metadata_urls_path_specific_then_root() {
        let urls = protected_resource_metadata_urls(&url("https://mcp.example.com/public/mcp?x=1"));
        let urls: Vec<_> = urls.iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        let root = protected_resource_metadata_urls(&url("https://mcp.example.com/"));
        assert_eq!(root.len(), 1);
    }

    #[test]
    fn authorization_server_urls_follow_the_2025_11_25_order() {
        let with_path: Vec<_> =
            authorization_server_metadata_urls(&url("https://auth.example.com/tenant1"))
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(
            with_path,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let root: Vec<_> = authorization_server_metadata_urls(&url("https://auth.example.com"))
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            root,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn canonical_resource_drops_fragment_query_and_root_slash() {
        assert_eq!(
            canonical_resource(&url("HTTPS://MCP.Example.com/")),
            "https://mcp.example.com"
        );
        assert_eq!(
            canonical_resource(&url("https://mcp.example.com:8443/mcp?x=1#f")),
            "https://mcp.example.com:8443/mcp"
        );
    }

    #[test]
    fn resource_covers_same_origin_parent_paths_only() {
        let mcp = url("https://h.example/api/mcp");
        assert!(resource_covers(&url("https://h.example/api/mcp"), &mcp));
        assert!(resource_covers(&url("https://h.example"), &mcp));
        assert!(resource_covers(&url("https://h.example/api/"), &mcp));
        assert!(!resource_covers(&url("https://h.example/ap"), &mcp));
        assert!(!resource_covers(
            &url("https://other.example/api/mcp"),
            &mcp
        ));
        assert!(!resource_covers(&url("http://h.example/api/mcp"), &mcp));
    }
}
