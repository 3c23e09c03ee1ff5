//! Hostile metadata servers: an authorization server (or a protected
//! resource) that names a `javascript:`, `data:`, `file:` or `ftp:` URL, or
//! plain http to a host that is not this machine, is refused by discovery
//! with an error naming the field and the scheme. An authorization endpoint
//! becomes the link a user's browser opens from the gateway's page, so a
//! `javascript:` one would run in the gateway's origin.

mod oauth_support;

use amesh_mcp::oauth::{AuthServer, OAuthError, discover};
use oauth_support::{as_metadata, doc_server, http, pr_metadata};
use serde_json::{Value, json};

/// Runs discovery against a server whose authorization server metadata is
/// `as_doc(base)` and whose resource metadata names `issuers(base)`.
async fn discover_against(
    issuers: impl FnOnce(&str) -> Value,
    as_doc: impl FnOnce(&str) -> Value,
) -> (Result<AuthServer, OAuthError>, Vec<String>) {
    let docs = doc_server(|base| {
        let mut prm = pr_metadata(base, base);
        prm["authorization_servers"] = issuers(base);
        vec![
            ("/.well-known/oauth-protected-resource".into(), 200, prm),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_doc(base),
            ),
        ]
    })
    .await;
    let mcp = docs.base.join("/mcp").unwrap();
    let result = discover(&http(), &mcp, None).await;
    (result, docs.hits())
}

fn hostile(field: &'static str, value: &'static str) -> impl FnOnce(&str) -> Value {
    move |base| {
        let mut doc = as_metadata(base);
        doc[field] = json!(value);
        doc
    }
}

#[tokio::test]
async fn authorization_server_metadata_with_non_https_endpoints_is_refused() {
    for (field, value, found) in [
        (
            "authorization_endpoint",
            "javascript:fetch('/api/v1/auth/me')",
            r#"scheme "javascript""#,
        ),
        (
            "token_endpoint",
            "data:text/html,<script>alert(1)</script>",
            r#"scheme "data""#,
        ),
        (
            "registration_endpoint",
            "file:///etc/passwd",
            r#"scheme "file""#,
        ),
        (
            "revocation_endpoint",
            "ftp://auth.example/revoke",
            r#"scheme "ftp""#,
        ),
        (
            "authorization_endpoint",
            "http://auth.example/authorize",
            r#"http to "auth.example", which is not a loopback host"#,
        ),
        ("issuer", "javascript:alert(1)", r#"scheme "javascript""#),
    ] {
        let (result, _) = discover_against(|base| json!([base]), hostile(field, value)).await;
        let err = result.expect_err(&format!("{field} = {value} must be refused"));
        let message = err.to_string();
        assert!(
            matches!(&err, OAuthError::UnsafeEndpoint { field: f, .. } if *f == field),
            "{field}: {err:?}"
        );
        assert!(message.contains(field), "{message}");
        assert!(message.contains(found), "{message}");
        assert!(message.contains("must use https"), "{message}");
        assert!(
            message.contains("/.well-known/oauth-authorization-server"),
            "the error names the document: {message}"
        );
    }
}

#[tokio::test]
async fn resource_metadata_naming_a_non_https_authorization_server_is_refused() {
    for (issuer, found) in [
        (
            "javascript:alert(document.cookie)",
            r#"scheme "javascript""#,
        ),
        (
            "http://auth.example",
            r#"http to "auth.example", which is not a loopback host"#,
        ),
    ] {
        let (result, hits) = discover_against(
            // A good server first does not excuse a hostile one after it.
            |base| json!([base, issuer]),
            as_metadata,
        )
        .await;
        let err = result.expect_err(&format!("{issuer} must be refused"));
        let message = err.to_string();
        assert!(
            matches!(
                &err,
                OAuthError::UnsafeEndpoint {
                    field: "authorization_servers",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(message.contains(found), "{message}");
        assert!(message.contains("must use https"), "{message}");
        assert_eq!(
            hits,
            [
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ],
            "no authorization server metadata is fetched for a refused document"
        );
    }
}

#[tokio::test]
async fn http_endpoints_on_loopback_hosts_are_accepted() {
    let (result, _) = discover_against(
        |base| json!([base]),
        |base| {
            let mut doc = as_metadata(base);
            doc["authorization_endpoint"] = json!("http://localhost:9100/authorize");
            doc["token_endpoint"] = json!("http://[::1]:9100/token");
            doc["revocation_endpoint"] = json!("http://127.5.6.7/revoke");
            doc["registration_endpoint"] = json!("https://auth.example/register");
            doc
        },
    )
    .await;
    let server = result.expect("loopback http and https endpoints are fine");
    assert_eq!(
        server.metadata.authorization_endpoint.as_str(),
        "http://localhost:9100/authorize"
    );
}
