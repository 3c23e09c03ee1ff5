//! The trust manager end to end over a real Mosquitto: gateway-signed
//! identities reach agents verified; forged, expired and misdirected tokens
//! are refused in strict mode before any tool runs; permissive mode runs
//! them as unverified; gateway key rotation keeps tokens in flight valid.

use std::time::Duration;

use amesh_runtime::a2a::jsonrpc;
use amesh_runtime::broker::UserProperties;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::{RawClient, get_request, tool_request};
use amesh_tests::stack::Stack;
use amesh_trust::{IdentitySigner, SigningKey, UserClaims, now_unix};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

const NS: &str = "trust/ns";
const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("echo", "echo-pass"),
    ("tester", "t-pass"),
];

fn broker() -> MosquittoBroker {
    let acl: String = USERS
        .iter()
        .map(|(u, _)| format!("user {u}\ntopic readwrite {NS}/a2a/v1/#\n"))
        .collect();
    MosquittoBroker::start(USERS, &acl).expect("mosquitto")
}

fn pass(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or("")
}

fn gateway_app(mq: &MosquittoBroker, key_file: Option<&std::path::Path>) -> String {
    let key = key_file
        .map(|p| format!("\n        key_file: \"{}\"", p.display()))
        .unwrap_or_default();
    format!(
        r#"
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: "{pw}"}}
    app_config:
      namespace: {NS}
      port: 0
      frontend_use_authorization: true
      users: [{{id: alice, token: alice-token, email: alice@example.com}}]
      trust_manager:
        card_publish_interval_seconds: 1{key}
"#,
        url = mq.url(),
        pw = pass("gateway")
    )
}

fn agent_app(mq: &MosquittoBroker, mode: &str, key_file: &std::path::Path) -> String {
    format!(
        r#"
  - name: echo
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: echo, broker_password: "{pw}"}}
    app_config:
      namespace: {NS}
      agent_name: echo
      agent_card_publishing: {{interval_seconds: 1}}
      trust_manager:
        verification_mode: {mode}
        card_publish_interval_seconds: 1
        key_file: "{key}"
"#,
        url = mq.url(),
        pw = pass("echo"),
        key = key_file.display()
    )
}

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
    fn key(&self, name: &str) -> SigningKey {
        SigningKey::load_or_create(self.path(name)).unwrap()
    }
}

/// A gateway and an agent, plus a raw client as `tester`.
async fn setup(mq: &MosquittoBroker, mode: &str, keys: &Keys) -> (Stack, RawClient) {
    let yaml = format!(
        "apps:{}{}",
        gateway_app(mq, Some(&keys.path("gateway.pem"))),
        agent_app(mq, mode, &keys.path("agent.pem"))
    );
    let stack = Stack::start(&yaml).await.expect("stack");
    stack
        .wait_for_agent_as("echo", Duration::from_secs(10), Some("alice-token"))
        .await
        .expect("agent listed");
    let raw = RawClient::connect(&mq.broker_config("tester", pass("tester")), "raw", NS)
        .await
        .unwrap();
    (stack, raw)
}

fn props(user: &str, token: Option<&str>) -> UserProperties {
    let mut p = UserProperties::new()
        .with("userId", user)
        .with("clientId", "tester");
    if let Some(t) = token {
        p.push("authToken", t);
    }
    p
}

fn signer(key: SigningKey, iss: &str, ns: &str) -> IdentitySigner {
    IdentitySigner::new(
        iss,
        ns,
        key,
        Duration::from_secs(300),
        Duration::from_secs(3600),
    )
    .unwrap()
}

/// A compact JWS with the given header and claims and an HMAC-SHA256
/// signature keyed with `key` (for the algorithm-confusion attacks).
fn hs256(header: Value, claims: Value, key: &[u8]) -> String {
    let h = B64.encode(serde_json::to_vec(&header).unwrap());
    let c = B64.encode(serde_json::to_vec(&claims).unwrap());
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn claims(sub: &str, iat: u64, exp: u64) -> Value {
    json!({"iss": "gateway", "sub": sub, "aud": format!("{NS}/agent/echo"), "iat": iat, "exp": exp, "jti": "x"})
}

#[tokio::test]
async fn gateway_signed_identity_reaches_the_agent_verified() {
    let mq = broker();
    let keys = Keys::new();
    let (mut stack, raw) = setup(&mq, "strict", &keys).await;
    let resp = stack
        .http
        .post(format!("{}/api/v1/message:send", stack.url()))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "echo", "data": {"tool": "whoami"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    let who = &task["artifacts"][0]["parts"][0]["data"];
    assert_eq!(who["user_id"], "alice", "{task}");
    assert_eq!(who["verified"], true);
    assert_eq!(who["assurance"], "gateway-signed token");
    assert_eq!(who["issuer"], "gateway");
    assert_eq!(who["email"], "alice@example.com");
    raw.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn strict_mode_refuses_every_bad_token_before_the_tool_runs() {
    let mq = broker();
    let keys = Keys::new();
    let (mut stack, mut raw) = setup(&mq, "strict", &keys).await;
    let gw_key = keys.key("gateway.pem");
    let agent_key = keys.key("agent.pem");
    let now = now_unix();
    let good = signer(gw_key.clone(), "gateway", NS)
        .sign(&UserClaims::new("alice"), "echo", None)
        .unwrap();

    let mut tampered = good.split('.').map(String::from).collect::<Vec<_>>();
    let mut payload: Value = serde_json::from_slice(&B64.decode(&tampered[1]).unwrap()).unwrap();
    payload["sub"] = json!("mallory");
    tampered[1] = B64.encode(serde_json::to_vec(&payload).unwrap());
    let tampered = tampered.join(".");

    let public_key_bytes = serde_json::to_vec(&gw_key.public_jwk()).unwrap();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing token", None, "alice"),
        (
            "unknown key",
            Some(
                signer(SigningKey::generate().unwrap(), "gateway", NS)
                    .sign(&UserClaims::new("alice"), "echo", None)
                    .unwrap(),
            ),
            "alice",
        ),
        (
            "expired",
            Some(
                signer(gw_key.clone(), "gateway", NS)
                    .sign_at(
                        &UserClaims::new("alice"),
                        "echo",
                        Some(Duration::from_secs(60)),
                        now - 4000,
                    )
                    .unwrap(),
            ),
            "alice",
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                B64.encode(serde_json::to_vec(&claims("alice", now, now + 300)).unwrap())
            )),
            "alice",
        ),
        (
            "HS256 keyed with the public key",
            Some(hs256(
                json!({"alg": "HS256", "typ": "JWT", "kid": gw_key.kid()}),
                claims("alice", now, now + 300),
                &public_key_bytes,
            )),
            "alice",
        ),
        ("tampered payload", Some(tampered), "mallory"),
        ("sub differs from userId", Some(good.clone()), "bob"),
        (
            "signed by an agent's key",
            Some(
                signer(agent_key, "echo", NS)
                    .sign(&UserClaims::new("alice"), "echo", None)
                    .unwrap(),
            ),
            "alice",
        ),
        (
            "another namespace",
            Some(
                signer(gw_key.clone(), "gateway", "other/ns")
                    .sign(&UserClaims::new("alice"), "echo", None)
                    .unwrap(),
            ),
            "alice",
        ),
    ];
    for (i, (case, token, user)) in cases.iter().enumerate() {
        let id = format!("bad-{i}");
        let reply = raw
            .request(
                "echo",
                tool_request(&id, "echo", json!({"text": "ran"})),
                props(user, token.as_deref()),
            )
            .await
            .unwrap();
        assert_eq!(
            reply["error"]["code"],
            jsonrpc::UNAUTHENTICATED,
            "{case}: {reply}"
        );
        let msg = reply["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("identity token refused"), "{case}: {msg}");
        if let Some(t) = token {
            assert!(
                !msg.contains(t.as_str()),
                "{case}: the error echoes the token"
            );
        }
        // The task never existed: asked with a valid token, the agent does
        // not know it.
        let get = raw
            .request(
                "echo",
                get_request(&format!("get-{i}"), &id),
                props("alice", Some(&good)),
            )
            .await
            .unwrap();
        assert_eq!(
            get["error"]["code"],
            jsonrpc::TASK_NOT_FOUND,
            "{case}: {get}"
        );
    }
    // The valid token works on the same path.
    let ok = raw
        .request(
            "echo",
            tool_request("good", "echo", json!({"text": "ran"})),
            props("alice", Some(&good)),
        )
        .await
        .unwrap();
    assert_eq!(ok["result"]["status"]["state"], "completed", "{ok}");
    raw.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn permissive_mode_runs_bad_tokens_as_unverified_users() {
    let mq = broker();
    let keys = Keys::new();
    let (mut stack, mut raw) = setup(&mq, "permissive", &keys).await;
    let forged = signer(SigningKey::generate().unwrap(), "gateway", NS)
        .sign(&UserClaims::new("alice"), "echo", None)
        .unwrap();
    for (id, token) in [("p-none", None), ("p-forged", Some(forged.as_str()))] {
        let reply = raw
            .request(
                "echo",
                tool_request(id, "whoami", json!({})),
                props("alice", token),
            )
            .await
            .unwrap();
        assert_eq!(reply["result"]["status"]["state"], "completed", "{reply}");
        let who = &reply["result"]["artifacts"][0]["parts"][0]["data"];
        assert_eq!(who["user_id"], "alice");
        assert_eq!(who["verified"], false, "{who}");
    }
    raw.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_card_naming_another_component_is_refused_by_the_registry() {
    let mq = broker();
    let keys = Keys::new();
    let (mut stack, mut raw) = setup(&mq, "strict", &keys).await;
    // `tester` may publish on its own trust topic (the ACL of this test is
    // broad), but its card claims to be the gateway: the topic's id and the
    // card's id differ, so agents refuse it and its key signs nothing.
    let evil = SigningKey::generate().unwrap();
    let card = amesh_trust::TrustCard::sign(
        &evil,
        amesh_trust::ComponentKind::Gateway,
        "gateway",
        NS,
        7,
        now_unix(),
    )
    .unwrap();
    raw.broker
        .publish(
            &format!("{NS}/a2a/v1/trust/gateway/tester"),
            card.into_string(),
            UserProperties::new(),
            true,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = signer(evil, "gateway", NS)
        .sign(&UserClaims::new("alice"), "echo", None)
        .unwrap();
    let reply = raw
        .request(
            "echo",
            tool_request("evil", "echo", json!({"text": "x"})),
            props("alice", Some(&token)),
        )
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], jsonrpc::UNAUTHENTICATED, "{reply}");
    raw.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn gateway_key_rotation_keeps_tokens_in_flight_valid() {
    let mq = broker();
    let keys = Keys::new();
    // Gateway without key file: a fresh key at every start.
    let mut gw1 = Stack::start(&format!("apps:{}", gateway_app(&mq, None)))
        .await
        .unwrap();
    let mut agent = Stack::start(&format!(
        "apps:{}",
        agent_app(&mq, "strict", &keys.path("agent.pem"))
    ))
    .await
    .unwrap();
    gw1.wait_for_agent_as("echo", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();

    // Capture the token gateway #1 attaches (tester may read requests).
    let mut sniffer =
        RawClient::connect(&mq.broker_config("tester", pass("tester")), "sniffer", NS)
            .await
            .unwrap();
    let request_topic = format!("{NS}/a2a/v1/agent/request/echo");
    sniffer.broker.subscribe(&request_topic).await.unwrap();
    let resp = gw1
        .http
        .post(format!("{}/api/v1/message:send", gw1.url()))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "echo", "text": "one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = sniffer
        .wait_for(&request_topic, Duration::from_secs(5))
        .await
        .unwrap();
    let old_token = seen
        .props
        .get("authToken")
        .expect("token attached")
        .to_string();
    gw1.stop().await;

    // Gateway #2: same broker username, new key; its retained card replaces
    // the old one.
    let gw2 = Stack::start(&format!("apps:{}", gateway_app(&mq, None)))
        .await
        .unwrap();
    gw2.wait_for_agent_as("echo", Duration::from_secs(10), Some("alice-token"))
        .await
        .unwrap();
    let resp = gw2
        .http
        .post(format!("{}/api/v1/message:send", gw2.url()))
        .bearer_auth("alice-token")
        .json(&json!({"agent_name": "echo", "data": {"tool": "whoami"}}))
        .send()
        .await
        .unwrap();
    let task: Value = resp.json().await.unwrap();
    assert_eq!(
        task["artifacts"][0]["parts"][0]["data"]["verified"], true,
        "{task}"
    );
    let new_token = sniffer
        .wait_for(&request_topic, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(new_token.props.get("authToken"), Some(old_token.as_str()));

    // The old token still verifies: the agent keeps the previous key.
    let reply = sniffer
        .request(
            "echo",
            tool_request("old", "whoami", json!({})),
            props("alice", Some(&old_token)),
        )
        .await
        .unwrap();
    assert_eq!(
        reply["result"]["artifacts"][0]["parts"][0]["data"]["verified"], true,
        "{reply}"
    );
    sniffer.disconnect().await;
    agent.stop().await;
}
