//! The demo provider's MCP side as a client sees it: the 401 challenge and
//! metadata documents, paged `tools/list` over Streamable HTTP, the legacy
//! HTTP+SSE transport, and how the token endpoint's failures surface.

mod oauth_support;

use std::time::Duration;

use amesh_mcp::oauth::{
    AuthServer, BearerChallenge, OAuthClient, OAuthError, TokenSet, exchange_code, refresh,
};
use amesh_mcp::secret::{ExposeSecret as _, SecretString};
use futures::StreamExt;
use oauth_support::{
    Flow, call_tool, demo, doc_server, full_flow, http, initialize, mcp_post, redirect_uri,
};
use serde_json::{Value, json};
use url::Url;

#[tokio::test]
async fn unauthenticated_requests_get_401_naming_path_specific_resource_metadata() {
    let demo = demo().await;
    let http = http();
    for (url, path) in [(demo.mcp_url(), "mcp"), (demo.sse_url(), "sse")] {
        let answer = http
            .post(url.clone())
            .json(&initialize())
            .send()
            .await
            .unwrap();
        let answer = if answer.status() == 405 {
            http.get(url.clone()).send().await.unwrap()
        } else {
            answer
        };
        assert_eq!(answer.status(), 401, "{url}");
        let header = answer.headers()["www-authenticate"].to_str().unwrap();
        let challenge = BearerChallenge::from_header(header).unwrap();
        let expected = format!(
            "{}/.well-known/oauth-protected-resource/{path}",
            demo.base_url.as_str().trim_end_matches('/')
        );
        assert_eq!(
            challenge.resource_metadata.as_deref(),
            Some(expected.as_str())
        );
        assert_eq!(
            challenge.error, None,
            "no token, no error code (RFC 6750 §3.1)"
        );

        let prm: Value = http
            .get(&expected)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(prm["resource"], url.as_str());
        assert_eq!(
            prm["authorization_servers"][0],
            demo.base_url.as_str().trim_end_matches('/')
        );
    }
    let bad = mcp_post(
        &http,
        &demo.mcp_url(),
        Some(&fake_tokens("nope")),
        &initialize(),
    )
    .await;
    assert_eq!(bad.status(), 401);
    let challenge =
        BearerChallenge::from_header(bad.headers()["www-authenticate"].to_str().unwrap()).unwrap();
    assert_eq!(challenge.error.as_deref(), Some("invalid_token"));
    let root: Value = http
        .get(demo.endpoint("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        root["resource"],
        demo.base_url.as_str().trim_end_matches('/')
    );
}

#[tokio::test]
async fn tools_list_is_paged_over_streamable_http() {
    let demo = demo().await;
    let http = http();
    let flow = full_flow(&http, &demo.mcp_url(), "alice", &[]).await;
    let mut names = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let params = if cursor.is_null() {
            json!({})
        } else {
            json!({"cursor": cursor})
        };
        let body =
            json!({"jsonrpc": "2.0", "id": pages + 10, "method": "tools/list", "params": params});
        let page: Value = mcp_post(&http, &demo.mcp_url(), Some(&flow.tokens), &body)
            .await
            .json()
            .await
            .unwrap();
        pages += 1;
        for tool in page["result"]["tools"].as_array().unwrap() {
            names.push(tool["name"].as_str().unwrap().to_owned());
        }
        cursor = page["result"]["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(names, ["whoami", "echo", "profile"]);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        mcp_post(&http, &demo.mcp_url(), Some(&flow.tokens), &note)
            .await
            .status(),
        202
    );
    let echo: Value = mcp_post(
        &http,
        &demo.mcp_url(),
        Some(&flow.tokens),
        &call_tool(5, "echo", json!({"text": "hi"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(echo["result"]["content"][0]["text"], "alice said: hi");
}

/// Reads SSE events (`event`, `data`) from a response body.
struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Events {
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return (event, data);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("SSE event in time")
                .expect("stream open")
                .unwrap();
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }
}

async fn open_sse(http: &reqwest::Client, url: &Url, tokens: &TokenSet) -> (Events, Url) {
    let response = http
        .get(url.clone())
        .header("accept", "text/event-stream")
        .header(
            "authorization",
            tokens.authorization_header().expose_secret(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = Events {
        body: response.bytes_stream().boxed(),
        buffer: String::new(),
    };
    let (event, data) = events.next().await;
    assert_eq!(event, "endpoint");
    (events, url.join(&data).unwrap())
}

#[tokio::test]
async fn legacy_sse_transport_answers_on_the_stream_as_the_user() {
    let demo = demo().await;
    let http = http();
    let Flow { tokens, .. } = full_flow(&http, &demo.sse_url(), "erin", &[]).await;
    let (mut events, post_url) = open_sse(&http, &demo.sse_url(), &tokens).await;
    assert_eq!(post_url.path(), "/messages");

    let post = |body: Value| {
        http.post(post_url.clone())
            .header(
                "authorization",
                tokens.authorization_header().expose_secret(),
            )
            .json(&body)
            .send()
    };
    assert_eq!(post(initialize()).await.unwrap().status(), 202);
    let (event, data) = events.next().await;
    assert_eq!(event, "message");
    let init: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "amesh-demo-provider");

    assert_eq!(
        post(call_tool(2, "whoami", json!({})))
            .await
            .unwrap()
            .status(),
        202
    );
    let (_, data) = events.next().await;
    let whoami: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(whoami["result"]["content"][0]["text"], "You are erin");

    // Another user's valid token cannot post into erin's session.
    let other = full_flow(&http, &demo.sse_url(), "mallory", &[]).await;
    let hijack = http
        .post(post_url.clone())
        .header(
            "authorization",
            other.tokens.authorization_header().expose_secret(),
        )
        .json(&call_tool(3, "whoami", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(hijack.status(), 403);

    // Without a token the POST endpoint challenges like the stream.
    let anonymous = http
        .post(post_url.clone())
        .json(&initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn token_endpoint_failures_are_reported_precisely_without_secrets() {
    // Like the MCP TypeScript SDK's example server: 500 with a text body.
    let docs = doc_server(|_| {
        vec![
            ("/token500".into(), 500, json!("Internal Server Error")),
            (
                "/tokenbad".into(),
                200,
                json!({"access_token": 5, "token_type": "Bearer"}),
            ),
            (
                "/tokenmac".into(),
                200,
                json!({"access_token": "sekrit-mac", "token_type": "mac"}),
            ),
        ]
    })
    .await;
    let http = http();
    let mcp = docs.base.join("/mcp").unwrap();
    let client = OAuthClient::configured("c", Some(SecretString::from("client-secret-value")));
    let tokens = fake_tokens("old-access");
    for (path, check) in [
        ("/token500", "HTTP 500"),
        ("/tokenbad", "access_token"),
        ("/tokenmac", "\"mac\""),
    ] {
        let server = AuthServer::configured(
            &mcp,
            docs.base.join("/authorize").unwrap(),
            docs.base.join(path).unwrap(),
        );
        let err = refresh(&http, &server, &client, &tokens).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains(check), "{path}: {message}");
        for secret in ["client-secret-value", "old-refresh", "sekrit-mac"] {
            assert!(
                !message.contains(secret) && !format!("{err:?}").contains(secret),
                "{message}"
            );
        }
        let verifier = amesh_mcp::oauth::PkceVerifier::new("v".repeat(43));
        let err = exchange_code(
            &http,
            &server,
            &client,
            "code",
            &verifier,
            &redirect_uri(),
            &[],
        )
        .await
        .unwrap_err();
        assert!(!matches!(err, OAuthError::TokenRefused { .. }), "{err}");
    }
}

#[tokio::test]
async fn token_endpoint_words_are_kept_without_the_secrets_they_echo() {
    let docs = doc_server(|_| {
        vec![
            (
                "/token500".into(),
                500,
                json!("refresh_token=old-refresh\nclient_secret=client-secret-value"),
            ),
            (
                "/token400".into(),
                400,
                json!({"error": "invalid_grant", "error_description": "old-refresh is unknown"}),
            ),
        ]
    })
    .await;
    let http = http();
    let mcp = docs.base.join("/mcp").unwrap();
    let client = OAuthClient::configured("c", Some(SecretString::from("client-secret-value")));
    for (path, kept) in [
        (
            "/token500",
            r"refresh_token=[redacted]\nclient_secret=[redacted]",
        ),
        ("/token400", "[redacted] is unknown"),
    ] {
        let server = AuthServer::configured(
            &mcp,
            docs.base.join("/authorize").unwrap(),
            docs.base.join(path).unwrap(),
        );
        let err = refresh(&http, &server, &client, &fake_tokens("a"))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(kept), "{path}: {message}");
        assert!(!message.contains("old-refresh"), "{message}");
        assert!(!message.contains("client-secret-value"), "{message}");
    }
}

fn fake_tokens(access: &str) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(access),
        refresh_token: Some(SecretString::from("old-refresh")),
        token_type: "Bearer".into(),
        expires_at: None,
        scopes: vec![],
    }
}

/// Behind compose, servers reach the provider by service name and browsers
/// by a published localhost port: only the authorization endpoint (the one
/// URL a browser opens) takes the browser URL.
#[tokio::test]
async fn browser_url_moves_only_the_authorization_endpoint() {
    use amesh_demo::{DemoOptions, DemoProvider};
    let metadata = |demo: &amesh_demo::DemoHandle| {
        let url = format!(
            "http://{}/.well-known/oauth-authorization-server",
            demo.local_addr
        );
        async move {
            http()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let split = DemoProvider::start(DemoOptions {
        public_url: Some("http://demo-provider:9100".parse().unwrap()),
        browser_url: Some("http://localhost:9100/".parse().unwrap()),
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let m = metadata(&split).await;
    assert_eq!(m["issuer"], "http://demo-provider:9100");
    assert_eq!(m["token_endpoint"], "http://demo-provider:9100/token");
    assert_eq!(
        m["registration_endpoint"],
        "http://demo-provider:9100/register"
    );
    assert_eq!(
        m["authorization_endpoint"],
        "http://localhost:9100/authorize"
    );

    let plain = DemoProvider::start(DemoOptions::default()).await.unwrap();
    let m = metadata(&plain).await;
    let base = plain.base_url.as_str().trim_end_matches('/');
    assert_eq!(m["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(m["issuer"], base);
}
