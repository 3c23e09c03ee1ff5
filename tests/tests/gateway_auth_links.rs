//! The gateway relays an agent's `auth-required` answer to the user's
//! browser, whose page opens its `authorization_url`. A hostile or
//! compromised agent must not get a `javascript:` (or `data:`, or
//! credential-carrying) link through: the gateway replaces it with an error
//! text and logs a warning that names the agent but not the URL's query
//! (it holds the OAuth state).
//!
//! The agent here is impersonated with a raw MQTT client on a real
//! Mosquitto: it publishes an agent card and answers every request with
//! `auth-required`, using the request's text as the authorization URL.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amesh_runtime::a2a::jsonrpc::Response;
use amesh_runtime::a2a::{
    AgentCapabilities, AgentCard, Message, PROTOCOL_VERSION, Part, Task, TaskState, TaskStatus,
    TaskStatusUpdateEvent, props,
};
use amesh_runtime::broker::{Broker, Message as BrokerMessage, UserProperties};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::RawClient;
use amesh_tests::stack::Stack;
use serde_json::{Value, json};

const NS: &str = "test/links";
const AGENT: &str = "rogue";
const REFUSED: &str = "the agent sent an authorization link that is not http(s); refused";

const USERS: &[(&str, &str)] = &[("gateway", "gw-pass"), ("rogue", "rogue-pass")];

fn broker() -> MosquittoBroker {
    let acl = format!(
        "user gateway\ntopic readwrite {NS}/a2a/v1/#\n\
         user rogue\ntopic readwrite {NS}/a2a/v1/#\n"
    );
    MosquittoBroker::start(USERS, &acl).expect("mosquitto starts")
}

async fn gateway(mq: &MosquittoBroker) -> Stack {
    let yaml = format!(
        r#"apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: gw1
      port: 0
      agent_card_ttl_seconds: 5
      request_timeout_seconds: 10
      frontend_use_authorization: false
"#,
        url = mq.url()
    );
    Stack::start(&yaml).await.expect("gateway starts")
}

fn card() -> AgentCard {
    AgentCard {
        protocol_version: PROTOCOL_VERSION.to_string(),
        name: AGENT.into(),
        display_name: None,
        description: "answers everything with auth-required".into(),
        url: format!("mqtt://{NS}/a2a/v1/agent/request/{AGENT}"),
        version: "0".into(),
        capabilities: AgentCapabilities {
            streaming: true,
            push_notifications: false,
            state_transition_history: false,
        },
        default_input_modes: vec!["text".into()],
        default_output_modes: vec!["text".into()],
        skills: vec![],
        metadata: None,
    }
}

/// Starts the impersonated agent; it runs until the test ends.
async fn rogue_agent(mq: &MosquittoBroker) -> tokio::task::JoinHandle<()> {
    let cfg = mq.broker_config(AGENT, "rogue-pass");
    let mut client = RawClient::connect(&cfg, "rogue-agent", NS)
        .await
        .expect("raw agent connects");
    client
        .broker
        .subscribe(&format!("{NS}/a2a/v1/agent/request/{AGENT}"))
        .await
        .expect("subscribe");
    let card = serde_json::to_vec(&card()).expect("card");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let topic = format!("{NS}/a2a/v1/discovery/agentcards");
                    let _ = client.broker.publish(&topic, card.clone(), UserProperties::new(), false).await;
                }
                msg = client.incoming.recv() => match msg {
                    Some(msg) => answer_auth_required(&client.broker, msg).await,
                    None => break,
                },
            }
        }
    })
}

/// What a real agent sends when a tool needs the user's consent (see
/// `runtime/src/agent/resume.rs`), with the request's text as the URL.
async fn answer_auth_required(broker: &Broker, msg: BrokerMessage) {
    let Ok(request) = serde_json::from_slice::<Value>(&msg.payload) else {
        return;
    };
    let id = request["id"].clone();
    let task_id = id.as_str().unwrap_or("t").to_string();
    let url = request["params"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let prompt = Message::agent(
        vec![
            Part::text(format!("Sign in to use the tool:\n{url}")),
            Part::data(json!({
                "type": "oauth2_authorization_required",
                "authorization_url": url,
                "tool_id": "jira",
                "tool": "search",
                "message": "Sign in to use the tool",
            })),
        ],
        &task_id,
        "ctx",
    );
    let status = TaskStatus::new(TaskState::AuthRequired, Some(prompt.clone()));
    if let Some(topic) = msg.props.get(props::STATUS_TOPIC) {
        let update = TaskStatusUpdateEvent::new(&task_id, "ctx", status.clone(), false);
        let body = serde_json::to_vec(&Response::ok(id.clone(), update)).unwrap_or_default();
        let _ = broker
            .publish(topic, body, UserProperties::new(), false)
            .await;
    }
    if let Some(topic) = msg.props.get(props::REPLY_TO) {
        let mut task = Task::new(&task_id, "ctx", TaskState::AuthRequired);
        task.status = status;
        task.history = vec![prompt];
        let body = serde_json::to_vec(&Response::ok(id, task)).unwrap_or_default();
        let _ = broker
            .publish(topic, body, UserProperties::new(), false)
            .await;
    }
}

/// Everything the gateway logs while the test's (current-thread) runtime
/// runs, as text.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn post(stack: &Stack, route: &str, url: &str) -> (u16, String) {
    let resp = stack
        .http
        .post(format!("{}/api/v1/{route}", stack.url()))
        .json(&json!({"agent_name": AGENT, "text": url}))
        .send()
        .await
        .expect("http");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// The `(event, data)` pairs of an SSE body.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            serde_json::from_str(&data).ok().map(|d| (event, d))
        })
        .collect()
}

#[tokio::test]
async fn hostile_authorization_links_never_reach_the_user() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let mq = broker();
    let mut stack = gateway(&mq).await;
    let agent = rogue_agent(&mq).await;
    stack
        .wait_for_agent(AGENT, Duration::from_secs(10))
        .await
        .expect("the rogue agent is listed");

    // The stream: the status event and the final task both carry the refusal.
    let attack = "javascript:fetch('/api/v1/auth/me')";
    let (status, body) = post(&stack, "message:stream", attack).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("javascript"), "{body}");
    assert!(!body.contains("/api/v1/auth/me"), "{body}");
    let events = sse_events(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["submitted", "status", "task"], "{body}");
    let (_, update) = &events[1];
    assert_eq!(update["status"]["state"], "auth-required");
    assert_eq!(
        update["status"]["message"]["parts"],
        json!([{"kind": "text", "text": REFUSED}])
    );
    let (_, task) = &events[2];
    assert_eq!(task["status"]["message"]["parts"][0]["text"], REFUSED);
    assert_eq!(task["history"][0]["parts"][0]["text"], REFUSED);

    // message:send, and other links no page should open.
    for attack in [
        "javascript:fetch('/api/v1/auth/me')",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://user:pw@auth.example/authorize?state=SECRET-STATE",
        "/relative/authorize",
    ] {
        let (status, body) = post(&stack, "message:send", attack).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains(attack), "{attack}: {body}");
        assert!(!body.contains("SECRET-STATE"), "{body}");
        let task: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(task["status"]["state"], "auth-required");
        assert_eq!(
            task["status"]["message"]["parts"],
            json!([{"kind": "text", "text": REFUSED}]),
            "{attack}"
        );
    }

    // A proper link goes through untouched.
    let good = "https://auth.example/authorize?client_id=c&state=ok-state";
    let (status, body) = post(&stack, "message:send", good).await;
    assert_eq!(status, 200, "{body}");
    let task: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        task["status"]["message"]["parts"][1]["data"]["authorization_url"],
        good
    );

    let log = logs.text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("authorization link"))
        .collect();
    // Two refused answers (status update, task) per hostile request.
    assert_eq!(warnings.len(), 12, "one per refused answer:\n{log}");
    for line in &warnings {
        assert!(line.contains("agent=rogue"), "{line}");
    }
    assert!(!log.contains("SECRET-STATE"), "{log}");
    assert!(!log.contains("pw@"), "{log}");
    assert!(!log.contains("/api/v1/auth/me"), "{log}");

    agent.abort();
    stack.stop().await;
}
