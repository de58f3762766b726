//! Cooperative workers' rows (`backfill.workers`): registration, the lease renewed together
//! with the leases of the windows a worker holds, the realm's QBO budget split into shares of
//! live workers, expiry of dead workers and a clean stop (the protocol: `claims.rs`).
//!
//! Invariants: every lease time is computed by the database clock, never by a worker's; a
//! budget share is taken under a per-realm advisory lock, so the live workers' shares never
//! sum above the realm's budget.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::claims::ttl_micros;
use super::{Ledger, NewRun, RunId, col};
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

pub(super) const WORKER_COLS: &str = "id, pipeline, realm_id, trigger_name, run_id, host, pid, pid_start, \
                           per_minute, max_in_flight, started_at, heartbeat_at, \
                           lease_expires_at, stopped_at";

pub(super) fn worker_from_row(row: &Row) -> Result<WorkerRow, SinkError> {
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
}
