//! The SQL backend: SQLite, PostgreSQL and MySQL/MariaDB through sea-orm.
//!
//! Rows are scoped by `agent_id` and looked up by fixed-length hashes, so
//! one query shape serves all three databases and stays on an index at a
//! million rows. Every statement that decides something — "is there a live
//! row", "is this flow still unused" — is a single conditional UPDATE or a
//! transaction, because replicas of an agent share the database.

mod audit;
mod entity;
mod errors;
mod file;
pub(crate) mod migration;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Expr, Order};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, Database, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use self::audit::AuditQueue;
use self::entity::{client, credential, event, flow};
use self::migration::Migrator;
use super::memory::split_scopes;
use super::{ClientRow, CredRow, FlowRow, PutOutcome, Result, RowKey, Take};
use crate::config::{DatabaseUrl, Dialect};
use crate::error::CredentialError;
use crate::model::{CredentialEvent, CredentialInfo, DeleteReason, EventKind, Filter, from_ms};

/// Rows marked deleted per sweep statement.
const SWEEP_BATCH: u64 = 500;

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
}

impl SqlStorage {
    /// Connects and applies migrations.
    pub(crate) async fn open(url: DatabaseUrl, pool: &PoolConfig) -> Result<Self> {
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
            // fails its query with `Unavailable` once and is replaced.
            .test_before_acquire(false)
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
        if let Some(password) = url.password().cloned() {
            // Not in the URL: sea-orm traces its connect options, URL included.
            match url.dialect() {
                Dialect::Postgres => {
                    options.map_sqlx_postgres_opts(move |o| o.password(password.expose()));
                }
                Dialect::MySql => {
                    options.map_sqlx_mysql_opts(move |o| o.password(password.expose()));
                }
                Dialect::Sqlite => {}
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
        Ok(Self {
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

    pub(crate) async fn cred_get(
        &self,
        agent: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Option<Vec<u8>>> {
        self.check_file()?;
        use credential::Column as C;
        credential::Entity::find()
            .select_only()
            .column(C::Sealed)
            .filter(C::KeyHash.eq(key_hash))
            .filter(C::Tombstone.eq(0))
            .filter(C::AgentId.eq(agent))
            .filter(C::ExpiresAt.gt(now))
            .into_tuple::<Vec<u8>>()
            .one(&self.db)
            .await
            .map_err(|e| self.err(e))
    }

    pub(crate) async fn cred_put(&self, row: CredRow<'_>) -> Result<PutOutcome> {
        self.check_file()?;
        match self.try_put(&row).await {
            // A replica inserted the same key between our check and insert:
            // it is a live row now, so this becomes an update.
            Err(e) if errors::is_unique_violation(&e) => self.try_put(&row).await,
            other => other,
        }
        .map_err(|e| self.err(e))
    }

    async fn try_put(&self, row: &CredRow<'_>) -> std::result::Result<PutOutcome, DbErr> {
        use credential::Column as C;
        let txn = self.db.begin().await?;
        let existing: Option<(i64, i64)> = credential::Entity::find()
            .select_only()
            .column(C::Id)
            .column(C::ExpiresAt)
            .filter(C::KeyHash.eq(row.key_hash))
            .filter(C::Tombstone.eq(0))
            .filter(C::AgentId.eq(row.agent_id))
            .into_tuple()
            .one(&txn)
            .await?;
        let outcome = match existing {
            Some((id, expires_at)) if expires_at > row.now => {
                credential::Entity::update_many()
                    .col_expr(C::Sealed, Expr::value(row.sealed.clone()))
                    .col_expr(C::Scopes, Expr::value(row.scopes.clone()))
                    .col_expr(C::Issuer, Expr::value(row.issuer.clone()))
                    .col_expr(C::ClientId, Expr::value(row.client_id.clone()))
                    .col_expr(C::TokenExpiresAt, Expr::value(row.token_expires_at))
                    .col_expr(C::UpdatedAt, Expr::value(row.now))
                    .col_expr(C::ExpiresAt, Expr::value(row.expires_at))
                    .filter(C::Id.eq(id))
                    .exec(&txn)
                    .await?;
                PutOutcome::Refreshed
            }
            Some((id, _)) => {
                mark_deleted(&txn, &[id], DeleteReason::Ttl, row.now).await?;
                insert_credential(&txn, row).await?;
                PutOutcome::ReplacedExpired
            }
            None => {
                insert_credential(&txn, row).await?;
                PutOutcome::Acquired
            }
        };
        txn.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn cred_delete(
        &self,
        agent: &str,
        key_hash: &str,
        reason: DeleteReason,
        now: i64,
    ) -> Result<bool> {
        self.check_file()?;
        use credential::Column as C;
        let done = credential::Entity::update_many()
            .col_expr(C::Tombstone, Expr::col(C::Id))
            .col_expr(C::DeletedAt, Expr::value(now))
            .col_expr(C::DeleteReason, Expr::value(reason.as_str()))
            .filter(C::KeyHash.eq(key_hash))
            .filter(C::Tombstone.eq(0))
            .filter(C::AgentId.eq(agent))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected > 0)
    }

    pub(crate) async fn cred_list(&self, filter: &Filter, now: i64) -> Result<Vec<CredentialInfo>> {
        self.check_file()?;
        use credential::Column as C;
        let mut query = credential::Entity::find();
        query = filtered(query, filter, C::AgentId, C::UserId, C::ToolId);
        if !filter.include_deleted {
            query = query
                .filter(C::Tombstone.eq(0))
                .filter(C::ExpiresAt.gt(now));
        }
        let rows = query
            .order_by(C::AgentId, Order::Asc)
            .order_by(C::UserId, Order::Asc)
            .order_by(C::ToolId, Order::Asc)
            .order_by(C::Id, Order::Asc)
            .all(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(info).collect())
    }

    pub(crate) async fn cred_mark_deleted(
        &self,
        filter: &Filter,
        reason: DeleteReason,
        now: i64,
    ) -> Result<Vec<RowKey>> {
        self.check_file()?;
        use credential::Column as C;
        let query = filtered(
            credential::Entity::find(),
            filter,
            C::AgentId,
            C::UserId,
            C::ToolId,
        )
        .filter(C::Tombstone.eq(0));
        self.mark_matching(query, reason, now).await
    }

    pub(crate) async fn cred_sweep(&self, agent: &str, now: i64) -> Result<Vec<RowKey>> {
        self.check_file()?;
        use credential::Column as C;
        let mut swept = Vec::new();
        loop {
            let query = credential::Entity::find()
                .filter(C::AgentId.eq(agent))
                .filter(C::Tombstone.eq(0))
                .filter(C::ExpiresAt.lte(now))
                .limit(SWEEP_BATCH);
            let batch = self.mark_matching(query, DeleteReason::Ttl, now).await?;
            let done = (batch.len() as u64) < SWEEP_BATCH;
            swept.extend(batch);
            if done {
                return Ok(swept);
            }
        }
    }

    /// Marks the rows `query` selects deleted, in one transaction, and
    /// returns their keys for the audit log.
    async fn mark_matching(
        &self,
        query: sea_orm::Select<credential::Entity>,
        reason: DeleteReason,
        now: i64,
    ) -> Result<Vec<RowKey>> {
        use credential::Column as C;
        let run = async {
            let txn = self.db.begin().await?;
            let rows: Vec<(i64, String, String, String)> = query
                .select_only()
                .column(C::Id)
                .column(C::AgentId)
                .column(C::UserId)
                .column(C::ToolId)
                .order_by(C::Id, Order::Asc)
                .into_tuple()
                .all(&txn)
                .await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            for chunk in ids.chunks(SWEEP_BATCH as usize) {
                mark_deleted(&txn, chunk, reason, now).await?;
            }
            txn.commit().await?;
            Ok::<_, DbErr>(rows)
        };
        let rows = run.await.map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(_, agent_id, user_id, tool_id)| RowKey {
                agent_id,
                user_id,
                tool_id,
            })
            .collect())
    }

    pub(crate) async fn flow_insert(&self, row: FlowRow) -> Result<()> {
        self.check_file()?;
        let model = flow::ActiveModel {
            state_hash: Set(row.state_hash),
            agent_id: Set(row.agent_id),
            user_id: Set(row.user_id),
            tool_id: Set(row.tool_id),
            task_id: Set(row.task_id),
            sealed: Set(row.sealed),
            created_at: Set(row.created_at),
            expires_at: Set(row.expires_at),
            used_at: Set(None),
        };
        match flow::Entity::insert(model)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_unique_violation(&e) => Err(CredentialError::InvalidInput {
                field: "state",
                reason: "a flow with this state already exists; use a fresh random state".into(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(crate) async fn flow_take(
        &self,
        agent: &str,
        state_hash: &str,
        user: &str,
        now: i64,
    ) -> Result<Take> {
        self.check_file()?;
        use flow::Column as F;
        // The single atomic step: of concurrent takes on any replica,
        // exactly one UPDATE matches.
        let taken = flow::Entity::update_many()
            .col_expr(F::UsedAt, Expr::value(now))
            .filter(F::StateHash.eq(state_hash))
            .filter(F::AgentId.eq(agent))
            .filter(F::UserId.eq(user))
            .filter(F::UsedAt.is_null())
            .filter(F::ExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        let found = flow::Entity::find_by_id(state_hash.to_owned())
            .filter(F::AgentId.eq(agent))
            .one(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        let Some(found) = found else {
            return Ok(Take::NotFound);
        };
        Ok(if taken.rows_affected == 1 {
            Take::Taken(FlowRow {
                state_hash: found.state_hash,
                agent_id: found.agent_id,
                user_id: found.user_id,
                tool_id: found.tool_id,
                task_id: found.task_id,
                sealed: found.sealed,
                created_at: found.created_at,
                expires_at: found.expires_at,
            })
        } else if found.user_id != user {
            Take::WrongUser {
                user_id: found.user_id,
                tool_id: found.tool_id,
            }
        } else if found.used_at.is_some() {
            Take::Used
        } else {
            Take::Expired(found.expires_at)
        })
    }

    pub(crate) async fn flow_purge(&self, agent: &str, before: i64) -> Result<u64> {
        self.check_file()?;
        use flow::Column as F;
        let done = flow::Entity::delete_many()
            .filter(F::AgentId.eq(agent))
            .filter(F::ExpiresAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected)
    }

    pub(crate) async fn client_put(&self, row: ClientRow<'_>) -> Result<()> {
        self.check_file()?;
        use client::Column as K;
        let run = async {
            let txn = self.db.begin().await?;
            let updated = client::Entity::update_many()
                .col_expr(K::ClientId, Expr::value(row.client_id))
                .col_expr(K::Sealed, Expr::value(row.sealed.clone()))
                .col_expr(K::UpdatedAt, Expr::value(row.now))
                .filter(K::KeyHash.eq(row.key_hash))
                .filter(K::AgentId.eq(row.agent_id))
                .exec(&txn)
                .await?;
            if updated.rows_affected == 0 {
                let model = client::ActiveModel {
                    key_hash: Set(row.key_hash.to_owned()),
                    agent_id: Set(row.agent_id.to_owned()),
                    server: Set(row.server.to_owned()),
                    client_id: Set(row.client_id.to_owned()),
                    sealed: Set(row.sealed.clone()),
                    created_at: Set(row.now),
                    updated_at: Set(row.now),
                };
                client::Entity::insert(model)
                    .exec_without_returning(&txn)
                    .await?;
            }
            txn.commit().await
        };
        run.await.map_err(|e| self.err(e))
    }

    pub(crate) async fn client_get(&self, agent: &str, key_hash: &str) -> Result<Option<Vec<u8>>> {
        self.check_file()?;
        use client::Column as K;
        client::Entity::find()
            .select_only()
            .column(K::Sealed)
            .filter(K::KeyHash.eq(key_hash))
            .filter(K::AgentId.eq(agent))
            .into_tuple::<Vec<u8>>()
            .one(&self.db)
            .await
            .map_err(|e| self.err(e))
    }

    pub(crate) async fn client_delete(&self, agent: &str, key_hash: &str) -> Result<bool> {
        self.check_file()?;
        use client::Column as K;
        let done = client::Entity::delete_many()
            .filter(K::KeyHash.eq(key_hash))
            .filter(K::AgentId.eq(agent))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected > 0)
    }

    pub(crate) async fn record(&self, events: Vec<CredentialEvent>) {
        self.audit.record(events).await;
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
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(CredentialEvent {
                    id: row.id,
                    at: from_ms(row.at),
                    kind: EventKind::parse(&row.kind)?,
                    agent_id: row.agent_id,
                    user_id: row.user_id,
                    tool_id: row.tool_id,
                    reason: row.reason,
                })
            })
            .collect())
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
    match Migrator::up(db, None).await {
        Ok(()) => Ok(()),
        Err(first) => {
            // Replicas starting together race to create the tables; the
            // loser finds them created on its second look.
            tracing::debug!(error = %url.scrub(&first.to_string()), "credential migrations failed once; retrying");
            tokio::time::sleep(Duration::from_millis(250)).await;
            Migrator::up(db, None).await.map_err(migration_err)
        }
    }
}

async fn insert_credential<C: sea_orm::ConnectionTrait>(
    conn: &C,
    row: &CredRow<'_>,
) -> std::result::Result<(), DbErr> {
    let model = credential::ActiveModel {
        agent_id: Set(row.agent_id.to_owned()),
        user_id: Set(row.user_id.to_owned()),
        tool_id: Set(row.tool_id.to_owned()),
        key_hash: Set(row.key_hash.to_owned()),
        tombstone: Set(0),
        sealed: Set(row.sealed.clone()),
        scopes: Set(row.scopes.clone()),
        issuer: Set(row.issuer.clone()),
        client_id: Set(row.client_id.clone()),
        token_expires_at: Set(row.token_expires_at),
        created_at: Set(row.now),
        updated_at: Set(row.now),
        expires_at: Set(row.expires_at),
        deleted_at: Set(None),
        delete_reason: Set(None),
        ..Default::default()
    };
    credential::Entity::insert(model)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Marks rows `ids` deleted: `tombstone = id` frees the live slot of their key.
async fn mark_deleted<C: sea_orm::ConnectionTrait>(
    conn: &C,
    ids: &[i64],
    reason: DeleteReason,
    now: i64,
) -> std::result::Result<(), DbErr> {
    use credential::Column as C;
    credential::Entity::update_many()
        .col_expr(C::Tombstone, Expr::col(C::Id))
        .col_expr(C::DeletedAt, Expr::value(now))
        .col_expr(C::DeleteReason, Expr::value(reason.as_str()))
        .filter(C::Id.is_in(ids.iter().copied()))
        .filter(C::Tombstone.eq(0))
        .exec(conn)
        .await?;
    Ok(())
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

fn info(row: credential::Model) -> CredentialInfo {
    CredentialInfo {
        scopes: split_scopes(&row.scopes),
        agent_id: row.agent_id,
        user_id: row.user_id,
        tool_id: row.tool_id,
        issuer: row.issuer,
        client_id: row.client_id,
        token_expires_at: row.token_expires_at.map(from_ms),
        created_at: from_ms(row.created_at),
        updated_at: from_ms(row.updated_at),
        expires_at: from_ms(row.expires_at),
        deleted_at: row.deleted_at.map(from_ms),
        delete_reason: row.delete_reason.as_deref().and_then(DeleteReason::parse),
    }
}
