//! The OAuth client against the MCP TypeScript SDK's example OAuth server,
//! an implementation we did not write: discovery from its real 401, dynamic
//! registration with its exact redirect URI match, its auto-approving
//! `/authorize`, the code exchange with `resource` checked (`--oauth-strict`),
//! then an authenticated MCP call. It issues no refresh tokens, so the
//! token set must say the user has to authorize again.
//!
//! Needs `node` and the SDK: `npm install --prefix /tmp/mcp-ts-sdk
//! @modelcontextprotocol/sdk@1`, then `MCP_TS_SDK_DIR=/tmp/mcp-ts-sdk cargo
//! test -p amesh-mcp --test oauth_ts_sdk`. Without `MCP_TS_SDK_DIR` the test
//! says so and passes.

mod oauth_support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use amesh_mcp::oauth::{
    ClientStatus, OAuthError, PkceVerifier, authorization_request, check_client,
    check_response_issuer, client_name_for_agent, discover, exchange_code, refresh, register,
};
use oauth_support::{http, initialize, mcp_post, query, redirect_uri};
use tokio::process::{Child, Command};
use url::Url;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_sdk_server(dir: &std::path::Path, port: u16, auth_port: u16) -> Child {
    let child = Command::new("node")
        .arg(dir.join("simpleStreamableHttp.js"))
        .args(["--oauth", "--oauth-strict"])
        .env("MCP_PORT", port.to_string())
        .env("MCP_AUTH_PORT", auth_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    for wanted in [port, auth_port] {
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("localhost", wanted))
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "the SDK server did not listen on {wanted} within 10 s");
    }
    child
}

/// The SDK's example server directory, or `None` (skip) when
/// `MCP_TS_SDK_DIR` is not set outside CI.
fn sdk_examples() -> Option<PathBuf> {
    let Ok(root) = std::env::var("MCP_TS_SDK_DIR") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "MCP_TS_SDK_DIR must be set under CI=true (scripts/test installs the SDK)"
        );
        eprintln!("MCP_TS_SDK_DIR not set: skipping the TypeScript SDK OAuth interop test");
        return None;
    };
    let dir =
        PathBuf::from(root).join("node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server");
    assert!(
        dir.is_dir(),
        "MCP_TS_SDK_DIR has no SDK examples at {dir:?}"
    );
    Some(dir)
}

#[tokio::test]
async fn code_flow_against_the_sdk_example_oauth_server() {
    let Some(dir) = sdk_examples() else {
        return;
    };
    let (port, auth_port) = (free_port(), free_port());
    let _server = start_sdk_server(&dir, port, auth_port).await;
    let http = http();
    // The SDK server names itself `localhost` in its metadata.
    let mcp_url = Url::parse(&format!("http://localhost:{port}/mcp")).unwrap();

    let unauthorized = mcp_post(&http, &mcp_url, None, &initialize()).await;
    assert_eq!(unauthorized.status(), 401);
    let challenge = unauthorized.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let server = discover(&http, &mcp_url, Some(&challenge)).await.unwrap();
    assert_eq!(server.resource, mcp_url.as_str());
    assert_eq!(
        server.issuer().trim_end_matches('/'),
        format!("http://localhost:{auth_port}")
    );

    let client = register(
        &http,
        &server,
        &redirect_uri(),
        &client_name_for_agent("interop"),
    )
    .await
    .unwrap()
    .client();
    let scopes = server.select_scopes(&[]);
    assert_eq!(scopes, ["mcp:tools"]);
    let (url, verifier) =
        authorization_request(&server, &client, &redirect_uri(), &scopes, "ts-state");
    // Its /authorize approves at once and redirects to the callback.
    let approved = http.get(url).send().await.unwrap();
    assert!(approved.status().is_redirection(), "{}", approved.status());
    let callback = Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
    let params = query(&callback);
    assert_eq!(params["state"], "ts-state");
    let tokens = exchange_code(
        &http,
        &server,
        &client,
        &params["code"],
        &verifier,
        &redirect_uri(),
        &scopes,
    )
    .await
    .unwrap();
    assert!(
        tokens.refresh_token.is_none(),
        "the SDK example issues no refresh tokens"
    );

    let init = mcp_post(&http, &mcp_url, Some(&tokens), &initialize()).await;
    assert_eq!(init.status(), 200);

    let err = refresh(&http, &server, &client, &tokens).await.unwrap_err();
    assert!(matches!(err, OAuthError::NoRefreshToken));
    assert!(err.needs_reauthorization());
}

/// The SDK example keeps registered clients in memory: restarted, it
/// refuses the old `client_id` at `/authorize` (an error page, no
/// redirect) and at `/token`, which is what amesh must notice to register
/// again instead of sending users to that page forever.
#[tokio::test]
async fn a_restarted_sdk_server_has_forgotten_the_client_and_both_endpoints_say_so() {
    let Some(dir) = sdk_examples() else {
        return;
    };
    let (port, auth_port) = (free_port(), free_port());
    let mut sdk = start_sdk_server(&dir, port, auth_port).await;
    let http = http();
    let mcp_url = Url::parse(&format!("http://localhost:{port}/mcp")).unwrap();
    let unauthorized = mcp_post(&http, &mcp_url, None, &initialize()).await;
    let challenge = unauthorized.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let server = discover(&http, &mcp_url, Some(&challenge)).await.unwrap();
    let client = register(
        &http,
        &server,
        &redirect_uri(),
        &client_name_for_agent("interop"),
    )
    .await
    .unwrap()
    .client();
    let scopes = server.select_scopes(&[]);
    let known = check_client(&http, &server, &client, &redirect_uri(), &scopes)
        .await
        .unwrap();
    assert_eq!(known, ClientStatus::Known);
    // Whatever it says of RFC 9207, its real response passes the check.
    let (url, _) = authorization_request(&server, &client, &redirect_uri(), &scopes, "ts-state");
    let approved = http.get(url).send().await.unwrap();
    let callback = Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
    let iss = query(&callback).get("iss").cloned();
    check_response_issuer(&server, iss.as_deref()).unwrap();

    sdk.kill().await.unwrap();
    let _restarted = start_sdk_server(&dir, port, auth_port).await;
    let forgotten = check_client(&http, &server, &client, &redirect_uri(), &scopes)
        .await
        .unwrap();
    match &forgotten {
        ClientStatus::Unknown { evidence } => {
            assert!(evidence.contains("client"), "{evidence}")
        }
        other => panic!("expected the client to be unknown, got {other:?}"),
    }
    let refused = exchange_code(
        &http,
        &server,
        &client,
        "no-such-code",
        &PkceVerifier::new("v".repeat(64)),
        &redirect_uri(),
        &scopes,
    )
    .await
    .unwrap_err();
    assert!(refused.is_client_rejected(), "{refused}");
}
