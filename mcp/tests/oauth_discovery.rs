//! Discovery and registration against hand-made servers: each test serves
//! only the documents one path of the MCP 2025-11-25 discovery order needs,
//! and checks both the result and the order in which URLs were tried.

mod oauth_support;

use amesh_mcp::oauth::{OAuthError, TokenEndpointAuth, discover, register};
use amesh_mcp::secret::ExposeSecret as _;
use oauth_support::{as_metadata, doc_server, http, pr_metadata, redirect_uri};
use serde_json::json;
use url::Url;

fn mcp_url(base: &Url, path: &str) -> Url {
    base.join(path).unwrap()
}

#[tokio::test]
async fn discovery_follows_resource_metadata_from_the_challenge() {
    let docs = doc_server(|base| {
        vec![
            (
                "/meta/prm".into(),
                200,
                pr_metadata(&format!("{base}/api/mcp"), base),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(base),
            ),
        ]
    })
    .await;
    let mcp = mcp_url(&docs.base, "/api/mcp");
    let header = format!(
        r#"Bearer error="invalid_token", resource_metadata="{}meta/prm", scope="read""#,
        docs.base
    );
    let server = discover(&http(), &mcp, Some(&header)).await.unwrap();
    assert_eq!(server.resource, format!("{}api/mcp", docs.base));
    assert_eq!(server.challenge_scopes, ["read"]);
    assert_eq!(server.select_scopes(&["write".into()]), ["read"]);
    assert_eq!(server.metadata.token_endpoint.path(), "/token");
    assert_eq!(
        docs.hits(),
        ["/meta/prm", "/.well-known/oauth-authorization-server"]
    );
}

#[tokio::test]
async fn discovery_tries_path_specific_well_known_first() {
    let docs = doc_server(|base| {
        vec![
            (
                "/.well-known/oauth-protected-resource/api/mcp".into(),
                200,
                pr_metadata(&format!("{base}/api/mcp"), base),
            ),
            (
                "/.well-known/oauth-protected-resource".into(),
                500,
                json!({}),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(base),
            ),
        ]
    })
    .await;
    let server = discover(&http(), &mcp_url(&docs.base, "/api/mcp"), None)
        .await
        .unwrap();
    assert!(server.challenge_scopes.is_empty());
    // No challenge scope, no configured scopes: the resource's scopes_supported.
    assert_eq!(server.select_scopes(&[]), ["read", "write"]);
    assert_eq!(server.select_scopes(&["x".into()]), ["x"]);
    assert_eq!(
        docs.hits(),
        [
            "/.well-known/oauth-protected-resource/api/mcp",
            "/.well-known/oauth-authorization-server"
        ]
    );
}

#[tokio::test]
async fn discovery_falls_back_to_root_well_known() {
    let docs = doc_server(|base| {
        // A resource naming the whole origin covers /api/mcp.
        vec![
            (
                "/.well-known/oauth-protected-resource".into(),
                200,
                pr_metadata(base, base),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(base),
            ),
        ]
    })
    .await;
    let server = discover(&http(), &mcp_url(&docs.base, "/api/mcp"), None)
        .await
        .unwrap();
    assert_eq!(server.resource, docs.base.as_str().trim_end_matches('/'));
    assert_eq!(
        docs.hits(),
        [
            "/.well-known/oauth-protected-resource/api/mcp",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-authorization-server"
        ]
    );
}

#[tokio::test]
async fn discovery_reaches_openid_configuration_in_2025_11_25_order() {
    let docs = doc_server(|base| {
        let issuer = format!("{base}/tenant1");
        vec![
            (
                "/.well-known/oauth-protected-resource/mcp".into(),
                200,
                pr_metadata(&format!("{base}/mcp"), &issuer),
            ),
            (
                "/tenant1/.well-known/openid-configuration".into(),
                200,
                as_metadata(&issuer),
            ),
        ]
    })
    .await;
    let server = discover(&http(), &mcp_url(&docs.base, "/mcp"), None)
        .await
        .unwrap();
    assert_eq!(server.issuer(), format!("{}tenant1", docs.base));
    assert_eq!(
        docs.hits(),
        [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-authorization-server/tenant1",
            "/.well-known/openid-configuration/tenant1",
            "/tenant1/.well-known/openid-configuration"
        ]
    );
}

#[tokio::test]
async fn server_without_resource_metadata_uses_its_origin_as_authorization_server() {
    let docs = doc_server(|base| {
        vec![(
            "/.well-known/openid-configuration".into(),
            200,
            as_metadata(base),
        )]
    })
    .await;
    let server = discover(&http(), &mcp_url(&docs.base, "/mcp"), None)
        .await
        .unwrap();
    assert_eq!(server.resource, format!("{}mcp", docs.base));
    assert!(server.resource_metadata.is_none());
    assert_eq!(
        docs.hits(),
        [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration"
        ]
    );
}

#[tokio::test]
async fn server_without_s256_is_refused() {
    for methods in [json!(null), json!(["plain"])] {
        let docs = doc_server(|base| {
            let mut metadata = as_metadata(base);
            metadata["code_challenge_methods_supported"] = methods.clone();
            vec![
                (
                    "/.well-known/oauth-protected-resource".into(),
                    200,
                    pr_metadata(base, base),
                ),
                (
                    "/.well-known/oauth-authorization-server".into(),
                    200,
                    metadata,
                ),
            ]
        })
        .await;
        let err = discover(&http(), &mcp_url(&docs.base, "/mcp"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, OAuthError::PkceUnsupported { .. }), "{err}");
        assert!(err.to_string().contains("S256"), "{err}");
    }
}

#[tokio::test]
async fn metadata_for_another_resource_or_issuer_is_refused() {
    let docs = doc_server(|base| {
        vec![
            (
                "/.well-known/oauth-protected-resource/mcp".into(),
                200,
                pr_metadata("https://elsewhere.example/mcp", base),
            ),
            (
                "/.well-known/oauth-protected-resource/other".into(),
                200,
                pr_metadata(&format!("{base}/other"), base),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata("https://evil.example"),
            ),
        ]
    })
    .await;
    let err = discover(&http(), &mcp_url(&docs.base, "/mcp"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::ResourceMismatch { .. }), "{err}");
    let err = discover(&http(), &mcp_url(&docs.base, "/other"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::IssuerMismatch { .. }), "{err}");
}

#[tokio::test]
async fn named_resource_metadata_that_is_missing_fails_with_the_url_tried() {
    let docs = doc_server(|_| vec![]).await;
    let header = format!(r#"Bearer resource_metadata="{}gone""#, docs.base);
    let err = discover(&http(), &mcp_url(&docs.base, "/mcp"), Some(&header))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, OAuthError::DiscoveryFailed { .. }));
    assert!(message.contains("/gone (HTTP 404)"), "{message}");
}

#[tokio::test]
async fn registration_sends_rfc7591_metadata_and_reads_the_answer() {
    let docs = doc_server(|base| {
        vec![
            ("/.well-known/oauth-protected-resource".into(), 200, pr_metadata(base, base)),
            ("/.well-known/oauth-authorization-server".into(), 200, as_metadata(base)),
            (
                "/register".into(),
                201,
                json!({"client_id": "c-1", "client_secret": "s-1", "token_endpoint_auth_method": "client_secret_post"}),
            ),
        ]
    })
    .await;
    let server = discover(&http(), &mcp_url(&docs.base, "/mcp"), None)
        .await
        .unwrap();
    let registration = register(&http(), &server, &redirect_uri(), "amesh agent a")
        .await
        .unwrap();
    assert_eq!(registration.client_id, "c-1");
    assert_eq!(
        registration.client_secret.as_ref().unwrap().expose_secret(),
        "s-1"
    );
    assert_eq!(registration.auth, TokenEndpointAuth::ClientSecretPost);
    let debug = format!("{registration:?}");
    assert!(!debug.contains("s-1"), "{debug}");
}

#[tokio::test]
async fn registration_refusals_are_precise() {
    let docs = doc_server(|base| {
        let mut no_registration = as_metadata(&format!("{base}/t2"));
        no_registration
            .as_object_mut()
            .unwrap()
            .remove("registration_endpoint");
        vec![
            (
                "/.well-known/oauth-protected-resource/a".into(),
                200,
                pr_metadata(&format!("{base}/a"), base),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(base),
            ),
            (
                "/register".into(),
                400,
                json!({"error": "invalid_redirect_uri", "error_description": "not allowed"}),
            ),
            (
                "/.well-known/oauth-protected-resource/b".into(),
                200,
                pr_metadata(&format!("{base}/b"), &format!("{base}/t2")),
            ),
            (
                "/.well-known/oauth-authorization-server/t2".into(),
                200,
                no_registration,
            ),
        ]
    })
    .await;
    let a = discover(&http(), &mcp_url(&docs.base, "/a"), None)
        .await
        .unwrap();
    let err = register(&http(), &a, &redirect_uri(), "amesh agent a")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OAuthError::RegistrationRefused { error, status: 400, .. } if error == "invalid_redirect_uri"),
        "{err}"
    );
    let b = discover(&http(), &mcp_url(&docs.base, "/b"), None)
        .await
        .unwrap();
    let err = register(&http(), &b, &redirect_uri(), "amesh agent a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, OAuthError::RegistrationUnsupported { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("client_id"), "{err}");
}
