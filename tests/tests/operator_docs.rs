//! `docs/operations.md` quotes, in its troubleshooting table, what amesh
//! prints for each case of the product guide's Troubleshooting section.
//! These tests read the quotes out of the table (every code span in its
//! "what amesh prints" column), cause each case for real — `amesh config
//! check` on a bad config, `amesh run` over a real Mosquitto with a memory
//! store or the trust manager off on the gateway, a provider that refuses
//! to register amesh, a provider that issues no refresh token, a callback
//! on another origin than the user signed in at — and check that the
//! binary's output, the user's answer or the browser's page contains every
//! quote. A reworded message fails here until the doc says the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider, consent_as};
use amesh_tests::amesh_bin::workspace_root;
use amesh_tests::amesh_run::{AmeshRun, config_check, config_check_output, free_port};
use amesh_tests::doc_table::{anchored_rows, code_spans};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::stack::SseReader;
use serde_json::{Value, json};

/// Every entry of the table, each checked by the test of the same name
/// below (the last three by the fault tests of `faults.rs`, which cause
/// them). A new entry in the doc needs a test, and a test's entry must stay.
const CHECKED: [&str; 17] = [
    "redirect-unset",
    "redirect-path",
    "redirect-http",
    "callback-origin",
    "domain-not-authorized",
    "memory-store",
    "trust-gateway-off",
    "trust-permissive-unverified",
    "ttl-invalid",
    "ttl-in-force",
    "no-refresh-token",
    "manifest-missing",
    "manifest-format",
    "schema-dialect",
    "agent-not-connected",
    "agent-gone",
    "agent-silent",
];

const NS: &str = "acme/prod";
const REDIRECT: &str = "https://agents.example.com/api/v1/auth/tool/callback";
// ---------------------------------------------------------------------------
// The doc

fn doc_path() -> PathBuf {
    workspace_root().join("docs/operations.md")
}

/// The table's entries: anchor id -> the code spans of its "what amesh
/// prints" column (the second).
fn table() -> BTreeMap<String, Vec<String>> {
    let doc = std::fs::read_to_string(doc_path()).expect("docs/operations.md");
    anchored_rows(&doc, "Troubleshooting", 2)
}

/// The quotes of entry `id`.
fn quotes(id: &str) -> Vec<String> {
    table()
        .remove(id)
        .unwrap_or_else(|| panic!("docs/operations.md has no troubleshooting entry {id}"))
}

/// Asserts that `output` contains every quote of entry `id`.
fn assert_prints(id: &str, output: &str) {
    let quotes = quotes(id);
    assert!(!quotes.is_empty(), "entry {id} quotes nothing");
    for quote in &quotes {
        assert!(
            output.contains(quote.as_str()),
            "docs/operations.md, entry {id}, quotes\n  {quote}\nbut amesh printed:\n{output}"
        );
    }
}

#[test]
fn every_troubleshooting_entry_quotes_amesh_and_has_a_test() {
    let table = table();
    let ids: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut checked = CHECKED.to_vec();
    checked.sort_unstable();
    assert_eq!(ids, checked, "the table's entries and the tests differ");
    for (id, quotes) in &table {
        assert!(!quotes.is_empty(), "entry {id} quotes nothing");
    }
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    assert!(
        readme.contains("docs/operations.md"),
        "the README links the operator docs"
    );
}

#[test]
fn code_spans_are_read_as_markdown_reads_them() {
    assert_eq!(
        code_spans("a `b` and `` c `d` e `` f"),
        vec!["b".to_string(), "c `d` e".to_string()]
    );
    assert_eq!(code_spans("no spans, `unclosed"), Vec::<String>::new());
}

fn broker() -> MosquittoBroker {
    MosquittoBroker::for_namespace(&[("gateway", "gw-pass"), ("billing", "billing-pass")], NS)
        .expect("mosquitto")
}

/// The gateway app: with users alice (token `alice-token`) when `users`,
/// else the dev user alice; `trust` is its `trust_manager` block.
fn gateway_app(mq: &MosquittoBroker, port: u16, users: bool, trust: &str) -> String {
    let auth = if users {
        "frontend_use_authorization: true
      session_secret_key: operator-docs-session-key
      users: [{id: alice, token: alice-token}]"
    } else {
        "frontend_use_authorization: false
      dev_user: {id: alice}"
    };
    format!(
        r#"  - name: gateway
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: gw
      host: 127.0.0.1
      port: {port}
      {auth}
      trust_manager: {trust}
"#,
        url = mq.url()
    )
}

/// The agent app `billing`: `session` its session_service, `trust` its
/// trust_manager block, `tools` its tool list (YAML flow or block lines).
fn agent_app(
    mq: &MosquittoBroker,
    redirect: &str,
    session: &str,
    trust: &str,
    tools: &str,
) -> String {
    format!(
        r#"  - name: billing
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: billing, broker_password: billing-pass}}
    app_config:
      namespace: {NS}
      agent_name: billing
      agent_card_publishing: {{interval_seconds: 1}}
      session_service: {session}
      agent_secret_file: billing.secret
      oauth_tool_redirect_uri: "{redirect}"
      trust_manager: {trust}
      tools:
{tools}
"#,
        url = mq.url()
    )
}

/// An MCP tool block with OAuth2 at `url`, exposed as `crm_whoami`.
fn oauth_tool(url: &str) -> String {
    format!(
        r#"        - tool_type: mcp
          id: crm
          connection_params: {{type: streamable-http, url: "{url}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: crm_
          manifest:
            - name: whoami
              description: Who the provider says you are.
              inputSchema: {{type: object, properties: {{}}, additionalProperties: false}}"#
    )
}

fn apps(parts: &[String]) -> String {
    format!("log: {{stdout_log_level: INFO}}\napps:\n{}", parts.concat())
}

/// Every string in `value` (texts of parts, error messages), one a line.
fn strings(value: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

/// What a page shows for HTML text (the entities the gateway writes).
fn unescape_html(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A running gateway's base URL, once it lists agent `billing`.
async fn gateway_listing_billing(base: &str, token: Option<&str>, run: &AmeshRun) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut req = http.get(format!("{base}/api/v1/agents"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Ok(resp) = req.send().await
            && let Ok(v) = resp.json::<Value>().await
            && v["agents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["name"] == "billing"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not list billing within 30 s:\n{}",
            run.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /api/v1/message:send` of tool `tool` to billing: the JSON answer.
async fn send_tool(base: &str, token: Option<&str>, tool: &str) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/v1/message:send"))
        .json(&json!({"agent_name": "billing", "data": {"tool": tool}}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON answer")
}

/// Streams tool `tool` to billing as alice until the agent asks for
/// authorization: the open stream and the authorization URL.
async fn stream_until_prompt(base: &str, tool: &str) -> (SseReader, url::Url) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/message:stream"))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "billing", "data": {"tool": tool}}))
        .send()
        .await
        .expect("stream starts");
    assert_eq!(resp.status(), 200);
    let mut events = SseReader::new(resp);
    while let Some(ev) = next_event(&mut events).await {
        if ev.event == "status" && ev.data["status"]["state"] == "auth-required" {
            let url = ev.data["status"]["message"]["parts"]
                .as_array()
                .and_then(|parts| {
                    parts
                        .iter()
                        .find_map(|p| p["data"]["authorization_url"].as_str())
                })
                .expect("the prompt has an authorization URL");
            return (events, url.parse().expect("a URL"));
        }
        assert!(
            ev.event != "task" && ev.event != "error",
            "ended without a prompt: {}",
            ev.data
        );
    }
    panic!("the stream ended without a prompt")
}

/// The `amesh_session` cookie of alice.
async fn alice_cookie(base: &str) -> String {
    let login = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"token": "alice-token"}))
        .send()
        .await
        .expect("login");
    login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string()
}

/// The next event of a stream; a minute without one fails the test rather
/// than leaving it waiting for a task that waits for a user.
async fn next_event(events: &mut SseReader) -> Option<amesh_tests::stack::SseEvent> {
    tokio::time::timeout(Duration::from_secs(60), events.next_event())
        .await
        .expect("an event within a minute")
        .expect("a readable event")
}

/// The final task of a stream.
async fn final_task(events: &mut SseReader) -> Value {
    while let Some(ev) = next_event(events).await {
        match ev.event.as_str() {
            "task" => return ev.data,
            "error" => panic!("error event: {}", ev.data),
            _ => {}
        }
    }
    panic!("the stream ended without a final task")
}

async fn demo(options: DemoOptions) -> DemoHandle {
    DemoProvider::start(options).await.expect("demo provider")
}

// ---------------------------------------------------------------------------
// Configuration errors: `amesh config check`

/// An agent with one OAuth2 MCP tool; `{redirect}`, `{dialect}` and
/// `{schema}` are filled in by each case.
fn checked_agent(redirect: &str, dialect: &str, schema: &str) -> String {
    format!(
        r#"apps:
  - name: billing
    app_module: agent
    broker: {{dev_mode: true}}
    app_config:
      namespace: {NS}
      agent_name: billing
      session_service: {{type: sql, database_url: "sqlite:///billing.db"}}
      agent_secret_file: billing.secret
{redirect}      tools:
        - tool_type: mcp
          id: crm
          connection_params: {{type: streamable-http, url: "https://mcp.example.com/mcp"}}
          auth: {{type: oauth2}}
{dialect}          manifest:
            - name: find_customer
              description: Find a customer
              inputSchema:
                type: object
                properties: {{q: {{type: string}}}}
                $schema: "{schema}"
"#
    )
}

const DRAFT_07: &str = "http://json-schema.org/draft-07/schema#";

#[test]
fn redirect_unset() {
    let absent = config_check(&checked_agent("", "", DRAFT_07), &[]);
    let empty = config_check(
        &checked_agent(
            "      oauth_tool_redirect_uri: ${OAUTH_TOOL_REDIRECT_URI}\n",
            "",
            DRAFT_07,
        ),
        &[("OAUTH_TOOL_REDIRECT_URI", "")],
    );
    assert_prints("redirect-unset", &format!("{absent}{empty}"));
}

#[test]
fn redirect_path() {
    let out = config_check(
        &checked_agent("", "", DRAFT_07),
        &[("OAUTH_TOOL_REDIRECT_URI", &format!("{REDIRECT}/"))],
    );
    assert_prints("redirect-path", &out);
}

#[test]
fn redirect_http() {
    let out = config_check(
        &checked_agent("", "", DRAFT_07),
        &[(
            "OAUTH_TOOL_REDIRECT_URI",
            "http://agents.example.com/api/v1/auth/tool/callback",
        )],
    );
    assert_prints("redirect-http", &out);
}

#[test]
fn ttl_invalid() {
    let yaml = checked_agent("", "", DRAFT_07);
    let out: String = ["3000000", "0", "-5", "1d"]
        .iter()
        .map(|ttl| {
            config_check(
                &yaml,
                &[
                    ("OAUTH_TOOL_REDIRECT_URI", REDIRECT),
                    ("SECRETS_TTL_SECONDS", ttl),
                ],
            )
        })
        .collect();
    assert_prints("ttl-invalid", &out);
}

#[test]
fn manifest_missing() {
    let tool = r#"apps:
  - name: billing
    app_module: agent
    broker: {dev_mode: true}
    app_config:
      namespace: acme/prod
      agent_name: billing
      session_service: {type: sql, database_url: "sqlite:///billing.db"}
      oauth_tool_redirect_uri: https://agents.example.com/api/v1/auth/tool/callback
      tools:
        - tool_type: mcp
          connection_params: {type: sse, url: "https://mcp.example.com/v1/sse"}
          auth: {type: oauth2}
"#;
    let absent = config_check(tool, &[]);
    let empty = config_check(&format!("{tool}          manifest: []\n"), &[]);
    assert_prints("manifest-missing", &absent);
    assert_prints("manifest-missing", &empty);
}

#[test]
fn manifest_format() {
    let yaml = r#"apps:
  - name: billing
    app_module: agent
    broker: {dev_mode: true}
    app_config:
      namespace: acme/prod
      agent_name: billing
      session_service: {type: sql, database_url: "sqlite:///billing.db"}
      oauth_tool_redirect_uri: https://agents.example.com/api/v1/auth/tool/callback
      tools:
        - tool_type: mcp
          connection_params: {type: sse, url: "https://mcp.example.com/v1/sse"}
          auth: {type: oauth2}
          manifest:
            - name: search
              description: Search
            - description: Fetch
              inputSchema: {type: object}
            - name: update
              inputSchema: {type: object}
            - name: create
              description: Create
              inputSchema:
                type: object
                properties: {title: {type: text}}
"#;
    assert_prints("manifest-format", &config_check(yaml, &[]));
}

#[test]
fn schema_dialect() {
    let env = [("OAUTH_TOOL_REDIRECT_URI", REDIRECT)];
    // The URI the product guide names for 2020-12 is a documentation link.
    let guide_uri = config_check(
        &checked_agent(
            "",
            "",
            "https://json-schema.org/specification-links#2020-12",
        ),
        &env,
    );
    let unknown_dialect = config_check(
        &checked_agent("", "          schema_dialect: 2019-09\n", DRAFT_07),
        &env,
    );
    assert_prints("schema-dialect", &format!("{guide_uri}{unknown_dialect}"));
}

// ---------------------------------------------------------------------------
// Start-up: `amesh run` over Mosquitto

#[test]
fn memory_store() {
    let mq = broker();
    let agent = agent_app(
        &mq,
        REDIRECT,
        "{type: memory}",
        "{enabled: true}",
        &oauth_tool("https://mcp.example.com/mcp"),
    );
    let yaml = apps(&[agent]);
    // `config check` passes the config, with the warning ...
    let (passed, checked) = config_check_output(&yaml, &[]);
    assert!(passed, "{checked}");
    assert!(checked.contains("warning: "), "{checked}");
    // ... which `run` logs before the store opens in memory.
    let mut run = AmeshRun::start(&yaml, &[]);
    let out = run.wait_for("agent ready");
    assert_prints("memory-store", &out);
    let warning = quotes("memory-store").remove(0);
    assert!(checked.contains(&warning), "{checked}");
}

#[test]
fn ttl_in_force() {
    let mq = broker();
    let agent = agent_app(
        &mq,
        REDIRECT,
        r#"{type: sql, database_url: "sqlite:///billing.db"}"#,
        "{enabled: true}",
        &oauth_tool("https://mcp.example.com/mcp"),
    );
    let mut run = AmeshRun::start(&apps(&[agent]), &[("SECRETS_TTL_SECONDS", "86400")]);
    let out = run.wait_for("agent ready");
    assert_prints("ttl-in-force", &out);
}

// ---------------------------------------------------------------------------
// Trust manager off on the gateway

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_gateway_off() {
    let mq = broker();
    let port = free_port();
    let gateway = gateway_app(&mq, port, false, "{enabled: false}");
    let agent = agent_app(
        &mq,
        REDIRECT,
        "{type: memory}",
        "{enabled: true, verification_mode: strict}",
        "        - {tool_type: builtin, tool_name: whoami}",
    );
    let mut run = AmeshRun::start(&apps(&[gateway, agent]), &[]);
    run.wait_for("amesh ready");
    let base = format!("http://127.0.0.1:{port}");
    gateway_listing_billing(&base, None, &run).await;
    let answer = send_tool(&base, None, "whoami").await;
    let out = run.wait_for("identity refused (strict)");
    assert_prints("trust-gateway-off", &format!("{out}{}", strings(&answer)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_permissive_unverified() {
    let mq = broker();
    let provider = demo(DemoOptions::default()).await;
    let port = free_port();
    let gateway = gateway_app(&mq, port, false, "{enabled: false}");
    let agent = agent_app(
        &mq,
        REDIRECT,
        r#"{type: sql, database_url: "sqlite:///billing.db"}"#,
        "{enabled: true, verification_mode: permissive}",
        &oauth_tool(provider.mcp_url().as_str()),
    );
    let mut run = AmeshRun::start(&apps(&[gateway, agent]), &[]);
    run.wait_for("amesh ready");
    let base = format!("http://127.0.0.1:{port}");
    gateway_listing_billing(&base, None, &run).await;
    let answer = send_tool(&base, None, "crm_whoami").await;
    let out = run.wait_for("identity not verified (permissive)");
    assert_prints(
        "trust-permissive-unverified",
        &format!("{out}{}", strings(&answer)),
    );
    assert_eq!(provider.tool_calls(), 0, "nothing reached the provider");
}

// ---------------------------------------------------------------------------
// The authorization flow

/// A provider whose MCP server challenges and whose authorization server
/// refuses to register amesh, as one that has not authorized the redirect
/// URI's domain does.
async fn provider_refusing_the_domain() -> String {
    use axum::http::{StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let documents = base.clone();
    let router = axum::Router::new().fallback(move |uri: Uri| {
        let base = documents.clone();
        async move {
            match uri.path() {
                "/mcp" => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        header::WWW_AUTHENTICATE,
                        format!(
                            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
                        ),
                    )
                    .body(axum::body::Body::empty())
                    .expect("response"),
                "/.well-known/oauth-protected-resource/mcp" => axum::Json(json!({
                    "resource": format!("{base}/mcp"),
                    "authorization_servers": [base],
                }))
                .into_response(),
                "/.well-known/oauth-authorization-server" => axum::Json(json!({
                    "issuer": base,
                    "authorization_endpoint": format!("{base}/authorize"),
                    "token_endpoint": format!("{base}/token"),
                    "registration_endpoint": format!("{base}/register"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }))
                .into_response(),
                "/register" => (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({
                        "error": "invalid_redirect_uri",
                        "error_description": "the domain agents.example.com is not authorized for MCP access",
                    })),
                )
                    .into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("{base}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_not_authorized() {
    let mq = broker();
    let mcp = provider_refusing_the_domain().await;
    let port = free_port();
    let gateway = gateway_app(&mq, port, false, "{card_publish_interval_seconds: 1}");
    let agent = agent_app(
        &mq,
        REDIRECT,
        r#"{type: sql, database_url: "sqlite:///billing.db"}"#,
        "{verification_mode: strict, card_publish_interval_seconds: 1}",
        &oauth_tool(&mcp),
    );
    let mut run = AmeshRun::start(&apps(&[gateway, agent]), &[]);
    run.wait_for("amesh ready");
    let base = format!("http://127.0.0.1:{port}");
    gateway_listing_billing(&base, None, &run).await;
    let answer = send_tool(&base, None, "crm_whoami").await;
    let out = run.wait_for("client registration failed");
    assert_prints(
        "domain-not-authorized",
        &format!("{out}{}", strings(&answer)),
    );
}

/// Gateway (users alice) and agent (strict, SQLite, the demo provider's
/// tool) in one `amesh run`; the agent sends users back to `redirect_host`.
fn flow_stack(
    mq: &MosquittoBroker,
    provider: &DemoHandle,
    port: u16,
    redirect_host: &str,
) -> AmeshRun {
    let gateway = gateway_app(mq, port, true, "{card_publish_interval_seconds: 1}");
    let agent = agent_app(
        mq,
        &format!("http://{redirect_host}:{port}/api/v1/auth/tool/callback"),
        r#"{type: sql, database_url: "sqlite:///billing.db"}"#,
        "{verification_mode: strict, card_publish_interval_seconds: 1}",
        &oauth_tool(provider.mcp_url().as_str()),
    );
    AmeshRun::start(&apps(&[gateway, agent]), &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_origin() {
    let mq = broker();
    let provider = demo(DemoOptions::default()).await;
    let port = free_port();
    // Users sign in at http://127.0.0.1:{port}; the provider sends them
    // back to http://localhost:{port}, where their browser has no cookie.
    let mut run = flow_stack(&mq, &provider, port, "localhost");
    run.wait_for("amesh ready");
    let base = format!("http://127.0.0.1:{port}");
    gateway_listing_billing(&base, Some("alice-token"), &run).await;
    let (_stream, authorize) = stream_until_prompt(&base, "crm_whoami").await;
    let callback = consent_as(&authorize, "alice", true)
        .await
        .expect("consent");
    assert_eq!(callback.host_str(), Some("localhost"), "{callback}");
    let page = reqwest::get(callback).await.expect("callback answers");
    assert_eq!(page.status(), 401);
    let page = unescape_html(&page.text().await.expect("page"));
    let out = run.wait_for("tool authorization callback without a signed-in session");
    assert_prints("callback-origin", &format!("{out}{page}"));
    assert_eq!(provider.code_exchanges(), 0, "no code was exchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_refresh_token() {
    let mq = broker();
    // Access tokens within 60 s of expiry are renewed before use: with 70 s
    // the token is good for the first call (10 s of margin for a loaded
    // machine) and due a little later.
    let provider = demo(DemoOptions {
        issue_refresh_tokens: false,
        access_ttl: Duration::from_secs(70),
        ..DemoOptions::default()
    })
    .await;
    let port = free_port();
    let mut run = flow_stack(&mq, &provider, port, "127.0.0.1");
    run.wait_for("amesh ready");
    let base = format!("http://127.0.0.1:{port}");
    gateway_listing_billing(&base, Some("alice-token"), &run).await;
    let (mut stream, authorize) = stream_until_prompt(&base, "crm_whoami").await;
    let callback = consent_as(&authorize, "alice", true)
        .await
        .expect("consent");
    let page = reqwest::Client::new()
        .get(callback)
        .header("cookie", alice_cookie(&base).await)
        .send()
        .await
        .expect("callback answers");
    assert_eq!(page.status(), 200);
    // The code was exchanged (the token issued) before the page answered.
    let issued = Instant::now();
    let task = final_task(&mut stream).await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
    run.wait_for("the provider issued no refresh token");
    // Once the token is due, the next call cannot refresh it: the user is
    // asked again.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(issued.elapsed())).await;
    let (_again, _) = stream_until_prompt(&base, "crm_whoami").await;
    let out = run.wait_for("credential unusable; starting a new authorization");
    assert_prints("no-refresh-token", &out);
    assert_eq!(provider.refreshes(), 0);
}
