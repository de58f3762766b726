//! The app's monthly call budget as a shared reservation (V10): a company's run reserves its
//! calls before it starts, atomically per app across processes, and releases what it did not
//! spend when it ends.

use super::{Ledger, col};
use crate::error::SinkError;

/// Calls of app `$1` reserved this calendar month (UTC) and not yet returned (a day old at
/// most: older ones were left by a process that died); added to what the runs, syncs,
/// `reports` and `check-books` of its companies recorded ([`super::token_meta::MONTH_CALLS_SQL`]).
const RESERVED_SQL: &str = "SELECT COALESCE(sum(calls), 0)::bigint FROM backfill.app_budget_reservations \
     WHERE client_id = $1 AND released_at IS NULL \
       AND reserved_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
       AND reserved_at > now() - interval '1 day'";

/// Calls reserved for one company's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetReservation {
    /// The reservation's id (0 when nothing was granted).
    pub id: i64,
    /// Calls granted (0: the month's budget is spent).
    pub granted: u64,
    /// Calls of the month counted before this grant (runs and open reservations).
    pub used: u64,
}

impl Ledger {
    /// Reserves for company `realm_id` of app `client_id` a `split`-th of what is left of the
    /// month's `quota` (rounded up; at most `cap`), under a per-app advisory lock: what runs
    /// recorded and open reservations hold count first, so the month's total never passes
    /// `quota` whatever runs at once.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn reserve_app_calls(
        &self,
        client_id: &str,
        realm_id: &str,
        quota: u64,
        split: u64,
        cap: Option<u64>,
    ) -> Result<BudgetReservation, SinkError> {
        let mut client = self.client().await?;
        let ctx = || format!("reserving monthly API calls of app {client_id} for realm {realm_id}");
        let tx = client
            .transaction()
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('qb-backfill app budget ' || $1, 0))",
            &[&client_id],
        )
        .await
        .map_err(|e| SinkError::query(ctx(), e))?;
        // Read after the lock (a new snapshot under READ COMMITTED): every earlier grant is in.
        let used_sql = format!(
            "SELECT ({}) + ({RESERVED_SQL}) AS used",
            super::token_meta::MONTH_CALLS_SQL
        );
        let row = tx
            .query_one(&used_sql, &[&client_id])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let used = u64::try_from(col::<i64>(&row, "used")?).unwrap_or(0);
        let left = quota.saturating_sub(used);
        let share = left.div_ceil(split.max(1));
        let granted = cap.map_or(share, |c| c.min(share));
        let mut id = 0;
        if granted > 0 {
            let calls = i64::try_from(granted).unwrap_or(i64::MAX);
            let row = tx
                .query_one(
                    "INSERT INTO backfill.app_budget_reservations (client_id, realm_id, calls) \
                     VALUES ($1, $2, $3) RETURNING id",
                    &[&client_id, &realm_id, &calls],
                )
                .await
                .map_err(|e| SinkError::query(ctx(), e))?;
            id = col(&row, "id")?;
        }
        tx.commit().await.map_err(|e| SinkError::query(ctx(), e))?;
        Ok(BudgetReservation { id, granted, used })
    }

    /// Ends reservation `id` (its run finished and recorded its calls).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn release_app_calls(&self, id: i64) -> Result<(), SinkError> {
        if id == 0 {
            return Ok(());
        }
        let client = self.client().await?;
        client
            .execute(
                "UPDATE backfill.app_budget_reservations SET released_at = now() \
                 WHERE id = $1 AND released_at IS NULL",
                &[&id],
            )
            .await
            .map_err(|e| SinkError::query(format!("releasing budget reservation {id}"), e))?;
        Ok(())
    }
}
