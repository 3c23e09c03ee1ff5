//! Conversations in SQL: read, save, delete, list, purge.
//!
//! Reads and decisions go through the unique index `(agent_id,
//! context_id)` alone, and writes then name the row by its primary key, so
//! no statement's plan depends on the planner's statistics (given the
//! owner and `updated_at` too, a planner without statistics may prefer the
//! listing or sweep index and read a user's or an agent's every row; see
//! `cred_get`). Retention is checked in Rust on what that lookup returns.
//!
//! A save is compare-and-swap without a transaction: read (id, owner,
//! `updated_at`), then UPDATE by id *and* the owner and `updated_at` read.
//! A replica that changed the row in between makes the UPDATE match
//! nothing, and the save looks again — so a conversation past retention is
//! taken over by exactly one new owner, and a live one never changes owner.

use sea_orm::sea_query::{Expr, Order};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::conversation;
use super::{SqlStorage, errors};
use crate::error::CredentialError;
use crate::storage::{ConvMeta, ConvRow, ConvStored, ConvWrite, Result, RetitleRow};

/// Rows deleted per purge statement.
const PURGE_BATCH: u64 = 500;
/// Looks before a save gives up on a row other replicas keep changing.
const SAVE_ATTEMPTS: usize = 4;

/// (id, owner, updated_at, renamed_at) of the row holding a context.
type Holder = (i64, String, i64, Option<i64>);

impl SqlStorage {
    pub(crate) async fn conv_get(
        &self,
        agent: &str,
        context_id: &str,
        cutoff: i64,
    ) -> Result<Option<ConvStored>> {
        self.check_file()?;
        use conversation::Column as V;
        type Row = (String, Vec<u8>, Vec<u8>, i64, i64, i64, Option<i64>);
        let row: Option<Row> = conversation::Entity::find()
            .select_only()
            .column(V::UserId)
            .column(V::Sealed)
            .column(V::SealedTitle)
            .column(V::Turns)
            .column(V::CreatedAt)
            .column(V::UpdatedAt)
            .column(V::RenamedAt)
            .filter(V::AgentId.eq(agent))
            .filter(V::ContextId.eq(context_id))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.filter(|r| r.5 > cutoff).map(
            |(user_id, sealed, sealed_title, turns, created_at, updated_at, renamed_at)| {
                ConvStored {
                    user_id,
                    sealed,
                    sealed_title,
                    turns: u32::try_from(turns).unwrap_or(0),
                    created_at,
                    updated_at,
                    renamed_at,
                }
            },
        ))
    }

    pub(crate) async fn conv_save(&self, row: ConvRow<'_>) -> Result<ConvWrite> {
        self.check_file()?;
        for _ in 0..SAVE_ATTEMPTS {
            let attempt = match self.holder(row.agent_id, row.context_id).await? {
                None => self.conv_insert(&row).await,
                Some((_, owner, updated_at, _))
                    if updated_at > row.cutoff && owner != row.user_id =>
                {
                    return Ok(ConvWrite::OwnedBy(owner));
                }
                Some(holder) => self.conv_replace(&row, holder).await,
            };
            match attempt {
                Ok(true) => return Ok(ConvWrite::Done),
                // Another replica inserted, changed or deleted the row
                // since we looked: look again.
                Ok(false) => continue,
                Err(e) if errors::is_unique_violation(&e) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(CredentialError::Unavailable {
            backend: self.backend_name(),
            target: self.url.target().to_owned(),
            detail: format!(
                "conversation {:?} was changed by other saves {SAVE_ATTEMPTS} times while this one was being written; try again",
                row.context_id
            ),
        })
    }

    /// The row holding `context_id`, live or not.
    async fn holder(&self, agent: &str, context_id: &str) -> Result<Option<Holder>> {
        use conversation::Column as V;
        conversation::Entity::find()
            .select_only()
            .column(V::Id)
            .column(V::UserId)
            .column(V::UpdatedAt)
            .column(V::RenamedAt)
            .filter(V::AgentId.eq(agent))
            .filter(V::ContextId.eq(context_id))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(|e| self.err(e))
    }

    async fn conv_insert(&self, row: &ConvRow<'_>) -> std::result::Result<bool, DbErr> {
        let model = conversation::ActiveModel {
            agent_id: Set(row.agent_id.to_owned()),
            user_id: Set(row.user_id.to_owned()),
            context_id: Set(row.context_id.to_owned()),
            sealed: Set(row.sealed.clone()),
            sealed_title: Set(row.sealed_title.clone()),
            turns: Set(i64::from(row.turns)),
            created_at: Set(row.now),
            updated_at: Set(row.now),
            ..Default::default()
        };
        conversation::Entity::insert(model)
            .exec_without_returning(&self.db)
            .await?;
        Ok(true)
    }

    /// Overwrites the row `holder` read, if it is still as read: the
    /// caller's own live conversation keeps its `created_at` and a title
    /// the user gave it; one past retention (anyone's) starts over as the
    /// caller's.
    async fn conv_replace(
        &self,
        row: &ConvRow<'_>,
        (id, owner, updated_at, renamed_at): Holder,
    ) -> std::result::Result<bool, DbErr> {
        use conversation::Column as V;
        let expired = updated_at <= row.cutoff;
        let mut update = conversation::Entity::update_many()
            .col_expr(V::Sealed, Expr::value(row.sealed.clone()))
            .col_expr(V::Turns, Expr::value(i64::from(row.turns)))
            .col_expr(V::UpdatedAt, Expr::value(row.now));
        if expired || renamed_at.is_none() {
            update = update.col_expr(V::SealedTitle, Expr::value(row.sealed_title.clone()));
        }
        if expired {
            update = update
                .col_expr(V::UserId, Expr::value(row.user_id))
                .col_expr(V::CreatedAt, Expr::value(row.now))
                .col_expr(V::RenamedAt, Expr::value(Option::<i64>::None));
        }
        let done = update
            .filter(V::Id.eq(id))
            .filter(V::UserId.eq(owner))
            .filter(V::UpdatedAt.eq(updated_at))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// The user's title, compare-and-swap like a save: on the caller's live
    /// row (its history untouched, `updated_at` moved on so a save that
    /// read the row before sees the change and looks again), else on a new
    /// empty row (inserted, or replacing one past retention).
    pub(crate) async fn conv_retitle(&self, row: RetitleRow<'_>) -> Result<ConvWrite> {
        self.check_file()?;
        use conversation::Column as V;
        for _ in 0..SAVE_ATTEMPTS {
            let attempt = match self.holder(row.agent_id, row.context_id).await? {
                Some((_, owner, updated_at, _))
                    if updated_at > row.cutoff && owner != row.user_id =>
                {
                    return Ok(ConvWrite::OwnedBy(owner));
                }
                Some((id, owner, updated_at, _)) => {
                    let expired = updated_at <= row.cutoff;
                    let mut update = conversation::Entity::update_many()
                        .col_expr(V::SealedTitle, Expr::value(row.sealed_title.clone()))
                        .col_expr(V::RenamedAt, Expr::value(row.now))
                        .col_expr(
                            V::UpdatedAt,
                            Expr::value(row.now.max(updated_at.saturating_add(1))),
                        );
                    if expired {
                        update = update
                            .col_expr(V::Sealed, Expr::value(row.empty_sealed.clone()))
                            .col_expr(V::Turns, Expr::value(0i64))
                            .col_expr(V::UserId, Expr::value(row.user_id))
                            .col_expr(V::CreatedAt, Expr::value(row.now));
                    }
                    update
                        .filter(V::Id.eq(id))
                        .filter(V::UserId.eq(owner))
                        .filter(V::UpdatedAt.eq(updated_at))
                        .exec(&self.db)
                        .await
                        .map(|done| done.rows_affected == 1)
                }
                None => {
                    let model = conversation::ActiveModel {
                        agent_id: Set(row.agent_id.to_owned()),
                        user_id: Set(row.user_id.to_owned()),
                        context_id: Set(row.context_id.to_owned()),
                        sealed: Set(row.empty_sealed.clone()),
                        sealed_title: Set(row.sealed_title.clone()),
                        turns: Set(0),
                        created_at: Set(row.now),
                        updated_at: Set(row.now),
                        renamed_at: Set(Some(row.now)),
                        ..Default::default()
                    };
                    conversation::Entity::insert(model)
                        .exec_without_returning(&self.db)
                        .await
                        .map(|_| true)
                }
            };
            match attempt {
                Ok(true) => return Ok(ConvWrite::Done),
                Ok(false) => continue,
                Err(e) if errors::is_unique_violation(&e) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(CredentialError::Unavailable {
            backend: self.backend_name(),
            target: self.url.target().to_owned(),
            detail: format!(
                "conversation {:?} was changed by other saves {SAVE_ATTEMPTS} times while it was being renamed; try again",
                row.context_id
            ),
        })
    }

    pub(crate) async fn conv_delete(
        &self,
        agent: &str,
        context_id: &str,
        user: &str,
        cutoff: i64,
    ) -> Result<ConvWrite> {
        self.check_file()?;
        use conversation::Column as V;
        let (id, owner, updated_at, _) = match self.holder(agent, context_id).await? {
            None => return Ok(ConvWrite::Missing),
            Some(holder) => holder,
        };
        if owner != user {
            return Ok(if updated_at > cutoff {
                ConvWrite::OwnedBy(owner)
            } else {
                ConvWrite::Missing
            });
        }
        // By id and owner: if a replica deleted it, or it passed retention
        // and was taken over since we looked, there is nothing of ours left.
        let done = conversation::Entity::delete_many()
            .filter(V::Id.eq(id))
            .filter(V::UserId.eq(user))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(if done.rows_affected > 0 {
            ConvWrite::Done
        } else {
            ConvWrite::Missing
        })
    }

    pub(crate) async fn conv_list(
        &self,
        agent: &str,
        user: &str,
        cutoff: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ConvMeta>> {
        self.check_file()?;
        use conversation::Column as V;
        let mut query = conversation::Entity::find();
        if let Some(before) = before {
            query = query.filter(V::UpdatedAt.lt(before));
        }
        /// (context, sealed title, turns, created, updated, renamed)
        type Listed = (String, Vec<u8>, i64, i64, i64, Option<i64>);
        let rows: Vec<Listed> = query
            .select_only()
            .column(V::ContextId)
            .column(V::SealedTitle)
            .column(V::Turns)
            .column(V::CreatedAt)
            .column(V::UpdatedAt)
            .column(V::RenamedAt)
            .filter(V::AgentId.eq(agent))
            .filter(V::UserId.eq(user))
            .filter(V::UpdatedAt.gt(cutoff))
            .order_by(V::UpdatedAt, Order::Desc)
            .order_by(V::Id, Order::Desc)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(context_id, sealed_title, turns, created_at, updated_at, renamed_at)| ConvMeta {
                    context_id,
                    sealed_title,
                    turns: u32::try_from(turns).unwrap_or(0),
                    created_at,
                    updated_at,
                    renamed_at,
                },
            )
            .collect())
    }

    /// Deletes in batches, so a first sweep over a large backlog holds no
    /// long lock; each DELETE re-checks `updated_at`, so a conversation
    /// saved since it was selected stays.
    pub(crate) async fn conv_purge(&self, agent: &str, cutoff: i64) -> Result<u64> {
        self.check_file()?;
        use conversation::Column as V;
        let mut purged = 0;
        loop {
            let ids: Vec<i64> = conversation::Entity::find()
                .select_only()
                .column(V::Id)
                .filter(V::AgentId.eq(agent))
                .filter(V::UpdatedAt.lte(cutoff))
                .limit(PURGE_BATCH)
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(|e| self.err(e))?;
            if ids.is_empty() {
                return Ok(purged);
            }
            let batch = ids.len() as u64;
            let done = conversation::Entity::delete_many()
                .filter(V::Id.is_in(ids))
                .filter(V::UpdatedAt.lte(cutoff))
                .exec(&self.db)
                .await
                .map_err(|e| self.err(e))?;
            purged += done.rows_affected;
            if batch < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}
