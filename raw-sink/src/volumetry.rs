//! Volumetry: the read-only queries behind `report` (SPEC §11).
//!
//! Every figure of the report comes from one of the SQL texts below, published verbatim in
//! `docs/VOLUMETRY.md` so that anyone can run them in `psql` (a test keeps the two equal).
//! Values are always bound (`$1`, `$2`, …); the only text spliced into a query is a raw table's
//! quoted name, replacing `{table}`, and it comes from a [`RawTable`] constant.

use std::time::Duration;

use time::{Date, OffsetDateTime};
use tokio_postgres::Row;

use crate::error::SinkError;
use crate::ledger::{
    Run, RunId, RunStatus, RunSummary, Trigger, TriggerKey, TriggerStatus, WindowScope, WindowSpan,
    WindowStatus,
};
use crate::sink::Sink;
use crate::table::RawTable;

/// Totals of one raw table. `$1` = realm id or NULL (every realm); `$2` = the table's name.
pub const TABLE_TOTALS_SQL: &str = r#"SELECT count(*)                      AS rows,
       count(DISTINCT realm_id)      AS realms,
       min(extract_window_start_utc) AS first_window_start,
       max(extract_window_end_utc)   AS last_window_end,
       max(ingested_at_utc)          AS last_ingested_at,
       count(*) FILTER (WHERE deleted_at_utc IS NOT NULL) AS tombstones,
       pg_total_relation_size($2::text::regclass) AS table_bytes
FROM {table}
WHERE ($1::text IS NULL OR realm_id = $1)"#;

/// Rows of one raw table per UTC day of their extraction window's start. `$1` = realm or NULL.
pub const ROWS_PER_DAY_SQL: &str = r#"SELECT (extract_window_start_utc AT TIME ZONE 'UTC')::date AS day,
       count(*) AS rows
FROM {table}
WHERE ($1::text IS NULL OR realm_id = $1)
GROUP BY 1
ORDER BY 1"#;

/// Every ledger window of one pipeline with what its last attempt loaded, problems first (not
/// `done`, unverified, records quarantined, or source COUNT different from what was loaded).
/// The evidence is the ledger's: what each attempt loaded (distinct ids written or confirmed,
/// and records quarantined) against the COUNT it took, never raw rows matched by their window
/// columns (a record re-loaded by a later run with other windows carries that run's windows).
/// `$1` = pipeline; `$2` = realm or NULL.
pub const WINDOWS_SQL: &str = r#"SELECT w.pipeline, w.realm_id, w.window_field, w.window_start, w.window_end, w.status,
       w.attempts, w.pages, w.rows, w.inserted, w.updated, w.unchanged, w.source_count,
       w.verified, w.rejected, w.duration_ms, w.last_error,
       w.inserted + w.updated + w.unchanged AS loaded
FROM backfill.windows w
WHERE w.pipeline = $1
  AND ($2::text IS NULL OR w.realm_id = $2)
ORDER BY (w.status <> 'done' OR NOT w.verified OR w.rejected > 0
          OR w.source_count IS DISTINCT FROM w.inserted + w.updated + w.unchanged + w.rejected) DESC,
         w.realm_id, w.window_field, w.window_start"#;

/// The latest runs of some pipelines, newest first. `$1` = pipelines (text[]); `$2` = realm or
/// NULL; `$3` = how many.
pub const RUNS_SQL: &str = r#"SELECT id, pipeline, realm_id, range_start, range_end, window_field, trigger_name, status,
       windows_planned, windows_done, windows_skipped, windows_failed, windows_mismatch,
       rows, inserted, updated, unchanged, api_calls, api_requests, api_batches, api_batch_items,
       error, started_at, finished_at
FROM backfill.runs
WHERE pipeline = ANY($1::text[])
  AND ($2::text IS NULL OR realm_id = $2)
ORDER BY started_at DESC, id DESC
LIMIT $3"#;

/// The one-time triggers of some pipelines, oldest first. `$1` = pipelines; `$2` = realm or NULL.
pub const TRIGGERS_SQL: &str = r#"SELECT pipeline, realm_id, name, range_start, range_end, status,
       created_at, updated_at, completed_at, last_run_id
FROM backfill.triggers
WHERE pipeline = ANY($1::text[])
  AND ($2::text IS NULL OR realm_id = $2)
ORDER BY created_at, pipeline, realm_id, name"#;

/// Re-run comparison: for every (pipeline, realm, window field, range) run at least twice, its
/// last two finished runs, the earlier first. `$1` = pipelines; `$2` = realm or NULL.
pub const RERUNS_SQL: &str = r#"SELECT id, pipeline, realm_id, range_start, range_end, window_field, trigger_name, status,
       windows_planned, windows_done, windows_skipped, windows_failed, windows_mismatch,
       rows, inserted, updated, unchanged, api_calls, api_requests, api_batches, api_batch_items,
       error, started_at, finished_at,
       nth, runs_of_range
FROM (
    SELECT r.*,
           row_number() OVER same_range AS nth,
           count(*) OVER (PARTITION BY pipeline, realm_id, window_field, range_start, range_end)
               AS runs_of_range
    FROM backfill.runs r
    WHERE pipeline = ANY($1::text[])
      AND ($2::text IS NULL OR realm_id = $2)
      AND status IN ('succeeded', 'partial')
    WINDOW same_range AS (PARTITION BY pipeline, realm_id, window_field, range_start, range_end
                          ORDER BY started_at DESC, id DESC)
) ranked
WHERE nth <= 2 AND runs_of_range >= 2
ORDER BY pipeline, realm_id, window_field, range_start, range_end, nth DESC"#;

/// The latest sync or reconcile of some pipelines, per pipeline and company, with the marks it
/// left and the lag of the deletions mark (QBO's clock at that sync) behind now; plus the
/// calls every sync and reconcile of that pipeline and company spent. `$1` = pipelines;
/// `$2` = realm or NULL.
pub const SYNCS_SQL: &str = r#"SELECT s.id, s.kind, s.pipeline, s.realm_id, s.entity, s.status,
       s.changes_mark_before, s.deletes_mark_before, s.changes_mark_after, s.deletes_mark_after,
       s.inserted, s.updated, s.unchanged, s.tombstoned, s.deletes_refuted, s.api_calls, s.error,
       s.started_at, s.finished_at,
       m.changes_mark, m.deletes_mark,
       extract(epoch FROM now() - m.deletes_mark)::int8 AS lag_seconds,
       (SELECT sum(a.api_calls) FROM backfill.syncs a
        WHERE a.pipeline = s.pipeline AND a.realm_id = s.realm_id)::int8 AS total_api_calls
FROM (
    SELECT DISTINCT ON (pipeline, realm_id) *
    FROM backfill.syncs
    WHERE pipeline = ANY($1::text[])
      AND ($2::text IS NULL OR realm_id = $2)
    ORDER BY pipeline, realm_id, started_at DESC, id DESC
) s
LEFT JOIN backfill.sync_marks m ON m.pipeline = s.pipeline AND m.realm_id = s.realm_id
ORDER BY s.pipeline, s.realm_id"#;
/// `check-books`: a transaction table's live rows (`deleted_at_utc IS NULL`) of one realm
/// per month of `TxnDate` in `[$2, $3]`, with their total in home currency
/// (`TotalAmt × ExchangeRate`, 1 when absent) as exact numeric text.
pub const BOOKS_BY_MONTH_SQL: &str = r#"SELECT to_char((payload->>'TxnDate')::date, 'YYYY-MM') AS month,
       count(*)                                          AS rows,
       COALESCE(sum((payload->>'TotalAmt')::numeric
                    * COALESCE((payload->>'ExchangeRate')::numeric, 1)), 0)::text AS total
FROM {table}
WHERE realm_id = $1 AND deleted_at_utc IS NULL
  AND (payload->>'TxnDate')::date BETWEEN $2::date AND $3::date
GROUP BY 1
ORDER BY 1"#;

/// The latest finished `check-books` of each company (`$1` = realm or NULL): what it
/// compared, how it ended, and the end of the company's latest run or sync that wrote raw
/// rows; `stale` when such a load ended after the check started.
pub const BOOK_CHECKS_SQL: &str = r#"SELECT c.id, c.realm_id, c.range_start, c.range_end, c.accounting_method, c.status,
       c.months_planned, c.months_compared, c.compared_through, c.api_calls, c.error,
       c.started_at, c.finished_at,
       l.last_load_at,
       COALESCE(l.last_load_at > c.started_at, false) AS stale
FROM (
    SELECT DISTINCT ON (realm_id) *
    FROM backfill.book_checks
    WHERE status <> 'running'
      AND ($1::text IS NULL OR realm_id = $1)
    ORDER BY realm_id, started_at DESC, id DESC
) c
LEFT JOIN LATERAL (
    SELECT max(t) AS last_load_at FROM (
        SELECT r.finished_at AS t FROM backfill.runs r
        WHERE r.realm_id = c.realm_id AND r.finished_at IS NOT NULL
          AND r.inserted + r.updated > 0
        UNION ALL
        SELECT s.finished_at FROM backfill.syncs s
        WHERE s.realm_id = c.realm_id AND s.finished_at IS NOT NULL
          AND s.inserted + s.updated + s.tombstoned > 0
    ) loads
) l ON true
ORDER BY c.realm_id"#;

/// What some checks found (`$1` = their ids), month by month: the books' count and total
/// beside the raw layer's (NULL for an entity never loaded or a type no table carries).
pub const BOOK_CHECK_ROWS_SQL: &str = r#"SELECT check_id, month, kind, label, txn_types,
       books_rows, books_amount::text AS books_amount,
       raw_rows, raw_amount::text AS raw_amount
FROM backfill.book_check_rows
WHERE check_id = ANY($1::int8[])
ORDER BY check_id, month, kind, label"#;

/// The connected companies' token expiries (`backfill.oauth_tokens`, never the token): when
/// the refresh token (rolling) and the grant (hard) expire, whole days left (rounded toward
/// zero) and whether either is under `$2` days away. `$1` = realm or NULL; `$2` = warning days.
pub const CONNECTIONS_SQL: &str = r#"SELECT realm_id, company_name, client_id,
       refresh_token IS NOT NULL AS has_token,
       rotated_at, last_success_at, refresh_expires_at, hard_expires_at,
       trunc(extract(epoch FROM refresh_expires_at - now()) / 86400)::int8 AS refresh_days_left,
       trunc(extract(epoch FROM hard_expires_at - now()) / 86400)::int8    AS hard_days_left,
       COALESCE(refresh_expires_at < now() + make_interval(days => $2::int)
                OR hard_expires_at < now() + make_interval(days => $2::int), false) AS expiring
FROM backfill.oauth_tokens
WHERE ($1::text IS NULL OR realm_id = $1)
ORDER BY realm_id"#;

/// Every volumetry query, named, in the order `docs/VOLUMETRY.md` presents them.
pub const VOLUMETRY_QUERIES: [(&str, &str); 11] = [
    ("table totals", TABLE_TOTALS_SQL),
    ("rows per day", ROWS_PER_DAY_SQL),
    ("windows", WINDOWS_SQL),
    ("runs", RUNS_SQL),
    ("triggers", TRIGGERS_SQL),
    ("re-runs", RERUNS_SQL),
    ("syncs", SYNCS_SQL),
    ("books by month", BOOKS_BY_MONTH_SQL),
    ("book checks", BOOK_CHECKS_SQL),
    ("book check rows", BOOK_CHECK_ROWS_SQL),
    ("connections", CONNECTIONS_SQL),
];

/// The latest sync of a pipeline in a company ([`SYNCS_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// Pipeline.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// QBO entity.
    pub entity: String,
    /// The latest `backfill.syncs` row (its kind, status, counts and calls).
    pub last: crate::SyncRow,
    /// The entity's marks, once a sync or reconcile succeeded.
    pub marks: Option<crate::SyncMarks>,
    /// Seconds from the deletions mark to now (how stale the raw layer may be).
    pub lag_seconds: Option<i64>,
    /// QBO calls of every sync and reconcile of this pipeline and company.
    pub total_api_calls: u64,
}

/// One month of a transaction table, from [`BOOKS_BY_MONTH_SQL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMonth {
    /// `YYYY-MM` of `TxnDate`.
    pub month: String,
    /// Live rows.
    pub rows: u64,
    /// Their total in home currency, exact numeric text (`1234.50`).
    pub total: String,
}

/// A volumetry query for `table`: `{table}` replaced by its quoted name.
fn for_table(sql: &str, table: RawTable) -> String {
    sql.replace("{table}", &table.quoted())
}

/// Totals of one raw table ([`TABLE_TOTALS_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTotals {
    /// The table.
    pub table: RawTable,
    /// Rows (of the realm, when one was given).
    pub rows: u64,
    /// Distinct realms among those rows.
    pub realms: u64,
    /// Earliest extraction window start.
    pub first_window_start: Option<OffsetDateTime>,
    /// Latest extraction window end.
    pub last_window_end: Option<OffsetDateTime>,
    /// Latest write.
    pub last_ingested_at: Option<OffsetDateTime>,
    /// Rows marked deleted (`deleted_at_utc` set; current rows are the others).
    pub tombstones: u64,
    /// Size of the table with its indexes and TOAST, every realm included.
    pub table_bytes: u64,
}

/// Rows of a raw table whose extraction window starts on `day` (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayCount {
    /// The UTC day.
    pub day: Date,
    /// Rows.
    pub rows: u64,
}

/// How a window's source COUNT compares with what its last attempt loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verification {
    /// Done, verified, and the source COUNT equals the distinct ids loaded.
    Match,
    /// Done and verified: the source COUNT equals the ids loaded plus the records kept in
    /// `raw.qb_rejects`, which the raw table lacks.
    Quarantined,
    /// Done, but the source COUNT differs from what was loaded (or the window ended `mismatch`).
    Mismatch,
    /// The window failed, or is still pending or running.
    NotDone,
    /// Done without comparing a source COUNT (`--no-verify`, or finished before the ledger
    /// recorded verification).
    Unverified,
}

impl Verification {
    /// Lowercase name for reports.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Quarantined => "quarantined",
            Self::Mismatch => "mismatch",
            Self::NotDone => "not done",
            Self::Unverified => "unverified",
        }
    }
}

/// A ledger window with the raw rows that carry it ([`WINDOWS_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowVolume {
    /// Pipeline, realm and window field.
    pub scope: WindowScope,
    /// The interval.
    pub span: WindowSpan,
    /// Ledger status.
    pub status: WindowStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// Pages written by the last attempt.
    pub pages: u32,
    /// Records received by the last attempt.
    pub rows_received: u64,
    /// New ids written by the last attempt.
    pub inserted: u64,
    /// Changed ids written by the last attempt.
    pub updated: u64,
    /// Unchanged ids seen by the last attempt.
    pub unchanged: u64,
    /// The source COUNT recorded when the window was verified.
    pub source_count: Option<u64>,
    /// Whether the last attempt compared that COUNT with what it loaded.
    pub verified: bool,
    /// Records of the last attempt kept in `raw.qb_rejects`.
    pub rejected: u64,
    /// Distinct ids the last attempt wrote or found unchanged.
    pub loaded: u64,
    /// Duration of the last attempt.
    pub duration: Option<Duration>,
    /// Last error, if any.
    pub last_error: Option<String>,
}

impl WindowVolume {
    /// Source COUNT against what the last attempt loaded.
    #[must_use]
    pub fn verification(&self) -> Verification {
        match (self.status, self.verified, self.source_count) {
            (WindowStatus::Mismatch, _, _) => Verification::Mismatch,
            (WindowStatus::Done, false, _) | (WindowStatus::Done, true, None) => {
                Verification::Unverified
            }
            (WindowStatus::Done, true, Some(n)) if n == self.loaded && self.rejected == 0 => {
                Verification::Match
            }
            (WindowStatus::Done, true, Some(n)) if n == self.loaded + self.rejected => {
                Verification::Quarantined
            }
            (WindowStatus::Done, true, Some(_)) => Verification::Mismatch,
            _ => Verification::NotDone,
        }
    }
}

/// One run of a re-run pair ([`RERUNS_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunEntry {
    /// The run.
    pub run: Run,
    /// 1 for the latest run of its range, 2 for the one before.
    pub nth: u32,
    /// Finished runs of the same pipeline, realm, window field and range.
    pub runs_of_range: u64,
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    name: &str,
) -> Result<T, SinkError> {
    row.try_get(name)
        .map_err(|e| SinkError::query(format!("reading volumetry column {name}"), e))
}

fn count(row: &Row, name: &str) -> Result<u64, SinkError> {
    Ok(u64::try_from(col::<i64>(row, name)?).unwrap_or_default())
}

fn small(row: &Row, name: &str) -> Result<u32, SinkError> {
    Ok(u32::try_from(col::<i32>(row, name)?).unwrap_or_default())
}

fn run_from_row(row: &Row) -> Result<Run, SinkError> {
    Ok(Run {
        id: RunId::new(col(row, "id")?),
        pipeline: col(row, "pipeline")?,
        realm_id: col(row, "realm_id")?,
        range_start: col(row, "range_start")?,
        range_end: col(row, "range_end")?,
        window_field: col(row, "window_field")?,
        trigger_name: col(row, "trigger_name")?,
        windows_planned: small(row, "windows_planned")?,
        summary: RunSummary {
            status: RunStatus::parse(col(row, "status")?)?,
            windows_done: small(row, "windows_done")?,
            windows_skipped: small(row, "windows_skipped")?,
            windows_failed: small(row, "windows_failed")?,
            windows_mismatch: small(row, "windows_mismatch")?,
            rows: count(row, "rows")?,
            inserted: count(row, "inserted")?,
            updated: count(row, "updated")?,
            unchanged: count(row, "unchanged")?,
            api_calls: count(row, "api_calls")?,
            api_requests: count(row, "api_requests")?,
            api_batches: count(row, "api_batches")?,
            api_batch_items: count(row, "api_batch_items")?,
            error: col(row, "error")?,
        },
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

impl Sink {
    pub(crate) async fn volumetry_query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("volumetry: {what}");
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .query(&stmt, params)
            .await
            .map_err(|e| SinkError::query(ctx(), e))
    }

    /// Totals of `table`, for one realm or all ([`TABLE_TOTALS_SQL`]).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`] (e.g. the table's migration is not applied).
    pub async fn table_totals(
        &self,
        table: RawTable,
        realm_id: Option<&str>,
    ) -> Result<TableTotals, SinkError> {
        let sql = for_table(TABLE_TOTALS_SQL, table);
        let name = table.quoted();
        let rows = self
            .volumetry_query(&format!("totals of {table}"), &sql, &[&realm_id, &name])
            .await?;
        let row = rows.first().ok_or_else(|| SinkError::NotFound {
            entity: "table",
            key: table.to_string(),
        })?;
        Ok(TableTotals {
            table,
            rows: count(row, "rows")?,
            realms: count(row, "realms")?,
            first_window_start: col(row, "first_window_start")?,
            last_window_end: col(row, "last_window_end")?,
            last_ingested_at: col(row, "last_ingested_at")?,
            tombstones: count(row, "tombstones")?,
            table_bytes: count(row, "table_bytes")?,
        })
    }

    /// The latest sync of each of `pipelines` per company ([`SYNCS_SQL`]), by pipeline.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn sync_statuses(
        &self,
        pipelines: &[&str],
        realm_id: Option<&str>,
    ) -> Result<Vec<SyncState>, SinkError> {
        let rows = self
            .volumetry_query("syncs", SYNCS_SQL, &[&pipelines, &realm_id])
            .await?;
        rows.iter()
            .map(|r| {
                let changes: Option<OffsetDateTime> = col(r, "changes_mark")?;
                let deletes: Option<OffsetDateTime> = col(r, "deletes_mark")?;
                let total: Option<i64> = col(r, "total_api_calls")?;
                Ok(SyncState {
                    pipeline: col(r, "pipeline")?,
                    realm_id: col(r, "realm_id")?,
                    entity: col(r, "entity")?,
                    last: crate::ledger::sync_from_row(r)?,
                    marks: changes
                        .zip(deletes)
                        .map(|(changes, deletes)| crate::SyncMarks { changes, deletes }),
                    lag_seconds: col(r, "lag_seconds")?,
                    total_api_calls: total.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Live rows of `table` per month of `TxnDate` within `from..=to`, with their total in
    /// home currency ([`BOOKS_BY_MONTH_SQL`]), by month.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`] (also for a `TxnDate` or amount that is not
    /// a date or a number).
    pub async fn books_by_month(
        &self,
        table: RawTable,
        realm_id: &str,
        from: time::Date,
        to: time::Date,
    ) -> Result<Vec<BookMonth>, SinkError> {
        let sql = for_table(BOOKS_BY_MONTH_SQL, table);
        self.volumetry_query(
            &format!("books by month of {table}"),
            &sql,
            &[&realm_id, &from, &to],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BookMonth {
                month: col(r, "month")?,
                rows: count(r, "rows")?,
                total: col(r, "total")?,
            })
        })
        .collect()
    }

    /// Rows of `table` per UTC day of their window start ([`ROWS_PER_DAY_SQL`]), by day.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn rows_per_day(
        &self,
        table: RawTable,
        realm_id: Option<&str>,
    ) -> Result<Vec<DayCount>, SinkError> {
        let sql = for_table(ROWS_PER_DAY_SQL, table);
        self.volumetry_query(&format!("rows per day of {table}"), &sql, &[&realm_id])
            .await?
            .iter()
            .map(|r| {
                Ok(DayCount {
                    day: col(r, "day")?,
                    rows: count(r, "rows")?,
                })
            })
            .collect()
    }

    /// The windows of `pipeline` with what the last attempt on each loaded ([`WINDOWS_SQL`]),
    /// problems first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`]; [`SinkError::Corrupt`] for an unknown status.
    pub async fn window_volumes(
        &self,
        pipeline: &str,
        realm_id: Option<&str>,
    ) -> Result<Vec<WindowVolume>, SinkError> {
        self.volumetry_query(
            &format!("windows of {pipeline}"),
            WINDOWS_SQL,
            &[&pipeline, &realm_id],
        )
        .await?
        .iter()
        .map(|r| {
            let source: Option<i64> = col(r, "source_count")?;
            let ms: Option<i64> = col(r, "duration_ms")?;
            Ok(WindowVolume {
                scope: WindowScope {
                    pipeline: col(r, "pipeline")?,
                    realm_id: col(r, "realm_id")?,
                    window_field: col(r, "window_field")?,
                },
                span: WindowSpan::new(col(r, "window_start")?, col(r, "window_end")?),
                status: WindowStatus::parse(col(r, "status")?)?,
                attempts: small(r, "attempts")?,
                pages: small(r, "pages")?,
                rows_received: count(r, "rows")?,
                inserted: count(r, "inserted")?,
                updated: count(r, "updated")?,
                unchanged: count(r, "unchanged")?,
                source_count: source.map(|n| u64::try_from(n).unwrap_or_default()),
                verified: col(r, "verified")?,
                rejected: count(r, "rejected")?,
                loaded: count(r, "loaded")?,
                duration: ms.map(|n| Duration::from_millis(u64::try_from(n).unwrap_or_default())),
                last_error: col(r, "last_error")?,
            })
        })
        .collect()
    }

    /// The latest `limit` runs of `pipelines`, newest first ([`RUNS_SQL`]).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn recent_runs(
        &self,
        pipelines: &[&str],
        realm_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Run>, SinkError> {
        self.volumetry_query(
            "runs",
            RUNS_SQL,
            &[&pipelines, &realm_id, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }

    /// The triggers of `pipelines`, oldest first ([`TRIGGERS_SQL`]).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn triggers_of(
        &self,
        pipelines: &[&str],
        realm_id: Option<&str>,
    ) -> Result<Vec<Trigger>, SinkError> {
        self.volumetry_query("triggers", TRIGGERS_SQL, &[&pipelines, &realm_id])
            .await?
            .iter()
            .map(|r| {
                Ok(Trigger {
                    key: TriggerKey {
                        pipeline: col(r, "pipeline")?,
                        realm_id: col(r, "realm_id")?,
                        name: col(r, "name")?,
                    },
                    range_start: col(r, "range_start")?,
                    range_end: col(r, "range_end")?,
                    status: TriggerStatus::parse(col(r, "status")?)?,
                    created_at: col(r, "created_at")?,
                    updated_at: col(r, "updated_at")?,
                    completed_at: col(r, "completed_at")?,
                    last_run_id: col::<Option<i64>>(r, "last_run_id")?.map(RunId::new),
                })
            })
            .collect()
    }

    /// The last two finished runs of every range run more than once ([`RERUNS_SQL`]): pairs
    /// of consecutive entries, the earlier run first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn rerun_pairs(
        &self,
        pipelines: &[&str],
        realm_id: Option<&str>,
    ) -> Result<Vec<RerunEntry>, SinkError> {
        self.volumetry_query("re-runs", RERUNS_SQL, &[&pipelines, &realm_id])
            .await?
            .iter()
            .map(|r| {
                Ok(RerunEntry {
                    run: run_from_row(r)?,
                    nth: u32::try_from(col::<i64>(r, "nth")?).unwrap_or_default(),
                    runs_of_range: count(r, "runs_of_range")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_queries_splice_only_the_quoted_table() {
        for (_, sql) in VOLUMETRY_QUERIES {
            let spliced = for_table(sql, RawTable::INVOICES);
            assert!(!spliced.contains("{table}"));
            assert!(!spliced.contains('{') && !spliced.contains('}'));
        }
        assert!(
            for_table(TABLE_TOTALS_SQL, RawTable::INVOICES)
                .contains("FROM \"raw\".\"qb_invoices\"")
        );
    }

    #[test]
    fn every_query_is_documented_verbatim() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/VOLUMETRY.md");
        let doc = std::fs::read_to_string(path).unwrap();
        for (name, sql) in VOLUMETRY_QUERIES {
            assert!(
                doc.contains(&format!("```sql\n{sql}\n```")),
                "docs/VOLUMETRY.md lacks the exact text of the {name} query:\n{sql}"
            );
        }
    }

    #[test]
    fn verification_classes() {
        let mut w = WindowVolume {
            scope: WindowScope::new("p", "r", "MetaData.CreateTime"),
            span: WindowSpan::new(OffsetDateTime::UNIX_EPOCH, OffsetDateTime::UNIX_EPOCH),
            status: WindowStatus::Done,
            attempts: 1,
            pages: 1,
            rows_received: 3,
            inserted: 3,
            updated: 0,
            unchanged: 0,
            source_count: Some(3),
            verified: true,
            rejected: 0,
            loaded: 3,
            duration: None,
            last_error: None,
        };
        assert_eq!(w.verification(), Verification::Match);
        w.loaded = 2;
        assert_eq!(w.verification(), Verification::Mismatch);
        w.rejected = 1;
        assert_eq!(w.verification(), Verification::Quarantined);
        w.rejected = 0;
        // A COUNT recorded but never compared (--no-verify) is no verification.
        w.loaded = 3;
        w.verified = false;
        assert_eq!(w.verification(), Verification::Unverified);
        w.verified = true;
        w.source_count = None;
        assert_eq!(w.verification(), Verification::Unverified);
        w.status = WindowStatus::Failed;
        assert_eq!(w.verification(), Verification::NotDone);
        w.status = WindowStatus::Mismatch;
        assert_eq!(w.verification(), Verification::Mismatch);
    }
}
