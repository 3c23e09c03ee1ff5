//! The client against the demo provider (`amesh_demo`), a server
//! written independently of this client: 401 and its challenge on both
//! transports, then real per-user tokens obtained by driving the
//! provider's OAuth endpoints by hand (registration, consent form POST,
//! code exchange with PKCE), so each user's calls carry their own identity
//! and a missing scope comes back as 403 `insufficient_scope`.
//!
//! The OAuth client proper lives in `amesh_mcp::oauth`; this test uses raw
//! HTTP on purpose so it checks the MCP client alone.

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_mcp::client::{BearerChallenge, McpClientPool, McpError};
use amesh_mcp::secret::SecretString;
use amesh_mcp::tool_config::McpToolConfig;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest;

fn config(transport: &str, url: &url::Url) -> McpToolConfig {
    serde_json::from_value(json!({
        "id": format!("demo-{transport}"),
        "connection_params": {"type": transport, "url": url.as_str(), "timeout": 10},
        "auth": {"type": "oauth2"},
        "manifest": [{"name": "whoami", "description": "who", "inputSchema": {"type": "object"}}],
    }))
    .unwrap()
}

/// Registers a public client and walks the code flow for `user`, as a
/// browser would; returns the access token for `resource`.
async fn token_for(demo: &DemoHandle, user: &str, scope: &str, resource: &url::Url) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect_uri = "http://127.0.0.1:9/callback";
    let registered: Value = http
        .post(demo.endpoint("/register"))
        .json(&json!({"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let verifier = "a-verifier-long-enough-to-satisfy-rfc7636-rules-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let consent = http
        .post(demo.endpoint("/authorize"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("scope", scope),
            ("resource", resource.as_str()),
            ("state", "s"),
            ("user", user),
            ("approve", "yes"),
        ])
        .send()
        .await
        .unwrap();
    let location = consent.headers()["location"].to_str().unwrap();
    let back = url::Url::parse(location).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap_or_else(|| panic!("no code in {location}"))
        .1
        .into_owned();
    let tokens: Value = http
        .post(demo.endpoint("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("client_id", &client_id),
            ("code_verifier", verifier),
            ("resource", resource.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {tokens}"))
        .to_owned()
}

#[tokio::test]
async fn demo_provider_challenges_then_serves_each_user_with_their_token() {
    let demo = DemoProvider::start(DemoOptions::default()).await.unwrap();
    let pool = McpClientPool::new().unwrap();
    for (transport, url) in [("streamable-http", demo.mcp_url()), ("sse", demo.sse_url())] {
        let cfg = config(transport, &url);
        cfg.validate().unwrap();

        let err = pool.session(&cfg, "alice", None).await.unwrap_err();
        let challenge = err
            .www_authenticate()
            .unwrap_or_else(|| panic!("{transport}: expected a challenge, got {err:?}"));
        assert!(err.needs_authorization(), "{transport}: {err:?}");
        assert!(
            BearerChallenge::from_header(challenge)
                .unwrap_or_default()
                .resource_metadata
                .is_some(),
            "{challenge}"
        );

        let alice: SecretString = token_for(&demo, "alice", "mcp", &url).await.into();
        let bob: SecretString = token_for(&demo, "bob", "mcp profile", &url).await.into();

        let session = pool.session(&cfg, "alice", Some(&alice)).await.unwrap();
        let tools = session.list_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "whoami"), "{tools:?}");
        let me = session.call_tool("whoami", json!({})).await.unwrap();
        assert_eq!(me.text(), "You are alice", "{transport}");
        let err = session.call_tool("profile", json!({})).await.unwrap_err();
        assert!(
            matches!(&err, McpError::Forbidden { error: Some(e), .. } if e == "insufficient_scope"),
            "{transport}: {err:?}"
        );

        let session = pool.session(&cfg, "bob", Some(&bob)).await.unwrap();
        let profile = session.call_tool("profile", json!({})).await.unwrap();
        assert_eq!(profile.structured_content.unwrap()["name"], "bob");

        // A revoked grant: the next call on the cached session is a 401.
        demo.revoke_user("bob");
        let err = session.call_tool("whoami", json!({})).await.unwrap_err();
        assert!(err.needs_authorization(), "{transport}: {err:?}");
    }
}
