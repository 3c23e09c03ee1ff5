//! Test harness: every backend this machine has, each test on its own
//! fresh database so tests run in parallel.
//!
//! - memory, and SQLite in a temp dir: always.
//! - PostgreSQL (`AMESH_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`)
//!   and MariaDB/MySQL (`AMESH_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`):
//!   a `CREATE DATABASE amesh_t_<random>` per test (MariaDB also gets its
//!   own user with a password), dropped when the `TestDb` is dropped, even
//!   after a panic. Unreachable: the backend is skipped with a note — unless
//!   `CI=true`, where that fails the test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use amesh_credentials::{AgentSecret, CredentialStore, DatabaseUrl, StoreBackend, StoreConfig};
use amesh_trust::{TrustDisabled, VerifiedIdentity};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value,
};

/// The password every networked test database URL carries, so tests can
/// look for it in errors and logs.
pub const DB_PASSWORD: &str = "pw-Never-Logged-7f3a9c";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Sqlite,
    Postgres,
    MySql,
}

/// One fresh database (or a memory store's stand-in).
pub struct TestDb {
    pub kind: Kind,
    /// URL the store uses (None for memory).
    pub url: Option<String>,
    /// Database name on PG/MySQL.
    pub name: Option<String>,
    /// The SQLite file.
    pub sqlite_path: Option<PathBuf>,
    admin_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn pg_admin_url() -> String {
    std::env::var("AMESH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_admin_url() -> String {
    std::env::var("AMESH_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

fn random_name() -> String {
    format!(
        "amesh_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// Every backend available here: memory, SQLite, and PG/MySQL if reachable.
pub async fn all_backends() -> Vec<TestDb> {
    let mut dbs = vec![memory(), sqlite()];
    dbs.extend(networked().await);
    dbs
}

/// SQL backends only.
pub async fn sql_backends() -> Vec<TestDb> {
    let mut dbs = vec![sqlite()];
    dbs.extend(networked().await);
    dbs
}

pub async fn networked() -> Vec<TestDb> {
    let mut dbs = Vec::new();
    if let Some(db) = postgres().await {
        dbs.push(db);
    }
    if let Some(db) = mysql().await {
        dbs.push(db);
    }
    dbs
}

pub fn memory() -> TestDb {
    TestDb {
        kind: Kind::Memory,
        url: None,
        name: None,
        sqlite_path: None,
        admin_url: None,
        _dir: None,
    }
}

pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("credentials.db");
    TestDb {
        kind: Kind::Sqlite,
        url: Some(format!("sqlite://{}", path.display())),
        name: None,
        sqlite_path: Some(path),
        admin_url: None,
        _dir: Some(dir),
    }
}

async fn admin(url: &str, what: &str) -> Option<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3))
        .max_connections(2)
        .sqlx_logging(false);
    match Database::connect(options).await {
        Ok(db) => Some(db),
        Err(err) => {
            if in_ci() {
                panic!("{what} is unreachable at {url} and CI=true: {err}");
            }
            eprintln!("note: {what} unreachable ({err}); skipping its part of this test");
            None
        }
    }
}

pub async fn postgres() -> Option<TestDb> {
    let admin_url = pg_admin_url();
    let db = admin(&admin_url, "PostgreSQL").await?;
    let name = random_name();
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create PG database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin_url);
    // Trust auth ignores the password; it is there to prove it never leaks.
    let url = base.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    );
    Some(TestDb {
        kind: Kind::Postgres,
        url: Some(format!("{url}/{name}")),
        name: Some(name),
        sqlite_path: None,
        admin_url: Some(admin_url),
        _dir: None,
    })
}

pub async fn mysql() -> Option<TestDb> {
    let admin_url = mysql_admin_url();
    let db = admin(&admin_url, "MariaDB/MySQL").await?;
    let name = random_name();
    for sql in [
        format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
        format!("CREATE USER '{name}'@'%' IDENTIFIED BY '{DB_PASSWORD}'"),
        format!("GRANT ALL ON {name}.* TO '{name}'@'%'"),
    ] {
        db.execute_unprepared(&sql)
            .await
            .expect("set up MySQL database");
    }
    let host = admin_url
        .split_once('@')
        .map(|(_, h)| h)
        .unwrap_or("127.0.0.1:3306/test");
    let host = host.split('/').next().unwrap_or(host);
    Some(TestDb {
        kind: Kind::MySql,
        url: Some(format!("mariadb://{name}:{DB_PASSWORD}@{host}/{name}")),
        name: Some(name),
        sqlite_path: None,
        admin_url: Some(admin_url),
        _dir: None,
    })
}

pub fn identity(user: &str) -> VerifiedIdentity {
    VerifiedIdentity::trust_disabled(TrustDisabled::by_configuration(), user, None, None)
}

pub fn secret(byte: u8) -> AgentSecret {
    AgentSecret::from_bytes(&[byte; 32]).expect("secret")
}

impl TestDb {
    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::Memory => "memory",
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::MySql => "mysql",
        }
    }

    pub fn backend(&self) -> StoreBackend {
        match &self.url {
            None => StoreBackend::Memory,
            Some(url) => StoreBackend::Sql {
                database_url: DatabaseUrl::parse(url).expect("test url"),
            },
        }
    }

    /// A test configuration: long sweep interval (tests sweep explicitly
    /// unless they set it), short timeouts, small pool.
    pub fn config(&self, agent: &str, secret: AgentSecret) -> StoreConfig {
        let mut config = StoreConfig::new(self.backend(), agent, secret);
        config.sweep_interval = Duration::from_secs(3600);
        config.connect_timeout = Duration::from_secs(5);
        config.max_connections = 4;
        config
    }

    pub async fn open(&self, agent: &str, secret: AgentSecret) -> CredentialStore {
        CredentialStore::open(self.config(agent, secret))
            .await
            .unwrap_or_else(|e| panic!("[{}] open: {e}", self.label()))
    }

    /// A direct connection for SQL-level tampering and inspection, as the
    /// superuser (no password in any URL a driver might trace).
    pub async fn raw(&self) -> DatabaseConnection {
        let url = match (&self.admin_url, &self.name) {
            (Some(admin), Some(name)) => {
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                format!("{base}/{name}")
            }
            _ => self.url.clone().expect("SQL backend"),
        };
        let mut options = ConnectOptions::new(url);
        options.max_connections(2).sqlx_logging(false);
        Database::connect(options).await.expect("raw connection")
    }

    /// Runs `sql` with positional `values` (`?` placeholders; rewritten to
    /// `$n` for PostgreSQL).
    pub async fn exec(&self, sql: &str, values: Vec<Value>) -> u64 {
        let raw = self.raw().await;
        let backend = raw.get_database_backend();
        let res = raw
            .execute_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, sql),
                values,
            ))
            .await
            .unwrap_or_else(|e| panic!("[{}] {sql}: {e}", self.label()));
        raw.close().await.ok();
        res.rows_affected()
    }

    /// First column of each row of `sql`, as bytes.
    pub async fn query_bytes(&self, sql: &str) -> Vec<Vec<u8>> {
        let raw = self.raw().await;
        let backend = raw.get_database_backend();
        let rows = raw
            .query_all_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query");
        raw.close().await.ok();
        rows.iter()
            .map(|r| r.try_get_by_index::<Vec<u8>>(0).expect("bytes column"))
            .collect()
    }

    /// First column of each row of `sql`, as strings.
    pub async fn query_strings(&self, sql: &str) -> Vec<String> {
        let raw = self.raw().await;
        let backend = raw.get_database_backend();
        let rows = raw
            .query_all_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query");
        raw.close().await.ok();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("string column"))
            .collect()
    }

    /// Runs admin SQL (as the superuser, on the admin database).
    pub async fn admin_exec(&self, sql: &str) {
        let url = self.admin_url.as_deref().expect("networked backend");
        let db = Database::connect(url.to_owned())
            .await
            .expect("admin connection");
        db.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("admin {sql}: {e}"));
        db.close().await.ok();
    }

    /// Admin query, first column as i64.
    pub async fn admin_ids(&self, sql: &str) -> Vec<i64> {
        let url = self.admin_url.as_deref().expect("networked backend");
        let db = Database::connect(url.to_owned())
            .await
            .expect("admin connection");
        let backend = db.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("admin query");
        db.close().await.ok();
        rows.iter()
            .map(|r| {
                r.try_get_by_index::<i64>(0)
                    .or_else(|_| r.try_get_by_index::<u64>(0).map(|v| v as i64))
                    .or_else(|_| r.try_get_by_index::<i32>(0).map(i64::from))
                    .expect("id")
            })
            .collect()
    }
}

pub fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (Some(admin_url), Some(name)) = (self.admin_url.clone(), self.name.clone()) else {
            return;
        };
        let kind = self.kind;
        // Drop runs outside async; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let Ok(db) = Database::connect(admin_url).await else {
                    return;
                };
                let statements = match kind {
                    Kind::Postgres => vec![format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
                    _ => vec![
                        format!("DROP DATABASE IF EXISTS {name}"),
                        format!("DROP USER IF EXISTS '{name}'@'%'"),
                    ],
                };
                for sql in statements {
                    if let Err(e) = db.execute_unprepared(&sql).await {
                        eprintln!("cleanup {sql}: {e}");
                    }
                }
                db.close().await.ok();
            });
        })
        .join();
    }
}
