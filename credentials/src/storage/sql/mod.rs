//! The SQL backend: SQLite, PostgreSQL and MySQL/MariaDB through sea-orm.
//!
//! Rows are scoped by `agent_id` and looked up by fixed-length hashes, so
//! one query shape serves all three databases and stays on an index at a
//! million rows. Every statement that decides something — "is there a live
//! row", "is this flow still unused" — is a single conditional UPDATE or a
//! transaction, because replicas of an agent share the database.

mod audit;
mod conversations;
mod credentials;
mod entity;
mod errors;
mod file;
mod flows;
mod lease;
pub(crate) mod migration;
mod trust_keys;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Order;
use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use sea_orm_migration::MigratorTrait;

use self::audit::AuditQueue;
use self::entity::event;
use self::migration::Migrator;
use super::Result;
use crate::config::{DatabaseUrl, Dialect};
use crate::error::CredentialError;
use crate::model::{CredentialEvent, EventKind, ExportCursor, Filter, from_ms, to_ms};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::secret::ExposeSecret as _;

/// Pool settings from the store configuration.
pub(crate) struct PoolConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) max_connections: u32,
}

/// A connection pool, the URL (for errors) and the audit writer.
pub(crate) struct SqlStorage {
    db: DatabaseConnection,
    url: Arc<DatabaseUrl>,
    audit: AuditQueue,
    /// The SQLite file as opened, checked before each operation.
    file: Option<file::SqliteFile>,
    /// The read of a live credential, the hot path, built once.
    get_sql: String,
}

impl SqlStorage {
    /// Connects and applies migrations.
    pub(crate) async fn open(url: DatabaseUrl, pool: &PoolConfig) -> Result<Self> {
        url.check_built_in()?;
        let url = Arc::new(url);
        let mut options = ConnectOptions::new(url.driver_url().to_owned());
        options
            .connect_timeout(pool.connect_timeout)
            .acquire_timeout(pool.connect_timeout)
            .max_connections(pool.max_connections.max(1))
            .min_connections(0)
            .sqlx_logging(false)
            // A ping before every acquire doubles the round trips of a
            // read; ping only connections idle long enough to have been
            // cut by a proxy or a restart. A connection that died sooner
            // fails one query (`Unavailable`) and is replaced.
            .test_before_acquire(false)
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
        if let Some(password) = url.password().cloned() {
            // Not in the URL: sea-orm traces its connect options, URL included.
            match url.dialect() {
                #[cfg(feature = "postgres")]
                Dialect::Postgres => {
                    options.map_sqlx_postgres_opts(move |o| o.password(password.expose_secret()));
                }
                #[cfg(feature = "mysql")]
                Dialect::MySql => {
                    options.map_sqlx_mysql_opts(move |o| o.password(password.expose_secret()));
                }
                // SQLite has no password; the others are refused above
                // when not built in.
                _ => drop(password),
            }
        }
        if url.dialect() == Dialect::Sqlite {
            let busy = pool.connect_timeout;
            // One connection: SQLite serializes writers anyway, and a single
            // connection cannot deadlock on a read-to-write lock upgrade.
            // No idle expiry, or an in-memory database would vanish.
            options
                .max_connections(1)
                .min_connections(1)
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .map_sqlx_sqlite_opts(move |o| {
                    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                    o.busy_timeout(busy)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                });
        }
        if url.creates_file()
            && let Some(path) = url.sqlite_file()
        {
            file::prepare(path);
        }
        let db = match Database::connect(options).await {
            Ok(db) => db,
            Err(e) => {
                return Err(
                    errors::explain_connect_failure(&url, errors::map_db_err(&url, &e)).await,
                );
            }
        };
        migrate(&db, &url).await?;
        tracing::debug!(
            backend = url.backend_name(),
            target = url.target(),
            "credential store database ready"
        );
        let file = match url.dialect() {
            Dialect::Sqlite => file::SqliteFile::opened(url.target()),
            _ => None,
        };
        let audit = AuditQueue::spawn(db.clone(), url.clone());
        let get_sql = credentials::get_statement(db.get_database_backend());
        Ok(Self {
            get_sql,
            db,
            url,
            audit,
            file,
        })
    }

    pub(crate) fn backend_name(&self) -> &'static str {
        self.url.backend_name()
    }

    fn err(&self, err: DbErr) -> CredentialError {
        errors::map_db_err(&self.url, &err)
    }

    /// SQLite keeps working on a file that was deleted or moved while open
    /// (the inode lives on) and silently loses what it writes at the next
    /// start; refuse instead.
    fn check_file(&self) -> Result<()> {
        match &self.file {
            Some(file) => file.check(&self.url),
            None => Ok(()),
        }
    }

    pub(crate) fn record(&self, events: Vec<CredentialEvent>) {
        self.audit.record(events);
    }

    pub(crate) async fn flush(&self) {
        self.audit.flush().await;
    }

    pub(crate) async fn events(&self, filter: &Filter, limit: u64) -> Result<Vec<CredentialEvent>> {
        self.check_file()?;
        use event::Column as E;
        self.audit.flush().await;
        let rows = filtered(
            event::Entity::find(),
            filter,
            E::AgentId,
            E::UserId,
            E::ToolId,
        )
        .order_by(E::Id, Order::Desc)
        .limit(limit)
        .all(&self.db)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().filter_map(to_event).collect())
    }

    /// Oldest first from `cursor`: one page of an export.
    pub(crate) async fn events_from(
        &self,
        filter: &Filter,
        cursor: ExportCursor,
        limit: u64,
    ) -> Result<Vec<CredentialEvent>> {
        self.check_file()?;
        use event::Column as E;
        self.audit.flush().await;
        let rows = filtered(
            event::Entity::find(),
            filter,
            E::AgentId,
            E::UserId,
            E::ToolId,
        )
        .filter(E::At.gte(to_ms(cursor.since)))
        .filter(E::Id.gt(cursor.after_id))
        .order_by(E::Id, Order::Asc)
        .limit(limit)
        .all(&self.db)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().filter_map(to_event).collect())
    }

    pub(crate) async fn close(&self) {
        self.audit.flush().await;
        if let Err(err) = self.db.close_by_ref().await {
            tracing::debug!(error = %self.err(err), "closing the credential database pool");
        }
    }
}

async fn migrate(db: &DatabaseConnection, url: &DatabaseUrl) -> Result<()> {
    let migration_err = |e: DbErr| {
        let mapped = errors::map_db_err(url, &e);
        match mapped {
            CredentialError::Unavailable { .. } => mapped,
            CredentialError::Database {
                backend,
                target,
                detail,
            } => CredentialError::Migration {
                backend,
                target,
                detail,
            },
            other => other,
        }
    };
    // Replicas starting together race to create the tables: a loser's
    // CREATE fails (PostgreSQL: a duplicate in `pg_type`) while a winner's
    // migration is still running, and finds the tables made on a later
    // look. Three replicas can lose twice in a row, so a few looks, each
    // later than the last.
    let mut attempt = 1u64;
    loop {
        match Migrator::up(db, None).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < MIGRATION_ATTEMPTS => {
                tracing::debug!(error = %url.scrub(&e.to_string()), attempt, "credential migrations failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(migration_err(e)),
        }
    }
}

/// Looks at the schema before a migration error is final (see `migrate`).
const MIGRATION_ATTEMPTS: u64 = 5;

/// A stored event; `None` for a kind this version does not know.
fn to_event(row: event::Model) -> Option<CredentialEvent> {
    Some(CredentialEvent {
        id: row.id,
        at: from_ms(row.at),
        kind: EventKind::parse(&row.kind)?,
        agent_id: row.agent_id,
        user_id: row.user_id,
        tool_id: row.tool_id,
        reason: row.reason,
    })
}

fn filtered<E: EntityTrait>(
    mut query: sea_orm::Select<E>,
    filter: &Filter,
    agent: E::Column,
    user: E::Column,
    tool: E::Column,
) -> sea_orm::Select<E> {
    if let Some(a) = &filter.agent_id {
        query = query.filter(agent.eq(a.as_str()));
    }
    if let Some(u) = &filter.user_id {
        query = query.filter(user.eq(u.as_str()));
    }
    if let Some(t) = &filter.tool_id {
        query = query.filter(tool.eq(t.as_str()));
    }
    query
}
