//! The chat page in a real browser: Debian's `chromium`, driven by
//! `playwright-core` from npm (`scripts/test` installs it under
//! `target/browser`), against a real gateway and agent over Mosquitto, the
//! demo provider's OAuth server, MCP server and demo model, and a real
//! OpenID Connect provider (npm `oidc-provider`, `tests/oidc/provider.mjs`)
//! for single sign-on; axe-core checks accessibility. The scenarios
//! live in `tests/browser/chat.mjs`; then the gateway is restarted and
//! `tests/browser/history.mjs` checks that the page gets its conversations
//! back from the agent's session store. Screenshots go to
//! `target/browser-screenshots/` for a reviewer to look at.
//!
//! Without chromium, playwright-core or oidc-provider the browser test is
//! skipped with a
//! message, except under `CI=true`, where that is a failure. The Markdown
//! renderer's unit tests need only Node.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_tests::browser::{chromium, missing, playwright_dir, repo, scenario, screenshots_dir};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oidc::{self, OidcProvider};
use amesh_tests::stack::Stack;

const NS: &str = "browser/ns";
const USERS: &[(&str, &str)] = &[("gateway", "gw-pass"), ("agent", "agent-pass")];

fn gateway_yaml(mq: &MosquittoBroker, port: u16, idp: &OidcProvider) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      port: {port}
      frontend_use_authorization: true
      session_secret_key: browser-session-key
      users:
        - {{id: alice, name: Alice, token: alice-token}}
        - {{id: bob, name: Bob, token: bob-token}}
      sso:
        provider: Test IdP
        issuer: "{issuer}"
        client_id: {client_id}
        client_secret: {secret}
        redirect_uri: "http://127.0.0.1:{port}/api/v1/auth/callback"
        user_id_claim: email
      trust_manager: {{card_publish_interval_seconds: 1}}
"#,
        url = mq.url(),
        issuer = idp.issuer,
        client_id = oidc::CLIENT_ID,
        secret = oidc::CLIENT_SECRET,
    )
}

fn agent_yaml(mq: &MosquittoBroker, demo: &DemoHandle, gateway: &str, data: &Path) -> String {
    let manifest = r#"
          manifest:
            - name: whoami
              description: Who the demo provider says you are.
              inputSchema: {type: object, properties: {}, additionalProperties: false}
            - name: echo
              description: Echoes text, as you.
              inputSchema: {type: object, properties: {text: {type: string}}, required: [text]}"#;
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: assistant
      display_name: Assistant
      agent_card: {{description: "Answers with the demo model; calls the demo provider's tools as you."}}
      agent_card_publishing: {{interval_seconds: 1}}
      agent_secret_file: "{data}/agent.secret"
      session_service: {{type: sql, database_url: "sqlite:///{data}/agent.db"}}
      oauth_tool_redirect_uri: "{gateway}/api/v1/auth/tool/callback"
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      instruction: You are the browser test's assistant.
      model: {{model: openai/amesh-demo-model, api_base: "{model}", api_key: demo-key, timeout: 10, max_retries: 1}}
      tools:
        - {{tool_type: builtin, tool_name: time}}
        - {{tool_type: builtin, tool_name: echo}}
        - tool_type: mcp
          id: demo
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: demo_{manifest}
        - tool_type: mcp
          id: billing
          connection_params: {{type: sse, url: "{sse}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: billing_{manifest}
"#,
        url = mq.url(),
        data = data.display(),
        model = demo.model_base_url(),
        mcp = demo.mcp_url(),
        sse = demo.sse_url(),
    )
}

#[test]
fn markdown_renderer_escapes_everything_and_keeps_only_its_whitelist() {
    if Command::new("node").arg("--version").output().is_err() {
        missing("node");
        return;
    }
    let out = Command::new("node")
        .arg("--test")
        .arg(repo().join("tests/browser/markdown.test.mjs"))
        .output()
        .expect("node runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success(), "markdown tests failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_in_chromium() {
    let Some(chromium) = chromium() else {
        missing("chromium (apt-get install chromium)");
        return;
    };
    let pw = playwright_dir();
    if !pw
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing(&format!("playwright-core under {}", pw.display()));
        return;
    }
    if let Some(what) = oidc::missing_prerequisite() {
        missing(&what);
        return;
    }
    let mq = MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto");
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider");
    // The provider must know the gateway's redirect URI before the gateway
    // starts, so the gateway gets a port chosen here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let idp = OidcProvider::start(
        &format!("http://127.0.0.1:{port}/api/v1/auth/callback"),
        &format!("http://127.0.0.1:{port}/"),
    )
    .await
    .expect("the OIDC provider starts");
    let mut gw = Stack::start(&gateway_yaml(&mq, port, &idp))
        .await
        .expect("gateway");
    let data = tempfile::tempdir().unwrap();
    let mut agent = Stack::start(&agent_yaml(&mq, &demo, &gw.url(), data.path()))
        .await
        .expect("agent");
    gw.wait_for_agent_as("assistant", Duration::from_secs(15), Some("alice-token"))
        .await
        .unwrap();

    let shots = screenshots_dir();
    let run = |script: &str, url: String| {
        scenario(script, &url, &chromium, &pw)
            .spawn()
            .expect("node starts")
    };
    let mut child = run("tests/browser/chat.mjs", gw.url());
    let status = tokio::time::timeout(Duration::from_secs(240), child.wait())
        .await
        .expect("the browser scenarios end within 4 minutes")
        .expect("node ran");
    assert!(
        status.success(),
        "browser scenarios failed (see the output above; screenshots in {})",
        shots.display()
    );
    // The gateway restarts (same port and session key): what it kept in
    // memory is gone, the agent's session store is not.
    gw.stop().await;
    gw = Stack::start(&gateway_yaml(&mq, port, &idp))
        .await
        .expect("gateway again");
    gw.wait_for_agent_as("assistant", Duration::from_secs(15), Some("bob-token"))
        .await
        .unwrap();
    let mut child = run("tests/browser/history.mjs", gw.url());
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the after-restart scenarios end within 2 minutes")
        .expect("node ran");
    agent.stop().await;
    gw.stop().await;
    assert!(
        status.success(),
        "after-restart browser scenarios failed (see the output above; screenshots in {})",
        shots.display()
    );
}
