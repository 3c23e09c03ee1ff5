//! The database not being there: at start, and in the middle of a run.
//! Calls fail with `Unavailable` naming the backend and host (never the
//! password), and work again when the database is back.

mod common;

use std::time::{Duration, Instant};

use amesh_credentials::ExposeSecret as _;
use amesh_credentials::{
    Credential, CredentialError, CredentialKey, CredentialStore, DatabaseUrl, EventKind, Filter,
    StoreBackend, StoreConfig,
};
use common::{DB_PASSWORD, Kind, TestDb, identity, secret};

const TOOL: &str = "https://mcp.example.com/mcp";

fn assert_unavailable(err: &CredentialError, backend: &str, target_part: &str, context: &str) {
    eprintln!("{context}: {err}");
    match err {
        CredentialError::Unavailable {
            backend: b, target, ..
        } => {
            assert_eq!(*b, backend, "{context}: {err}");
            assert!(
                target.contains(target_part),
                "{context}: target {target:?} lacks {target_part:?}"
            );
        }
        other => panic!("{context}: expected Unavailable, got {other:?} ({other})"),
    }
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("unavailable") && text.contains(backend),
        "{context}: {text}"
    );
    assert!(
        !text.contains(DB_PASSWORD),
        "{context}: password leaked: {text}"
    );
}

async fn open_url(url: &str) -> Result<CredentialStore, CredentialError> {
    let mut config = StoreConfig::new(
        StoreBackend::Sql {
            database_url: DatabaseUrl::parse(url).expect("url"),
        },
        "agent-a",
        secret(1),
    );
    config.connect_timeout = Duration::from_secs(2);
    CredentialStore::open(config).await
}

#[tokio::test]
async fn unreachable_database_at_start_names_backend_and_host_not_password() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let pg = open_url(&format!("postgres://amesh:{DB_PASSWORD}@127.0.0.1:1/creds"))
        .await
        .expect_err("refused");
    assert_unavailable(&pg, "PostgreSQL", "127.0.0.1:1", "postgres");
    let my = open_url(&format!("mysql://amesh:{DB_PASSWORD}@127.0.0.1:1/creds"))
        .await
        .expect_err("refused");
    assert_unavailable(&my, "MySQL/MariaDB", "127.0.0.1:1", "mysql");
    let lite = open_url("sqlite:///nonexistent-amesh-dir/sub/creds.db")
        .await
        .expect_err("no directory");
    assert_unavailable(
        &lite,
        "SQLite",
        "/nonexistent-amesh-dir/sub/creds.db",
        "sqlite",
    );
}

/// Opens a store with short timeouts and stores alice's credential.
async fn store_with_credential(db: &TestDb) -> (CredentialStore, CredentialKey) {
    let mut config = db.config("agent-a", secret(1));
    config.connect_timeout = Duration::from_secs(2);
    let store = CredentialStore::open(config).await.expect("open");
    let key = CredentialKey::new("alice", TOOL);
    store
        .put(
            &key,
            &identity("alice"),
            &Credential::bearer("outage-token"),
        )
        .await
        .expect("put");
    (store, key)
}

/// Retries `get` until it succeeds (the pool reconnects), failing after
/// `within`; every error on the way must be `Unavailable`.
async fn recovers(
    store: &CredentialStore,
    key: &CredentialKey,
    backend: &str,
    within: Duration,
) -> usize {
    let start = Instant::now();
    let mut failures = 0;
    loop {
        match store.get(key, &identity("alice")).await {
            Ok(Some(c)) => {
                assert_eq!(c.access_token.expose_secret(), "outage-token");
                eprintln!("[{backend}] recovered after {failures} failed calls");
                return failures;
            }
            Ok(None) => panic!("[{backend}] credential lost"),
            Err(e) => {
                failures += 1;
                assert!(
                    matches!(e, CredentialError::Unavailable { .. }),
                    "[{backend}] {e:?}"
                );
                assert!(
                    start.elapsed() < within,
                    "[{backend}] no recovery within {within:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn postgres_outage_mid_run_is_unavailable_then_recovers() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let name = db.name.clone().expect("name");
    let (store, key) = store_with_credential(&db).await;
    let alice = identity("alice");

    // The database stops accepting connections and drops the live ones.
    db.admin_exec(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    db.admin_exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let err = store.get(&key, &alice).await.expect_err("down");
    assert_unavailable(
        &err,
        "PostgreSQL",
        &format!("127.0.0.1:5432/{name}"),
        "get while down",
    );
    let err = store
        .put(&key, &alice, &Credential::bearer("x"))
        .await
        .expect_err("down");
    assert_unavailable(&err, "PostgreSQL", "127.0.0.1:5432", "put while down");
    // Refused before the database is asked: audited into the buffer.
    let denied = store
        .get(&key, &identity("mallory"))
        .await
        .expect_err("denied");
    assert!(
        matches!(denied, CredentialError::AccessDenied { .. }),
        "{denied:?}"
    );
    let err = store
        .take_flow("state-while-down-0001", &alice)
        .await
        .expect_err("down");
    assert_unavailable(&err, "PostgreSQL", "127.0.0.1:5432", "take_flow while down");

    db.admin_exec(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    recovers(&store, &key, "postgres", Duration::from_secs(10)).await;
    // The denial recorded during the outage was kept and written after it.
    let kinds: Vec<_> = store
        .events(&Filter::agent("agent-a"), 10)
        .await
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Used,
            EventKind::AccessDenied,
            EventKind::Acquired
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_pool_reconnects_after_its_connections_are_terminated() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let name = db.name.clone().expect("name");
    let (store, key) = store_with_credential(&db).await;
    let killed = db
        .admin_ids(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    assert!(
        killed.first().copied().unwrap_or(0) >= 1,
        "terminated the pool's connections: {killed:?}"
    );
    let failures = recovers(&store, &key, "postgres", Duration::from_secs(5)).await;
    let killed = killed.first().copied().unwrap_or(0) as usize;
    assert!(
        failures <= killed,
        "each dead pooled connection fails at most one call ({failures} failures, {killed} killed)"
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_database_dropped_mid_run_is_unavailable() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let name = db.name.clone().expect("name");
    let (store, key) = store_with_credential(&db).await;
    db.admin_exec(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await;
    let err = store.get(&key, &identity("alice")).await.expect_err("gone");
    assert_unavailable(&err, "PostgreSQL", &name, "get after DROP DATABASE");
    store.close().await;
}

#[tokio::test]
async fn mysql_outage_mid_run_is_unavailable_then_recovers() {
    let Some(db) = common::mysql().await else {
        return;
    };
    let name = db.name.clone().expect("name");
    let (store, key) = store_with_credential(&db).await;

    // The agent's account is locked and its connections killed.
    db.admin_exec(&format!("ALTER USER '{name}'@'%' ACCOUNT LOCK"))
        .await;
    for id in db
        .admin_ids(&format!(
            "SELECT id FROM information_schema.processlist WHERE user = '{name}'"
        ))
        .await
    {
        db.admin_exec(&format!("KILL CONNECTION {id}")).await;
    }
    let err = store.get(&key, &identity("alice")).await.expect_err("down");
    assert_unavailable(
        &err,
        "MySQL/MariaDB",
        &format!("127.0.0.1:3306/{name}"),
        "get while locked out",
    );

    db.admin_exec(&format!("ALTER USER '{name}'@'%' ACCOUNT UNLOCK"))
        .await;
    recovers(&store, &key, "mysql", Duration::from_secs(10)).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_file_moved_away_mid_run_is_unavailable_then_recovers() {
    let db = common::sqlite();
    assert_eq!(db.kind, Kind::Sqlite);
    let path = db.sqlite_path.clone().expect("path");
    let (store, key) = store_with_credential(&db).await;
    let aside = path.with_extension("moved");

    std::fs::rename(&path, &aside).expect("move away");
    let err = store.get(&key, &identity("alice")).await.expect_err("gone");
    assert_unavailable(
        &err,
        "SQLite",
        &path.display().to_string(),
        "get after the file moved",
    );
    assert!(err.to_string().contains("deleted or moved"), "{err}");
    let err = store
        .put(&key, &identity("alice"), &Credential::bearer("lost"))
        .await
        .expect_err("gone");
    assert_unavailable(&err, "SQLite", "credentials.db", "put after the file moved");

    std::fs::rename(&aside, &path).expect("move back");
    recovers(&store, &key, "sqlite", Duration::from_secs(2)).await;
    store.close().await;
}
