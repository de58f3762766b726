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

use std::fmt;
use std::time::Duration;

use deadpool_postgres::Object;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::windows::{
    CLEAR_REJECTS, COLS as WINDOW_COLS, EMPTY_VERIFIED, RESET_EVIDENCE, from_row as window_from_row,
};
use super::{Ledger, NewRun, RunId, TriggerKey, Window, WindowId, WindowOutcome, col};
use crate::error::SinkError;

/// What [`Ledger::register_worker`] records about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorker {
    /// Unique id of the process (e.g. a random UUID), the owner written on its window leases.
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// The trigger it works for, once known.
    pub trigger_name: Option<String>,
    /// Host, boot and PID-namespace identity (empty when unknown): workers with the same
    /// identity share a process table and may check each other's pid.
    pub host: String,
    /// Operating-system process id.
    pub pid: Option<u32>,
    /// Start time of the process (clock ticks since boot), to tell a reused pid.
    pub pid_start: Option<u64>,
    /// How long the worker's lease lasts without a renewal.
    pub lease_ttl: Duration,
}

/// A share of a realm's QBO request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetShare {
    /// Requests per minute.
    pub per_minute: u32,
    /// Requests in flight at once.
    pub max_in_flight: u32,
}

/// The answer of [`Ledger::take_budget_share`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareGrant {
    /// The share is recorded on the worker's row.
    Granted,
    /// Live workers already hold too much of the budget; nothing was recorded.
    Busy {
        /// What live workers of the realm hold in total.
        used: BudgetShare,
        /// Their ids.
        holders: Vec<String>,
    },
}

/// A row of `backfill.workers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    /// Its id.
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// The trigger it works for.
    pub trigger_name: Option<String>,
    /// The run it records its work under.
    pub run_id: Option<RunId>,
    /// Host identity (see [`NewWorker::host`]).
    pub host: String,
    /// Process id.
    pub pid: Option<u32>,
    /// Process start time (clock ticks since boot).
    pub pid_start: Option<u64>,
    /// Its share of the realm budget, if it holds one.
    pub budget: Option<BudgetShare>,
    /// Registration.
    pub started_at: OffsetDateTime,
    /// Last renewal.
    pub heartbeat_at: OffsetDateTime,
    /// When its lease ends unless renewed.
    pub lease_expires_at: OffsetDateTime,
    /// When it stopped (or was found dead).
    pub stopped_at: Option<OffsetDateTime>,
}

/// What [`Ledger::renew_worker`] extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// Whether the worker's own row was found and extended.
    pub worker: bool,
    /// Window leases extended.
    pub windows: u64,
}

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

const WORKER_COLS: &str = "id, pipeline, realm_id, trigger_name, run_id, host, pid, pid_start, \
                           per_minute, max_in_flight, started_at, heartbeat_at, \
                           lease_expires_at, stopped_at";

fn worker_from_row(row: &Row) -> Result<WorkerRow, SinkError> {
    let per_minute: Option<i32> = col(row, "per_minute")?;
    let max_in_flight: Option<i32> = col(row, "max_in_flight")?;
    let pid: Option<i32> = col(row, "pid")?;
    let pid_start: Option<i64> = col(row, "pid_start")?;
    Ok(WorkerRow {
        id: col(row, "id")?,
        pipeline: col(row, "pipeline")?,
        realm_id: col(row, "realm_id")?,
        trigger_name: col(row, "trigger_name")?,
        run_id: col::<Option<i64>>(row, "run_id")?.map(RunId::new),
        host: col(row, "host")?,
        pid: pid.and_then(|p| u32::try_from(p).ok()),
        pid_start: pid_start.and_then(|p| u64::try_from(p).ok()),
        budget: match (per_minute, max_in_flight) {
            (Some(p), Some(m)) => Some(BudgetShare {
                per_minute: u32::try_from(p).unwrap_or_default(),
                max_in_flight: u32::try_from(m).unwrap_or_default(),
            }),
            _ => None,
        },
        started_at: col(row, "started_at")?,
        heartbeat_at: col(row, "heartbeat_at")?,
        lease_expires_at: col(row, "lease_expires_at")?,
        stopped_at: col(row, "stopped_at")?,
    })
}

/// A lease length as a PostgreSQL interval in microseconds (at least 1 ms).
fn ttl_micros(ttl: Duration) -> i64 {
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
    /// Records a live worker whose lease lasts `lease_ttl` from now.
    ///
    /// # Errors
    /// [`SinkError::Query`] (e.g. a duplicate id).
    pub async fn register_worker(&self, w: &NewWorker) -> Result<(), SinkError> {
        let client = self.client().await?;
        let ctx = || format!("registering worker {}", w.id);
        let stmt = client
            .prepare_cached(
                "INSERT INTO backfill.workers (id, pipeline, realm_id, trigger_name, host, pid, \
                 pid_start, lease_expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8 / 1e6))",
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let pid = w.pid.and_then(|p| i32::try_from(p).ok());
        let pid_start = w.pid_start.and_then(|p| i64::try_from(p).ok());
        #[allow(clippy::cast_precision_loss)]
        let ttl = ttl_micros(w.lease_ttl) as f64;
        client
            .execute(
                &stmt,
                &[
                    &w.id,
                    &w.pipeline,
                    &w.realm_id,
                    &w.trigger_name,
                    &w.host,
                    &pid,
                    &pid_start,
                    &ttl,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(())
    }

    /// Records `want` as `worker`'s share of `realm_id`'s QBO budget if the shares of the live
    /// workers of the realm (any pipeline) plus `want` stay within `total`; otherwise records
    /// nothing and says who holds the budget. Serialised per realm by an advisory lock, so two
    /// workers cannot both take the last share.
    ///
    /// # Errors
    /// [`SinkError::NotFound`] when the worker is not registered; [`SinkError::Query`].
    pub async fn take_budget_share(
        &self,
        worker: &str,
        realm_id: &str,
        want: BudgetShare,
        total: BudgetShare,
    ) -> Result<ShareGrant, SinkError> {
        let mut client = self.client().await?;
        let ctx = || format!("taking a share of the QBO budget of realm {realm_id}");
        let tx = client
            .transaction()
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('qb-backfill budget ' || $1, 0))",
            &[&realm_id],
        )
        .await
        .map_err(|e| SinkError::query(ctx(), e))?;
        let holders = tx
            .query(
                "SELECT id, per_minute, max_in_flight FROM backfill.workers \
                 WHERE realm_id = $1 AND id <> $2 AND stopped_at IS NULL \
                   AND lease_expires_at > now() AND per_minute IS NOT NULL \
                 ORDER BY started_at",
                &[&realm_id, &worker],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let mut used = BudgetShare {
            per_minute: 0,
            max_in_flight: 0,
        };
        let mut names = Vec::with_capacity(holders.len());
        for row in &holders {
            let p: i32 = col(row, "per_minute")?;
            let m: i32 = col(row, "max_in_flight")?;
            used.per_minute = used
                .per_minute
                .saturating_add(u32::try_from(p).unwrap_or_default());
            used.max_in_flight = used
                .max_in_flight
                .saturating_add(u32::try_from(m).unwrap_or_default());
            names.push(col::<String>(row, "id")?);
        }
        let fits = used.per_minute.saturating_add(want.per_minute) <= total.per_minute
            && used.max_in_flight.saturating_add(want.max_in_flight) <= total.max_in_flight;
        if !fits {
            tx.rollback()
                .await
                .map_err(|e| SinkError::query(ctx(), e))?;
            return Ok(ShareGrant::Busy {
                used,
                holders: names,
            });
        }
        let per_minute = i32::try_from(want.per_minute).unwrap_or(i32::MAX);
        let in_flight = i32::try_from(want.max_in_flight).unwrap_or(i32::MAX);
        let n = tx
            .execute(
                "UPDATE backfill.workers SET per_minute = $2, max_in_flight = $3 WHERE id = $1",
                &[&worker, &per_minute, &in_flight],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        if n == 0 {
            return Err(SinkError::NotFound {
                entity: "worker",
                key: worker.to_owned(),
            });
        }
        tx.commit().await.map_err(|e| SinkError::query(ctx(), e))?;
        Ok(ShareGrant::Granted)
    }

    /// Records the start of a run already attached to `worker`, in one statement, so that no
    /// moment exists where the run is `running` but no worker row leads to it (a process killed
    /// then would leave a run nobody could close).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn start_worker_run(
        &self,
        run: &NewRun,
        worker: &str,
        trigger_name: &str,
    ) -> Result<RunId, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("recording the start of a {} run", run.pipeline);
        let stmt = client
            .prepare_cached(
                "WITH r AS ( \
                     INSERT INTO backfill.runs (pipeline, realm_id, range_start, range_end, \
                     window_field, trigger_name, windows_planned) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id \
                 ), w AS ( \
                     UPDATE backfill.workers SET run_id = (SELECT id FROM r), trigger_name = $9 \
                     WHERE id = $8 RETURNING id \
                 ) \
                 SELECT (SELECT id FROM r) AS id, (SELECT count(*) FROM w) AS attached",
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &run.pipeline,
                    &run.realm_id,
                    &run.range_start,
                    &run.range_end,
                    &run.window_field,
                    &run.trigger_name,
                    &i32::try_from(run.windows_planned).unwrap_or(i32::MAX),
                    &worker,
                    &trigger_name,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let attached: i64 = col(&row, "attached")?;
        if attached != 1 {
            return Err(SinkError::NotFound {
                entity: "worker",
                key: worker.to_owned(),
            });
        }
        Ok(RunId(col(&row, "id")?))
    }

    /// Records the run and trigger `worker` works for.
    ///
    /// # Errors
    /// [`SinkError::Query`].
    pub async fn attach_worker_run(
        &self,
        worker: &str,
        run: RunId,
        trigger_name: &str,
    ) -> Result<(), SinkError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE backfill.workers SET run_id = $2, trigger_name = $3 WHERE id = $1",
                &[&worker, &run.get(), &trigger_name],
            )
            .await
            .map_err(|e| SinkError::query(format!("attaching worker {worker} to run {run}"), e))?;
        Ok(())
    }

    /// Extends the lease of `worker` and of every window it holds to `lease_ttl` from now, in
    /// one statement.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn renew_worker(
        &self,
        worker: &str,
        lease_ttl: Duration,
    ) -> Result<LeaseRenewal, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("renewing the leases of worker {worker}");
        let stmt = client
            .prepare_cached(
                "WITH me AS ( \
                     UPDATE backfill.workers SET heartbeat_at = now(), \
                         lease_expires_at = now() + make_interval(secs => $2::float8 / 1e6) \
                     WHERE id = $1 RETURNING id \
                 ), win AS ( \
                     UPDATE backfill.windows SET \
                         lease_expires_at = now() + make_interval(secs => $2::float8 / 1e6) \
                     WHERE lease_owner = $1 RETURNING id \
                 ) \
                 SELECT (SELECT count(*) FROM me) AS me, (SELECT count(*) FROM win) AS win",
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        #[allow(clippy::cast_precision_loss)]
        let ttl = ttl_micros(lease_ttl) as f64;
        let row = client
            .query_one(&stmt, &[&worker, &ttl])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let me: i64 = col(&row, "me")?;
        let win: i64 = col(&row, "win")?;
        Ok(LeaseRenewal {
            worker: me > 0,
            windows: u64::try_from(win).unwrap_or_default(),
        })
    }

    /// Workers of `realm_id` (any pipeline) that have not stopped and whose lease has not
    /// expired, oldest first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn live_workers(&self, realm_id: &str) -> Result<Vec<WorkerRow>, SinkError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {WORKER_COLS} FROM backfill.workers \
             WHERE realm_id = $1 AND stopped_at IS NULL AND lease_expires_at > now() \
             ORDER BY started_at, id"
        );
        client
            .query(&sql, &[&realm_id])
            .await
            .map_err(|e| SinkError::query(format!("listing live workers of realm {realm_id}"), e))?
            .iter()
            .map(worker_from_row)
            .collect()
    }

    /// The worker's row, if it exists.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn get_worker(&self, worker: &str) -> Result<Option<WorkerRow>, SinkError> {
        let client = self.client().await?;
        let sql = format!("SELECT {WORKER_COLS} FROM backfill.workers WHERE id = $1");
        client
            .query_opt(&sql, &[&worker])
            .await
            .map_err(|e| SinkError::query(format!("reading worker {worker}"), e))?
            .as_ref()
            .map(worker_from_row)
            .transpose()
    }

    /// Declares `worker` dead (another worker saw its process gone): its lease and every window
    /// lease it held end now, and its run, if still `running`, becomes `failed` with `reason`.
    /// Returns how many window leases were freed.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn expire_worker(&self, worker: &str, reason: &str) -> Result<u64, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("expiring worker {worker}");
        let row = client
            .query_one(
                "WITH me AS ( \
                     UPDATE backfill.workers SET lease_expires_at = now() - interval '1 second', \
                         stopped_at = COALESCE(stopped_at, now()) \
                     WHERE id = $1 RETURNING run_id \
                 ), win AS ( \
                     UPDATE backfill.windows SET lease_expires_at = now() - interval '1 second' \
                     WHERE lease_owner = $1 RETURNING id \
                 ), run AS ( \
                     UPDATE backfill.runs SET status = 'failed', error = $2, finished_at = now() \
                     WHERE id IN (SELECT run_id FROM me) AND status = 'running' RETURNING id \
                 ) \
                 SELECT (SELECT count(*) FROM win) AS freed, (SELECT count(*) FROM run) AS runs",
                &[&worker, &reason],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let freed: i64 = col(&row, "freed")?;
        Ok(u64::try_from(freed).unwrap_or_default())
    }

    /// Marks `worker` stopped: its budget share and leases end now. Windows it still held are
    /// released (see [`Ledger::release_windows`]) with `reason` when they were running.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn stop_worker(&self, worker: &str, reason: &str) -> Result<(), SinkError> {
        self.release_windows(worker, None, reason).await?;
        let client = self.client().await?;
        client
            .execute(
                "UPDATE backfill.workers SET stopped_at = COALESCE(stopped_at, now()), \
                 lease_expires_at = LEAST(lease_expires_at, now()) WHERE id = $1",
                &[&worker],
            )
            .await
            .map_err(|e| SinkError::query(format!("stopping worker {worker}"), e))?;
        Ok(())
    }

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

    /// Takes a transaction-scoped advisory lock named `name` on a connection of its own and
    /// holds it until [`AdvisoryLock::release`] (or drop). Processes use it to serialise rare
    /// critical sections, e.g. refreshing a realm's OAuth token.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn advisory_lock(&self, name: &str) -> Result<AdvisoryLock, SinkError> {
        let client = self.client().await?;
        let mut lock = AdvisoryLock {
            client: Some(client),
            name: name.to_owned(),
        };
        let ctx = || format!("taking lock {name:?}");
        let c = lock.client.as_mut().ok_or(SinkError::NotFound {
            entity: "lock",
            key: String::new(),
        })?;
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&name],
        )
        .await
        .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(lock)
    }
}

/// `a, b` → `p.a, p.b`.
fn prefixed(cols: &str, prefix: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An advisory lock held by an open transaction ([`Ledger::advisory_lock`]).
pub struct AdvisoryLock {
    /// `None` once released.
    client: Option<Object>,
    name: String,
}

impl fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("name", &self.name)
            .field("held", &self.client.is_some())
            .finish()
    }
}

impl AdvisoryLock {
    /// Commits, releasing the lock and returning the connection to the pool.
    ///
    /// # Errors
    /// [`SinkError::Query`]; the connection is then closed, which releases the lock too.
    pub async fn release(mut self) -> Result<(), SinkError> {
        if let Some(client) = self.client.as_ref() {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| SinkError::query(format!("releasing lock {:?}", self.name), e))?;
        }
        self.client = None;
        Ok(())
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Still in the transaction (error or early drop): close the connection rather than
            // return it to the pool; the server rolls back and releases the lock.
            drop(Object::take(client));
        }
    }
}
