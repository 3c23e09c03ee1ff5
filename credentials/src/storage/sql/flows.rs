//! Pending flows and client registrations in SQL.
//!
//! Taking a flow is one conditional UPDATE (`used_at IS NULL`, unexpired,
//! same user): of concurrent takes on any replica exactly one matches.
//! The row is read afterwards only to return it, or to say why the update
//! did not match.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::entity::{client, flow};
use super::{SqlStorage, errors};
use crate::error::CredentialError;
use crate::storage::{ClientListed, ClientRow, FlowRow, Result, Take};

impl SqlStorage {
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
        match self.try_client_put(&row).await {
            // A replica registered at the same server between our update
            // and insert: its row is there now, so this becomes an update.
            Err(e) if errors::is_unique_violation(&e) => self.try_client_put(&row).await,
            other => other,
        }
        .map_err(|e| self.err(e))
    }

    async fn try_client_put(&self, row: &ClientRow<'_>) -> std::result::Result<(), sea_orm::DbErr> {
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
        run.await
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

    pub(crate) async fn client_list(&self, agent: &str) -> Result<Vec<ClientListed>> {
        self.check_file()?;
        use client::Column as K;
        let rows = client::Entity::find()
            .select_only()
            .column(K::Server)
            .column(K::ClientId)
            .column(K::CreatedAt)
            .column(K::UpdatedAt)
            .filter(K::AgentId.eq(agent))
            .order_by_asc(K::Server)
            .into_tuple::<(String, String, i64, i64)>()
            .all(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(server, client_id, created_at, updated_at)| ClientListed {
                server,
                client_id,
                created_at,
                updated_at,
            })
            .collect())
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
}
