//! `amesh acl generate`: golden outputs, and the generated Mosquitto files
//! enforced by a real Mosquitto.
//!
//! The golden tests pin the exact permissions (a change to them shows up as
//! a diff in `fixtures/acl/expected/`; rerun with `AMESH_UPDATE_GOLDEN=1` to
//! accept it). The broker tests run the apps on a Mosquitto started from the
//! generated files of both Mosquitto formats (the dynamic-security plugin's
//! config, and `password_file` + `acl_file`), so they prove both that the
//! permissions are wide enough for a real request (trust cards included)
//! and that they refuse what a component must never publish. What only the
//! plugin refuses (foreign `$share` subscriptions, client id takeover,
//! oversized messages) is in `broker_isolation.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use amesh_runtime::acl::cli::{self, Format};
use amesh_runtime::acl::passwd;
use amesh_runtime::broker::{Broker, BrokerError, DevBus, Incoming, PublishError, UserProperties};
use amesh_runtime::topics::{self, TrustKind};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::stack::Stack;
use serde_json::{Value, json};

/// Relative to the package root, which is the working directory cargo
/// gives integration tests; relative so the golden headers do not depend
/// on where the checkout lives.
const FIXTURE: &str = "fixtures/acl/mesh.yaml";
const EXPECTED: &str = "fixtures/acl/expected";

/// Compares `actual` with the golden file `name`, or rewrites the golden
/// file when `AMESH_UPDATE_GOLDEN` is set.
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(EXPECTED).join(name);
    if std::env::var_os("AMESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("update golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        expected == actual,
        "{} differs from the generated output (AMESH_UPDATE_GOLDEN=1 rewrites it)\n--- generated ---\n{actual}",
        path.display()
    );
}

#[test]
fn mosquitto_dynsec_output_matches_golden_config_and_passwords_verify() {
    let out = tempfile::tempdir().unwrap();
    let report =
        cli::generate(Format::Mosquitto, out.path(), &[PathBuf::from(FIXTURE)]).expect("generate");
    assert!(report.generated.is_empty());
    assert_eq!(report.users, ["gw-web", "agent-planner", "agent-weather"]);

    // Salted, so the hashes are checked, then replaced for the comparison.
    let text = std::fs::read_to_string(out.path().join("dynamic-security.json")).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let expected = [
        ("gw-web", "gw-web-secret"),
        ("agent-planner", "planner-secret"),
        ("agent-weather", "weather-secret"),
    ];
    let clients = json["clients"].as_array_mut().unwrap();
    assert_eq!(clients.len(), expected.len());
    for (client, (user, password)) in clients.iter_mut().zip(expected) {
        assert_eq!(client["username"], user);
        let salted = Value::from("<salted: checked above>");
        let salt = std::mem::replace(&mut client["salt"], salted.clone());
        let hash = std::mem::replace(&mut client["password"], salted);
        let iterations = client["iterations"].as_u64().unwrap() as u32;
        let (salt, hash) = (salt.as_str().unwrap(), hash.as_str().unwrap());
        assert!(
            passwd::verify_parts(password, salt, hash, iterations),
            "{user}"
        );
        assert!(
            !passwd::verify_parts("wrong", salt, hash, iterations),
            "{user}"
        );
    }
    let mut blanked = serde_json::to_string_pretty(&json).unwrap();
    blanked.push('\n');
    assert_golden("dynamic-security.json", &blanked);

    let conf = std::fs::read_to_string(out.path().join("mosquitto.conf")).unwrap();
    let dir = std::fs::canonicalize(out.path()).unwrap();
    for setting in [
        "set_tcp_nodelay true".to_string(),
        "allow_anonymous false".to_string(),
        "per_listener_settings false".to_string(),
        format!(
            "plugin_opt_config_file {}/dynamic-security.json",
            dir.display()
        ),
        // The fixture keeps the default limit of 10 MB, plus 64 KiB.
        "message_size_limit 10000000".to_string(),
        "max_packet_size 10065536".to_string(),
    ] {
        assert!(conf.lines().any(|l| l == setting), "{setting}\n{conf}");
    }
}

#[test]
fn mosquitto_aclfile_output_matches_golden_acl_and_passwords_verify() {
    let out = tempfile::tempdir().unwrap();
    let report = cli::generate(
        Format::MosquittoAclFile,
        out.path(),
        &[PathBuf::from(FIXTURE)],
    )
    .expect("generate");
    assert!(
        report.generated.is_empty(),
        "all passwords come from the config"
    );
    assert_eq!(report.users, ["gw-web", "agent-planner", "agent-weather"]);

    let acl = std::fs::read_to_string(out.path().join("acl_file")).unwrap();
    assert_golden("acl_file", &acl);

    // Salted, so not comparable byte for byte: check each line instead.
    let passwd_file = std::fs::read_to_string(out.path().join("password_file")).unwrap();
    let lines: Vec<&str> = passwd_file.lines().collect();
    let expected = [
        ("gw-web", "gw-web-secret"),
        ("agent-planner", "planner-secret"),
        ("agent-weather", "weather-secret"),
    ];
    assert_eq!(lines.len(), expected.len(), "{passwd_file}");
    for (line, (user, password)) in lines.iter().zip(expected) {
        assert!(line.starts_with(&format!("{user}:$7$101$")), "{line}");
        assert!(passwd::verify_line(line, password), "{user}");
        assert!(!passwd::verify_line(line, "wrong"), "{user}");
    }

    let conf = std::fs::read_to_string(out.path().join("mosquitto.conf")).unwrap();
    for setting in [
        "set_tcp_nodelay true",
        "allow_anonymous false",
        "per_listener_settings false",
        "message_size_limit 10000000",
    ] {
        assert!(conf.lines().any(|l| l == setting), "{setting}\n{conf}");
    }
    let dir = std::fs::canonicalize(out.path()).unwrap();
    assert!(
        conf.contains(&format!("acl_file {}/acl_file\n", dir.display())),
        "{conf}"
    );
}

#[test]
fn solace_output_matches_golden_semp_plan() {
    let out = tempfile::tempdir().unwrap();
    let report =
        cli::generate(Format::SolaceSemp, out.path(), &[PathBuf::from(FIXTURE)]).expect("generate");
    assert!(report.generated.is_empty());
    let plan = std::fs::read_to_string(out.path().join("semp-plan.json")).unwrap();
    assert_golden("semp-plan.json", &plan);
    let apply = std::fs::read_to_string(out.path().join("APPLY.md")).unwrap();
    assert!(apply.contains("curl"), "{apply}");
}

// ---------------------------------------------------------------------------
// The generated files on a real Mosquitto, in both Mosquitto formats.

const NS: &str = "acl/e2e";
/// Any URL does for generating: the ACL does not depend on it. The stack
/// gets the real one once the broker is up.
const PLACEHOLDER_URL: &str = "tcp://broker.invalid:1883";

/// A gateway `gw1` and an agent `echo` that may delegate only to `helper`.
/// Strict verification: a request only succeeds if the gateway's trust card
/// got through the ACL to the agent.
fn mesh_yaml(url: &str) -> String {
    format!(
        r#"
apps:
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gw-user, broker_password: gw-pass}}
    app_config:
      namespace: {NS}
      gateway_id: gw1
      port: 0
      agent_card_ttl_seconds: 3
      request_timeout_seconds: 20
      frontend_use_authorization: true
      users: [{{id: alice, token: alice-token}}]
      trust_manager: {{card_publish_interval_seconds: 1}}
  - name: echo
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: echo-user, broker_password: echo-pass}}
    app_config:
      namespace: {NS}
      agent_name: echo
      agent_card_publishing: {{interval_seconds: 1}}
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      tools:
        - {{tool_type: builtin, tool_name: echo}}
        - {{tool_type: builtin, tool_name: whoami}}
        - {{tool_type: builtin, tool_name: delegate}}
      inter_agent_communication:
        allow_list: [helper]
"#
    )
}

/// A Mosquitto running the files `amesh acl generate --format {format}`
/// wrote for [`mesh_yaml`], and that YAML pointed at it.
struct Provisioned {
    mq: MosquittoBroker,
    yaml: String,
    _dir: tempfile::TempDir,
}

fn provision(format: Format) -> Provisioned {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mesh.yaml");
    std::fs::write(&cfg, mesh_yaml(PLACEHOLDER_URL)).unwrap();
    let out = dir.path().join("acl");
    cli::generate(format, &out, &[cfg]).expect("generate");
    let mq = MosquittoBroker::start_from_generated(&out)
        .expect("mosquitto starts on the generated files");
    let yaml = mesh_yaml(&mq.url());
    Provisioned {
        mq,
        yaml,
        _dir: dir,
    }
}

/// Connects as `user` with the client id of app `app` of [`mesh_yaml`]
/// (the plugin admits an account only with its own client id).
async fn connect(p: &Provisioned, user: &str, password: &str, app: &str) -> (Broker, Incoming) {
    let cfg = p.mq.broker_config(user, password);
    match Broker::connect(&cfg, app, &DevBus::new()).await {
        Ok(c) => c,
        Err(e) => panic!("connect as {user}: {e}\nbroker log:\n{}", p.mq.log()),
    }
}

async fn publish(broker: &Broker, topic: &str) -> Result<(), PublishError> {
    broker
        .publish(topic, b"{}".to_vec(), UserProperties::new(), false)
        .await
}

async fn assert_allowed(broker: &Broker, topic: &str) {
    if let Err(e) = publish(broker, topic).await {
        panic!("{} should be allowed on {topic}: {e}", broker.username());
    }
}

async fn assert_refused(broker: &Broker, topic: &str) {
    match publish(broker, topic).await {
        Err(PublishError::NotAuthorized { .. }) => {}
        other => panic!(
            "{} should get NotAuthorized on {topic}, got {other:?}",
            broker.username()
        ),
    }
}

/// One `#[tokio::test]` per Mosquitto format for a test body taking the
/// format (boxed: the stack's future is too deep to nest once more).
macro_rules! for_each_mosquitto_format {
    ($body:ident: $dynsec:ident, $aclfile:ident) => {
        #[tokio::test]
        async fn $dynsec() {
            Box::pin($body(Format::Mosquitto)).await;
        }

        #[tokio::test]
        async fn $aclfile() {
            Box::pin($body(Format::MosquittoAclFile)).await;
        }
    };
}

for_each_mosquitto_format!(request_through_the_gateway: request_through_the_gateway_works_with_the_plugin, request_through_the_gateway_works_on_the_acl_file);

async fn request_through_the_gateway(format: Format) {
    let p = provision(format);
    let mut stack = Stack::start(&p.yaml).await.expect("stack starts");
    stack
        .wait_for_agent_as("echo", Duration::from_secs(10), Some("alice-token"))
        .await
        .expect("agent discovered through the ACL");

    let send = |body: Value| {
        stack
            .http
            .post(format!("{}/api/v1/message:send", stack.url()))
            .bearer_auth("alice-token")
            .json(&body)
            .send()
    };
    let resp = send(json!({"agent_name": "echo", "text": "hi"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "completed", "{task}");

    // Strict mode verified the gateway's token: its trust card crossed the
    // broker, so trust topics are granted as the trust manager uses them.
    let resp = send(json!({"agent_name": "echo", "data": {"tool": "whoami"}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "completed", "{task}");
    let who = &task["artifacts"][0]["parts"][0]["data"];
    assert_eq!(who["user_id"], "alice", "{task}");
    assert_eq!(who["verified"], true, "{task}");
    stack.stop().await;
}

for_each_mosquitto_format!(agent_cannot_publish_on_the_gateways_trust_topic: agent_cannot_publish_on_the_gateways_trust_topic_with_the_plugin, agent_cannot_publish_on_the_gateways_trust_topic_on_the_acl_file);

async fn agent_cannot_publish_on_the_gateways_trust_topic(format: Format) {
    let p = provision(format);
    let (agent, _rx) = connect(&p, "echo-user", "echo-pass", "echo").await;
    assert_refused(&agent, &topics::trust(NS, TrustKind::Gateway, "gw-user")).await;
    // Its own trust topic is fine: the refusal above is about whose it is.
    assert_allowed(&agent, &topics::trust(NS, TrustKind::Agent, "echo-user")).await;
    // Nor may it pose as a gateway in discovery.
    assert_refused(&agent, &topics::gateway_discovery(NS)).await;
    assert_allowed(&agent, &topics::agent_discovery(NS)).await;
    agent.disconnect().await;
}

for_each_mosquitto_format!(agent_delegates_only_to_peers_in_its_allow_list: agent_delegates_only_to_peers_in_its_allow_list_with_the_plugin, agent_delegates_only_to_peers_in_its_allow_list_on_the_acl_file);

async fn agent_delegates_only_to_peers_in_its_allow_list(format: Format) {
    let p = provision(format);
    let (agent, _rx) = connect(&p, "echo-user", "echo-pass", "echo").await;
    assert_allowed(&agent, &topics::agent_request(NS, "helper")).await;
    assert_refused(&agent, &topics::agent_request(NS, "stranger")).await;
    assert_refused(&agent, &topics::agent_request(NS, "echo")).await;
    // Replies go wherever the request said.
    assert_allowed(&agent, &topics::gateway_response(NS, "gw1", "t1")).await;
    assert_allowed(&agent, &topics::agent_status(NS, "someone", "t1")).await;
    agent.disconnect().await;
}

for_each_mosquitto_format!(gateway_publishes_requests_but_not_answers_or_other_trust_cards: gateway_publishes_requests_but_not_answers_with_the_plugin, gateway_publishes_requests_but_not_answers_on_the_acl_file);

async fn gateway_publishes_requests_but_not_answers_or_other_trust_cards(format: Format) {
    let p = provision(format);
    let (gw, _rx) = connect(&p, "gw-user", "gw-pass", "gw").await;
    assert_allowed(&gw, &topics::agent_request(NS, "echo")).await;
    assert_allowed(&gw, &topics::trust(NS, TrustKind::Gateway, "gw-user")).await;
    assert_refused(&gw, &topics::gateway_response(NS, "other-gw", "t1")).await;
    assert_refused(&gw, &topics::trust(NS, TrustKind::Agent, "echo-user")).await;
    assert_refused(&gw, &topics::trust(NS, TrustKind::Gateway, "other-gw-user")).await;
    gw.disconnect().await;
}

#[tokio::test]
async fn gateway_receives_only_its_own_responses_on_the_acl_file() {
    let p = provision(Format::MosquittoAclFile);
    let (gw, mut rx) = connect(&p, "gw-user", "gw-pass", "gw").await;
    let (agent, _arx) = connect(&p, "echo-user", "echo-pass", "echo").await;
    // Wider than the gateway ever subscribes: acl_file allows the
    // subscription, so it must filter the deliveries.
    gw.subscribe(&topics::gateway_response(NS, "+", "+"))
        .await
        .unwrap();
    let other = topics::gateway_response(NS, "other-gw", "t1");
    let own = topics::gateway_response(NS, "gw1", "t2");
    assert_allowed(&agent, &other).await;
    assert_allowed(&agent, &own).await;
    // One publisher's messages arrive in order, so had the first been
    // delivered it would come first.
    let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("own response delivered")
        .expect("connection open");
    assert_eq!(msg.topic, own);
    gw.disconnect().await;
    agent.disconnect().await;
}

#[tokio::test]
async fn gateway_cannot_subscribe_to_other_gateways_responses_with_the_plugin() {
    let p = provision(Format::Mosquitto);
    let (gw, mut rx) = connect(&p, "gw-user", "gw-pass", "gw").await;
    let (agent, _arx) = connect(&p, "echo-user", "echo-pass", "echo").await;
    // The plugin refuses the wider subscription outright (SUBACK 0x87)...
    match gw.subscribe(&topics::gateway_response(NS, "+", "+")).await {
        Err(BrokerError::Subscribe { reason, .. }) if reason.contains("0x87") => {}
        other => panic!("expected SUBACK 0x87, got {other:?}"),
    }
    // ...and grants the gateway's own.
    gw.subscribe(&topics::gateway_response(NS, "gw1", "+"))
        .await
        .unwrap();
    let other = topics::gateway_response(NS, "other-gw", "t1");
    let own = topics::gateway_response(NS, "gw1", "t2");
    assert_allowed(&agent, &other).await;
    assert_allowed(&agent, &own).await;
    let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("own response delivered")
        .expect("connection open");
    assert_eq!(msg.topic, own);
    gw.disconnect().await;
    agent.disconnect().await;
}
