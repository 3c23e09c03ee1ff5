//! Secure user delegated access end to end: browser-less users drive the
//! gateway over HTTP, the gateway and the agent talk over a real Mosquitto,
//! and the agent calls the demo provider's MCP server (both transports)
//! with each user's own OAuth credential, kept in SQLite.

use std::time::Duration;

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider, consent_as};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::stack::{SseEvent, SseReader, Stack};
use serde_json::{Value, json};

const NS: &str = "oauth/ns";
const USERS: &[(&str, &str)] = &[("gateway", "gw-pass"), ("agent", "agent-pass")];

fn broker() -> MosquittoBroker {
    MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto")
}

fn gateway_yaml(mq: &MosquittoBroker) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      port: 0
      frontend_use_authorization: true
      session_secret_key: test-session-key
      users:
        - {{id: alice, token: alice-token}}
        - {{id: bob, token: bob-token}}
      trust_manager: {{card_publish_interval_seconds: 1}}
"#,
        url = mq.url()
    )
}

/// The agent with the demo provider's two MCP endpoints as oauth2 tools.
fn agent_yaml(
    mq: &MosquittoBroker,
    demo: &DemoHandle,
    gateway: &str,
    data: &std::path::Path,
) -> String {
    let manifest = r#"
          manifest:
            - name: whoami
              description: Who the demo provider says you are.
              inputSchema: {type: object, properties: {}, additionalProperties: false}"#;
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: tools
      agent_card_publishing: {{interval_seconds: 1}}
      agent_secret_file: "{data}/agent.secret"
      session_service: {{type: sql, database_url: "sqlite:///{data}/agent.db"}}
      oauth_tool_redirect_uri: "{gateway}/api/v1/auth/tool/callback"
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      tools:
        - tool_type: mcp
          id: demo-http
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: http_{manifest}
        - tool_type: mcp
          id: demo-sse
          connection_params: {{type: sse, url: "{sse}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: sse_{manifest}
"#,
        url = mq.url(),
        data = data.display(),
        mcp = demo.mcp_url(),
        sse = demo.sse_url(),
    )
}

struct World {
    _mq: MosquittoBroker,
    demo: DemoHandle,
    gw: Stack,
    agent: Stack,
    data: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let mq = broker();
        let demo = DemoProvider::start(DemoOptions::default())
            .await
            .expect("demo provider");
        let gw = Stack::start(&gateway_yaml(&mq)).await.expect("gateway");
        let data = tempfile::tempdir().unwrap();
        let agent = Stack::start(&agent_yaml(&mq, &demo, &gw.url(), data.path()))
            .await
            .expect("agent");
        gw.wait_for_agent_as("tools", Duration::from_secs(10), Some("alice-token"))
            .await
            .unwrap();
        World {
            _mq: mq,
            demo,
            gw,
            agent,
            data,
        }
    }

    async fn restart_agent(&mut self) {
        self.agent.stop().await;
        self.agent = Stack::start(&agent_yaml(
            &self._mq,
            &self.demo,
            &self.gw.url(),
            self.data.path(),
        ))
        .await
        .expect("agent restarts");
    }

    /// Starts a streamed request for `tool` as the token's user.
    async fn stream(&self, token: &str, tool: &str) -> SseReader {
        let resp = self
            .gw
            .http
            .post(format!("{}/api/v1/message:stream", self.gw.url()))
            .bearer_auth(token)
            .json(&json!({"agent_name": "tools", "data": {"tool": tool}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        SseReader::new(resp)
    }

    /// A browser session cookie for the token's user.
    async fn session(&self, token: &str) -> String {
        let resp = self
            .gw
            .http
            .post(format!("{}/api/v1/auth/login", self.gw.url()))
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    /// The provider's redirect, followed by the browser with `cookie`.
    async fn callback(&self, callback: &url::Url, cookie: &str) -> (u16, String) {
        let resp = self
            .gw
            .http
            .get(callback.clone())
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

async fn next(events: &mut SseReader) -> SseEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next_event())
        .await
        .expect("an event in time")
        .unwrap()
        .expect("stream still open")
}

/// Reads events until the task asks for authorization; returns the URL.
async fn until_auth_required(events: &mut SseReader) -> url::Url {
    loop {
        let ev = next(events).await;
        if ev.event == "status" && ev.data["status"]["state"] == "auth-required" {
            let parts = ev.data["status"]["message"]["parts"].as_array().unwrap();
            let data = parts.iter().find(|p| p["kind"] == "data").unwrap();
            return data["data"]["authorization_url"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        }
        assert!(
            ev.event != "task" && ev.event != "error",
            "ended without a prompt: {ev:?}"
        );
    }
}

/// Reads events until the final task.
async fn final_task(events: &mut SseReader) -> Value {
    loop {
        let ev = next(events).await;
        match ev.event.as_str() {
            "task" => return ev.data,
            "error" => panic!("error event: {:?}", ev.data),
            _ => {}
        }
    }
}

fn answer(task: &Value) -> String {
    task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn users_authorize_once_per_tool_and_see_only_their_own_data() {
    let w = World::start().await;
    for (transport, tool) in [("streamable-http", "http_whoami"), ("sse", "sse_whoami")] {
        for (user, token) in [("alice", "alice-token"), ("bob", "bob-token")] {
            let mut events = w.stream(token, tool).await;
            let url = until_auth_required(&mut events).await;
            let callback = consent_as(&url, user, true).await.unwrap();
            let (status, page) = w.callback(&callback, &w.session(token).await).await;
            assert_eq!(status, 200, "{transport}/{user}: {page}");
            assert!(page.contains("the task continues"), "{page}");
            let task = final_task(&mut events).await;
            assert_eq!(
                task["status"]["state"], "completed",
                "{transport}/{user}: {task}"
            );
            assert_eq!(answer(&task), format!("You are {user}"), "{transport}");

            // The second request needs no new authorization.
            let mut again = w.stream(token, tool).await;
            let task = final_task(&mut again).await;
            assert_eq!(
                answer(&task),
                format!("You are {user}"),
                "{transport} second call"
            );
        }
    }
}

#[tokio::test]
async fn a_callback_in_another_users_session_is_refused_and_forwards_nothing() {
    let w = World::start().await;
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    let callback = consent_as(&url, "alice", true).await.unwrap();

    let (status, page) = w.callback(&callback, &w.session("bob-token").await).await;
    assert_eq!(status, 403, "{page}");
    // Nothing was forwarded: the flow is unused, so alice can still finish it.
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");

    // The state is single use.
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("already used"), "{page}");

    // A forged state is not forwarded anywhere.
    let mut forged = callback.clone();
    forged.set_query(Some("code=x&state=not-a-state"));
    let (status, _) = w.callback(&forged, &w.session("alice-token").await).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_provider_error_ends_the_task_with_a_clear_message() {
    let w = World::start().await;
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    let callback = consent_as(&url, "alice", false).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("access_denied"), "{page}");
    let task = final_task(&mut events).await;
    assert_eq!(task["status"]["state"], "failed");
    let why = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(why.contains("access_denied"), "{why}");
}

#[tokio::test]
async fn an_agent_restarted_while_waiting_still_completes_the_flow() {
    let mut w = World::start().await;
    let mut events = w.stream("alice-token", "sse_whoami").await;
    let url = until_auth_required(&mut events).await;
    w.restart_agent().await;
    w.gw.wait_for_agent_as("tools", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();
    let callback = consent_as(&url, "alice", true).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    let task = final_task(&mut events).await;
    assert_eq!(answer(&task), "You are alice", "{task}");
}

#[tokio::test]
async fn expiry_refreshes_silently_and_revocation_prompts_again() {
    let w = World::start().await;
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    let callback = consent_as(&url, "alice", true).await.unwrap();
    w.callback(&callback, &w.session("alice-token").await).await;
    final_task(&mut events).await;

    // Expired access token: refreshed with the refresh token, no prompt.
    w.demo.expire_access_tokens();
    let mut events = w.stream("alice-token", "http_whoami").await;
    let task = final_task(&mut events).await;
    assert_eq!(answer(&task), "You are alice", "{task}");
    assert!(w.demo.refreshes() >= 1);

    // Revoked at the provider: back to the authorization prompt.
    w.demo.revoke_user("alice");
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    assert!(
        url.as_str()
            .starts_with(w.demo.endpoint("/authorize").as_str()),
        "{url}"
    );
}

/// `until_auth_required`, also returning the event's id and the task id.
async fn prompt_and_ids(events: &mut SseReader) -> (url::Url, String, String) {
    let submitted = next(events).await;
    assert_eq!(submitted.event, "submitted", "{submitted:?}");
    let task = submitted.data["taskId"].as_str().unwrap().to_string();
    loop {
        let ev = next(events).await;
        if ev.event == "status" && ev.data["status"]["state"] == "auth-required" {
            let parts = ev.data["status"]["message"]["parts"].as_array().unwrap();
            let data = parts.iter().find(|p| p["kind"] == "data").unwrap();
            let url = data["data"]["authorization_url"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            return (url, ev.id.expect("events carry ids"), task);
        }
    }
}

#[tokio::test]
async fn canceling_a_task_that_waits_for_authorization_ends_its_stream_and_a_late_callback_says_so()
{
    let w = World::start().await;
    let mut events = w.stream("alice-token", "http_whoami").await;
    let (url, _, task) = prompt_and_ids(&mut events).await;
    let cancel =
        w.gw.http
            .post(format!("{}/api/v1/tasks/{task}:cancel", w.gw.url()))
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap();
    assert_eq!(cancel.status(), 200);
    // The stream ends, with canceled: nothing else would end it.
    let end = final_task(&mut events).await;
    assert_eq!(end["status"]["state"], "canceled", "{end}");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), events.next_event())
            .await
            .expect("the stream ends")
            .unwrap()
            .is_none()
    );
    // Approving afterwards stores the authorization but continues nothing,
    // and the page says so.
    let callback = consent_as(&url, "alice", true).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("already ended"), "{page}");
    assert!(!page.contains("the task continues"), "{page}");
}

#[tokio::test]
async fn a_client_that_comes_back_gets_the_missed_events_with_last_event_id() {
    let w = World::start().await;
    let mut events = w.stream("alice-token", "http_whoami").await;
    let (url, prompt_id, task) = prompt_and_ids(&mut events).await;
    // The browser goes away (reload); the task goes on without it.
    drop(events);
    let callback = consent_as(&url, "alice", true).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");

    let resume = |who: &'static str, last: Option<String>| {
        let mut req =
            w.gw.http
                .get(format!("{}/api/v1/tasks/{task}/events", w.gw.url()))
                .bearer_auth(who);
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        req.send()
    };
    // Another user gets nothing, not even that the task exists.
    assert_eq!(resume("bob-token", None).await.unwrap().status(), 404);
    let resp = resume("alice-token", Some(prompt_id.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let missed = amesh_tests::stack::read_sse(resp).await.unwrap();
    let first: u64 = missed[0].id.as_deref().unwrap().parse().unwrap();
    assert_eq!(first, prompt_id.parse::<u64>().unwrap() + 1, "{missed:?}");
    let last = missed.last().unwrap();
    assert_eq!(last.event, "task", "{missed:?}");
    assert_eq!(last.data["status"]["state"], "completed");
    assert_eq!(answer(&last.data), "You are alice");
    // From the start, the whole story: submitted first.
    let all = amesh_tests::stack::read_sse(resume("alice-token", None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(all[0].event, "submitted");
    assert_eq!(
        all.len(),
        missed.len() + prompt_id.parse::<usize>().unwrap()
    );
    // The task list shows it, ended.
    let list: Value =
        w.gw.http
            .get(format!("{}/api/v1/tasks", w.gw.url()))
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(list["tasks"][0]["taskId"], task.as_str(), "{list}");
    assert_eq!(list["tasks"][0]["state"], "completed", "{list}");
    assert_eq!(list["tasks"][0]["done"], true, "{list}");
}

impl World {
    /// `method` on `/api/v1/connections{path}` as the token's user.
    async fn connections(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .gw
            .http
            .request(
                method,
                format!("{}/api/v1/connections{path}", self.gw.url()),
            )
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

impl World {
    /// `last_used_ms` of the token user's `tool_id` connection, once set
    /// (polled for up to 5 s).
    async fn last_used(&self, token: &str, tool_id: &str) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (_, list) = self.connections(reqwest::Method::GET, "", token).await;
            if let Some(ms) = row(&list, tool_id)["last_used_ms"].as_u64() {
                return ms;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{tool_id} not marked used: {list}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The row of `tool_id` in a connections listing.
fn row<'a>(list: &'a Value, tool_id: &str) -> &'a Value {
    list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool_id"] == tool_id)
        .unwrap_or_else(|| panic!("{tool_id} not listed: {list}"))
}

#[tokio::test]
async fn connected_accounts_are_listed_disconnected_with_revocation_and_connected_per_user() {
    let w = World::start().await;
    let get = reqwest::Method::GET;
    // Alice connects demo-http by using it.
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    let callback = consent_as(&url, "alice", true).await.unwrap();
    w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");

    let (status, list) = w.connections(get.clone(), "", "alice-token").await;
    assert_eq!(status, 200, "{list}");
    let http = row(&list, "demo-http");
    assert_eq!(http["connected"], true, "{list}");
    assert_eq!(http["agent"], "tools");
    assert!(!http["scopes"].as_array().unwrap().is_empty(), "{list}");
    assert!(http["connected_ms"].as_u64().unwrap() > 0);
    assert!(
        http["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("http_whoami"))
    );
    assert_eq!(row(&list, "demo-sse")["connected"], false);
    assert!(!list.to_string().contains("access_token"), "{list}");
    // The call used the credential: "last used" is recorded (beside the
    // call, so it may land a moment after the answer).
    let used = w.last_used("alice-token", "demo-http").await;
    assert!(used >= http["connected_ms"].as_u64().unwrap(), "{list}");
    // Bob sees his own: nothing connected, and cannot disconnect alice's.
    let (_, bobs) = w.connections(get.clone(), "", "bob-token").await;
    assert_eq!(row(&bobs, "demo-http")["connected"], false, "{bobs}");
    let (status, body) = w
        .connections(reqwest::Method::DELETE, "/tools/demo-http", "bob-token")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(w.demo.revocations(), 0);

    // Alice disconnects: revoked at the provider (RFC 7009), gone here.
    let (status, body) = w
        .connections(reqwest::Method::DELETE, "/tools/demo-http", "alice-token")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(w.demo.revocations(), 1);
    let (_, list) = w.connections(get.clone(), "", "alice-token").await;
    assert_eq!(row(&list, "demo-http")["connected"], false, "{list}");
    // Using the tool asks again.
    let mut events = w.stream("alice-token", "http_whoami").await;
    until_auth_required(&mut events).await;
    drop(events);

    // Connecting before chatting: the provider's URL, consent, callback.
    let (status, started) = w
        .connections(reqwest::Method::POST, "/tools/demo-sse", "alice-token")
        .await;
    assert_eq!(status, 200, "{started}");
    let url: url::Url = started["authorization_url"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let callback = consent_as(&url, "alice", true).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("can now use this account"), "{page}");
    let (_, list) = w.connections(get.clone(), "", "alice-token").await;
    assert_eq!(row(&list, "demo-sse")["connected"], true, "{list}");
    assert!(
        row(&list, "demo-sse")["last_used_ms"].is_null(),
        "not used yet: {list}"
    );
    // ... and the tool runs without a prompt.
    let mut events = w.stream("alice-token", "sse_whoami").await;
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");
    w.last_used("alice-token", "demo-sse").await;
    // Unknown agents and tools are refused.
    let (status, _) = w
        .connections(reqwest::Method::POST, "/nobody/demo-sse", "alice-token")
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .connections(reqwest::Method::POST, "/tools/nope", "alice-token")
        .await;
    assert_eq!(status, 400);
}

/// The `client_id` an authorization URL carries.
fn client_id(url: &url::Url) -> String {
    url.query_pairs()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
        .expect("client_id")
}

#[tokio::test]
async fn a_provider_that_forgot_its_clients_gets_a_new_registration_and_operators_see_it() {
    use amesh_runtime::credentials_cli::{Selection, clients, forget_client};
    let w = World::start().await;
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    let first_client = client_id(&url);
    // The demo promises RFC 9207 `iss`: the gateway must forward it.
    let callback = consent_as(&url, "alice", true).await.unwrap();
    assert!(
        callback.query_pairs().any(|(k, _)| k == "iss"),
        "{callback}"
    );
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");

    let config = w.data.path().join("agent.yaml");
    std::fs::write(
        &config,
        agent_yaml(&w._mq, &w.demo, &w.gw.url(), w.data.path()),
    )
    .unwrap();
    let files = [config];
    let everyone = Selection::default();
    let listed = clients(&files, &everyone).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].client_id, first_client);
    assert_eq!(listed[0].agent_id, "tools");

    // The provider restarts with an in-memory store: alice's token, her
    // refresh token and amesh's client are all unknown to it now.
    w.demo.forget_registrations();
    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    let second_client = client_id(&url);
    assert_ne!(second_client, first_client);
    assert_eq!(w.demo.registrations(), 2);
    let callback = consent_as(&url, "alice", true).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");
    let listed = clients(&files, &everyone).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].client_id, second_client);

    // An operator makes the agent forget it: the next new authorization
    // registers a third client.
    let issuer = listed[0].server.clone();
    assert_eq!(forget_client(&files, &everyone, &issuer).await.unwrap(), 1);
    assert!(clients(&files, &everyone).await.unwrap().is_empty());
    assert_eq!(forget_client(&files, &everyone, &issuer).await.unwrap(), 0);
    let mut events = w.stream("bob-token", "sse_whoami").await;
    let url = until_auth_required(&mut events).await;
    assert_ne!(client_id(&url), second_client);
    assert_eq!(w.demo.registrations(), 3);
}

#[tokio::test]
async fn a_server_reading_client_metadata_documents_gets_the_gateways_document_url_as_client_id() {
    let w = World::start().await;
    w.demo.set_client_id_metadata_documents(true);
    let document_url = format!("{}/api/v1/auth/tool/client-metadata", w.gw.url());
    let document: Value =
        w.gw.http
            .get(&document_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(document["client_id"], document_url.as_str(), "{document}");
    assert_eq!(
        document["redirect_uris"],
        json!([format!("{}/api/v1/auth/tool/callback", w.gw.url())])
    );
    assert_eq!(document["token_endpoint_auth_method"], "none");

    let mut events = w.stream("alice-token", "http_whoami").await;
    let url = until_auth_required(&mut events).await;
    assert_eq!(client_id(&url), document_url);
    let callback = consent_as(&url, "alice", true).await.unwrap();
    let (status, page) = w.callback(&callback, &w.session("alice-token").await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");
    assert_eq!(w.demo.registrations(), 0, "no dynamic registration");
    assert_eq!(w.demo.metadata_documents(), 1);

    // The refresh authenticates as the same URL client.
    w.demo.expire_access_tokens();
    let mut events = w.stream("alice-token", "http_whoami").await;
    assert_eq!(answer(&final_task(&mut events).await), "You are alice");
    assert!(w.demo.refreshes() >= 1);
    assert_eq!(w.demo.registrations(), 0);
}
