//! The refresh lease on a credential row, for replicas sharing the database.
//!
//! A rotating refresh token may be spent once: two replicas refreshing the
//! same grant at the same time would each send it, the provider would
//! honour the first and refuse (or, with reuse detection, revoke) the
//! second. So a replica first takes the row's lease with one conditional
//! UPDATE — it succeeds for exactly one caller while the lease is free or
//! has run out — and the others wait and re-read the row. The lease runs
//! out on its own, so a replica killed mid-refresh holds nobody up for
//! longer than the lease.

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::SqlStorage;
use super::entity::credential;
use crate::storage::Result;

impl SqlStorage {
    /// Takes the refresh lease of the live row of `key_hash` for `holder`
    /// until `until`, if nobody holds it at `now`. Whether it was taken
    /// (false too when there is no live row).
    pub(crate) async fn lease_take(
        &self,
        key_hash: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        self.check_file()?;
        use credential::Column as C;
        let done = credential::Entity::update_many()
            .col_expr(C::RefreshLeaseUntil, Expr::value(until))
            .col_expr(C::RefreshLeaseHolder, Expr::value(holder))
            .filter(C::KeyHash.eq(key_hash))
            .filter(C::Tombstone.eq(0))
            .filter(
                Condition::any()
                    .add(C::RefreshLeaseUntil.is_null())
                    .add(C::RefreshLeaseUntil.lte(now)),
            )
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected == 1)
    }

    /// Gives the lease back, if `holder` still holds it.
    pub(crate) async fn lease_release(&self, key_hash: &str, holder: &str) -> Result<()> {
        self.check_file()?;
        use credential::Column as C;
        credential::Entity::update_many()
            .col_expr(C::RefreshLeaseUntil, Expr::value(Option::<i64>::None))
            .col_expr(C::RefreshLeaseHolder, Expr::value(Option::<String>::None))
            .filter(C::KeyHash.eq(key_hash))
            .filter(C::Tombstone.eq(0))
            .filter(C::RefreshLeaseHolder.eq(holder))
            .exec(&self.db)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
