//! The agent's trust key shared through its database: replicas starting
//! together end up with one key (the first insert wins, the others load
//! it), it is sealed with the agent secret, bound to (agent, broker
//! account), and a replica with another secret is refused rather than
//! given a key of its own.

mod common;

use amesh_credentials::{CredentialError, TrustKeyOrigin};
use common::{TestDb, secret};

const AGENT: &str = "agent-replicated";
const REPLICAS: usize = 6;

async fn replicas(db: &TestDb) -> Vec<amesh_credentials::CredentialStore> {
    let mut stores = Vec::new();
    for _ in 0..REPLICAS {
        stores.push(db.open(AGENT, secret(7)).await);
    }
    stores
}

#[tokio::test]
async fn replicas_starting_together_share_one_trust_key() {
    for db in common::sql_backends().await {
        let label = db.label();
        let stores = replicas(&db).await;
        let mut tasks = Vec::new();
        for store in &stores {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.shared_trust_key("agent").await
            }));
        }
        let mut kids = Vec::new();
        let mut created = 0;
        for task in tasks {
            let shared = task
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("[{label}] {e}"))
                .expect("a sql store keeps the key");
            if shared.origin == TrustKeyOrigin::Created {
                created += 1;
            }
            kids.push(shared.key.kid().to_owned());
        }
        assert_eq!(created, 1, "[{label}] exactly one replica made the key");
        assert!(
            kids.iter().all(|k| *k == kids[0]),
            "[{label}] one key for all: {kids:?}"
        );
        // A later start loads the same key.
        let later = db.open(AGENT, secret(7)).await;
        let again = later
            .shared_trust_key("agent")
            .await
            .expect("load")
            .expect("key");
        assert_eq!(again.origin, TrustKeyOrigin::Loaded, "[{label}]");
        assert_eq!(again.key.kid(), kids[0], "[{label}]");
        eprintln!(
            "[{label}] {REPLICAS} replicas at once: one key, {}",
            kids[0]
        );

        // The key is sealed: its private half is nowhere in the table.
        let pem = again.key.to_pkcs8_pem().expect("pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let stored = db.query_bytes("SELECT sealed FROM trust_keys").await;
        assert_eq!(stored.len(), 1, "[{label}] one row");
        assert!(
            !stored[0]
                .windows(16)
                .any(|w| body.as_bytes().windows(16).any(|b| b == w)),
            "[{label}] the stored blob holds no PEM text"
        );
        for store in stores {
            store.close().await;
        }
        later.close().await;
    }
}

#[tokio::test]
async fn another_account_or_agent_gets_another_key() {
    for db in common::sql_backends().await {
        let label = db.label();
        let store = db.open(AGENT, secret(7)).await;
        let a = store
            .shared_trust_key("agent")
            .await
            .expect("a")
            .expect("a");
        let b = store
            .shared_trust_key("agent-2")
            .await
            .expect("b")
            .expect("b");
        assert_ne!(a.key.kid(), b.key.kid(), "[{label}] per broker account");
        let other = db.open("another-agent", secret(7)).await;
        let c = other
            .shared_trust_key("agent")
            .await
            .expect("c")
            .expect("c");
        assert_ne!(a.key.kid(), c.key.kid(), "[{label}] per agent");
        store.close().await;
        other.close().await;
    }
}

#[tokio::test]
async fn a_replica_with_another_secret_is_refused_not_given_its_own_key() {
    for db in common::sql_backends().await {
        let label = db.label();
        let first = db.open(AGENT, secret(7)).await;
        let kid = first
            .shared_trust_key("agent")
            .await
            .expect("create")
            .expect("key")
            .key
            .kid()
            .to_owned();
        let stranger = db.open(AGENT, secret(8)).await;
        let err = stranger
            .shared_trust_key("agent")
            .await
            .expect_err("another secret does not open the key");
        assert!(
            matches!(err, CredentialError::TrustKeyUnreadable { .. }),
            "[{label}] {err}"
        );
        assert!(
            err.to_string().contains("another agent secret"),
            "[{label}] {err}"
        );
        // Still the first key: nothing was replaced.
        let still = first
            .shared_trust_key("agent")
            .await
            .expect("load")
            .expect("key");
        assert_eq!(still.key.kid(), kid, "[{label}]");

        // After the operator forgets it, the next start makes a new one.
        assert!(stranger.forget_trust_key("agent").await.expect("forget"));
        assert!(
            !stranger
                .forget_trust_key("agent")
                .await
                .expect("forget twice")
        );
        let fresh = stranger
            .shared_trust_key("agent")
            .await
            .expect("create")
            .expect("key");
        assert_eq!(fresh.origin, TrustKeyOrigin::Created, "[{label}]");
        assert_ne!(fresh.key.kid(), kid, "[{label}]");
        first.close().await;
        stranger.close().await;
    }
}

#[tokio::test]
async fn a_memory_store_keeps_no_trust_key() {
    let store = common::memory().open(AGENT, secret(7)).await;
    assert!(store.shared_trust_key("agent").await.expect("ok").is_none());
}
