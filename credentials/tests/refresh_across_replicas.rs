//! One refresh at a time across replicas: several stores (one per replica
//! process, each with its own pool) on one database refresh the same
//! expiring grant at a real token endpoint that rotates refresh tokens.
//! Exactly one refresh reaches the provider and every replica ends up with
//! the winner's valid token; a replica that dies holding the lease holds
//! the others up only until the lease runs out.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use amesh_credentials::{
    Credential, CredentialKey, CredentialStore, ExposeSecret, LeaseTiming, Refresh,
};
use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json, Router};
use common::{TestDb, identity, secret};

const TOOL: &str = "https://mcp.example.com/mcp";
const AGENT: &str = "agent-replicated";
const REPLICAS: usize = 6;

/// A token endpoint that rotates: each refresh token works once, and the
/// answer takes a while, so concurrent refreshers overlap.
#[derive(Default)]
struct Provider {
    generation: u32,
    accepted: u32,
    refused: u32,
}

async fn token(
    State(provider): State<Arc<Mutex<Provider>>>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<serde_json::Value>, (axum::http::StatusCode, Json<serde_json::Value>)> {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let presented = form
        .iter()
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut p = provider.lock().expect("provider");
    if presented != format!("rt-{}", p.generation) {
        p.refused += 1;
        return Err((
            axum::http::StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        ));
    }
    p.accepted += 1;
    p.generation += 1;
    Ok(Json(serde_json::json!({
        "access_token": format!("at-{}", p.generation),
        "refresh_token": format!("rt-{}", p.generation),
        "token_type": "Bearer",
        "expires_in": 3600,
    })))
}

async fn serve_provider() -> (SocketAddr, Arc<Mutex<Provider>>) {
    let provider = Arc::new(Mutex::new(Provider::default()));
    let app = Router::new()
        .route("/token", post(token))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, provider)
}

fn expiring(generation: u32) -> Credential {
    Credential {
        access_token: format!("at-{generation}").into(),
        refresh_token: Some(format!("rt-{generation}").into()),
        token_type: "Bearer".into(),
        expires_at: Some(SystemTime::now() + Duration::from_secs(5)),
        scopes: vec![],
        issuer: None,
        token_endpoint: None,
        client_id: None,
    }
}

fn stale(c: &Credential) -> bool {
    c.expires_at
        .is_none_or(|at| at <= SystemTime::now() + Duration::from_secs(60))
}

/// What the runtime does with the lease: a real refresh_token grant.
async fn refresh_at(
    http: &reqwest::Client,
    addr: SocketAddr,
    current: Credential,
) -> Result<Credential, String> {
    let refresh_token = current.refresh_token.as_ref().ok_or("no refresh token")?;
    let answer = http
        .post(format!("http://{addr}/token"))
        // Test tokens are URL-safe (`rt-N`): no encoding needed.
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={}",
            refresh_token.expose_secret()
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("token endpoint answered {}", answer.status()));
    }
    let body: serde_json::Value = answer.json().await.map_err(|e| e.to_string())?;
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    Ok(Credential {
        access_token: field("access_token").into(),
        refresh_token: Some(field("refresh_token").into()),
        expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..current
    })
}

async fn replicas(db: &TestDb) -> Vec<CredentialStore> {
    let mut stores = Vec::new();
    for _ in 0..REPLICAS {
        stores.push(db.open(AGENT, secret(7)).await);
    }
    stores
}

#[tokio::test]
async fn concurrent_replicas_refresh_a_rotating_grant_exactly_once() {
    for db in common::sql_backends().await {
        let label = db.label();
        let (addr, provider) = serve_provider().await;
        let stores = replicas(&db).await;
        let who = identity("alice");
        let key = CredentialKey::new("alice", TOOL);
        stores[0].put(&key, &who, &expiring(0)).await.expect("put");

        let http = reqwest::Client::new();
        let mut tasks = Vec::new();
        for store in &stores {
            let (store, who, key, http) = (store.clone(), who.clone(), key.clone(), http.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .refresh_serialized(&key, &who, LeaseTiming::default(), stale, |c| {
                        refresh_at(&http, addr, c)
                    })
                    .await
            }));
        }
        let mut refreshed = 0;
        for task in tasks {
            match task.await.expect("join") {
                Ok(Refresh::Refreshed(c)) => {
                    refreshed += 1;
                    assert_eq!(c.access_token.expose_secret(), "at-1", "[{label}]");
                }
                Ok(Refresh::Fresh(c)) => {
                    assert_eq!(c.access_token.expose_secret(), "at-1", "[{label}]")
                }
                other => panic!("[{label}] a replica ended with {other:?}"),
            }
        }
        let (accepted, refused) = {
            let p = provider.lock().expect("provider");
            (p.accepted, p.refused)
        };
        assert_eq!(refreshed, 1, "[{label}] exactly one replica refreshes");
        assert_eq!(accepted, 1, "[{label}] one refresh reached the provider");
        assert_eq!(refused, 0, "[{label}] no rotated token was spent twice");
        eprintln!("[{label}] {REPLICAS} replicas: 1 refresh at the provider, all hold at-1");
        let stored = stores[REPLICAS - 1]
            .get(&key, &who)
            .await
            .expect("get")
            .expect("live");
        assert_eq!(
            stored
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("rt-1".to_owned()),
            "[{label}] the winner's rotated token is stored"
        );
        for store in stores {
            store.close().await;
        }
    }
}

#[tokio::test]
async fn a_replica_dying_with_the_lease_holds_others_up_only_until_it_runs_out() {
    for db in common::sql_backends().await {
        let label = db.label();
        let (addr, provider) = serve_provider().await;
        let stores = replicas(&db).await;
        let who = identity("bob");
        let key = CredentialKey::new("bob", TOOL);
        stores[0].put(&key, &who, &expiring(0)).await.expect("put");
        let timing = LeaseTiming {
            hold: Duration::from_millis(800),
            poll: Duration::from_millis(50),
            max_poll: Duration::from_millis(200),
            max_wait: Duration::from_secs(10),
        };

        // Replica 0 takes the lease and dies before its request is sent.
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
        let dying = {
            let (store, who, key) = (stores[0].clone(), who.clone(), key.clone());
            tokio::spawn(async move {
                store
                    .refresh_serialized(&key, &who, timing, stale, |_| async move {
                        let _ = taken_tx.send(());
                        std::future::pending::<Result<Credential, String>>().await
                    })
                    .await
            })
        };
        taken_rx.await.expect("lease taken");
        dying.abort();

        let started = std::time::Instant::now();
        let http = reqwest::Client::new();
        let outcome = stores[1]
            .refresh_serialized(&key, &who, timing, stale, |c| refresh_at(&http, addr, c))
            .await
            .expect("refresh");
        let Refresh::Refreshed(c) = outcome else {
            panic!("[{label}] expected the survivor to refresh, got {outcome:?}");
        };
        assert_eq!(c.access_token.expose_secret(), "at-1", "[{label}]");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "[{label}] the survivor waited for the lease to run out"
        );
        assert_eq!(provider.lock().expect("provider").accepted, 1, "[{label}]");
        for store in stores {
            store.close().await;
        }
    }
}
