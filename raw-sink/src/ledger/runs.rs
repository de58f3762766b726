//! Pipeline invocations (`backfill.runs`).

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Ledger, RunId, col, count_col, small_col, status_enum, to_i32, to_i64};
use crate::error::SinkError;

status_enum! {
    /// How a run ended (or that it is still going).
    RunStatus, "backfill.runs.status" {
        /// In progress (or its process died; see `started_at`).
        Running => "running",
        /// Every window done (and verified).
        Succeeded => "succeeded",
        /// Finished, but some windows failed or mismatched.
        Partial => "partial",
        /// Stopped by an error before finishing its windows.
        Failed => "failed",
        /// Stopped by a signal.
        Interrupted => "interrupted",
    }
}

/// What [`Ledger::start_run`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// Range start (inclusive, UTC).
    pub range_start: OffsetDateTime,
    /// Range end (exclusive, UTC).
    pub range_end: OffsetDateTime,
    /// Timestamp defining windows (e.g. `MetaData.CreateTime`).
    pub window_field: String,
    /// The trigger the run works for (must exist), if any.
    pub trigger_name: Option<String>,
    /// Windows planned for the range.
    pub windows_planned: u32,
}

/// Totals recorded by [`Ledger::finish_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Final status (anything but [`RunStatus::Running`]).
    pub status: RunStatus,
    /// Windows loaded (and verified) by this run.
    pub windows_done: u32,
    /// Windows skipped because already done.
    pub windows_skipped: u32,
    /// Windows that failed.
    pub windows_failed: u32,
    /// Windows whose count did not match.
    pub windows_mismatch: u32,
    /// Records received.
    pub rows: u64,
    /// New ids.
    pub inserted: u64,
    /// Changed ids.
    pub updated: u64,
    /// Unchanged ids.
    pub unchanged: u64,
    /// QBO queries sent (every attempt, retries included; token refreshes not): single
    /// queries plus the items of batch requests. What the request budgets count.
    pub api_calls: u64,
    /// HTTP requests sent to QBO (every attempt; a batch request is one, whatever its items).
    pub api_requests: u64,
    /// Of `api_requests`, the batch requests.
    pub api_batches: u64,
    /// Items the batch requests carried (each also counted in `api_calls`).
    pub api_batch_items: u64,
    /// The error that stopped the run, if any (no secrets).
    pub error: Option<String>,
}

impl RunSummary {
    /// A summary with `status` and every count zero.
    #[must_use]
    pub fn new(status: RunStatus) -> Self {
        Self {
            status,
            windows_done: 0,
            windows_skipped: 0,
            windows_failed: 0,
            windows_mismatch: 0,
            rows: 0,
            inserted: 0,
            updated: 0,
            unchanged: 0,
            api_calls: 0,
            api_requests: 0,
            api_batches: 0,
            api_batch_items: 0,
            error: None,
        }
    }
}

/// A row of `backfill.runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// Range start.
    pub range_start: OffsetDateTime,
    /// Range end.
    pub range_end: OffsetDateTime,
    /// Window field.
    pub window_field: String,
    /// Trigger name.
    pub trigger_name: Option<String>,
    /// Windows planned.
    pub windows_planned: u32,
    /// Final counts and status ([`RunStatus::Running`] and zeros while in progress).
    pub summary: RunSummary,
    /// Start.
    pub started_at: OffsetDateTime,
    /// End, once finished.
    pub finished_at: Option<OffsetDateTime>,
}

const COLS: &str = "id, pipeline, realm_id, range_start, range_end, window_field, trigger_name, \
                    status, windows_planned, windows_done, windows_skipped, windows_failed, \
                    windows_mismatch, rows, inserted, updated, unchanged, api_calls, api_requests, \
                    api_batches, api_batch_items, error, started_at, finished_at";

fn from_row(row: &Row) -> Result<Run, SinkError> {
    Ok(Run {
        id: RunId(col(row, "id")?),
        pipeline: col(row, "pipeline")?,
        realm_id: col(row, "realm_id")?,
        range_start: col(row, "range_start")?,
        range_end: col(row, "range_end")?,
        window_field: col(row, "window_field")?,
        trigger_name: col(row, "trigger_name")?,
        windows_planned: small_col(row, "windows_planned")?,
        summary: RunSummary {
            status: RunStatus::parse(col(row, "status")?)?,
            windows_done: small_col(row, "windows_done")?,
            windows_skipped: small_col(row, "windows_skipped")?,
            windows_failed: small_col(row, "windows_failed")?,
            windows_mismatch: small_col(row, "windows_mismatch")?,
            rows: count_col(row, "rows")?,
            inserted: count_col(row, "inserted")?,
            updated: count_col(row, "updated")?,
            unchanged: count_col(row, "unchanged")?,
            api_calls: count_col(row, "api_calls")?,
            api_requests: count_col(row, "api_requests")?,
            api_batches: count_col(row, "api_batches")?,
            api_batch_items: count_col(row, "api_batch_items")?,
            error: col(row, "error")?,
        },
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

impl Ledger {
    /// Records a new run as `running` and returns its id.
    ///
    /// # Errors
    /// [`SinkError::Query`] (e.g. unknown trigger name, empty range).
    pub async fn start_run(&self, run: &NewRun) -> Result<RunId, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("recording the start of a {} run", run.pipeline);
        let stmt = client
            .prepare_cached(
                "INSERT INTO backfill.runs (pipeline, realm_id, range_start, range_end, \
                 window_field, trigger_name, windows_planned) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
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
                    &to_i32(run.windows_planned),
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(RunId(col(&row, "id")?))
    }

    /// `running → summary.status` with the final counts and error.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`] when the run is already finished or `summary.status`
    /// is `running`; [`SinkError::NotFound`].
    pub async fn finish_run(&self, id: RunId, summary: &RunSummary) -> Result<Run, SinkError> {
        if summary.status == RunStatus::Running {
            return Err(SinkError::InvalidTransition {
                entity: "run",
                key: id.to_string(),
                from: RunStatus::Running.to_string(),
                to: RunStatus::Running.to_string(),
            });
        }
        let client = self.client().await?;
        let sql = format!(
            "UPDATE backfill.runs SET status = $2, windows_done = $3, windows_skipped = $4, \
             windows_failed = $5, windows_mismatch = $6, rows = $7, inserted = $8, \
             updated = $9, unchanged = $10, error = $11, api_calls = $12, api_requests = $13, api_batches = $14, \
             api_batch_items = $15, finished_at = now() \
             WHERE id = $1 AND status = 'running' RETURNING {COLS}"
        );
        let ctx = || format!("recording the end of run {id}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &id.get(),
                    &summary.status.as_str(),
                    &to_i32(summary.windows_done),
                    &to_i32(summary.windows_skipped),
                    &to_i32(summary.windows_failed),
                    &to_i32(summary.windows_mismatch),
                    &to_i64(summary.rows),
                    &to_i64(summary.inserted),
                    &to_i64(summary.updated),
                    &to_i64(summary.unchanged),
                    &summary.error,
                    &to_i64(summary.api_calls),
                    &to_i64(summary.api_requests),
                    &to_i64(summary.api_batches),
                    &to_i64(summary.api_batch_items),
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        drop(client);
        match row {
            Some(row) => from_row(&row),
            None => Err(match self.get_run(id).await? {
                None => SinkError::NotFound {
                    entity: "run",
                    key: id.to_string(),
                },
                Some(current) => SinkError::InvalidTransition {
                    entity: "run",
                    key: id.to_string(),
                    from: current.summary.status.to_string(),
                    to: summary.status.to_string(),
                },
            }),
        }
    }

    /// The run, if it exists.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn get_run(&self, id: RunId) -> Result<Option<Run>, SinkError> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLS} FROM backfill.runs WHERE id = $1");
        let ctx = || format!("reading run {id}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .query_opt(&stmt, &[&id.get()])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The latest `limit` runs, newest first, optionally of one pipeline and/or realm.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn list_runs(
        &self,
        pipeline: Option<&str>,
        realm_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Run>, SinkError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {COLS} FROM backfill.runs \
             WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR realm_id = $2) \
             ORDER BY started_at DESC, id DESC LIMIT $3"
        );
        let ctx = || "listing runs".to_owned();
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .query(&stmt, &[&pipeline, &realm_id, &i64::from(limit)])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .iter()
            .map(from_row)
            .collect()
    }
}
