//! Who may use a token, answer a task or speak for an agent, end to end over
//! a real Mosquitto (hardening item 7): identity tokens are bound to the
//! agent they are sent to; delegation carries a chain each hop signs; replies
//! and agent cards count only from the account of the agent they are for;
//! tool callbacks go only to known agents, with an assertion good for that
//! one callback.
//!
//! Every broker user here may read and write the whole namespace (the ACL is
//! deliberately broad): the point is what the components accept, not what
//! the broker lets through.

use std::time::Duration;

use amesh_runtime::a2a::jsonrpc::{self, Response};
use amesh_runtime::a2a::{Artifact, Part, Task, TaskState};
use amesh_runtime::broker::UserProperties;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::raw::{RawClient, tool_request};
use amesh_tests::stack::Stack;
use amesh_trust::{
    ComponentKind, DelegationSigner, IdentitySigner, IdentityVerifier, MessageSigner, SigningKey,
    TrustCard, TrustRegistry, UserClaims, VerifierConfig, now_unix,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

const NS: &str = "bind/ns";
const GW: &str = "gw1";
const USERS: &[(&str, &str)] = &[
    ("gateway", "gw-pass"),
    ("alpha", "alpha-pass"),
    ("beta", "beta-pass"),
    ("tester", "t-pass"),
];

fn broker() -> MosquittoBroker {
    MosquittoBroker::for_namespace(USERS, NS).expect("mosquitto")
}

fn pass(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or("")
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
        self.dir.path().join(format!("{name}.pem"))
    }
    fn key(&self, name: &str) -> SigningKey {
        SigningKey::load_or_create(self.path(name)).unwrap()
    }
}

/// Gives the `tester` account a trust key of its own, published as an
/// agent trust card: what a compromised agent has. Returns its signer.
async fn tester_trust(raw: &RawClient) -> (SigningKey, MessageSigner) {
    let key = SigningKey::generate().unwrap();
    let card = TrustCard::sign(&key, ComponentKind::Agent, "tester", NS, 1, now_unix()).unwrap();
    raw.broker
        .publish(
            &format!("{NS}/a2a/v1/trust/agent/tester"),
            card.into_string(),
            UserProperties::new(),
            true,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signer = MessageSigner::new(key.clone(), "tester").unwrap();
    (key, signer)
}

fn signed(signer: &MessageSigner, topic: &str, payload: &[u8]) -> UserProperties {
    UserProperties::new().with(
        "amesh-signature",
        signer.sign(topic, payload, now_unix()).unwrap(),
    )
}

fn gateway_app(mq: &MosquittoBroker, keys: &Keys) -> String {
    format!(
        r#"
  - name: gw
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: gateway, broker_password: "{pw}"}}
    app_config:
      namespace: {NS}
      gateway_id: {GW}
      port: 0
      request_timeout_seconds: 20
      frontend_use_authorization: true
      users: [{{id: alice, token: alice-token, email: alice@example.com}}]
      trust_manager:
        verification_mode: strict
        card_publish_interval_seconds: 1
        key_file: "{key}"
"#,
        url = mq.url(),
        pw = pass("gateway"),
        key = keys.path("gateway").display()
    )
}

/// Agent `name` (broker user of the same name), strict, with the builtin
/// tools listed and cards every `card_secs` seconds.
fn agent_app(
    mq: &MosquittoBroker,
    keys: &Keys,
    name: &str,
    tools: &[&str],
    card_secs: u64,
) -> String {
    let tools: String = tools
        .iter()
        .map(|t| format!("\n        - {{tool_type: builtin, tool_name: {t}}}"))
        .collect();
    format!(
        r#"
  - name: {name}
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: {name}, broker_password: "{pw}"}}
    app_config:
      namespace: {NS}
      agent_name: {name}
      agent_card_publishing: {{interval_seconds: {card_secs}}}
      max_call_depth: 3
      agent_card: {{description: "the real {name}"}}
      tools:{tools}
      trust_manager:
        verification_mode: strict
        card_publish_interval_seconds: 1
        key_file: "{key}"
"#,
        url = mq.url(),
        pw = pass(name),
        key = keys.path(name).display()
    )
}

/// Gateway `gw1`, agent `alpha` (may delegate) and agent `beta`, all strict.
async fn mesh(mq: &MosquittoBroker, keys: &Keys, card_secs: u64) -> Stack {
    let yaml = format!(
        "apps:{}{}{}",
        gateway_app(mq, keys),
        agent_app(
            mq,
            keys,
            "alpha",
            &["echo", "sleep", "whoami", "delegate"],
            card_secs
        ),
        agent_app(mq, keys, "beta", &["echo", "whoami"], card_secs),
    );
    let stack = Stack::start(&yaml).await.expect("stack");
    for agent in ["alpha", "beta"] {
        stack
            .wait_for_agent_as(agent, Duration::from_secs(10), Some("alice-token"))
            .await
            .expect("agent listed");
    }
    stack
}

async fn tester(mq: &MosquittoBroker, app: &str) -> RawClient {
    RawClient::connect(&mq.broker_config("tester", pass("tester")), app, NS)
        .await
        .unwrap()
}

fn request_topic(agent: &str) -> String {
    format!("{NS}/a2a/v1/agent/request/{agent}")
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

async fn send(stack: &Stack, body: Value) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/api/v1/message:send", stack.url()))
        .bearer_auth("alice-token")
        .json(&body)
        .send()
        .await
        .expect("http")
}

/// The claims of a compact JWS, unverified (to look at what travels).
fn claims_of(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).expect("payload segment");
    serde_json::from_slice(&B64.decode(payload).expect("base64")).expect("json")
}

#[tokio::test]
async fn token_captured_at_one_agent_is_refused_at_another() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    // A compromised alpha sees every token the gateway sends it.
    let mut sniffer = tester(&mq, "sniffer").await;
    sniffer
        .broker
        .subscribe(&request_topic("alpha"))
        .await
        .unwrap();
    let resp = send(
        &stack,
        json!({"agent_name": "alpha", "data": {"tool": "echo", "arguments": {"text": "hi"}}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = sniffer
        .wait_for(&request_topic("alpha"), Duration::from_secs(5))
        .await
        .unwrap();
    let captured = seen.props.get("authToken").expect("token").to_string();
    assert_eq!(
        claims_of(&captured)["aud"],
        format!("{NS}/agent/alpha"),
        "the token names its recipient"
    );

    // Still valid at alpha...
    let at_alpha = sniffer
        .request(
            "alpha",
            tool_request("replay-a", "whoami", json!({})),
            props("alice", Some(&captured)),
        )
        .await
        .unwrap();
    assert_eq!(
        at_alpha["result"]["artifacts"][0]["parts"][0]["data"]["verified"], true,
        "{at_alpha}"
    );
    // ...but worthless at beta.
    let at_beta = sniffer
        .request(
            "beta",
            tool_request("replay-b", "whoami", json!({})),
            props("alice", Some(&captured)),
        )
        .await
        .unwrap();
    assert_eq!(
        at_beta["error"]["code"],
        jsonrpc::UNAUTHENTICATED,
        "{at_beta}"
    );
    let why = at_beta["error"]["message"].as_str().unwrap();
    assert!(why.contains("audience"), "{why}");
    assert!(why.contains("beta"), "{why}");
    sniffer.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn delegation_chain_gateway_alpha_beta_reaches_beta_verified_with_its_chain() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    let mut sniffer = tester(&mq, "sniffer").await;
    sniffer
        .broker
        .subscribe(&request_topic("beta"))
        .await
        .unwrap();
    let resp = send(
        &stack,
        json!({"agent_name": "alpha", "data": {"tool": "delegate",
            "arguments": {"agent": "beta", "data": {"tool": "whoami"}}}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "completed", "{task}");
    let who = &task["artifacts"][0]["parts"][0]["data"];
    assert_eq!(who["user_id"], "alice", "{who}");
    assert_eq!(who["verified"], true, "{who}");
    assert_eq!(who["assurance"], "delegated token chain", "{who}");
    assert_eq!(who["issuer"], "gateway", "{who}");
    assert_eq!(who["delegation_chain"], json!(["alpha"]), "{who}");

    // What beta received: the gateway's token to alpha, then alpha's
    // delegation to beta, signed by alpha and recording alpha as the actor.
    let seen = sniffer
        .wait_for(&request_topic("beta"), Duration::from_secs(5))
        .await
        .unwrap();
    let chain = seen.props.get("authToken").expect("token").to_string();
    let hops: Vec<&str> = chain.split('~').collect();
    assert_eq!(hops.len(), 2, "gateway token + one delegation");
    assert_eq!(claims_of(hops[0])["aud"], format!("{NS}/agent/alpha"));
    let delegation = claims_of(hops[1]);
    assert_eq!(delegation["aud"], format!("{NS}/agent/beta"));
    assert_eq!(delegation["sub"], "alice");
    assert_eq!(delegation["act"], json!({"sub": "alpha"}));

    // The same chain is no good at alpha (it is addressed to beta).
    let at_alpha = sniffer
        .request(
            "alpha",
            tool_request("chain-at-alpha", "whoami", json!({})),
            props("alice", Some(&chain)),
        )
        .await
        .unwrap();
    assert_eq!(
        at_alpha["error"]["code"],
        jsonrpc::UNAUTHENTICATED,
        "{at_alpha}"
    );
    sniffer.disconnect().await;
    stack.stop().await;
}

/// A finished task saying `text`, as an agent would answer `task_id`.
fn forged_answer(task_id: &str, text: &str) -> Vec<u8> {
    let mut task = Task::new(task_id, "ctx", TaskState::Completed);
    task.artifacts.push(Artifact {
        artifact_id: "forged".into(),
        name: None,
        description: None,
        parts: vec![Part::text(text)],
        metadata: None,
    });
    Response::ok(Value::String(task_id.into()), task).to_bytes()
}

#[tokio::test]
async fn answer_from_another_agent_account_is_ignored_by_the_gateway() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    let mut sniffer = tester(&mq, "sniffer").await;
    let (_, tester_signer) = tester_trust(&sniffer).await;
    sniffer
        .broker
        .subscribe(&request_topic("alpha"))
        .await
        .unwrap();
    // alpha sleeps 1.5 s; meanwhile tester answers for it.
    let http = {
        let client = stack.http.clone();
        let url = format!("{}/api/v1/message:send", stack.url());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth("alice-token")
                .json(&json!({"agent_name": "alpha",
                    "data": {"tool": "sleep", "arguments": {"ms": 1500}}}))
                .send()
                .await
                .expect("http")
        })
    };
    let request = sniffer
        .wait_for(&request_topic("alpha"), Duration::from_secs(5))
        .await
        .unwrap();
    let reply_to = request.props.get("replyTo").expect("replyTo").to_string();
    let body: Value = serde_json::from_slice(&request.payload).unwrap();
    let task_id = body["id"].as_str().unwrap().to_string();
    assert!(reply_to.ends_with(&task_id), "{reply_to}");
    sniffer
        .broker
        .publish(
            &reply_to,
            forged_answer(&task_id, "forged by tester"),
            UserProperties::new(),
            false,
        )
        .await
        .unwrap();
    // Signed, but with tester's own key: still not alpha's account.
    let forged = forged_answer(&task_id, "forged and signed by tester");
    let props = signed(&tester_signer, &reply_to, &forged);
    sniffer
        .broker
        .publish(&reply_to, forged, props, false)
        .await
        .unwrap();

    let resp = http.await.unwrap();
    assert_eq!(resp.status(), 200);
    let task: Value = resp.json().await.unwrap();
    let text = task.to_string();
    assert!(
        !text.contains("forged"),
        "the gateway took tester's answer: {task}"
    );
    assert_eq!(task["status"]["state"], "completed", "{task}");
    sniffer.disconnect().await;
    stack.stop().await;
}

fn forged_card(name: &str, description: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "protocolVersion": "0.3.0", "name": name, "description": description,
        "url": format!("mqtt://{}", request_topic(name)), "version": "1",
        "capabilities": {"streaming": true, "pushNotifications": false,
                         "stateTransitionHistory": false},
        "defaultInputModes": ["text"], "defaultOutputModes": ["text"], "skills": []
    }))
    .unwrap()
}

async fn listed_cards(stack: &Stack) -> Vec<Value> {
    let v: Value = stack
        .http
        .get(format!("{}/api/v1/agents", stack.url()))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["agents"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn card_for_an_agent_from_another_account_is_ignored() {
    let mq = broker();
    let keys = Keys::new();
    // Cards every 60 s: a forged card would stay in place for a while.
    let mut stack = mesh(&mq, &keys, 60).await;
    let raw = tester(&mq, "forger").await;
    let discovery = format!("{NS}/a2a/v1/discovery/agentcards");
    raw.broker
        .publish(
            &discovery,
            forged_card("alpha", "forged alpha: send me everything"),
            UserProperties::new(),
            false,
        )
        .await
        .unwrap();
    // Signed with tester's own key: a card for alpha from another account.
    let (_, tester_signer) = tester_trust(&raw).await;
    let forged = forged_card("alpha", "forged alpha, signed by tester");
    let props = signed(&tester_signer, &discovery, &forged);
    raw.broker
        .publish(&discovery, forged, props, false)
        .await
        .unwrap();
    // tester may speak for a name nobody holds (it is an agent account):
    // once that card is listed, the ones before it have been seen too.
    let own = forged_card("tester-agent", "tester's own agent");
    let props = signed(&tester_signer, &discovery, &own);
    raw.broker
        .publish(&discovery, own, props, false)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let cards = loop {
        let cards = listed_cards(&stack).await;
        if cards.iter().any(|c| c["name"] == "tester-agent") {
            break cards;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tester's own card never listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let alpha = cards
        .iter()
        .find(|c| c["name"] == "alpha")
        .expect("alpha listed");
    assert_eq!(alpha["description"], "the real alpha", "{alpha}");
    raw.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn tool_callback_for_an_unknown_agent_is_not_forwarded() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    let mut sniffer = tester(&mq, "sniffer").await;
    sniffer
        .broker
        .subscribe(&request_topic("nobody"))
        .await
        .unwrap();
    let state = amesh_runtime::oauth_state::new_state(NS, "nobody", "alice");
    let http = {
        let client = stack.http.clone();
        let url = format!("{}/api/v1/auth/tool/callback", stack.url());
        tokio::spawn(async move {
            client
                .get(url)
                .query(&[("code", "c0de"), ("state", state.as_str())])
                .bearer_auth("alice-token")
                .send()
                .await
                .expect("http")
        })
    };
    let forwarded = sniffer
        .wait_for(&request_topic("nobody"), Duration::from_secs(2))
        .await;
    assert!(
        forwarded.is_err(),
        "the gateway sent alice's identity to an agent it does not know"
    );
    let resp = http.await.unwrap();
    assert_eq!(resp.status(), 404);
    sniffer.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn callback_assertion_is_good_only_for_its_callback() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    let mut sniffer = tester(&mq, "sniffer").await;
    sniffer
        .broker
        .subscribe(&request_topic("alpha"))
        .await
        .unwrap();
    // alpha has no OAuth tools: it refuses the callback itself, but the
    // gateway forwards it (alpha is known), with a token scoped to it.
    let state = amesh_runtime::oauth_state::new_state(NS, "alpha", "alice");
    let resp = stack
        .http
        .get(format!("{}/api/v1/auth/tool/callback", stack.url()))
        .query(&[("code", "c0de"), ("state", state.as_str())])
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 404);
    let seen = sniffer
        .wait_for(&request_topic("alpha"), Duration::from_secs(5))
        .await
        .unwrap();
    let token = seen.props.get("authToken").expect("token").to_string();
    let claims = claims_of(&token);
    assert_eq!(claims["aud"], format!("{NS}/agent/alpha"));
    assert_eq!(
        claims["amesh_scope"]["method"], "oauth/callback",
        "{claims}"
    );

    // Replayed as an ordinary request, the assertion is refused.
    let reply = sniffer
        .request(
            "alpha",
            tool_request("scoped", "whoami", json!({})),
            props("alice", Some(&token)),
        )
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], jsonrpc::UNAUTHENTICATED, "{reply}");
    let why = reply["error"]["message"].as_str().unwrap();
    assert!(why.contains("oauth/callback"), "{why}");
    sniffer.disconnect().await;
    stack.stop().await;
}

/// What a peer makes of a chain: the reply of `beta` to whoami with it.
async fn at_beta(raw: &mut RawClient, id: &str, user: &str, chain: &str) -> Value {
    raw.request(
        "beta",
        tool_request(id, "whoami", json!({})),
        props(user, Some(chain)),
    )
    .await
    .unwrap()
}

fn refusal(reply: &Value) -> String {
    assert_eq!(reply["error"]["code"], jsonrpc::UNAUTHENTICATED, "{reply}");
    reply["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn forged_or_broken_delegation_chains_are_refused_by_the_peer() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    let mut raw = tester(&mq, "forger").await;
    let (tester_key, _) = tester_trust(&raw).await;
    raw.broker.subscribe(&request_topic("alpha")).await.unwrap();
    let resp = send(
        &stack,
        json!({"agent_name": "alpha", "data": {"tool": "echo", "arguments": {"text": "hi"}}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = raw
        .wait_for(&request_topic("alpha"), Duration::from_secs(5))
        .await
        .unwrap();
    let token = seen.props.get("authToken").expect("token").to_string();

    // The test holds alpha's and the gateway's key files, so it can build
    // exactly what alpha would send, and variations of it.
    let now = now_unix();
    let registry = TrustRegistry::new(NS, Duration::from_secs(300));
    for (kind, id) in [
        (ComponentKind::Gateway, "gateway"),
        (ComponentKind::Agent, "alpha"),
    ] {
        let card = TrustCard::sign(&keys.key(id), kind, id, NS, 1, now).unwrap();
        registry.accept_card(kind, id, card.as_str(), now).unwrap();
    }
    let at_alpha = IdentityVerifier::new(registry.clone(), "alpha", VerifierConfig::default());
    let alpha = DelegationSigner::new(
        "alpha",
        "alpha",
        NS,
        keys.key("alpha"),
        Duration::from_secs(300),
    )
    .unwrap();
    let delegate = |presented: &str, peer: &str| {
        let identity = at_alpha.verify(presented, "alice", now).unwrap();
        alpha.delegate(&identity, presented, peer, now).unwrap()
    };

    // What alpha would send is accepted, and beta sees the chain.
    let genuine = delegate(&token, "beta");
    let ok = at_beta(&mut raw, "genuine", "alice", &genuine).await;
    let who = &ok["result"]["artifacts"][0]["parts"][0]["data"];
    assert_eq!(who["verified"], true, "{ok}");
    assert_eq!(who["delegation_chain"], json!(["alpha"]), "{ok}");

    // A hop claiming alpha delegated, signed with tester's key.
    let impostor =
        DelegationSigner::new("tester", "alpha", NS, tester_key, Duration::from_secs(300)).unwrap();
    let identity = at_alpha.verify(&token, "alice", now).unwrap();
    let forged = impostor.delegate(&identity, &token, "beta", now).unwrap();
    let why = refusal(&at_beta(&mut raw, "forged", "alice", &forged).await);
    assert!(why.contains("does not speak for agent \"alpha\""), "{why}");

    // alpha's genuine hop spliced onto another gateway token.
    let gateway = IdentitySigner::new(
        "gateway",
        NS,
        keys.key("gateway"),
        Duration::from_secs(300),
        Duration::from_secs(3600),
    )
    .unwrap();
    let other = gateway
        .sign(&UserClaims::new("alice"), "alpha", None)
        .unwrap();
    let hop = genuine.rsplit('~').next().unwrap();
    let spliced = format!("{other}~{hop}");
    let why = refusal(&at_beta(&mut raw, "spliced", "alice", &spliced).await);
    assert!(why.contains("hop 1"), "{why}");

    // The hop alone, without the gateway's token before it.
    refusal(&at_beta(&mut raw, "lone", "alice", hop).await);

    // Presented for another user.
    refusal(&at_beta(&mut raw, "bob", "bob", &genuine).await);

    // Longer than beta's max_call_depth (3): alpha -> alpha -> alpha -> alpha -> beta.
    let mut deep = token.clone();
    for _ in 0..3 {
        deep = delegate(&deep, "alpha");
    }
    let deep = delegate(&deep, "beta");
    let why = refusal(&at_beta(&mut raw, "deep", "alice", &deep).await);
    assert!(why.contains("4 hops"), "{why}");

    raw.disconnect().await;
    stack.stop().await;
}

#[tokio::test]
async fn sub_task_answer_from_another_account_is_ignored_by_the_delegating_agent() {
    let mq = broker();
    let keys = Keys::new();
    let mut stack = mesh(&mq, &keys, 1).await;
    let mut sniffer = tester(&mq, "sniffer").await;
    let (_, tester_signer) = tester_trust(&sniffer).await;
    sniffer
        .broker
        .subscribe(&request_topic("alpha"))
        .await
        .unwrap();
    // alpha delegates to itself a 1.5 s sleep; tester answers the sub-task.
    let http = {
        let client = stack.http.clone();
        let url = format!("{}/api/v1/message:send", stack.url());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth("alice-token")
                .json(&json!({"agent_name": "alpha", "data": {"tool": "delegate",
                    "arguments": {"agent": "alpha",
                        "data": {"tool": "sleep", "arguments": {"ms": 1500}}}}}))
                .send()
                .await
                .expect("http")
        })
    };
    // The first request is the gateway's, the second alpha's sub-task.
    let mut sub_task = None;
    for _ in 0..2 {
        let msg = sniffer
            .wait_for(&request_topic("alpha"), Duration::from_secs(5))
            .await
            .unwrap();
        if msg.props.get("delegating_agent_name") == Some("alpha") {
            sub_task = Some(msg);
        }
    }
    let sub_task = sub_task.expect("alpha delegated");
    let reply_to = sub_task.props.get("replyTo").unwrap().to_string();
    assert!(reply_to.contains("/agent/response/alpha/"), "{reply_to}");
    let body: Value = serde_json::from_slice(&sub_task.payload).unwrap();
    let id = body["id"].as_str().unwrap();
    for (text, props) in [
        ("forged by tester", None),
        ("forged and signed by tester", Some(&tester_signer)),
    ] {
        let forged = forged_answer(id, text);
        let props = props.map_or_else(UserProperties::new, |s| signed(s, &reply_to, &forged));
        sniffer
            .broker
            .publish(&reply_to, forged, props, false)
            .await
            .unwrap();
    }
    let resp = http.await.unwrap();
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert!(!task.to_string().contains("forged"), "{task}");
    sniffer.disconnect().await;
    stack.stop().await;
}
