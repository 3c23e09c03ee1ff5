//! A tool call through amesh with a warm credential, beside the same MCP
//! call made directly, in one run; then 500 users at once, each with their
//! own credential.
//!
//! Run: `cargo bench -p amesh-tests --bench mcp_tool`. Prints a table.
//!
//! Path through amesh: HTTP `POST /api/v1/message:send` at the gateway ->
//! Mosquitto -> agent (identity verified, credential read from SQLite and
//! decrypted) -> MCP `tools/call` on the demo provider (Streamable HTTP) ->
//! back. Direct: an MCP client session calling the same tool with the same
//! kind of token.

#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use amesh_demo::{DemoOptions, DemoProvider, consent_as};
use amesh_mcp::client::McpClientPool;
use amesh_mcp::oauth;
use amesh_mcp::tool_config::McpToolConfig;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::call_authorizing;
use amesh_tests::stack::Stack;
use serde_json::json;

const NS: &str = "bench/mcp";
const USERS: usize = 500;
const SEQUENTIAL: usize = 2000;
const WARMUP: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let broker_users = [("gateway", "pw"), ("agent", "pw")];
    let acl: String = broker_users
        .iter()
        .map(|(u, _)| format!("user {u}\ntopic readwrite {NS}/a2a/v1/#\n"))
        .collect();
    let mq = MosquittoBroker::start_with(&broker_users, &acl, "max_queued_messages 100000\n")
        .expect("mosquitto");
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo");
    let data = tempfile::tempdir().expect("tempdir");

    let users_yaml: String = (0..USERS)
        .map(|i| format!("        - {{id: user{i}, token: token-{i}}}\n"))
        .collect();
    let gw = Stack::start(&format!(
        "apps:\n  - name: gw\n    app_module: gateway\n    broker: {{broker_url: \"{url}\", broker_username: gateway, broker_password: pw}}\n    app_config:\n      namespace: {NS}\n      port: 0\n      frontend_use_authorization: true\n      session_secret_key: bench\n      users:\n{users_yaml}",
        url = mq.url()
    ))
    .await
    .expect("gateway");
    let agent = Stack::start(&format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: pw}}
    app_config:
      namespace: {NS}
      agent_name: tools
      agent_secret_file: "{data}/agent.secret"
      session_service: {{type: sql, database_url: "sqlite:///{data}/agent.db"}}
      oauth_tool_redirect_uri: "{gw}/api/v1/auth/tool/callback"
      trust_manager: {{verification_mode: strict}}
      tools:
        - tool_type: mcp
          id: demo
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          manifest:
            - name: whoami
              description: Who you are.
              inputSchema: {{type: object, properties: {{}}, additionalProperties: false}}
"#,
        url = mq.url(),
        data = data.path().display(),
        gw = gw.url(),
        mcp = demo.mcp_url(),
    ))
    .await
    .expect("agent");
    gw.wait_for_agent_as("tools", Duration::from_secs(10), Some("token-0"))
        .await
        .expect("agent listed");

    // Every user authorizes once, through the real flow.
    let t0 = Instant::now();
    for i in 0..USERS {
        authorize(&gw, i).await;
    }
    let authorize_all = t0.elapsed();

    // Direct: the same tool over an MCP session with a token of our own.
    let direct = direct_calls(&demo).await;

    // Through amesh, one user, one call at a time.
    let url = format!("{}/api/v1/message:send", gw.url());
    let body = json!({"agent_name": "tools", "data": {"tool": "whoami"}});
    let mut amesh = Vec::with_capacity(SEQUENTIAL);
    for i in 0..(WARMUP + SEQUENTIAL) {
        let t = Instant::now();
        let resp = gw
            .http
            .post(&url)
            .bearer_auth("token-0")
            .json(&body)
            .send()
            .await
            .expect("http");
        let task: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(task["status"]["state"], "completed", "{task}");
        if i >= WARMUP {
            amesh.push(t.elapsed());
        }
    }
    amesh.sort();

    // 500 users at once, each with their own credential.
    let t = Instant::now();
    let mut calls = Vec::new();
    for i in 0..USERS {
        let (http, url, body) = (gw.http.clone(), url.clone(), body.clone());
        calls.push(tokio::spawn(async move {
            let s = Instant::now();
            let resp = http
                .post(&url)
                .bearer_auth(format!("token-{i}"))
                .json(&body)
                .send()
                .await;
            let ok = match resp {
                Ok(r) => match r.json::<serde_json::Value>().await {
                    Ok(task) => {
                        task["status"]["state"] == "completed"
                            && task["artifacts"][0]["parts"][0]["text"]
                                == format!("You are user{i}")
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
            (ok, s.elapsed())
        }));
    }
    let mut errors = 0;
    let mut burst = Vec::new();
    for c in calls {
        let (ok, d) = c.await.expect("task");
        if !ok {
            errors += 1;
        }
        burst.push(d);
    }
    let burst_total = t.elapsed();
    burst.sort();

    println!("\n| measurement | p50 ms | p99 ms | notes |\n|---|---|---|---|");
    println!(
        "| MCP tools/call directly (Streamable HTTP, warm session) | {} | {} | {SEQUENTIAL} calls |",
        ms(pct(&direct, 0.5)),
        ms(pct(&direct, 0.99))
    );
    println!(
        "| same tool through amesh (gateway HTTP -> MQTT -> agent -> MCP), warm credential | {} | {} | {SEQUENTIAL} calls, trust strict, SQLite store |",
        ms(pct(&amesh, 0.5)),
        ms(pct(&amesh, 0.99))
    );
    println!(
        "| {USERS} users at once, each with their own credential | {} | {} | {errors} errors, all done in {} ms |",
        ms(pct(&burst, 0.5)),
        ms(pct(&burst, 0.99)),
        burst_total.as_millis()
    );
    println!(
        "\nadded by amesh (p50): {:.3} ms; {USERS} first authorizations took {} ms",
        (pct(&amesh, 0.5).as_secs_f64() - pct(&direct, 0.5).as_secs_f64()) * 1000.0,
        authorize_all.as_millis()
    );
    drop(agent);
}

/// Runs user `i` through the whole authorization: prompt, consent,
/// callback in the user's session, final answer.
async fn authorize(gw: &Stack, i: usize) {
    let task = call_authorizing(
        gw,
        &format!("token-{i}"),
        &format!("user{i}"),
        "tools",
        "whoami",
    )
    .await
    .expect("authorized");
    assert_eq!(task["status"]["state"], "completed", "{task}");
}

/// The floor: an MCP client with its own token, calling the tool directly.
async fn direct_calls(demo: &amesh_demo::DemoHandle) -> Vec<Duration> {
    let mcp_url = demo.mcp_url();
    let http = oauth::OAuthHttp::new(&mcp_url, &[]).expect("http");
    let server = oauth::discover(&http, &mcp_url, None)
        .await
        .expect("discover");
    let redirect: url::Url = "http://127.0.0.1:1/api/v1/auth/tool/callback"
        .parse()
        .expect("url");
    let client = oauth::register(&http, &server, &redirect, "bench")
        .await
        .expect("register")
        .client();
    let scopes = server.select_scopes(&[]);
    let (url, verifier) = oauth::authorization_request(
        &server,
        &client,
        &redirect,
        &scopes,
        "bench-state-0123456789",
    );
    let callback = consent_as(&url, "direct", true).await.expect("consent");
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .expect("code");
    let tokens = oauth::exchange_code(
        &http, &server, &client, &code, &verifier, &redirect, &scopes,
    )
    .await
    .expect("exchange");
    let cfg: McpToolConfig = serde_json::from_value(json!({
        "connection_params": {"type": "streamable-http", "url": mcp_url.as_str()}
    }))
    .expect("config");
    let pool = McpClientPool::new().expect("pool");
    let session = pool
        .session(&cfg, "direct", Some(&tokens.access_token))
        .await
        .expect("session");
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for i in 0..(WARMUP + SEQUENTIAL) {
        let t = Instant::now();
        let result = session.call_tool("whoami", json!({})).await.expect("call");
        assert!(!result.is_error);
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    samples
}
