//! The OAuth client against the demo provider, end to end: 401 → discovery
//! → registration → consent (driven like a browser) → code exchange →
//! authenticated MCP calls → refresh with rotation → revocation.

mod oauth_support;

use std::time::Duration;

use amesh_demo::DemoOptions;
use amesh_mcp::oauth::{
    AuthServer, BearerChallenge, OAuthClient, OAuthError, TokenEndpointAuth, authorization_request,
    discover, exchange_code, refresh, register,
};
use amesh_mcp::secret::{ExposeSecret as _, SecretString};
use oauth_support::{
    call_tool, consent, demo, demo_with, full_flow, http, initialize, mcp_post, query, redirect_uri,
};
use serde_json::{Value, json};

#[tokio::test]
async fn full_code_flow_reaches_the_tools_as_the_consenting_user() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "alice", &[]).await;

    // RFC 8707: the resource is the MCP endpoint, sent on the token request.
    assert_eq!(flow.server.resource, demo.mcp_url().as_str());
    assert_eq!(
        demo.last_resource().as_deref(),
        Some(demo.mcp_url().as_str())
    );
    assert_eq!(demo.registrations(), 1);
    assert_eq!(demo.code_exchanges(), 1);
    // No challenge scope, none configured: the resource's scopes_supported.
    assert_eq!(flow.scopes, ["mcp", "profile"]);
    assert_eq!(flow.tokens.scopes, ["mcp", "profile"]);
    assert_eq!(flow.tokens.token_type, "Bearer");
    assert!(flow.tokens.refresh_token.is_some());
    assert!(!flow.tokens.expires_within(Duration::from_secs(60)));
    assert!(!format!("{:?}", flow.tokens).contains(flow.tokens.access_token.expose_secret()));

    let init = mcp_post(&http, &demo.mcp_url(), Some(&flow.tokens), &initialize()).await;
    assert_eq!(init.status(), 200);
    assert!(init.headers().contains_key("mcp-session-id"));
    let whoami = mcp_post(
        &http,
        &demo.mcp_url(),
        Some(&flow.tokens),
        &call_tool(2, "whoami", json!({})),
    )
    .await;
    let whoami: Value = whoami.json().await.unwrap();
    assert_eq!(whoami["result"]["content"][0]["text"], "You are alice");
    let profile = mcp_post(
        &http,
        &demo.mcp_url(),
        Some(&flow.tokens),
        &call_tool(3, "profile", json!({})),
    )
    .await;
    let profile: Value = profile.json().await.unwrap();
    assert_eq!(
        profile["result"]["structuredContent"]["email"],
        "alice@demo.amesh.invalid"
    );
}

#[tokio::test]
async fn authorization_url_carries_pkce_s256_state_scope_and_resource() {
    let demo = demo().await;
    let http = http();
    let server = discover(&http, &demo.mcp_url(), None).await.unwrap();
    let client = OAuthClient::configured("some-client", None);
    let (url, verifier) =
        authorization_request(&server, &client, &redirect_uri(), &["mcp".into()], "st");
    let params = query(&url);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["state"], "st");
    assert_eq!(params["scope"], "mcp");
    assert_eq!(params["resource"], demo.mcp_url().as_str());
    assert_eq!(params["redirect_uri"], redirect_uri().as_str());
    assert!((43..=128).contains(&verifier.expose().len()));
    assert!(!params["code_challenge"].contains(verifier.expose()));
    // A fresh verifier each time.
    let (_, other) = authorization_request(&server, &client, &redirect_uri(), &[], "st");
    assert_ne!(other.expose(), verifier.expose());
    assert!(
        !query(&authorization_request(&server, &client, &redirect_uri(), &[], "st").0)
            .contains_key("scope")
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_dead() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "bob", &["mcp".into()]).await;
    assert_eq!(flow.tokens.scopes, ["mcp"]);

    demo.expire_access_tokens();
    let expired = mcp_post(&http, &demo.mcp_url(), Some(&flow.tokens), &initialize()).await;
    assert_eq!(expired.status(), 401);
    let challenge =
        BearerChallenge::from_header(expired.headers()["www-authenticate"].to_str().unwrap())
            .unwrap();
    assert_eq!(challenge.error.as_deref(), Some("invalid_token"));

    let refreshed = refresh(&http, &flow.server, &flow.client, &flow.tokens)
        .await
        .unwrap();
    assert!(refreshed.rotated);
    assert_ne!(
        refreshed
            .tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret()),
        flow.tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret())
    );
    assert_eq!(refreshed.tokens.scopes, ["mcp"]);
    assert_eq!(demo.refreshes(), 1);
    assert_eq!(
        demo.last_resource().as_deref(),
        Some(demo.mcp_url().as_str())
    );
    let ok = mcp_post(
        &http,
        &demo.mcp_url(),
        Some(&refreshed.tokens),
        &call_tool(1, "whoami", json!({})),
    )
    .await;
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["result"]["content"][0]["text"], "You are bob");

    // Reusing the rotated-out refresh token fails and asks for a new flow.
    let err = refresh(&http, &flow.server, &flow.client, &flow.tokens)
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err}");
    assert!(matches!(&err, OAuthError::TokenRefused { error, .. } if error == "invalid_grant"));
}

#[tokio::test]
async fn refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "carol", &[]).await;
    demo.set_issue_refresh_tokens(false);
    let first = refresh(&http, &flow.server, &flow.client, &flow.tokens)
        .await
        .unwrap();
    assert!(!first.rotated);
    assert_eq!(
        first
            .tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret()),
        flow.tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret())
    );
    let second = refresh(&http, &flow.server, &flow.client, &first.tokens)
        .await
        .unwrap();
    assert_eq!(demo.refreshes(), 2);
    assert_ne!(
        second.tokens.access_token.expose_secret(),
        first.tokens.access_token.expose_secret()
    );

    let no_refresh = amesh_mcp::oauth::TokenSet {
        refresh_token: None,
        ..second.tokens
    };
    let err = refresh(&http, &flow.server, &flow.client, &no_refresh)
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::NoRefreshToken));
}

#[tokio::test]
async fn denied_consent_redirects_with_access_denied_and_state() {
    let demo = demo().await;
    let http = http();
    let server = discover(&http, &demo.mcp_url(), None).await.unwrap();
    let client = register(&http, &server, &redirect_uri(), "amesh agent t")
        .await
        .unwrap()
        .client();
    let (url, _) = authorization_request(&server, &client, &redirect_uri(), &[], "st-9");
    let callback = consent(&http, &url, "alice", false).await;
    let params = query(&callback);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-9");
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn wrong_verifier_or_redirect_uri_or_reused_code_is_invalid_grant() {
    let demo = demo().await;
    let http = http();
    let server = discover(&http, &demo.mcp_url(), None).await.unwrap();
    let client = register(&http, &server, &redirect_uri(), "amesh agent t")
        .await
        .unwrap()
        .client();
    let scopes = vec!["mcp".to_owned()];

    let (url, _verifier) = authorization_request(&server, &client, &redirect_uri(), &scopes, "s");
    let code = query(&consent(&http, &url, "alice", true).await)["code"].clone();
    let (_, wrong) = authorization_request(&server, &client, &redirect_uri(), &scopes, "s");
    let err = exchange_code(
        &http,
        &server,
        &client,
        &code,
        &wrong,
        &redirect_uri(),
        &scopes,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, OAuthError::TokenRefused { error, .. } if error == "invalid_grant"),
        "{err}"
    );

    let (url, verifier) = authorization_request(&server, &client, &redirect_uri(), &scopes, "s");
    let code = query(&consent(&http, &url, "alice", true).await)["code"].clone();
    let other_redirect = url::Url::parse("http://localhost:9/api/v1/auth/tool/callback").unwrap();
    let err = exchange_code(
        &http,
        &server,
        &client,
        &code,
        &verifier,
        &other_redirect,
        &scopes,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, OAuthError::TokenRefused { error, .. } if error == "invalid_grant"),
        "{err}"
    );
    // The code was consumed by the failed attempt.
    let err = exchange_code(
        &http,
        &server,
        &client,
        &code,
        &verifier,
        &redirect_uri(),
        &scopes,
    )
    .await
    .unwrap_err();
    assert!(err.needs_reauthorization(), "{err}");
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let demo = demo().await;
    let http = http();
    let server = discover(&http, &demo.mcp_url(), None).await.unwrap();
    let client = register(&http, &server, &redirect_uri(), "amesh agent t")
        .await
        .unwrap()
        .client();
    let elsewhere = url::Url::parse("http://127.0.0.1:9/api/v1/auth/tool/callback?x=1").unwrap();
    let (url, _) = authorization_request(&server, &client, &elsewhere, &[], "s");
    let page = http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("not registered"));
}

#[tokio::test]
async fn resource_parameter_is_required_and_checked_by_the_demo() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "alice", &[]).await;
    // A hand-made refresh without `resource` is refused with invalid_target.
    let refresh_token = flow.tokens.refresh_token.clone().unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose_secret()),
        ("client_id", flow.client.client_id.as_str()),
    ];
    let answer = http
        .post(demo.endpoint("/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_target");
    assert_eq!(demo.last_resource(), None);

    // A token for /mcp does not open /sse.
    let sse = http
        .get(demo.sse_url())
        .header(
            "authorization",
            flow.tokens.authorization_header().expose_secret(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 401);

    // A server naming another resource than the consented one is refused.
    let mut other = flow.server.clone();
    other.resource = demo.sse_url().to_string();
    let err = refresh(&http, &other, &flow.client, &flow.tokens)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OAuthError::TokenRefused { error, .. } if error == "invalid_target"),
        "{err}"
    );
}

#[tokio::test]
async fn revoked_user_gets_401_and_must_authorize_again() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "alice", &[]).await;
    let bob = full_flow(&http, &demo.mcp_url(), "bob", &[]).await;
    demo.revoke_user("alice");
    let answer = mcp_post(&http, &demo.mcp_url(), Some(&flow.tokens), &initialize()).await;
    assert_eq!(answer.status(), 401);
    let err = refresh(&http, &flow.server, &flow.client, &flow.tokens)
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization());
    // Bob is untouched.
    let answer = mcp_post(&http, &demo.mcp_url(), Some(&bob.tokens), &initialize()).await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn insufficient_scope_403_names_the_scope_for_step_up() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "alice", &["mcp".into()]).await;
    let answer = mcp_post(
        &http,
        &demo.mcp_url(),
        Some(&flow.tokens),
        &call_tool(1, "profile", json!({})),
    )
    .await;
    assert_eq!(answer.status(), 403);
    let header = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let challenge = BearerChallenge::from_header(&header).unwrap();
    assert!(challenge.is_insufficient_scope());
    assert_eq!(challenge.scopes(), ["profile"]);
    let server = discover(&http, &demo.mcp_url(), Some(&header))
        .await
        .unwrap();
    assert_eq!(server.select_scopes(&["mcp".into()]), ["profile"]);
}

#[tokio::test]
async fn configured_endpoints_and_confidential_client_skip_discovery_and_registration() {
    let demo = demo_with(DemoOptions {
        access_ttl: Duration::from_secs(30),
        ..DemoOptions::default()
    })
    .await;
    let http = http();
    // An operator-registered confidential client (client_secret_basic).
    let registered: Value = http
        .post(demo.endpoint("/register"))
        .json(&json!({"redirect_uris": [redirect_uri().as_str()], "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = OAuthClient::configured(
        registered["client_id"].as_str().unwrap(),
        Some(SecretString::from(
            registered["client_secret"].as_str().unwrap(),
        )),
    );
    assert_eq!(client.auth, TokenEndpointAuth::ClientSecretBasic);
    let server = AuthServer::configured(
        &demo.mcp_url(),
        demo.endpoint("/authorize"),
        demo.endpoint("/token"),
    );
    let scopes = server.select_scopes(&["mcp".into()]);
    let (url, verifier) = authorization_request(&server, &client, &redirect_uri(), &scopes, "cfg");
    let code = query(&consent(&http, &url, "dave", true).await)["code"].clone();
    let tokens = exchange_code(
        &http,
        &server,
        &client,
        &code,
        &verifier,
        &redirect_uri(),
        &scopes,
    )
    .await
    .unwrap();
    assert!(tokens.expires_within(Duration::from_secs(31)));
    assert!(!tokens.expires_within(Duration::from_secs(20)));

    // A wrong secret is invalid_client, not a reason to re-prompt the user.
    let wrong = OAuthClient::configured(client.client_id.clone(), Some(SecretString::from("nope")));
    let err = refresh(&http, &server, &wrong, &tokens).await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::TokenRefused { error, .. } if error == "invalid_client"),
        "{err}"
    );
    assert!(!err.needs_reauthorization());
    assert!(!err.to_string().contains("nope"));
    refresh(&http, &server, &client, &tokens).await.unwrap();
    assert_eq!(demo.registrations(), 1);
}
