//! Replicas end to end: three `amesh run` processes of one agent (each its
//! own `AMESH_REPLICA_ID`, so its own MQTT client id) share its requests
//! through `$share/…`, one PostgreSQL store (the machine's, at
//! 127.0.0.1:5432, as in `store_outage.rs`) and one trust key kept there;
//! two gateways (own `gateway_id` each) send requests; the demo provider
//! rotates refresh tokens. The replicas publish one key on their common
//! trust card topic (no rotation seen by a peer, and a peer that holds only
//! the last retained card verifies what every replica signs). Tasks paused
//! for authorization resume on whichever replica gets the grant; after a
//! forced expiry every user's grant is refreshed once across the replicas
//! and nobody is prompted again; one replica killed with SIGKILL while
//! refreshes are in flight leaves the users authorized.
//!
//! The suite runs it with [`SUITE_USERS`] users; the issue's scale (3
//! replicas, 2 gateways, 200 users) is the ignored test, run with
//! `cargo test -p amesh-tests --test replicas_e2e -- --ignored --nocapture`.

#![recursion_limit = "256"]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_runtime::broker::{Broker, DevBus};
use amesh_tests::amesh_run::AmeshRun;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::{answer, call_authorizing};
use amesh_tests::stack::{SseReader, Stack};
use amesh_trust::{
    CardUpdate, ComponentKind, TrustRegistry, now_unix, verify_card, verify_message,
};
use serde_json::{Value, json};

const NS: &str = "replicas/ns";
/// Each gateway its own broker user: its trust card is published under it.
const BROKER_USERS: &[(&str, &str)] = &[
    ("gw1", "gw1-pass"),
    ("gw2", "gw2-pass"),
    ("agent", "agent-pass"),
    ("observer", "observer-pass"),
];
/// Users in the suite's run: a few minutes at most on 2 shared cores.
const SUITE_USERS: usize = 48;
/// The issue's scale, in the ignored test.
const FULL_USERS: usize = 200;
const REPLICAS: [&str; 3] = ["r1", "r2", "r3"];
/// A request with no final answer in this long is counted as failed.
/// Shorter than the refresh lease (35 s), so the round after the kill
/// starts before the dead replica's leases run out and shows they do.
const ANSWER_WITHIN: Duration = Duration::from_secs(25);

fn psql(sql: &str) -> Result<String, String> {
    psql_in("test", sql)
}

fn psql_in(db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A database of the test's own, dropped at the end.
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

fn user(i: usize) -> String {
    format!("user{i}")
}

fn gateway_yaml(mq: &MosquittoBroker, id: &str, users: usize) -> String {
    let users: String = (0..users)
        .map(|i| format!("        - {{id: {u}, token: {u}-token}}\n", u = user(i)))
        .collect();
    format!(
        r#"apps:
  - name: {id}
    app_module: gateway
    broker: {{broker_url: "{url}", broker_username: {id}, broker_password: {id}-pass}}
    app_config:
      namespace: {NS}
      gateway_id: {id}
      port: 0
      frontend_use_authorization: true
      session_secret_key: shared-session-key
      trust_manager: {{card_publish_interval_seconds: 1}}
      users:
{users}"#,
        url = mq.url()
    )
}

fn agent_yaml(mq: &MosquittoBroker, demo: &DemoHandle, callback_gw: &str, db: &str) -> String {
    format!(
        r#"apps:
  - name: agent
    app_module: agent
    broker: {{broker_url: "{url}", broker_username: agent, broker_password: agent-pass}}
    app_config:
      namespace: {NS}
      agent_name: tools
      agent_card_publishing: {{interval_seconds: 1}}
      session_service: {{type: sql, database_url: "postgres://postgres@127.0.0.1:5432/{db}"}}
      oauth_tool_redirect_uri: "{callback_gw}/api/v1/auth/tool/callback"
      trust_manager: {{verification_mode: strict, card_publish_interval_seconds: 1}}
      tools:
        - tool_type: mcp
          id: demo-http
          connection_params: {{type: streamable-http, url: "{mcp}"}}
          auth: {{type: oauth2}}
          tool_name_prefix: http_
          manifest:
            - name: whoami
              description: Who the demo provider says you are.
              inputSchema: {{type: object, properties: {{}}, additionalProperties: false}}
"#,
        url = mq.url(),
        mcp = demo.mcp_url(),
    )
}

fn replica(yaml: &str, id: &str) -> AmeshRun {
    AmeshRun::start(
        yaml,
        &[
            ("AMESH_REPLICA_ID", id),
            // Shared by the replicas, as the README says.
            (
                "AMESH_AGENT_SECRET",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
            ("RUST_LOG", "info"),
        ],
    )
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Answered,
    /// The user was asked to authorize again: what this test forbids.
    Prompted,
    Failed(String),
}

/// One streamed `whoami` as `user` through `gw`, never authorizing.
async fn ask(gw: &Stack, user: &str) -> Outcome {
    let run = async {
        let resp = gw
            .http
            .post(format!("{}/api/v1/message:stream", gw.url()))
            .bearer_auth(format!("{user}-token"))
            .json(&json!({"agent_name": "tools", "data": {"tool": "http_whoami"}}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let mut events = SseReader::new(resp);
        while let Some(ev) = events.next_event().await.map_err(|e| e.to_string())? {
            match ev.event.as_str() {
                "status" if ev.data["status"]["state"] == "auth-required" => {
                    return Ok(Outcome::Prompted);
                }
                "task" => return Ok(final_outcome(&ev.data, user)),
                "error" => return Ok(Outcome::Failed(format!("error event: {}", ev.data))),
                _ => {}
            }
        }
        Err("stream ended without a final task".to_owned())
    };
    match tokio::time::timeout(ANSWER_WITHIN, run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(reason)) => Outcome::Failed(reason),
        Err(_) => Outcome::Failed(format!("no final answer within {ANSWER_WITHIN:?}")),
    }
}

fn final_outcome(task: &Value, user: &str) -> Outcome {
    if task["status"]["state"] == "completed" && answer(task) == format!("You are {user}") {
        Outcome::Answered
    } else {
        Outcome::Failed(format!(
            "{}: {}",
            task["status"]["state"], task["status"]["message"]["parts"][0]["text"]
        ))
    }
}

/// Every user asks once, concurrently, alternating gateways; prints and
/// returns the outcomes.
async fn round(label: &str, gws: &[Arc<Stack>; 2], users: usize) -> Vec<(String, Outcome)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..users {
        let gw = gws[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let who = user(i);
            let outcome = ask(&gw, &who).await;
            (who, outcome)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("join"));
    }
    let answered = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Answered))
        .count();
    let prompted = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Prompted))
        .count();
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|(u, o)| match o {
            Outcome::Failed(why) => Some(format!("{u}: {why}")),
            _ => None,
        })
        .collect();
    eprintln!(
        "{label}: sent {users}, answered {answered}, prompted {prompted}, failed {} in {:?} {failed:?}",
        failed.len(),
        started.elapsed()
    );
    outcomes
}

fn refused_refreshes(demo: &DemoHandle) -> usize {
    demo.token_requests() - demo.code_exchanges() - demo.refreshes()
}

/// The key id a replica logged when it got its trust key, and whether it
/// made it (else it loaded it from the database).
fn logged_trust_key(run: &AmeshRun) -> Option<(String, bool)> {
    let output = run.output();
    let line = output
        .lines()
        .find(|l| l.contains("trust key created") || l.contains("trust key loaded"))?;
    let at = line.find("kid=")? + "kid=".len();
    let kid: String = line[at..]
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Some((kid, line.contains("trust key created")))
}

/// What a peer on the broker saw of the agent's trust cards and signed
/// agent cards.
#[derive(Debug, Default)]
struct Observed {
    /// Key ids on the agent's trust cards, in order (one per publication).
    card_kids: Vec<String>,
    /// Trust cards that replaced the key a peer held.
    rotations: usize,
    /// Agent cards whose signature verified with the key of the first
    /// trust card this peer saw (and only that one).
    verified: usize,
    /// Those that did not, with why.
    refused: Vec<String>,
}

/// A peer that joins after the replicas: it trusts the first (retained)
/// agent trust card it receives and nothing else, then checks every later
/// trust card (a new key would be a rotation: the flapping this test
/// forbids) and every agent card (signed by whichever replica published
/// it) against that one key. What it saw is in the returned cell; the task
/// runs until aborted.
async fn observe(mq: &MosquittoBroker) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Observed>>) {
    let cfg = mq.broker_config("observer", "observer-pass");
    let (broker, mut incoming) = Broker::connect(&cfg, "observer", &DevBus::new())
        .await
        .expect("observer connects");
    let trust_topic =
        amesh_runtime::topics::trust(NS, amesh_runtime::topics::TrustKind::Agent, "agent");
    let cards_topic = amesh_runtime::topics::agent_discovery(NS);
    broker.subscribe(&trust_topic).await.expect("subscribe");
    broker.subscribe(&cards_topic).await.expect("subscribe");
    let seen = Arc::new(Mutex::new(Observed::default()));
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            let _connection = broker;
            let first_only = TrustRegistry::new(NS, Duration::from_secs(60));
            let all = TrustRegistry::new(NS, Duration::from_secs(60));
            while let Some(msg) = incoming.recv().await {
                let mut seen = seen.lock().expect("observed");
                if msg.topic == trust_topic {
                    let Ok(jws) = std::str::from_utf8(&msg.payload) else {
                        continue;
                    };
                    let now = now_unix();
                    let card = verify_card(
                        jws,
                        ComponentKind::Agent,
                        "agent",
                        NS,
                        now,
                        Duration::from_secs(60),
                    )
                    .expect("a replica's trust card is valid");
                    if seen.card_kids.is_empty() {
                        first_only
                            .accept_card(ComponentKind::Agent, "agent", jws, now)
                            .expect("accepted");
                    }
                    if let Ok(CardUpdate::Rotated { .. }) =
                        all.accept_card(ComponentKind::Agent, "agent", jws, now)
                    {
                        seen.rotations += 1;
                    }
                    seen.card_kids.push(card.key().kid().to_owned());
                } else if msg.topic == cards_topic && !seen.card_kids.is_empty() {
                    let signature = msg.props.get(amesh_runtime::a2a::props::SIGNATURE);
                    match verify_message(
                        &first_only,
                        signature,
                        &msg.topic,
                        &msg.payload,
                        now_unix(),
                    ) {
                        Ok(_) => seen.verified += 1,
                        Err(e) => seen.refused.push(e.to_string()),
                    }
                }
            }
        }
    });
    (task, seen)
}

/// Live refresh leases on the store's credential rows now.
fn leases_held(db: &str) -> usize {
    psql_in(
        db,
        "SELECT count(*) FROM credentials WHERE tombstone = 0 \
         AND refresh_lease_until > (extract(epoch from now()) * 1000)::bigint",
    )
    .ok()
    .and_then(|n| n.parse().ok())
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_requests_one_trust_key_resume_anywhere_and_refresh_each_grant_once() {
    scenario(SUITE_USERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the issue's full scale, 200 users: run with --ignored --nocapture (see the module doc)"]
async fn replicas_at_full_scale_200_users() {
    scenario(FULL_USERS).await;
}

async fn scenario(users: usize) {
    if let Err(e) = psql("SELECT 1") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL unreachable under CI=true: {e}"
        );
        eprintln!("skipping: PostgreSQL unreachable: {e}");
        return;
    }
    let started = Instant::now();
    let db = Database(format!("amesh_replicas_{}", uuid::Uuid::new_v4().simple()));
    psql(&format!("CREATE DATABASE {}", db.0)).expect("create database");
    let mq = MosquittoBroker::for_namespace(BROKER_USERS, NS).expect("mosquitto");
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider");
    let gw1 = Arc::new(
        Stack::start(&gateway_yaml(&mq, "gw1", users))
            .await
            .expect("gw1"),
    );
    let gw2 = Arc::new(
        Stack::start(&gateway_yaml(&mq, "gw2", users))
            .await
            .expect("gw2"),
    );
    let yaml = agent_yaml(&mq, &demo, &gw1.url(), &db.0);
    // Started together: they race to store the trust key.
    let mut runs: Vec<AmeshRun> = REPLICAS.iter().map(|id| replica(&yaml, id)).collect();
    for run in &mut runs {
        run.wait_for("agent ready");
    }
    let keys: Vec<(String, bool)> = runs
        .iter()
        .map(|run| logged_trust_key(run).expect("the replica logged its trust key"))
        .collect();
    eprintln!("trust keys (kid, created here): {keys:?}");
    assert!(
        keys.iter().all(|(kid, _)| *kid == keys[0].0),
        "one trust key for every replica: {keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|(_, created)| *created).count(),
        1,
        "one replica made the key, the others loaded it: {keys:?}"
    );
    let kid = keys[0].0.clone();
    // Joins late: it gets the retained card of whichever replica published last.
    let (observer, observed) = observe(&mq).await;
    for gw in [&gw1, &gw2] {
        gw.wait_for_agent_as("tools", Duration::from_secs(20), Some("user0-token"))
            .await
            .expect("agent discovered");
    }

    // Each user authorizes once; the grant reaches whichever replica the
    // broker hands it to, which resumes the task paused on any of them.
    let authorizing = Instant::now();
    let mut flows = Vec::new();
    for i in 0..users {
        let gw = gw1.clone();
        flows.push(tokio::spawn(async move {
            let who = user(i);
            call_authorizing(&gw, &format!("{who}-token"), &who, "tools", "http_whoami").await
        }));
    }
    for (i, flow) in flows.into_iter().enumerate() {
        let task = match flow.await.expect("join") {
            Ok(task) => task,
            Err(e) => panic!("{}: authorized call: {e}\n{}", user(i), outputs(&runs)),
        };
        assert_eq!(answer(&task), format!("You are {}", user(i)), "{task}");
    }
    assert_eq!(demo.code_exchanges(), users, "one authorization per user");
    eprintln!("{users} users authorized in {:?}", authorizing.elapsed());

    // Forced expiry: every user's next call refreshes, once per grant
    // across the replicas, and nobody is prompted.
    demo.expire_access_tokens();
    let gws = [gw1.clone(), gw2.clone()];
    let outcomes = round("after expiry", &gws, users).await;
    for (who, outcome) in &outcomes {
        assert!(matches!(outcome, Outcome::Answered), "{who}: {outcome:?}");
    }
    assert_eq!(demo.refreshes(), users, "one refresh per grant");
    assert_eq!(refused_refreshes(&demo), 0, "no rotated token spent twice");
    let refreshed_by = |run: &AmeshRun| run.output().matches("access token refreshed").count();
    eprintln!(
        "refreshes by replica: {:?}",
        runs.iter().map(refreshed_by).collect::<Vec<_>>()
    );
    for (id, run) in REPLICAS.iter().zip(&runs) {
        assert!(refreshed_by(run) > 0, "replica {id} served no request");
    }

    // Expire again and kill r1 with SIGKILL once refreshes are in flight
    // (a refresh lease is held); a supervisor restarts it under the same
    // replica id, so it takes back its MQTT session and the requests the
    // broker queued for it. A replica killed after the provider rotated a
    // token but before storing the new one loses that rotation: only a
    // provider reuse interval longer than the refresh lease (35 s) keeps
    // the old token usable for the replica that takes over (Auth0's "reuse
    // interval", Okta's "grace period").
    demo.set_refresh_reuse_interval(Duration::from_secs(60));
    demo.expire_access_tokens();
    let racing = tokio::spawn({
        let gws = gws.clone();
        async move { round("during SIGKILL", &gws, users).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = leases_held(&db.0);
    while held == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        held = leases_held(&db.0);
    }
    let refreshes_before_kill = demo.refreshes();
    runs[0].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "SIGKILL of r1 with {held} refresh lease(s) held ({} refreshes done in this round); \
         500 ms later {} held (those of r1 stay until they run out)",
        refreshes_before_kill - users,
        leases_held(&db.0)
    );
    runs[0] = replica(&yaml, "r1");
    runs[0].wait_for("agent ready");
    let (restarted_kid, created) = logged_trust_key(&runs[0]).expect("restarted r1 logged its key");
    assert_eq!(
        restarted_kid, kid,
        "the restarted replica loads the same key"
    );
    assert!(
        !created,
        "the restarted replica loads the key, it does not make one"
    );
    let during = racing.await.expect("join");
    for (who, outcome) in &during {
        // What r1 was running when it died is lost with it; the user sees
        // a failure with its reason (here: no answer in time), not a prompt.
        assert!(
            !matches!(outcome, Outcome::Prompted),
            "{who} was prompted again"
        );
    }
    let after = round("after SIGKILL", &gws, users).await;
    for (who, outcome) in &after {
        assert!(
            matches!(outcome, Outcome::Answered),
            "{who}: {outcome:?}\n{}",
            outputs(&runs)
        );
    }
    eprintln!(
        "provider: {} code exchanges, {} refreshes, {} refused",
        demo.code_exchanges(),
        demo.refreshes(),
        refused_refreshes(&demo)
    );
    assert_eq!(demo.code_exchanges(), users, "nobody authorized twice");

    // One key on the trust card topic all along, which a late peer holding
    // one card used to verify every agent card any replica signed.
    drop(runs);
    observer.abort();
    let seen = std::mem::take(&mut *observed.lock().expect("observed"));
    eprintln!(
        "peer: {} trust card publications, {} rotations, {} agent cards verified, {} refused; \
         whole run {:?}",
        seen.card_kids.len(),
        seen.rotations,
        seen.verified,
        seen.refused.len(),
        started.elapsed()
    );
    assert!(seen.card_kids.len() >= REPLICAS.len(), "{seen:?}");
    assert!(seen.card_kids.iter().all(|k| *k == kid), "{seen:?}");
    assert_eq!(seen.rotations, 0, "no key flapping on the trust card topic");
    assert!(seen.verified >= REPLICAS.len(), "{seen:?}");
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
}

fn outputs(runs: &[AmeshRun]) -> String {
    REPLICAS
        .iter()
        .zip(runs)
        .map(|(id, run)| format!("--- {id}:\n{}\n", run.output()))
        .collect()
}
