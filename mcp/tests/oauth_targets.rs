//! Where OAuth requests may go: the `resource_metadata` of a challenge must
//! be on the MCP server's origin, and no fetch target may be more internal
//! than the MCP server itself unless the operator allow-listed its host.

mod oauth_support;

use amesh_mcp::oauth::{
    AddressClass, OAuthClient, OAuthError, OAuthHttp, PkceVerifier, TargetRefused, TokenSet,
    discover, exchange_code, refresh, register,
};
use oauth_support::{as_metadata, doc_server, http, pr_metadata, redirect_uri};
use serde_json::{Value, json};
use url::Url;

#[tokio::test]
async fn resource_metadata_on_another_origin_is_refused_before_any_request() {
    let mcp_server = doc_server(|_| vec![]).await;
    let mcp = mcp_server.base.join("/mcp").unwrap();
    // The foreign server claims the MCP server as its resource and would
    // pass every later check: only the origin gives it away.
    let resource = mcp.to_string();
    let foreign = doc_server(move |base| {
        vec![
            ("/prm".into(), 200, pr_metadata(&resource, base)),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(base),
            ),
        ]
    })
    .await;
    let challenge = format!(r#"Bearer resource_metadata="{}prm""#, foreign.base);
    let err = discover(&http(), &mcp, Some(&challenge))
        .await
        .expect_err("a resource_metadata on another origin is refused");
    let message = err.to_string();
    assert!(message.contains("origin"), "{message}");
    assert!(
        message.contains(mcp_server.base.as_str().trim_end_matches('/')),
        "{message}"
    );
    assert!(foreign.hits().is_empty(), "{:?}", foreign.hits());
    assert!(mcp_server.hits().is_empty(), "{:?}", mcp_server.hits());
}

/// The OAuth client of an MCP server on a public address (a documentation
/// address, so nothing is resolved): the test servers on loopback play
/// the internal hosts such a server's metadata might point at.
fn public_server_client(allowed_internal_hosts: &[&str]) -> OAuthHttp {
    let public_mcp = Url::parse("https://203.0.113.10/mcp").unwrap();
    let allowed: Vec<String> = allowed_internal_hosts
        .iter()
        .map(|h| h.to_string())
        .collect();
    OAuthHttp::new(&public_mcp, &allowed).unwrap()
}

/// `base` with its host spelt `localhost`, so requests go through the
/// client's resolver instead of the IP-literal check.
fn by_name(base: &str) -> String {
    base.replace("127.0.0.1", "localhost")
}

/// Documents whose URLs all use `host_of(base)`.
fn documents(host_of: fn(&str) -> String) -> impl FnOnce(&str) -> Vec<(String, u16, Value)> {
    move |base| {
        let base = host_of(base);
        vec![
            (
                "/.well-known/oauth-protected-resource/mcp".into(),
                200,
                pr_metadata(&format!("{base}/mcp"), &base),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(&base),
            ),
        ]
    }
}

fn refused(err: &OAuthError) -> &TargetRefused {
    match err {
        OAuthError::TargetRefused { refused, .. } => refused,
        other => panic!("expected TargetRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_public_mcp_server_cannot_send_amesh_to_loopback_by_name_or_address() {
    for host_of in [by_name, str::to_owned as fn(&str) -> String] {
        let docs = doc_server(documents(host_of)).await;
        let mcp = Url::parse(&host_of(docs.base.as_str()))
            .unwrap()
            .join("/mcp")
            .unwrap();
        let err = discover(&public_server_client(&[]), &mcp, None)
            .await
            .expect_err("loopback is more internal than a public server");
        let why = refused(&err);
        assert_eq!(why.class, AddressClass::Loopback, "{err}");
        assert_eq!(why.mcp_server, AddressClass::Public, "{err}");
        assert!(err.to_string().contains("allowed_internal_hosts"), "{err}");
        assert!(
            docs.hits().is_empty(),
            "nothing may be sent: {:?}",
            docs.hits()
        );
    }
}

#[tokio::test]
async fn allow_listed_hosts_are_reached_by_name_or_address() {
    for (host_of, allowed) in [
        (by_name as fn(&str) -> String, "localhost"),
        (str::to_owned, "127.0.0.1"),
    ] {
        let docs = doc_server(documents(host_of)).await;
        let mcp = Url::parse(&host_of(docs.base.as_str()))
            .unwrap()
            .join("/mcp")
            .unwrap();
        let server = discover(&public_server_client(&[allowed]), &mcp, None)
            .await
            .unwrap_or_else(|e| panic!("{allowed} is allow-listed: {e}"));
        assert_eq!(server.metadata.token_endpoint.path(), "/token");
        assert_eq!(docs.hits().len(), 2, "{:?}", docs.hits());
    }
}

#[tokio::test]
async fn the_allow_list_names_hosts_not_addresses() {
    // Metadata on the allowed name that sends amesh on to the same
    // machine under another name: refused at that hop, before it is asked.
    let docs = doc_server(|base| {
        let named = by_name(base);
        vec![
            (
                "/.well-known/oauth-protected-resource/mcp".into(),
                200,
                pr_metadata(&format!("{named}/mcp"), base),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                as_metadata(base),
            ),
        ]
    })
    .await;
    let mcp = Url::parse(&by_name(docs.base.as_str()))
        .unwrap()
        .join("/mcp")
        .unwrap();
    let err = discover(&public_server_client(&["localhost"]), &mcp, None)
        .await
        .expect_err("127.0.0.1 is not allow-listed");
    assert_eq!(refused(&err).host, "127.0.0.1");
    assert_eq!(docs.hits(), ["/.well-known/oauth-protected-resource/mcp"]);
}

#[tokio::test]
async fn registration_and_token_endpoints_are_guarded_too() {
    let docs = doc_server(|base| {
        let named = by_name(base);
        let mut metadata = as_metadata(&named);
        // Registration and token endpoints on a host the operator did not list.
        metadata["registration_endpoint"] = json!(format!("{base}/register"));
        metadata["token_endpoint"] = json!(format!("{base}/token"));
        vec![
            (
                "/.well-known/oauth-protected-resource/mcp".into(),
                200,
                pr_metadata(&format!("{named}/mcp"), &named),
            ),
            (
                "/.well-known/oauth-authorization-server".into(),
                200,
                metadata,
            ),
            ("/register".into(), 201, json!({"client_id": "c1"})),
            (
                "/token".into(),
                200,
                json!({"access_token": "a", "token_type": "Bearer"}),
            ),
        ]
    })
    .await;
    let http = public_server_client(&["localhost"]);
    let mcp = Url::parse(&by_name(docs.base.as_str()))
        .unwrap()
        .join("/mcp")
        .unwrap();
    let server = discover(&http, &mcp, None).await.unwrap();
    let err = register(&http, &server, &redirect_uri(), "amesh agent t")
        .await
        .expect_err("the registration endpoint is not allow-listed");
    assert_eq!(refused(&err).class, AddressClass::Loopback);
    let err = exchange_code(
        &http,
        &server,
        &OAuthClient::configured("c1", None),
        "code",
        &PkceVerifier::new("v".repeat(43)),
        &redirect_uri(),
        &[],
    )
    .await
    .expect_err("the token endpoint is not allow-listed");
    assert_eq!(refused(&err).class, AddressClass::Loopback);
    let tokens = TokenSet {
        access_token: "a".into(),
        refresh_token: Some("r".into()),
        token_type: "Bearer".into(),
        expires_at: None,
        scopes: vec![],
    };
    let err = refresh(
        &http,
        &server,
        &OAuthClient::configured("c1", None),
        &tokens,
    )
    .await
    .expect_err("the token endpoint is not allow-listed");
    assert!(matches!(err, OAuthError::TargetRefused { .. }), "{err}");
    let hits = docs.hits();
    assert!(
        !hits.iter().any(|h| h == "/register" || h == "/token"),
        "{hits:?}"
    );
}
