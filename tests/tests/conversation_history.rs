#![recursion_limit = "256"]

//! Conversations from the agents' session stores, over a real Mosquitto
//! with a scripted model: an agent answers `amesh/sessions/*` for the
//! verified user of the signed identity token only (SQL and memory
//! stores), and a gateway restarted with the same agent gets its users'
//! conversations, turns and renamed titles back from the agent.

use std::time::{Duration, Instant};

use amesh_runtime::a2a::jsonrpc;
use amesh_runtime::broker::UserProperties;
use amesh_tests::model_server::{Protocol, ScriptedModel, Turn};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::RawClient;
use amesh_tests::stack::{SseReader, Stack};
use amesh_trust::{IdentitySigner, SigningKey, UserClaims};
use serde_json::{Value, json};

const NS: &str = "history/ns";
const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("agent", "agent-pass"),
    ("tester", "t-pass"),
];

fn broker() -> MosquittoBroker {
    let acl: String = USERS
        .iter()
        .map(|(u, _)| format!("user {u}\ntopic readwrite {NS}/a2a/v1/#\n"))
        .collect();
    MosquittoBroker::start(USERS, &acl).expect("mosquitto")
}

fn gateway_yaml(mq: &MosquittoBroker, port: u16, key: &std::path::Path) -> String {
    format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      port: {port}
      frontend_use_authorization: true
      session_secret_key: test-session-key
      users:
        - {{id: alice, token: alice-token}}
        - {{id: bob, token: bob-token}}
      trust_manager: {{card_publish_interval_seconds: 1, key_file: "{key}"}}
"#,
        url = mq.url(),
        key = key.display(),
    )
}

fn agent_yaml(
    mq: &MosquittoBroker,
    model: &ScriptedModel,
    store: &str,
    data: &std::path::Path,
) -> String {
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: thinker
      agent_card_publishing: {{interval_seconds: 1}}
      agent_secret_file: "{data}/agent.secret"
      session_service: {store}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      instruction: You are a careful test agent.
      model: {{model: openai/test-model, api_base: "{api}", api_key: sk-test-key, timeout: 5, max_retries: 1}}
      tools:
        - {{tool_type: builtin, tool_name: time}}
"#,
        url = mq.url(),
        data = data.display(),
        api = model.base_url(),
    )
}

fn sqlite(data: &std::path::Path) -> String {
    format!(
        "{{type: sql, database_url: \"sqlite:///{}/agent.db\"}}",
        data.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct World {
    mq: MosquittoBroker,
    model: ScriptedModel,
    gw: Stack,
    agent: Stack,
    keys: tempfile::TempDir,
    data: tempfile::TempDir,
    port: u16,
}

impl World {
    async fn start(store: impl Fn(&std::path::Path) -> String) -> World {
        let mq = broker();
        let model = ScriptedModel::start(Protocol::OpenAi).await;
        let keys = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let gw = Stack::start(&gateway_yaml(&mq, port, &keys.path().join("gw.pem")))
            .await
            .expect("gateway");
        let agent = Stack::start(&agent_yaml(&mq, &model, &store(data.path()), data.path()))
            .await
            .expect("agent");
        gw.wait_for_agent_as("thinker", Duration::from_secs(10), Some("alice-token"))
            .await
            .unwrap();
        World {
            mq,
            model,
            gw,
            agent,
            keys,
            data,
            port,
        }
    }

    /// Asks in words as the token's user and reads the stream to its end.
    async fn ask(&self, token: &str, text: &str, context: &str) {
        let resp = self
            .gw
            .http
            .post(format!("{}/api/v1/message:stream", self.gw.url()))
            .bearer_auth(token)
            .json(&json!({"agent_name": "thinker", "text": text, "contextId": context}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut events = SseReader::new(resp);
        let mut last = None;
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), events.next_event())
            .await
            .expect("an event in time")
            .unwrap()
        {
            last = Some(ev);
        }
        let last = last.expect("events");
        assert_eq!(last.data["status"]["state"], "completed", "{last:?}");
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .gw
            .http
            .request(method, format!("{}{path}", self.gw.url()))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, token, None).await
    }

    /// A token for `user` signed with the gateway's key, as the gateway
    /// would send it to the agent.
    fn token(&self, user: &str) -> String {
        let key = SigningKey::load_or_create(self.keys.path().join("gw.pem")).unwrap();
        // `iss` is the gateway's broker username (its trust card's id).
        IdentitySigner::new(
            "gateway",
            NS,
            key,
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )
        .unwrap()
        .sign(&UserClaims::new(user), "thinker", None)
        .unwrap()
    }
}

/// One turn that calls the `time` tool and answers.
fn script_turn(model: &ScriptedModel, answer: &str) {
    model.push(Turn::tool_calls([("time", json!({}))]));
    model.push(Turn::text(answer));
}

/// A raw `amesh/sessions/*` request to the agent as `user` (with `token`)
/// and its answer: the data part, or the error.
async fn session_request(
    raw: &mut RawClient,
    user: &str,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> Result<Value, (i64, String)> {
    let mut props = UserProperties::new()
        .with("userId", user)
        .with("clientId", "tester");
    if let Some(t) = token {
        props.push("authToken", t);
    }
    let payload = serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params}),
    )
    .unwrap();
    let reply = raw
        .request("thinker", payload, props)
        .await
        .expect("an answer");
    if let Some(e) = reply.get("error") {
        return Err((
            e["code"].as_i64().unwrap_or_default(),
            e["message"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(reply["result"]["parts"][0]["data"].clone())
}

#[tokio::test]
async fn an_agent_lists_and_reads_only_the_verified_users_own_sessions() {
    let memory = |_: &std::path::Path| "{type: memory}".to_owned();
    for (label, store) in [
        ("sqlite", &sqlite as &dyn Fn(&std::path::Path) -> String),
        ("memory", &memory),
    ] {
        let w = World::start(store).await;
        script_turn(&w.model, "It is noon for Alice.");
        w.ask("alice-token", "What time is it?\nPlease.", "ctx-alice")
            .await;
        w.model.push(Turn::text("Hello Bob."));
        w.ask("bob-token", "Hi, I am Bob", "ctx-bob").await;
        let mut raw = RawClient::connect(&w.mq.broker_config("tester", "t-pass"), "raw", NS)
            .await
            .unwrap();
        let (alice, bob) = (w.token("alice"), w.token("bob"));

        let list = session_request(
            &mut raw,
            "alice",
            Some(&alice),
            "amesh/sessions/list",
            json!({}),
        )
        .await
        .unwrap_or_else(|e| panic!("[{label}] {e:?}"));
        let sessions = list["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "[{label}] {list}");
        assert_eq!(sessions[0]["contextId"], "ctx-alice");
        assert_eq!(
            sessions[0]["title"], "What time is it?",
            "[{label}] first line"
        );
        assert_eq!(sessions[0]["renamed"], false);
        assert_eq!(sessions[0]["turns"], 1);
        assert!(sessions[0]["updatedMs"].as_u64().unwrap() > 0);

        let got = session_request(
            &mut raw,
            "alice",
            Some(&alice),
            "amesh/sessions/get",
            json!({"contextId": "ctx-alice"}),
        )
        .await
        .unwrap_or_else(|e| panic!("[{label}] {e:?}"));
        let turn = &got["history"][0];
        assert_eq!(
            turn["prompt"], "What time is it?\nPlease.",
            "[{label}] {got}"
        );
        assert_eq!(turn["answer"], "It is noon for Alice.", "[{label}] {got}");
        assert_eq!(
            turn["tools"],
            json!([{"tool": "time", "server": "builtin", "ok": true}]),
            "[{label}] {got}"
        );

        // Bob, verified, sees only his; alice's context is unknown to him,
        // and he cannot rename or delete it.
        let list = session_request(
            &mut raw,
            "bob",
            Some(&bob),
            "amesh/sessions/list",
            json!({}),
        )
        .await
        .unwrap();
        let ids: Vec<&str> = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["contextId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["ctx-bob"], "[{label}]");
        for (method, params) in [
            ("amesh/sessions/get", json!({"contextId": "ctx-alice"})),
            (
                "amesh/sessions/rename",
                json!({"contextId": "ctx-alice", "title": "Bob's now"}),
            ),
            ("amesh/sessions/delete", json!({"contextId": "ctx-alice"})),
        ] {
            let err = session_request(&mut raw, "bob", Some(&bob), method, params)
                .await
                .expect_err("alice's");
            assert_eq!(
                err.0,
                jsonrpc::TASK_NOT_FOUND,
                "[{label}] {method}: {err:?}"
            );
            assert_eq!(
                err.1, "conversation ctx-alice not found",
                "[{label}] {method}: the same as an unknown one, naming no owner"
            );
        }
        // Claiming to be alice without her token gets nothing.
        let err = session_request(&mut raw, "alice", None, "amesh/sessions/list", json!({}))
            .await
            .expect_err("no token");
        assert_eq!(err.0, jsonrpc::UNAUTHENTICATED, "[{label}] {err:?}");
        let err = session_request(
            &mut raw,
            "alice",
            Some(&bob),
            "amesh/sessions/get",
            json!({"contextId": "ctx-alice"}),
        )
        .await
        .expect_err("bob's token claiming alice");
        assert!(
            matches!(err.0, jsonrpc::TASK_NOT_FOUND | jsonrpc::UNAUTHENTICATED),
            "[{label}] the token's user counts: {err:?}"
        );
        // Alice's conversation is untouched.
        let list = session_request(
            &mut raw,
            "alice",
            Some(&alice),
            "amesh/sessions/list",
            json!({"limit": 5}),
        )
        .await
        .unwrap();
        assert_eq!(
            list["sessions"][0]["title"], "What time is it?",
            "[{label}]"
        );
        assert!(list["nextBeforeMs"].is_null(), "[{label}] one page");
        raw.disconnect().await;
        let mut w = w;
        w.agent.stop().await;
        w.gw.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_gateway_gets_conversations_turns_and_titles_back_from_the_agent() {
    let mut w = World::start(sqlite).await;
    let (post, patch) = (reqwest::Method::POST, reqwest::Method::PATCH);
    let (status, conv) = w
        .api(
            post,
            "/api/v1/conversations",
            "alice-token",
            Some(json!({"agent": "thinker"})),
        )
        .await;
    assert_eq!(status, 201, "{conv}");
    let id = conv["id"].as_str().unwrap().to_owned();
    script_turn(&w.model, "It is noon.");
    w.ask("alice-token", "What time is it?", &id).await;
    let (status, renamed) = w
        .api(
            patch,
            &format!("/api/v1/conversations/{id}"),
            "alice-token",
            Some(json!({"title": "Clock questions"})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        renamed["agents"],
        json!([{"agent": "thinker", "renamed": true}]),
        "{renamed}"
    );
    // A second conversation, named before its first answer.
    let (_, early) = w
        .api(
            reqwest::Method::POST,
            "/api/v1/conversations",
            "alice-token",
            Some(json!({"agent": "thinker"})),
        )
        .await;
    let early_id = early["id"].as_str().unwrap().to_owned();
    w.api(
        reqwest::Method::PATCH,
        &format!("/api/v1/conversations/{early_id}"),
        "alice-token",
        Some(json!({"title": "Named early"})),
    )
    .await;

    // The gateway restarts; its memory is gone, the agent's store is not.
    w.gw.stop().await;
    w.gw = Stack::start(&gateway_yaml(&w.mq, w.port, &w.keys.path().join("gw.pem")))
        .await
        .expect("gateway again");
    w.gw.wait_for_agent_as("thinker", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();

    let (status, list) = w.get("/api/v1/conversations", "alice-token").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["unavailable"], json!([]), "{list}");
    let convs = list["conversations"].as_array().unwrap();
    let listed = |id: &str| {
        convs
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {list}"))
    };
    let first = listed(&id);
    assert_eq!(
        (
            first["title"].as_str(),
            first["agent"].as_str(),
            first["turns"].as_u64()
        ),
        (Some("Clock questions"), Some("thinker"), Some(1)),
        "{list}"
    );
    assert_eq!(listed(&early_id)["title"], "Named early", "{list}");

    let (status, got) = w
        .get(&format!("/api/v1/conversations/{id}"), "alice-token")
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["title"], "Clock questions");
    let turn = &got["turns"][0];
    assert_eq!(
        (
            turn["prompt"].as_str(),
            turn["answer"].as_str(),
            turn["state"].as_str()
        ),
        (
            Some("What time is it?"),
            Some("It is noon."),
            Some("completed")
        ),
        "{got}"
    );
    assert_eq!(turn["tools"][0]["tool"], "time", "{got}");
    assert_eq!(turn["tools"][0]["ok"], true, "{got}");

    // Bob sees none of it.
    let (_, bobs) = w.get("/api/v1/conversations", "bob-token").await;
    assert_eq!(bobs["conversations"], json!([]), "{bobs}");
    let (status, _) = w
        .get(&format!("/api/v1/conversations/{id}"), "bob-token")
        .await;
    assert_eq!(status, 404);

    // The conversation goes on after the restart: the model sees its
    // history, the turn is recorded, the name stays.
    w.model.push(Turn::text("Still noon."));
    let before = w.model.request_count();
    w.ask("alice-token", "And now?", &id).await;
    let sent = w.model.requests()[before]["messages"].to_string();
    assert!(
        sent.contains("What time is it?") && sent.contains("It is noon."),
        "{sent}"
    );
    let (_, got) = w
        .get(&format!("/api/v1/conversations/{id}"), "alice-token")
        .await;
    assert_eq!(got["turns"].as_array().unwrap().len(), 2, "{got}");
    assert_eq!(got["title"], "Clock questions");

    // An agent that stops answering does not hold up the list: it is named.
    w.agent.stop().await;
    let t0 = Instant::now();
    let (status, list) = w.get("/api/v1/conversations", "alice-token").await;
    assert_eq!(status, 200);
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert_eq!(list["unavailable"][0]["agent"], "thinker", "{list}");
    assert!(
        list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "the cached one is still listed: {list}"
    );
    w.gw.stop().await;
    drop(w.data);
}
