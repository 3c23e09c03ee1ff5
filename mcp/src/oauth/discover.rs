//! From a 401 to a usable authorization server (MCP authorization spec,
//! 2025-06-18, with the 2025-11-25 discovery order).
//!
//! 1. Protected Resource Metadata (RFC 9728): the URL in the challenge's
//!    `resource_metadata` (only on the MCP server's origin), else the
//!    path-specific well-known URL, else the root one. Servers from before
//!    RFC 9728 (MCP 2025-03-26) have none; then the MCP server's origin is
//!    taken as the authorization server.
//! 2. Authorization server metadata: RFC 8414 and OpenID Connect Discovery
//!    URLs in the order of [`authorization_server_metadata_urls`].
//! 3. Checks: every URL in both documents is https, or http to a loopback
//!    host ([`endpoint_url`]); the resource covers the MCP URL, the issuer
//!    matches, PKCE S256 is advertised, no endpoint downgrades an https
//!    server to http.
//!
//! Every fetch goes through the MCP server's [`OAuthHttp`], which refuses
//! targets more internal than the MCP server and caps every answer.
//!
//! Configured endpoints (`authorization_url`/`token_url` in the tool's
//! `auth:` block) skip all of it: [`AuthServer::configured`].

use serde::{Deserialize, Serialize};
use url::Url;

use super::challenge::{BearerChallenge, split_scopes};
use super::endpoint::endpoint_url;
use super::error::OAuthError;
use super::http::{Fetched, OAuthHttp, get_json};
use super::metadata::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, authorization_server_metadata_urls,
    canonical_resource, protected_resource_metadata_urls, resource_covers, same_issuer,
};

/// Everything the flow needs to know about an MCP server's authorization
/// server. Plain data: the caller stores it with the pending flow so any
/// agent replica can finish the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthServer {
    /// RFC 8707 `resource` sent on authorization, token and refresh
    /// requests: the resource metadata's `resource`, else the MCP server's
    /// canonical URI.
    pub resource: String,
    /// The authorization server's endpoints and capabilities.
    pub metadata: AuthorizationServerMetadata,
    /// The MCP server's resource metadata, when it publishes one.
    pub resource_metadata: Option<ProtectedResourceMetadata>,
    /// Scopes named by the server's challenge (`scope` in `WWW-Authenticate`).
    pub challenge_scopes: Vec<String>,
    /// The issuer was not discovered but assumed (the authorization
    /// endpoint's origin, for configured endpoints): an `iss` in the
    /// authorization response cannot be checked against it
    /// ([`super::check_response_issuer`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub issuer_assumed: bool,
}

impl AuthServer {
    /// An authorization server from configuration, without discovery.
    /// Configured endpoints are trusted to do PKCE S256; config validation
    /// has passed them through [`endpoint_url`].
    pub fn configured(mcp_url: &Url, authorization_url: Url, token_url: Url) -> Self {
        let issuer = authorization_url.origin().ascii_serialization();
        Self {
            resource: canonical_resource(mcp_url),
            metadata: AuthorizationServerMetadata {
                issuer,
                authorization_endpoint: authorization_url,
                token_endpoint: token_url,
                registration_endpoint: None,
                revocation_endpoint: None,
                scopes_supported: None,
                response_types_supported: Some(vec!["code".into()]),
                grant_types_supported: None,
                code_challenge_methods_supported: Some(vec!["S256".into()]),
                token_endpoint_auth_methods_supported: None,
                authorization_response_iss_parameter_supported: None,
                client_id_metadata_document_supported: None,
            },
            resource_metadata: None,
            challenge_scopes: Vec::new(),
            issuer_assumed: true,
        }
    }

    /// Replaces discovered endpoints with configured ones (either may be set,
    /// each checked by config validation with [`endpoint_url`]).
    pub fn with_overrides(
        mut self,
        authorization_url: Option<Url>,
        token_url: Option<Url>,
    ) -> Self {
        if let Some(url) = authorization_url {
            self.metadata.authorization_endpoint = url;
        }
        if let Some(url) = token_url {
            self.metadata.token_endpoint = url;
        }
        self
    }

    /// The scopes to ask for: the challenge's, else the configured ones,
    /// else the resource metadata's `scopes_supported` (MCP "scope selection
    /// strategy"); empty means "omit the scope parameter".
    pub fn select_scopes(&self, configured: &[String]) -> Vec<String> {
        if !self.challenge_scopes.is_empty() {
            return self.challenge_scopes.clone();
        }
        if !configured.is_empty() {
            return configured.to_vec();
        }
        self.resource_metadata
            .as_ref()
            .and_then(|m| m.scopes_supported.clone())
            .unwrap_or_default()
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
    }
}

/// Discovers the authorization server of `mcp_url`, given the
/// `WWW-Authenticate` value of its 401 (or 403) if there was one.
pub async fn discover(
    http: &OAuthHttp,
    mcp_url: &Url,
    www_authenticate: Option<&str>,
) -> Result<AuthServer, OAuthError> {
    let challenge = www_authenticate.and_then(BearerChallenge::from_header);
    let challenge_scopes = challenge
        .as_ref()
        .and_then(|c| c.scope.as_deref())
        .map(split_scopes)
        .unwrap_or_default();
    let mut tried = Vec::new();

    let resource_metadata =
        fetch_resource_metadata(http, mcp_url, challenge.as_ref(), &mut tried).await?;
    let (resource, issuer) = match &resource_metadata {
        Some((url, prm)) => {
            prm.check_urls()
                .map_err(|e| e.in_document("protected resource metadata", url))?;
            let resource = check_resource(url, prm, mcp_url)?;
            let issuer = prm.authorization_servers.first().ok_or_else(|| {
                OAuthError::NoAuthorizationServer {
                    url: url.to_string(),
                }
            })?;
            let issuer = endpoint_url("authorization_servers", issuer)?;
            (resource, issuer)
        }
        // MCP 2025-03-26 servers: the MCP server's origin is the authorization server.
        None => {
            let origin = Url::parse(&mcp_url.origin().ascii_serialization()).map_err(|e| {
                OAuthError::InvalidUrl {
                    what: "MCP server origin",
                    value: mcp_url.to_string(),
                    reason: e.to_string(),
                }
            })?;
            (canonical_resource(mcp_url), origin)
        }
    };

    let (metadata_url, metadata) = fetch_server_metadata(http, &issuer, &mut tried)
        .await?
        .ok_or_else(|| OAuthError::DiscoveryFailed {
            mcp_url: mcp_url.to_string(),
            tried: tried.clone(),
        })?;
    metadata
        .check_urls()
        .map_err(|e| e.in_document("authorization server metadata", &metadata_url))?;
    let expected_issuer = canonical_resource(&issuer);
    if !same_issuer(&metadata.issuer, &expected_issuer) {
        return Err(OAuthError::IssuerMismatch {
            url: metadata_url.to_string(),
            expected: expected_issuer,
            found: metadata.issuer,
        });
    }
    if !metadata.supports_s256() {
        return Err(OAuthError::PkceUnsupported {
            issuer: metadata.issuer.clone(),
            methods: metadata
                .code_challenge_methods_supported
                .clone()
                .unwrap_or_default(),
        });
    }
    check_no_downgrade(mcp_url, &metadata)?;

    Ok(AuthServer {
        resource,
        metadata,
        resource_metadata: resource_metadata.map(|(_, prm)| prm),
        challenge_scopes,
        issuer_assumed: false,
    })
}

async fn fetch_resource_metadata(
    http: &OAuthHttp,
    mcp_url: &Url,
    challenge: Option<&BearerChallenge>,
    tried: &mut Vec<String>,
) -> Result<Option<(Url, ProtectedResourceMetadata)>, OAuthError> {
    if let Some(link) = challenge.and_then(|c| c.resource_metadata.as_deref()) {
        // The server named its document: it must be there, and on its own
        // origin (RFC 9728 allows elsewhere; amesh does not follow a 401
        // to another host).
        let url = parse_url("resource_metadata in WWW-Authenticate", link)?;
        if url.origin() != mcp_url.origin() {
            return Err(OAuthError::ForeignResourceMetadata {
                url: url.to_string(),
                origin: mcp_url.origin().ascii_serialization(),
            });
        }
        return match get_json(http, &url, "protected resource metadata").await? {
            Fetched::Found(prm) => Ok(Some((url, prm))),
            Fetched::Missing(status) => Err(OAuthError::DiscoveryFailed {
                mcp_url: mcp_url.to_string(),
                tried: vec![format!("{url} ({status})")],
            }),
        };
    }
    for url in protected_resource_metadata_urls(mcp_url) {
        match get_json(http, &url, "protected resource metadata").await? {
            Fetched::Found(prm) => return Ok(Some((url, prm))),
            Fetched::Missing(status) => tried.push(format!("{url} ({status})")),
        }
    }
    Ok(None)
}

async fn fetch_server_metadata(
    http: &OAuthHttp,
    issuer: &Url,
    tried: &mut Vec<String>,
) -> Result<Option<(Url, AuthorizationServerMetadata)>, OAuthError> {
    for url in authorization_server_metadata_urls(issuer) {
        match get_json(http, &url, "authorization server metadata").await? {
            Fetched::Found(metadata) => return Ok(Some((url, metadata))),
            Fetched::Missing(status) => tried.push(format!("{url} ({status})")),
        }
    }
    Ok(None)
}

/// The RFC 8707 resource for the flow, once the metadata is known to be
/// about this MCP server.
fn check_resource(
    metadata_url: &Url,
    prm: &ProtectedResourceMetadata,
    mcp_url: &Url,
) -> Result<String, OAuthError> {
    let mismatch = || OAuthError::ResourceMismatch {
        url: metadata_url.to_string(),
        expected: mcp_url.to_string(),
        found: prm.resource.clone(),
    };
    let resource = Url::parse(&prm.resource).map_err(|_| mismatch())?;
    if !resource_covers(&resource, mcp_url) {
        return Err(mismatch());
    }
    // The server's own spelling: it is what its authorization server expects.
    Ok(prm.resource.clone())
}

/// MCP requires https endpoints. Plain http is accepted only where the MCP
/// server itself is plain http (local and compose setups), never as a
/// downgrade from an https MCP server.
fn check_no_downgrade(
    mcp_url: &Url,
    metadata: &AuthorizationServerMetadata,
) -> Result<(), OAuthError> {
    if mcp_url.scheme() != "https" {
        return Ok(());
    }
    let endpoints = [
        (
            "authorization_endpoint",
            Some(&metadata.authorization_endpoint),
        ),
        ("token_endpoint", Some(&metadata.token_endpoint)),
        (
            "registration_endpoint",
            metadata.registration_endpoint.as_ref(),
        ),
        ("revocation_endpoint", metadata.revocation_endpoint.as_ref()),
    ];
    for (what, url) in endpoints {
        if let Some(url) = url
            && url.scheme() != "https"
        {
            return Err(OAuthError::InsecureEndpoint {
                what,
                url: url.to_string(),
            });
        }
    }
    Ok(())
}

fn parse_url(what: &'static str, value: &str) -> Result<Url, OAuthError> {
    Url::parse(value).map_err(|e| OAuthError::InvalidUrl {
        what,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(endpoint_scheme: &str) -> AuthorizationServerMetadata {
        let url =
            |path: &str| Url::parse(&format!("{endpoint_scheme}://auth.example{path}")).unwrap();
        AuthServer::configured(&url("/mcp"), url("/authorize"), url("/token")).metadata
    }

    #[test]
    fn https_server_with_http_endpoints_is_a_refused_downgrade() {
        let https_mcp = Url::parse("https://mcp.example/mcp").unwrap();
        let err = check_no_downgrade(&https_mcp, &metadata("http")).unwrap_err();
        assert!(matches!(
            err,
            OAuthError::InsecureEndpoint {
                what: "authorization_endpoint",
                ..
            }
        ));
        assert!(check_no_downgrade(&https_mcp, &metadata("https")).is_ok());
        let http_mcp = Url::parse("http://demo-provider:8090/mcp").unwrap();
        assert!(check_no_downgrade(&http_mcp, &metadata("http")).is_ok());
    }

    #[test]
    fn configured_server_needs_no_discovery() {
        let mcp = Url::parse("https://mcp.example/mcp/").unwrap();
        let auth = Url::parse("https://auth.example/oauth/authorize").unwrap();
        let token = Url::parse("https://auth.example/oauth/token").unwrap();
        let server = AuthServer::configured(&mcp, auth, token.clone());
        assert_eq!(server.resource, "https://mcp.example/mcp/");
        assert!(server.metadata.supports_s256());
        assert_eq!(server.metadata.token_endpoint, token);
        let overridden =
            server.with_overrides(None, Some(Url::parse("https://t.example/x").unwrap()));
        assert_eq!(
            overridden.metadata.token_endpoint.as_str(),
            "https://t.example/x"
        );
    }
}
