//! The agent's trust key in SQL: written once, by whichever replica gets
//! there first.
//!
//! Replicas starting together each find no row, each make a key and each
//! try to insert it; the primary key lets exactly one insert through, and
//! the others read the winner's row. No transaction or lock is needed, and
//! no replica ever overwrites a key another may already sign with.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::entity::trust_key;
use super::{SqlStorage, errors};
use crate::storage::{Result, TrustKeyRow};

impl SqlStorage {
    /// The sealed key of `key_hash`, if there is one.
    pub(crate) async fn trust_key_get(
        &self,
        agent: &str,
        key_hash: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.check_file()?;
        use trust_key::Column as T;
        trust_key::Entity::find()
            .select_only()
            .column(T::Sealed)
            .filter(T::KeyHash.eq(key_hash))
            .filter(T::AgentId.eq(agent))
            .into_tuple::<Vec<u8>>()
            .one(&self.db)
            .await
            .map_err(|e| self.err(e))
    }

    /// Inserts `row` unless a key is already stored for it; whether this
    /// insert was the one that counted.
    pub(crate) async fn trust_key_insert(&self, row: TrustKeyRow<'_>) -> Result<bool> {
        self.check_file()?;
        let model = trust_key::ActiveModel {
            key_hash: Set(row.key_hash.to_owned()),
            agent_id: Set(row.agent_id.to_owned()),
            account: Set(row.account.to_owned()),
            kid: Set(row.kid.to_owned()),
            sealed: Set(row.sealed),
            created_at: Set(row.now),
        };
        match trust_key::Entity::insert(model)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if errors::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Deletes the key of `key_hash`; whether there was one.
    pub(crate) async fn trust_key_delete(&self, agent: &str, key_hash: &str) -> Result<bool> {
        self.check_file()?;
        use trust_key::Column as T;
        let done = trust_key::Entity::delete_many()
            .filter(T::KeyHash.eq(key_hash))
            .filter(T::AgentId.eq(agent))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected > 0)
    }
}
