//! Credential rows in SQL: read, upsert, mark deleted, list, sweep.
//!
//! Reads and upserts of one key go through the unique index
//! `(key_hash, tombstone)` and nothing else, so their plan does not depend
//! on the planner's statistics (see `cred_get`). Marking deleted sets
//! `tombstone = id`, which frees the key's live slot while keeping the row.

use sea_orm::sea_query::{Expr, Order};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
};

use super::entity::credential;
use super::{SqlStorage, errors, filtered};
use crate::model::{CredentialInfo, DeleteReason, Filter, from_ms};
use crate::storage::memory::split_scopes;
use crate::storage::{CredRow, PutOutcome, Result, RowKey};

/// Rows marked deleted per sweep statement.
const SWEEP_BATCH: u64 = 500;

/// Times a write transaction refused as `SQLITE_BUSY` is started over
/// (see [`errors::is_sqlite_busy`]).
const SQLITE_BUSY_RETRIES: u64 = 8;

impl SqlStorage {
    /// The sealed blob of the live row of `key_hash`, if it is `agent`'s
    /// and unexpired. The query names only the unique index's columns, so
    /// every planner takes that index — given `agent_id` and `expires_at`
    /// too, PostgreSQL without statistics picked the sweep index and read
    /// all of the agent's rows.
    pub(crate) async fn cred_get(
        &self,
        agent: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Option<Vec<u8>>> {
        self.check_file()?;
        let stmt = Statement::from_sql_and_values(
            self.db.get_database_backend(),
            self.get_sql.as_str(),
            [key_hash.into(), 0i64.into()],
        );
        let Some(row) = self.db.query_one_raw(stmt).await.map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let read = || -> std::result::Result<_, DbErr> {
            Ok((
                row.try_get_by_index::<Vec<u8>>(0)?,
                row.try_get_by_index::<String>(1)?,
                row.try_get_by_index::<i64>(2)?,
            ))
        };
        let (sealed, row_agent, expires_at) = read().map_err(|e| self.err(e))?;
        Ok((row_agent == agent && expires_at > now).then_some(sealed))
    }

    pub(crate) async fn cred_put(&self, row: CredRow<'_>) -> Result<PutOutcome> {
        self.check_file()?;
        let mut attempt = 0;
        loop {
            match self.try_put(&row).await {
                // A replica inserted the same key between our check and
                // insert: it is a live row now, so this becomes an update.
                Err(e) if errors::is_unique_violation(&e) => {
                    return self.try_put(&row).await.map_err(|e| self.err(e));
                }
                // Another store wrote the SQLite file after our transaction
                // read it: start the transaction over (a few times).
                Err(e) if errors::is_sqlite_busy(&e) && attempt < SQLITE_BUSY_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
                }
                other => return other.map_err(|e| self.err(e)),
            }
        }
    }

    async fn try_put(&self, row: &CredRow<'_>) -> std::result::Result<PutOutcome, DbErr> {
        use credential::Column as C;
        let txn = self.db.begin().await?;
        // By the unique index alone (see `cred_get`). The hash covers the
        // agent; the key columns are rewritten on update all the same.
        let existing: Option<(i64, i64)> = credential::Entity::find()
            .select_only()
            .column(C::Id)
            .column(C::ExpiresAt)
            .filter(C::KeyHash.eq(row.key_hash))
            .filter(C::Tombstone.eq(0))
            .into_tuple()
            .one(&txn)
            .await?;
        let outcome = match existing {
            Some((id, expires_at)) if expires_at > row.now => {
                credential::Entity::update_many()
                    .col_expr(C::AgentId, Expr::value(row.agent_id))
                    .col_expr(C::UserId, Expr::value(row.user_id))
                    .col_expr(C::ToolId, Expr::value(row.tool_id))
                    .col_expr(C::Sealed, Expr::value(row.sealed.clone()))
                    .col_expr(C::Scopes, Expr::value(row.scopes.clone()))
                    .col_expr(C::Issuer, Expr::value(row.issuer.clone()))
                    .col_expr(C::ClientId, Expr::value(row.client_id.clone()))
                    .col_expr(C::TokenExpiresAt, Expr::value(row.token_expires_at))
                    .col_expr(C::UpdatedAt, Expr::value(row.now))
                    .col_expr(C::ExpiresAt, Expr::value(row.expires_at))
                    // A new credential ends any refresh lease on the old one.
                    .col_expr(C::RefreshLeaseUntil, Expr::value(Option::<i64>::None))
                    .col_expr(C::RefreshLeaseHolder, Expr::value(Option::<String>::None))
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

    /// Marks the live row of `key_hash` deleted. By the unique index alone
    /// (see `cred_get`): the hash is over (agent, user, tool), so the row
    /// it names is this agent's.
    pub(crate) async fn cred_delete(
        &self,
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
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected > 0)
    }

    /// Sets `last_used_at` of the live row of `key_hash` (by the unique
    /// index alone, see `cred_get`); whether there was one.
    pub(crate) async fn cred_touch(&self, key_hash: &str, now: i64) -> Result<bool> {
        self.check_file()?;
        use credential::Column as C;
        let done = credential::Entity::update_many()
            .col_expr(C::LastUsedAt, Expr::value(now))
            .filter(C::KeyHash.eq(key_hash))
            .filter(C::Tombstone.eq(0))
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
}

/// `SELECT sealed, agent_id, expires_at FROM credentials WHERE key_hash = ?
/// AND tombstone = ?` in the backend's dialect. Built by sea-query once
/// instead of per read (a measurable share of a SQLite read).
pub(super) fn get_statement(backend: sea_orm::DbBackend) -> String {
    use credential::Column as C;
    use sea_orm::QueryTrait as _;
    credential::Entity::find()
        .select_only()
        .column(C::Sealed)
        .column(C::AgentId)
        .column(C::ExpiresAt)
        .filter(C::KeyHash.eq(""))
        .filter(C::Tombstone.eq(0i64))
        .build(backend)
        .sql
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
        last_used_at: row.last_used_at.map(from_ms),
        expires_at: from_ms(row.expires_at),
        deleted_at: row.deleted_at.map(from_ms),
        delete_reason: row.delete_reason.as_deref().and_then(DeleteReason::parse),
    }
}
