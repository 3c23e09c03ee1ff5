//! Replicas end to end: two `amesh run` processes of one agent (each its
//! own `AMESH_REPLICA_ID`, so its own MQTT client id) share its requests
//! through `$share/…` and one PostgreSQL store (the machine's, at
//! 127.0.0.1:5432, as in `store_outage.rs`); two gateways (own
//! `gateway_id` each) send requests; the demo provider rotates refresh
//! tokens. Tasks paused for authorization resume on whichever replica gets
//! the grant; after a forced expiry every user's grant is refreshed once
//! across both replicas and nobody is prompted again; one replica killed
//! with SIGKILL in the middle of the refreshes leaves the users authorized.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amesh_demo::{DemoHandle, DemoOptions, DemoProvider};
use amesh_tests::amesh_run::AmeshRun;
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::oauth::{answer, call_authorizing};
use amesh_tests::stack::{SseReader, Stack};
use serde_json::{Value, json};

const NS: &str = "replicas/ns";
/// Each gateway its own broker user: its trust card is published under it.
const BROKER_USERS: &[(&str, &str)] = &[
    ("gw1", "gw1-pass"),
    ("gw2", "gw2-pass"),
    ("agent", "agent-pass"),
];
const USERS: usize = 24;
/// A request with no final answer in this long is counted as failed.
/// Shorter than the refresh lease (35 s), so the round after the kill
/// starts before the dead replica's leases run out and shows they do.
const ANSWER_WITHIN: Duration = Duration::from_secs(25);

fn psql(sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test"])
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

fn gateway_yaml(mq: &MosquittoBroker, id: &str) -> String {
    let users: String = (0..USERS)
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
async fn round(label: &str, gws: &[Arc<Stack>; 2]) -> Vec<(String, Outcome)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..USERS {
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
        "{label}: sent {USERS}, answered {answered}, prompted {prompted}, failed {} in {:?} {failed:?}",
        failed.len(),
        started.elapsed()
    );
    outcomes
}

fn refused_refreshes(demo: &DemoHandle) -> usize {
    demo.token_requests() - demo.code_exchanges() - demo.refreshes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_requests_resume_anywhere_and_refresh_each_grant_once() {
    if let Err(e) = psql("SELECT 1") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL unreachable under CI=true: {e}"
        );
        eprintln!("skipping: PostgreSQL unreachable: {e}");
        return;
    }
    let db = Database(format!("amesh_replicas_{}", uuid::Uuid::new_v4().simple()));
    psql(&format!("CREATE DATABASE {}", db.0)).expect("create database");
    let mq = MosquittoBroker::for_namespace(BROKER_USERS, NS).expect("mosquitto");
    let demo = DemoProvider::start(DemoOptions::default())
        .await
        .expect("demo provider");
    let gw1 = Arc::new(Stack::start(&gateway_yaml(&mq, "gw1")).await.expect("gw1"));
    let gw2 = Arc::new(Stack::start(&gateway_yaml(&mq, "gw2")).await.expect("gw2"));
    let yaml = agent_yaml(&mq, &demo, &gw1.url(), &db.0);
    let mut r1 = replica(&yaml, "r1");
    let mut r2 = replica(&yaml, "r2");
    r1.wait_for("agent ready");
    r2.wait_for("agent ready");
    for gw in [&gw1, &gw2] {
        gw.wait_for_agent_as("tools", Duration::from_secs(20), Some("user0-token"))
            .await
            .expect("agent discovered");
    }

    // Each user authorizes once; the grant reaches whichever replica the
    // broker hands it to, which resumes the task paused on either.
    let mut flows = Vec::new();
    for i in 0..USERS {
        let gw = gw1.clone();
        flows.push(tokio::spawn(async move {
            let who = user(i);
            call_authorizing(&gw, &format!("{who}-token"), &who, "tools", "http_whoami").await
        }));
    }
    for (i, flow) in flows.into_iter().enumerate() {
        let task = match flow.await.expect("join") {
            Ok(task) => task,
            Err(e) => panic!(
                "{}: authorized call: {e}\n--- r1:\n{}\n--- r2:\n{}",
                user(i),
                r1.output(),
                r2.output()
            ),
        };
        assert_eq!(answer(&task), format!("You are {}", user(i)), "{task}");
    }
    assert_eq!(demo.code_exchanges(), USERS, "one authorization per user");

    // Forced expiry: every user's next call refreshes, once per grant
    // across both replicas, and nobody is prompted.
    demo.expire_access_tokens();
    let gws = [gw1.clone(), gw2.clone()];
    let outcomes = round("after expiry", &gws).await;
    for (who, outcome) in &outcomes {
        assert!(matches!(outcome, Outcome::Answered), "{who}: {outcome:?}");
    }
    assert_eq!(demo.refreshes(), USERS, "one refresh per grant");
    assert_eq!(refused_refreshes(&demo), 0, "no rotated token spent twice");
    let refreshed_by = |run: &AmeshRun| run.output().matches("access token refreshed").count();
    eprintln!(
        "refreshes by replica: r1 {}, r2 {}",
        refreshed_by(&r1),
        refreshed_by(&r2)
    );

    // Expire again and kill r1 with SIGKILL while the refreshes run; a
    // supervisor restarts it under the same replica id, so it takes back
    // its MQTT session and the requests the broker queued for it. A replica
    // killed after the provider rotated a token but before storing the new
    // one loses that rotation: only a provider reuse interval longer than
    // the refresh lease (35 s) keeps the old token usable for the replica
    // that takes over (Auth0's "reuse interval", Okta's "grace period").
    demo.set_refresh_reuse_interval(Duration::from_secs(60));
    demo.expire_access_tokens();
    let racing = tokio::spawn({
        let gws = gws.clone();
        async move { round("during SIGKILL", &gws).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    r1.kill();
    let mut r1 = replica(&yaml, "r1");
    r1.wait_for("agent ready");
    let during = racing.await.expect("join");
    for (who, outcome) in &during {
        // What r1 was running when it died is lost with it; the user sees
        // a failure with its reason (here: no answer in time), not a prompt.
        assert!(
            !matches!(outcome, Outcome::Prompted),
            "{who} was prompted again"
        );
    }
    let after = round("after SIGKILL", &gws).await;
    for (who, outcome) in &after {
        assert!(
            matches!(outcome, Outcome::Answered),
            "{who}: {outcome:?}\n--- r1 (restarted):\n{}\n--- r2:\n{}",
            r1.output(),
            r2.output()
        );
    }
    eprintln!(
        "provider: {} code exchanges, {} refreshes, {} refused",
        demo.code_exchanges(),
        demo.refreshes(),
        refused_refreshes(&demo)
    );
    drop(r1);
    drop(r2);
}
