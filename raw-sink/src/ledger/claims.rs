//! Cooperative workers (`backfill.workers`) and window leases (`backfill.windows.lease_*`).
//!
//! Several processes share the windows of one backfill through these statements, with no
//! coordinator besides PostgreSQL:
//! - a worker registers itself ([`Ledger::register_worker`]) and renews its lease and the
//!   leases of the windows it holds in one statement ([`Ledger::renew_worker`]);
//! - windows are claimed in start order with `FOR UPDATE SKIP LOCKED`
//!   ([`Ledger::claim_windows`]): two workers never get the same window, and a window whose
//!   lease expired (its worker died) is claimable again;
//! - an attempt starts and ends only while the worker still owns the window
//!   ([`Ledger::start_claimed_attempt`], [`Ledger::finish_claimed_window`]), so a worker that
//!   lost a lease cannot overwrite the work of the new owner;
//! - the realm's QBO budget is split into shares held by live workers
//!   ([`Ledger::take_budget_share`]), checked under a per-realm advisory lock.
//!
//! Every lease time is computed by the database clock, never by a worker's.
//!
//! The workers' own rows and budget shares are in `workers.rs`, the advisory lock in `lock.rs`.

use std::time::Duration;

use time::OffsetDateTime;

use super::windows::{
    CLEAR_REJECTS, COLS as WINDOW_COLS, EMPTY_VERIFIED, RESET_EVIDENCE, from_row as window_from_row,
};
use super::{Ledger, RunId, TriggerKey, Window, WindowId, WindowOutcome, col};
use crate::error::SinkError;

/// A request to claim windows, for [`Ledger::claim_windows`].
#[derive(Debug, Clone, Copy)]
pub struct WindowClaim<'a> {
    /// The claiming worker.
    pub worker: &'a str,
    /// Its run: windows that failed or mismatched after this run started are not claimed again
    /// (every worker of a backfill tries a failed window at most once per run).
    pub run: RunId,
    /// The windows of the plan (claims never leave this set).
    pub windows: &'a [WindowId],
    /// Windows the worker already holds in memory (never returned again).
    pub held: &'a [WindowId],
    /// At most this many windows, earliest first.
    pub limit: u32,
    /// Which windows already `done` (before this run started) are loaded again.
    pub reload: Reload,
    /// Lease length.
    pub lease_ttl: Duration,
}

/// Which windows already `done` a run takes up again (windows pending, failed or mismatched
/// are always taken up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reload {
    /// None: done windows are skipped.
    #[default]
    Nothing,
    /// Those done without verification, so that a verifying run verifies every window of its
    /// plan.
    Unverified,
    /// All of them (`--force`).
    All,
}

impl Reload {
    /// `(force, reverify)` as the claim statements take them.
    fn flags(self) -> (bool, bool) {
        match self {
            Reload::Nothing => (false, false),
            Reload::Unverified => (false, true),
            Reload::All => (true, true),
        }
    }

    /// Whether a window in `status`, verified or not, is taken up again.
    #[must_use]
    pub fn takes(self, status: super::WindowStatus, verified: bool) -> bool {
        status != super::WindowStatus::Done
            || match self {
                Reload::Nothing => false,
                Reload::Unverified => !verified,
                Reload::All => true,
            }
    }
}

/// Where the windows of a plan stand from one worker's point of view
/// ([`Ledger::claim_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimStatus {
    /// Windows the worker could claim now.
    pub claimable: u64,
    /// Windows under a live lease of another worker.
    pub leased_by_others: u64,
    /// The earliest end of those leases.
    pub next_expiry: Option<OffsetDateTime>,
}

/// A lease length as a PostgreSQL interval in microseconds (at least 1 ms).
pub(super) fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX).max(1000)
}

fn ids(list: &[WindowId]) -> Vec<i64> {
    list.iter().map(|w| w.get()).collect()
}

/// The windows a worker may claim: pending ones; failed or mismatched ones from before the
/// claiming run started; done ones too when forced (those finished before the run started);
/// running ones abandoned by a dead worker. `$run` is the claiming run, `$force` a bool,
/// `$worker` the claimer. Windows under another worker's live lease are excluded.
fn claimable_sql(run: &str, force: &str, worker: &str, reverify: &str) -> String {
    format!(
        "(w.status = 'pending' \
          OR (w.status IN ('failed', 'mismatch') \
              AND (w.finished_at IS NULL OR w.finished_at < (SELECT started_at FROM backfill.runs WHERE id = {run}))) \
          OR (w.status = 'done' AND ({force} OR ({reverify} AND NOT w.verified)) \
              AND (w.finished_at IS NULL OR w.finished_at < (SELECT started_at FROM backfill.runs WHERE id = {run}))) \
          OR (w.status = 'running' AND (w.lease_owner IS NULL OR w.lease_expires_at < now() OR w.lease_owner = {worker}))) \
         AND (w.lease_owner IS NULL OR w.lease_owner = {worker} OR w.lease_expires_at < now())"
    )
}

impl Ledger {
    /// Claims up to `claim.limit` windows of `claim.windows`, earliest first, for
    /// `claim.worker` (see the module docs for which windows are claimable), skipping rows
    /// another transaction is claiming at the same moment. The windows keep their status; their
    /// lease is set. Returns them ordered by start.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn claim_windows(&self, claim: &WindowClaim<'_>) -> Result<Vec<Window>, SinkError> {
        let sql = format!(
            "WITH c AS ( \
                 SELECT w.id FROM backfill.windows w \
                 WHERE w.id = ANY($1::int8[]) AND NOT (w.id = ANY($2::int8[])) AND {claimable} \
                 ORDER BY w.window_start, w.window_end \
                 LIMIT $6 \
                 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE backfill.windows w SET lease_owner = $3, \
                 lease_expires_at = now() + make_interval(secs => $7::float8 / 1e6), \
                 updated_at = now() \
             FROM c WHERE w.id = c.id \
             RETURNING {cols}",
            claimable = claimable_sql("$4", "$5", "$3", "$8"),
            cols = prefixed(WINDOW_COLS, "w.")
        );
        let client = self.client().await?;
        let ctx = || format!("claiming windows for worker {}", claim.worker);
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        #[allow(clippy::cast_precision_loss)]
        let ttl = ttl_micros(claim.lease_ttl) as f64;
        let (force, reverify) = claim.reload.flags();
        let mut rows = client
            .query(
                &stmt,
                &[
                    &ids(claim.windows),
                    &ids(claim.held),
                    &claim.worker,
                    &claim.run.get(),
                    &force,
                    &i64::from(claim.limit),
                    &ttl,
                    &reverify,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .iter()
            .map(window_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by_key(|w| (w.span.start, w.span.end));
        Ok(rows)
    }

    /// How many windows of `windows` `worker` could claim now and how many are under another
    /// worker's live lease (a worker with nothing to claim waits for those: their owner may die).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn claim_status(
        &self,
        worker: &str,
        run: RunId,
        windows: &[WindowId],
        reload: Reload,
    ) -> Result<ClaimStatus, SinkError> {
        let (force, reverify) = reload.flags();
        let sql = format!(
            "SELECT count(*) FILTER (WHERE {claimable}) AS claimable, \
                    count(*) FILTER (WHERE w.lease_owner <> $3 AND w.lease_expires_at >= now()) AS others, \
                    min(w.lease_expires_at) FILTER (WHERE w.lease_owner <> $3 AND w.lease_expires_at >= now()) AS next_expiry \
             FROM backfill.windows w WHERE w.id = ANY($1::int8[])",
            claimable = claimable_sql("$2", "$4", "$3", "$5")
        );
        let client = self.client().await?;
        let ctx = || format!("reading the claims of worker {worker}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_one(
                &stmt,
                &[&ids(windows), &run.get(), &worker, &force, &reverify],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let claimable: i64 = col(&row, "claimable")?;
        let others: i64 = col(&row, "others")?;
        Ok(ClaimStatus {
            claimable: u64::try_from(claimable).unwrap_or_default(),
            leased_by_others: u64::try_from(others).unwrap_or_default(),
            next_expiry: col(&row, "next_expiry")?,
        })
    }

    /// Starts an attempt on a window `worker` holds: `→ running`, attempts + 1, owned by `run`,
    /// counters reset, lease extended. `None` when the worker no longer holds the window (its
    /// lease expired and another worker took it): nothing changed.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn start_claimed_attempt(
        &self,
        id: WindowId,
        run: RunId,
        worker: &str,
        lease_ttl: Duration,
    ) -> Result<Option<Window>, SinkError> {
        let sql = format!(
            "WITH w AS (UPDATE backfill.windows SET status = 'running', \
             attempts = attempts + 1, run_id = $2, pages = 0, rows = 0, inserted = 0, \
             updated = 0, unchanged = 0, {RESET_EVIDENCE}, duration_ms = NULL, \
             started_at = now(), finished_at = NULL, updated_at = now(), \
             lease_expires_at = now() + make_interval(secs => $4::float8 / 1e6) \
             WHERE id = $1 AND lease_owner = $3 RETURNING {WINDOW_COLS}), \
             {CLEAR_REJECTS} SELECT * FROM w"
        );
        let client = self.client().await?;
        let ctx = || format!("starting window {id}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        #[allow(clippy::cast_precision_loss)]
        let ttl = ttl_micros(lease_ttl) as f64;
        client
            .query_opt(&stmt, &[&id.get(), &run.get(), &worker, &ttl])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .as_ref()
            .map(window_from_row)
            .transpose()
    }

    /// Ends `run`'s attempt on a window `worker` holds: `running → done|failed|mismatch`, lease
    /// released. `None` when the worker no longer holds the window; nothing changed. Calling it
    /// again after a success (a retry whose first answer was lost) returns the window again.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`] when `outcome.status` is not terminal;
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn finish_claimed_window(
        &self,
        id: WindowId,
        run: RunId,
        worker: &str,
        outcome: &WindowOutcome,
    ) -> Result<Option<Window>, SinkError> {
        if let Some(window) = self.finish_attempt(id, run, Some(worker), outcome).await? {
            return Ok(Some(window));
        }
        // Already finished by this very run (a retried call whose first answer was lost)?
        Ok(self.get_window(id).await?.filter(|w| {
            w.status == outcome.status && w.run_id == Some(run) && w.finished_at.is_some()
        }))
    }

    /// Marks windows `worker` holds as `done` with source count 0 (QBO's COUNT is 0), as an
    /// attempt of `run`, leases released, in one statement. Returns the windows marked (those
    /// still held).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn mark_claimed_windows_done_empty(
        &self,
        windows: &[WindowId],
        run: RunId,
        worker: &str,
    ) -> Result<Vec<WindowId>, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("marking {} empty windows done", windows.len());
        let stmt = client
            .prepare_cached(&format!(
                "WITH w AS (UPDATE backfill.windows SET status = 'done', \
                 attempts = attempts + 1, run_id = $2, pages = 0, rows = 0, inserted = 0, \
                 updated = 0, unchanged = 0, {EMPTY_VERIFIED}, duration_ms = 0, \
                 last_error = NULL, started_at = now(), finished_at = now(), updated_at = now(), \
                 lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = ANY($1::int8[]) AND lease_owner = $3 RETURNING id), \
                 {CLEAR_REJECTS} SELECT id FROM w"
            ))
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        // Only held windows change; done ones are held only when a forced run claimed them.
        client
            .query(&stmt, &[&ids(windows), &run.get(), &worker])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .iter()
            .map(|r| col::<i64>(r, "id").map(WindowId::new))
            .collect()
    }

    /// Releases windows `worker` holds (`windows`, or all of them when `None`): their lease is
    /// cleared, and those `running` go back to `pending` with `reason` as their last error, so
    /// that the next run (or another worker) resumes them. Returns how many were released.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn release_windows(
        &self,
        worker: &str,
        windows: Option<&[WindowId]>,
        reason: &str,
    ) -> Result<u64, SinkError> {
        let client = self.client().await?;
        let list = windows.map(ids);
        client
            .execute(
                "UPDATE backfill.windows SET \
                     status = CASE WHEN status = 'running' THEN 'pending' ELSE status END, \
                     last_error = CASE WHEN status = 'running' THEN $3 ELSE last_error END, \
                     finished_at = CASE WHEN status = 'running' THEN NULL ELSE finished_at END, \
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
                 WHERE lease_owner = $1 AND ($2::int8[] IS NULL OR id = ANY($2::int8[]))",
                &[&worker, &list, &reason],
            )
            .await
            .map_err(|e| SinkError::query(format!("releasing the windows of worker {worker}"), e))
    }

    /// Ends a trigger's running episode for one of possibly several cooperating workers:
    /// `completed` when `all_done` (a trigger a peer completed already stays as it is);
    /// otherwise back to `pending`, unless another live worker still works for it.
    /// Returns the trigger's status afterwards.
    ///
    /// # Errors
    /// [`SinkError::NotFound`]; [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn settle_trigger(
        &self,
        key: &TriggerKey,
        run: RunId,
        worker: &str,
        all_done: bool,
    ) -> Result<super::TriggerStatus, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("settling trigger {key}");
        if all_done {
            client
                .execute(
                    "UPDATE backfill.triggers SET status = 'completed', completed_at = now(), \
                     updated_at = now(), last_run_id = $4 \
                     WHERE pipeline = $1 AND realm_id = $2 AND name = $3 \
                       AND status IN ('pending', 'running')",
                    &[&key.pipeline, &key.realm_id, &key.name, &run.get()],
                )
                .await
                .map_err(|e| SinkError::query(ctx(), e))?;
        } else {
            client
                .execute(
                    "UPDATE backfill.triggers SET status = 'pending', completed_at = NULL, \
                     updated_at = now() \
                     WHERE pipeline = $1 AND realm_id = $2 AND name = $3 AND status = 'running' \
                       AND NOT EXISTS ( \
                           SELECT 1 FROM backfill.workers \
                           WHERE pipeline = $1 AND realm_id = $2 AND trigger_name = $3 \
                             AND id <> $4 AND stopped_at IS NULL AND lease_expires_at > now())",
                    &[&key.pipeline, &key.realm_id, &key.name, &worker],
                )
                .await
                .map_err(|e| SinkError::query(ctx(), e))?;
        }
        drop(client);
        self.get_trigger(key)
            .await?
            .map(|t| t.status)
            .ok_or_else(|| SinkError::NotFound {
                entity: "trigger",
                key: key.to_string(),
            })
    }
}

/// `a, b` → `p.a, p.b`.
fn prefixed(cols: &str, prefix: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
