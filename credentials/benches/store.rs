//! Credential store latency: `get` (read + decrypt + audit enqueue) and
//! `put` (encrypt + upsert) on memory, SQLite and PostgreSQL, and SQLite
//! `get` with 1,000 vs 1,000,000 stored credentials (it must stay on the
//! index). Criterion reports mean/median per backend; a table of per-call
//! p50/p99 follows.
//!
//! `cargo bench -p amesh-credentials --bench store`
//! (`AMESH_TEST_PG_URL` overrides `postgres://postgres@127.0.0.1:5432/test`;
//! PostgreSQL is skipped when unreachable.)
//!
//! Targets: memory get <= 5 us, SQLite get <= 100 us, PostgreSQL get
//! <= 500 us p50, SQLite get at 1M rows within 2x of 1k rows.

use std::time::{Duration, Instant};

use amesh_credentials::{
    AgentSecret, Credential, CredentialKey, CredentialStore, DatabaseUrl, StoreBackend, StoreConfig,
};
use amesh_trust::{TrustDisabled, VerifiedIdentity};
use criterion::Criterion;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use tokio::runtime::Runtime;

const AGENT: &str = "agent-bench";
const TOOL: &str = "https://mcp.example.com/mcp";
const USERS: usize = 1_000;
const BIG: usize = 1_000_000;

struct Fixture {
    label: String,
    store: CredentialStore,
    users: Vec<(CredentialKey, VerifiedIdentity)>,
}

fn credential(i: usize) -> Credential {
    Credential {
        refresh_token: Some(format!("refresh-token-{i:08}-0123456789abcdef").into()),
        scopes: vec!["read".into(), "write".into()],
        issuer: Some("https://auth.example.com".into()),
        token_endpoint: Some("https://auth.example.com/oauth/token".into()),
        client_id: Some("client-0123456789".into()),
        ..Credential::bearer(format!("ya29.access-token-{i:08}-{}", "x".repeat(120)))
    }
}

async fn fixture(label: &str, backend: StoreBackend) -> Fixture {
    let mut config = StoreConfig::new(
        backend,
        AGENT,
        AgentSecret::from_bytes(&[42; 32]).expect("secret"),
    );
    config.sweep_interval = Duration::from_secs(3600);
    let store = CredentialStore::open(config).await.expect("open store");
    let mut users = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let user = format!("user-{i:06}@example.com");
        let who = VerifiedIdentity::trust_disabled(
            TrustDisabled::by_configuration(),
            user.clone(),
            None,
            None,
        );
        let key = CredentialKey::new(user, TOOL);
        store.put(&key, &who, &credential(i)).await.expect("put");
        users.push((key, who));
    }
    store.flush_audit().await;
    Fixture {
        label: label.into(),
        store,
        users,
    }
}

/// Adds `BIG - USERS` rows to a SQLite store in one statement, each a copy
/// of a real sealed row under its own key hash: a million-row table with
/// the same indexes, built in seconds rather than a million encrypting puts.
async fn grow_sqlite(url: &str) {
    let db = Database::connect(ConnectOptions::new(url.to_owned()))
        .await
        .expect("raw sqlite");
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {filler}) \
         INSERT INTO credentials (agent_id, user_id, tool_id, key_hash, tombstone, sealed, scopes, issuer, client_id, \
           token_expires_at, created_at, updated_at, expires_at) \
         SELECT '{AGENT}', 'filler-' || i || '@example.com', '{TOOL}', printf('%064x', i * 2654435761 % 18446744073709551557), 0, \
           (SELECT sealed FROM credentials LIMIT 1), 'read write', 'https://auth.example.com', 'client-0123456789', \
           NULL, 0, 0, 9000000000000000 FROM n",
        filler = BIG - USERS
    );
    let start = Instant::now();
    db.execute_unprepared(&sql)
        .await
        .expect("insert filler rows");
    db.execute_unprepared("ANALYZE").await.expect("analyze");
    eprintln!(
        "inserted {} filler rows in {:.1?}",
        BIG - USERS,
        start.elapsed()
    );
    db.close().await.ok();
}

async fn postgres_db() -> Option<(String, String)> {
    let admin = std::env::var("AMESH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut options = ConnectOptions::new(admin.clone());
    options
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3));
    let db = match Database::connect(options).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("note: PostgreSQL unreachable ({err}); skipping it");
            return None;
        }
    };
    let name = format!("amesh_bench_{}", std::process::id());
    db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .ok();
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create bench db");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin.clone());
    Some((admin, format!("{base}/{name}")))
}

async fn drop_postgres_db(admin: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    if let Ok(db) = Database::connect(admin.to_owned()).await {
        db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .ok();
    }
}

fn bench_get(c: &mut Criterion, rt: &Runtime, f: &Fixture, name: &str) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let (key, who) = &f.users[(i * 7919) % f.users.len()];
                    let got = f.store.get(key, who).await.expect("get");
                    assert!(got.is_some());
                }
                start.elapsed()
            })
        })
    });
}

fn bench_put(c: &mut Criterion, rt: &Runtime, f: &Fixture) {
    c.bench_function(&format!("{}/put", f.label), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let (key, who) = &f.users[(i * 7919) % f.users.len()];
                    f.store.put(key, who, &credential(i)).await.expect("put");
                }
                start.elapsed()
            })
        })
    });
}

/// Per-call latency of `n` gets: (p50, p99).
fn percentiles(rt: &Runtime, f: &Fixture, n: usize) -> (Duration, Duration) {
    rt.block_on(async {
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let (key, who) = &f.users[(i * 7919) % f.users.len()];
            let start = Instant::now();
            f.store.get(key, who).await.expect("get");
            samples.push(start.elapsed());
        }
        samples.sort();
        (samples[n / 2], samples[n * 99 / 100])
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut table = Vec::new();

    let memory = rt.block_on(fixture("memory", StoreBackend::Memory));
    bench_get(&mut c, &rt, &memory, "memory/get");
    bench_put(&mut c, &rt, &memory);
    table.push(("memory get", percentiles(&rt, &memory, 20_000)));

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt.block_on(fixture(
        "sqlite",
        StoreBackend::Sql {
            database_url: DatabaseUrl::parse(&sqlite_url).expect("url"),
        },
    ));
    bench_get(&mut c, &rt, &sqlite, "sqlite/get (1k rows)");
    bench_put(&mut c, &rt, &sqlite);
    table.push(("SQLite get, 1k rows", percentiles(&rt, &sqlite, 5_000)));
    rt.block_on(grow_sqlite(&sqlite_url));
    bench_get(&mut c, &rt, &sqlite, "sqlite/get (1M rows)");
    table.push(("SQLite get, 1M rows", percentiles(&rt, &sqlite, 5_000)));
    rt.block_on(sqlite.store.close());

    if let Some((admin, url)) = rt.block_on(postgres_db()) {
        let pg = rt.block_on(fixture(
            "postgres",
            StoreBackend::Sql {
                database_url: DatabaseUrl::parse(&url).expect("url"),
            },
        ));
        bench_get(&mut c, &rt, &pg, "postgres/get");
        bench_put(&mut c, &rt, &pg);
        table.push(("PostgreSQL get", percentiles(&rt, &pg, 5_000)));
        rt.block_on(pg.store.close());
        rt.block_on(drop_postgres_db(&admin, &url));
    }
    c.final_summary();

    println!("\nper-call latency of get (single caller)");
    println!("{:<24} {:>10} {:>10}", "", "p50", "p99");
    for (name, (p50, p99)) in table {
        println!("{name:<24} {:>10.1?} {:>10.1?}", p50, p99);
    }
}
