//! Extraction windows (`backfill.windows`): the unit of progress and resume.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Ledger, RunId, WindowId, col, count_col, small_col, status_enum, to_i64};
use crate::error::SinkError;

status_enum! {
    /// Where a window stands.
    WindowStatus, "backfill.windows.status" {
        /// Planned, never attempted.
        Pending => "pending",
        /// Being loaded (or its process died while loading it).
        Running => "running",
        /// Loaded (and verified, unless verification was off). Skipped by later runs.
        Done => "done",
        /// The last attempt failed; retried by the next run.
        Failed => "failed",
        /// Loaded, but the source count did not match the ids loaded; retried by the next run.
        Mismatch => "mismatch",
    }
}

impl WindowStatus {
    /// Whether an attempt ends in this status (`done`, `failed`, `mismatch`).
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Mismatch)
    }
}

/// The windows of one pipeline, company and window field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowScope {
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// Timestamp defining the windows (e.g. `MetaData.CreateTime`).
    pub window_field: String,
}

impl WindowScope {
    /// A scope from its three parts.
    pub fn new(
        pipeline: impl Into<String>,
        realm_id: impl Into<String>,
        window_field: impl Into<String>,
    ) -> Self {
        Self {
            pipeline: pipeline.into(),
            realm_id: realm_id.into(),
            window_field: window_field.into(),
        }
    }
}

/// A half-open time interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowSpan {
    /// Inclusive start.
    pub start: OffsetDateTime,
    /// Exclusive end.
    pub end: OffsetDateTime,
}

impl WindowSpan {
    /// `[start, end)`.
    #[must_use]
    pub const fn new(start: OffsetDateTime, end: OffsetDateTime) -> Self {
        Self { start, end }
    }
}

/// A row of `backfill.windows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Its id (pass it to [`Sink::upsert_page`](crate::Sink::upsert_page)).
    pub id: WindowId,
    /// Pipeline, realm and window field.
    pub scope: WindowScope,
    /// The interval.
    pub span: WindowSpan,
    /// Current status.
    pub status: WindowStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Pages written by the current (or last) attempt.
    pub pages: u32,
    /// Records received by the current (or last) attempt.
    pub rows: u64,
    /// New ids written by the current (or last) attempt.
    pub inserted: u64,
    /// Changed ids.
    pub updated: u64,
    /// Unchanged ids.
    pub unchanged: u64,
    /// QBO's COUNT for the window, when verified.
    pub source_count: Option<u64>,
    /// Whether the attempt that finished the window compared QBO's COUNT with what it loaded
    /// (windows finished before this column existed read `false`).
    pub verified: bool,
    /// Records of the current (or last) attempt kept in `raw.qb_rejects` instead of the raw
    /// table.
    pub rejected: u64,
    /// Duration of the last finished attempt.
    pub duration: Option<Duration>,
    /// Error of the last failed attempt (kept until the next attempt finishes).
    pub last_error: Option<String>,
    /// The run of the current (or last) attempt.
    pub run_id: Option<RunId>,
    /// Start of the current (or last) attempt.
    pub started_at: Option<OffsetDateTime>,
    /// End of the last attempt.
    pub finished_at: Option<OffsetDateTime>,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// How an attempt ended, for [`Ledger::finish_window`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowOutcome {
    /// `done`, `failed` or `mismatch`.
    pub status: WindowStatus,
    /// QBO's COUNT, when the attempt took one.
    pub source_count: Option<u64>,
    /// Whether that COUNT was compared with what the attempt loaded (`false` with
    /// `--no-verify`: the window then reads as unverified everywhere).
    pub verified: bool,
    /// Time spent on the attempt.
    pub duration: Duration,
    /// The error (failed) or the mismatch description; `None` clears the last error.
    pub error: Option<String>,
}

pub(super) const COLS: &str = "id, pipeline, realm_id, window_field, window_start, window_end, status, \
                    attempts, pages, rows, inserted, updated, unchanged, source_count, \
                    verified, rejected, duration_ms, last_error, run_id, started_at, \
                    finished_at, updated_at";

/// The evidence columns an attempt's start resets: no COUNT, unverified, no rejects.
pub(super) const RESET_EVIDENCE: &str = "source_count = NULL, verified = false, rejected = 0";

/// The evidence of a window QBO's COUNT says is empty: verified, nothing rejected.
pub(super) const EMPTY_VERIFIED: &str = "source_count = 0, verified = true, rejected = 0";

/// A data-modifying CTE (after a CTE `w` returning the windows' `id`s) that deletes those
/// windows' rejects: a window's rejects are those of its current attempt.
pub(super) const CLEAR_REJECTS: &str =
    "gone AS (DELETE FROM raw.qb_rejects WHERE window_id IN (SELECT id FROM w))";

pub(super) fn from_row(row: &Row) -> Result<Window, SinkError> {
    let source_count: Option<i64> = col(row, "source_count")?;
    let duration_ms: Option<i64> = col(row, "duration_ms")?;
    Ok(Window {
        id: WindowId(col(row, "id")?),
        scope: WindowScope {
            pipeline: col(row, "pipeline")?,
            realm_id: col(row, "realm_id")?,
            window_field: col(row, "window_field")?,
        },
        span: WindowSpan {
            start: col(row, "window_start")?,
            end: col(row, "window_end")?,
        },
        status: WindowStatus::parse(col(row, "status")?)?,
        attempts: small_col(row, "attempts")?,
        pages: small_col(row, "pages")?,
        rows: count_col(row, "rows")?,
        inserted: count_col(row, "inserted")?,
        updated: count_col(row, "updated")?,
        unchanged: count_col(row, "unchanged")?,
        source_count: source_count.map(|c| u64::try_from(c).unwrap_or_default()),
        verified: col(row, "verified")?,
        rejected: count_col(row, "rejected")?,
        duration: duration_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or_default())),
        last_error: col(row, "last_error")?,
        run_id: col::<Option<i64>>(row, "run_id")?.map(RunId),
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn statuses(list: &[WindowStatus]) -> Vec<&'static str> {
    list.iter().map(|s| s.as_str()).collect()
}

impl Ledger {
    /// Makes sure every planned window exists (missing ones are inserted as `pending`) and
    /// returns them all with their current status, ordered by start, in one round trip
    /// (a second only if another process inserted some of them at the same moment).
    ///
    /// # Errors
    /// [`SinkError::Query`] (e.g. a span with `end <= start`).
    pub async fn ensure_windows(
        &self,
        scope: &WindowScope,
        spans: &[WindowSpan],
    ) -> Result<Vec<Window>, SinkError> {
        let mut distinct: Vec<WindowSpan> = spans.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let starts: Vec<OffsetDateTime> = distinct.iter().map(|s| s.start).collect();
        let ends: Vec<OffsetDateTime> = distinct.iter().map(|s| s.end).collect();
        let sql = format!(
            "WITH input AS ( \
                 SELECT s, e FROM unnest($4::timestamptz[], $5::timestamptz[]) AS t(s, e) \
             ), ins AS ( \
                 INSERT INTO backfill.windows (pipeline, realm_id, window_field, window_start, window_end) \
                 SELECT $1, $2, $3, s, e FROM input ORDER BY s, e \
                 ON CONFLICT ON CONSTRAINT windows_key DO NOTHING \
                 RETURNING {COLS} \
             ) \
             SELECT {COLS} FROM ins \
             UNION ALL \
             SELECT {w_cols} FROM backfill.windows w JOIN input i \
                 ON w.window_start = i.s AND w.window_end = i.e \
             WHERE w.pipeline = $1 AND w.realm_id = $2 AND w.window_field = $3 \
             ORDER BY window_start, window_end",
            w_cols = COLS
                .split(", ")
                .map(|c| format!("w.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let client = self.client().await?;
        let ctx = || format!("planning windows of {}", scope.pipeline);
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &scope.pipeline,
                        &scope.realm_id,
                        &scope.window_field,
                        &starts,
                        &ends,
                    ],
                )
                .await
                .map_err(|e| SinkError::query(ctx(), e))?;
            // A window inserted by a concurrent transaction after this statement's snapshot is
            // neither inserted nor seen here; the next statement sees it.
            if rows.len() == distinct.len() || attempt == 3 {
                return rows.iter().map(from_row).collect();
            }
        }
    }

    /// Starts an attempt: `pending|failed|mismatch|running → running` (`done → running` only
    /// when `force`), attempts + 1, owned by `run`, pages/rows/counters reset to zero.
    /// A window left `running` by a dead process is taken over.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`] (e.g. done without force), [`SinkError::NotFound`].
    pub async fn start_window_attempt(
        &self,
        id: WindowId,
        run: RunId,
        force: bool,
    ) -> Result<Window, SinkError> {
        let mut from = vec![
            WindowStatus::Pending,
            WindowStatus::Failed,
            WindowStatus::Mismatch,
            WindowStatus::Running,
        ];
        if force {
            from.push(WindowStatus::Done);
        }
        let sql = format!(
            "WITH w AS (UPDATE backfill.windows SET status = 'running', attempts = attempts + 1, \
             run_id = $2, pages = 0, rows = 0, inserted = 0, updated = 0, unchanged = 0, \
             {RESET_EVIDENCE}, duration_ms = NULL, started_at = now(), finished_at = NULL, \
             updated_at = now() \
             WHERE id = $1 AND status = ANY($3::text[]) RETURNING {COLS}), \
             {CLEAR_REJECTS} SELECT * FROM w"
        );
        let client = self.client().await?;
        let ctx = || format!("starting window {id}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_opt(&stmt, &[&id.get(), &run.get(), &statuses(&from)])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        drop(client);
        match row {
            Some(row) => from_row(&row),
            None => Err(self.window_transition_error(id, "running").await),
        }
    }

    /// Ends the attempt of `run`: `running → done|failed|mismatch` with the source count,
    /// duration and error.
    ///
    /// # Errors
    /// [`SinkError::InvalidTransition`] when the window is not running for `run` (e.g. taken
    /// over by another run) or `outcome.status` is not terminal; [`SinkError::NotFound`].
    pub async fn finish_window(
        &self,
        id: WindowId,
        run: RunId,
        outcome: &WindowOutcome,
    ) -> Result<Window, SinkError> {
        match self.finish_attempt(id, run, None, outcome).await? {
            Some(window) => Ok(window),
            None => Err(self
                .window_transition_error(id, outcome.status.as_str())
                .await),
        }
    }

    /// The one statement that ends an attempt: `running → done|failed|mismatch` for `run`
    /// (and, when `owner` is given, only while that worker holds the lease), lease released.
    /// `None` when no window matched.
    pub(super) async fn finish_attempt(
        &self,
        id: WindowId,
        run: RunId,
        owner: Option<&str>,
        outcome: &WindowOutcome,
    ) -> Result<Option<Window>, SinkError> {
        if !outcome.status.is_terminal() {
            return Err(SinkError::InvalidTransition {
                entity: "window",
                key: id.to_string(),
                from: WindowStatus::Running.to_string(),
                to: outcome.status.to_string(),
            });
        }
        let sql = format!(
            "UPDATE backfill.windows SET status = $4, source_count = $5, duration_ms = $6, \
             last_error = $7, verified = $8, finished_at = now(), updated_at = now(), \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND status = 'running' AND run_id = $2 \
             AND ($3::text IS NULL OR lease_owner = $3::text) \
             RETURNING {COLS}"
        );
        let client = self.client().await?;
        let ctx = || format!("finishing window {id}");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let duration_ms = i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX);
        let row = client
            .query_opt(
                &stmt,
                &[
                    &id.get(),
                    &run.get(),
                    &owner,
                    &outcome.status.as_str(),
                    &outcome.source_count.map(to_i64),
                    &duration_ms,
                    &outcome.error,
                    &outcome.verified,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        drop(client);
        row.as_ref().map(from_row).transpose()
    }

    /// Marks windows known to be empty (QBO's COUNT is 0) as `done` with source count 0 and no
    /// pages, in one statement, as an attempt of `run`. Windows already `done` are left alone.
    /// Returns how many were marked.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn mark_windows_done_empty(
        &self,
        ids: &[WindowId],
        run: RunId,
    ) -> Result<u64, SinkError> {
        let raw: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let client = self.client().await?;
        let ctx = || format!("marking {} empty windows done", ids.len());
        let stmt = client
            .prepare_cached(&format!(
                "WITH w AS (UPDATE backfill.windows SET status = 'done', \
                 attempts = attempts + 1, run_id = $2, pages = 0, rows = 0, inserted = 0, \
                 updated = 0, unchanged = 0, {EMPTY_VERIFIED}, duration_ms = 0, \
                 last_error = NULL, started_at = now(), finished_at = now(), updated_at = now() \
                 WHERE id = ANY($1::int8[]) AND status <> 'done' RETURNING id), \
                 {CLEAR_REJECTS} SELECT count(*) FROM w"
            ))
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_one(&stmt, &[&raw, &run.get()])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
    }

    /// Every window of `scope`, ordered by start.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn list_windows(&self, scope: &WindowScope) -> Result<Vec<Window>, SinkError> {
        let sql = format!(
            "SELECT {COLS} FROM backfill.windows \
             WHERE pipeline = $1 AND realm_id = $2 AND window_field = $3 \
             ORDER BY window_start, window_end"
        );
        let client = self.client().await?;
        let ctx = || format!("listing windows of {}", scope.pipeline);
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .query(
                &stmt,
                &[&scope.pipeline, &scope.realm_id, &scope.window_field],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?
            .iter()
            .map(from_row)
            .collect()
    }

    /// The window, if it exists.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn get_window(&self, id: WindowId) -> Result<Option<Window>, SinkError> {
        let sql = format!("SELECT {COLS} FROM backfill.windows WHERE id = $1");
        let client = self.client().await?;
        let ctx = || format!("reading window {id}");
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

    async fn window_transition_error(&self, id: WindowId, to: &str) -> SinkError {
        match self.get_window(id).await {
            Err(e) => e,
            Ok(None) => SinkError::NotFound {
                entity: "window",
                key: id.to_string(),
            },
            Ok(Some(w)) => SinkError::InvalidTransition {
                entity: "window",
                key: id.to_string(),
                from: match w.run_id {
                    Some(run) if w.status == WindowStatus::Running => {
                        format!("running (run {run})")
                    }
                    _ => w.status.to_string(),
                },
                to: to.to_owned(),
            },
        }
    }

    /// The error for a page offered to a window that is not running.
    pub(crate) async fn window_not_running(&self, id: WindowId) -> SinkError {
        match self.get_window(id).await {
            Err(e) => e,
            Ok(None) => SinkError::NotFound {
                entity: "window",
                key: id.to_string(),
            },
            Ok(Some(w)) => SinkError::WindowNotRunning {
                window: id.get(),
                status: w.status.to_string(),
            },
        }
    }
}
