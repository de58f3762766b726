//! The ledger of `check-books` (`backfill.book_checks` and its `backfill.book_check_rows`) and
//! of `reports` invocations (`backfill.report_runs`), migration V11.
//!
//! Invariants: a check's rows are written in the transaction that finishes it, so a check is
//! either `running` with no rows or finished with every row it found; only the months it
//! compared have rows (`compared_through` says where it stopped). Every value is bound.

use time::{Date, OffsetDateTime};
use tokio_postgres::Row;

use crate::error::SinkError;
use crate::ledger::status_enum;
use crate::sink::Sink;
use crate::volumetry::{BOOK_CHECK_ROWS_SQL, BOOK_CHECKS_SQL};

status_enum! {
    /// How a `check-books` run ended (or that it is still going).
    BookCheckStatus, "backfill.book_checks.status" {
        /// In progress (or its process died).
        Running => "running",
        /// Every month compared agrees.
        Agreed => "agreed",
        /// Some month, entity or transaction type differs.
        Differs => "differs",
        /// A signal or the request budget ended it before the whole range was compared.
        Stopped => "stopped",
        /// QBO or the database refused.
        Failed => "failed",
    }
}

status_enum! {
    /// What one row of a check says.
    BookCheckKind, "backfill.book_check_rows.kind" {
        /// The books and the raw layer hold the same count and total.
        Agrees => "agrees",
        /// They differ.
        Differs => "differs",
        /// The books hold an entity the raw layer never loaded.
        NotLoaded => "not_loaded",
        /// The books hold a transaction type no raw table carries.
        Unmapped => "unmapped",
    }
}

status_enum! {
    /// How a `reports` run ended (or that it is still going).
    ReportRunStatus, "backfill.report_runs.status" {
        /// In progress (or its process died).
        Running => "running",
        /// Every period owed was loaded.
        Succeeded => "succeeded",
        /// Some periods failed; the others were loaded.
        Partial => "partial",
        /// A signal or the request budget stopped it; the next run resumes.
        Stopped => "stopped",
        /// QBO or the database refused.
        Failed => "failed",
    }
}

/// One month × entity (or transaction type) of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookCheckRow {
    /// The month's first day.
    pub month: Date,
    /// What it says.
    pub kind: BookCheckKind,
    /// The entity (or, for [`BookCheckKind::Unmapped`], the transaction type).
    pub label: String,
    /// The report's transaction types behind it.
    pub txn_types: Vec<String>,
    /// Transactions in the books.
    pub books_rows: u64,
    /// Their total in home currency, exact decimal text.
    pub books_amount: String,
    /// Live raw rows (`None` for an entity never loaded or a type no table carries).
    pub raw_rows: Option<u64>,
    /// Their total, exact decimal text.
    pub raw_amount: Option<String>,
}

/// The start of a check.
#[derive(Debug, Clone, Copy)]
pub struct NewBookCheck<'a> {
    /// QBO company.
    pub realm_id: &'a str,
    /// First day asked.
    pub range_start: Date,
    /// Last day asked.
    pub range_end: Date,
    /// `accounting_method` of the TransactionList compared.
    pub accounting_method: &'a str,
    /// Months in the range.
    pub months_planned: u32,
}

/// The end of a check.
#[derive(Debug, Clone, Copy)]
pub struct BookCheckEnd<'a> {
    /// How it ended (not `Running`).
    pub status: BookCheckStatus,
    /// Months compared (a prefix of the range).
    pub months_compared: u32,
    /// The last day compared, if any month was.
    pub compared_through: Option<Date>,
    /// QBO calls spent.
    pub api_calls: u64,
    /// The error that ended it, if any.
    pub error: Option<&'a str>,
    /// What it found, month by month.
    pub rows: &'a [BookCheckRow],
}

/// The latest finished check of a company ([`BOOK_CHECKS_SQL`]) with its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookCheck {
    /// Its `backfill.book_checks` id.
    pub id: i64,
    /// QBO company.
    pub realm_id: String,
    /// First day asked.
    pub range_start: Date,
    /// Last day asked.
    pub range_end: Date,
    /// `accounting_method`.
    pub accounting_method: String,
    /// How it ended.
    pub status: BookCheckStatus,
    /// Months in the range.
    pub months_planned: u32,
    /// Months compared.
    pub months_compared: u32,
    /// The last day compared.
    pub compared_through: Option<Date>,
    /// QBO calls spent.
    pub api_calls: u64,
    /// Its error.
    pub error: Option<String>,
    /// Start.
    pub started_at: OffsetDateTime,
    /// End.
    pub finished_at: Option<OffsetDateTime>,
    /// The end of the company's latest run or sync that wrote raw rows.
    pub last_load_at: Option<OffsetDateTime>,
    /// Whether such a load ended after the check started (its figures may be out of date).
    pub stale: bool,
    /// What it found, by month, kind and label.
    pub rows: Vec<BookCheckRow>,
}

/// The start of a `reports` run.
#[derive(Debug, Clone, Copy)]
pub struct NewReportRun<'a> {
    /// QBO company.
    pub realm_id: &'a str,
    /// First day.
    pub range_start: Date,
    /// Last day.
    pub range_end: Date,
    /// `month`, `quarter` or `year`.
    pub period: &'a str,
    /// `accounting_method`.
    pub accounting_method: &'a str,
    /// The report names.
    pub reports: &'a [String],
}

/// The end of a `reports` run.
#[derive(Debug, Clone, Copy)]
pub struct ReportRunEnd<'a> {
    /// How it ended (not `Running`).
    pub status: ReportRunStatus,
    /// Report periods stored (inserted, updated or unchanged).
    pub periods_loaded: u64,
    /// Report periods failed.
    pub periods_failed: u64,
    /// Report periods left for a later run.
    pub periods_left: u64,
    /// QBO calls spent.
    pub api_calls: u64,
    /// The error that ended it, if any.
    pub error: Option<&'a str>,
}

fn db(ctx: &'static str) -> impl Fn(tokio_postgres::Error) -> SinkError {
    move |e| SinkError::query(ctx, e)
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn int(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    name: &str,
) -> Result<T, SinkError> {
    row.try_get(name)
        .map_err(|e| SinkError::query(format!("reading book check column {name}"), e))
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

fn small(v: i32) -> u32 {
    u32::try_from(v).unwrap_or_default()
}

const INSERT_ROW_SQL: &str = "INSERT INTO backfill.book_check_rows \
     (check_id, month, kind, label, txn_types, books_rows, books_amount, raw_rows, raw_amount) \
     VALUES ($1, $2, $3, $4, $5, $6, $7::text::numeric, $8, $9::text::numeric)";

impl Sink {
    /// Records the start of a check; returns its id.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn start_book_check(&self, c: &NewBookCheck<'_>) -> Result<i64, SinkError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO backfill.book_checks \
                 (realm_id, range_start, range_end, accounting_method, months_planned) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &c.realm_id,
                    &c.range_start,
                    &c.range_end,
                    &c.accounting_method,
                    &int(u64::from(c.months_planned)),
                ],
            )
            .await
            .map_err(db("recording a book check"))?;
        row.try_get(0).map_err(db("recording a book check"))
    }

    /// Records the end of check `id` and every row it found, in one transaction.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`] (also for an amount that is not a number).
    pub async fn finish_book_check(
        &self,
        id: i64,
        end: &BookCheckEnd<'_>,
    ) -> Result<(), SinkError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db("starting a book check's transaction"))?;
        let stmt = tx
            .prepare(INSERT_ROW_SQL)
            .await
            .map_err(db("recording a book check's rows"))?;
        for r in end.rows {
            tx.execute(
                &stmt,
                &[
                    &id,
                    &r.month,
                    &r.kind.as_str(),
                    &r.label,
                    &r.txn_types,
                    &big(r.books_rows),
                    &r.books_amount,
                    &r.raw_rows.map(big),
                    &r.raw_amount,
                ],
            )
            .await
            .map_err(db("recording a book check's rows"))?;
        }
        tx.execute(
            "UPDATE backfill.book_checks SET status = $2, months_compared = $3, \
             compared_through = $4, api_calls = $5, error = $6, finished_at = now() \
             WHERE id = $1",
            &[
                &id,
                &end.status.as_str(),
                &int(u64::from(end.months_compared)),
                &end.compared_through,
                &big(end.api_calls),
                &end.error,
            ],
        )
        .await
        .map_err(db("finishing a book check"))?;
        tx.commit().await.map_err(db("committing a book check"))
    }

    /// The latest finished check of each company, or of `realm_id` ([`BOOK_CHECKS_SQL`]),
    /// with its rows ([`BOOK_CHECK_ROWS_SQL`]), by company.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn latest_book_checks(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<BookCheck>, SinkError> {
        let heads = self
            .volumetry_query("book checks", BOOK_CHECKS_SQL, &[&realm_id])
            .await?;
        let mut checks = heads
            .iter()
            .map(check_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if checks.is_empty() {
            return Ok(checks);
        }
        let ids: Vec<i64> = checks.iter().map(|c| c.id).collect();
        for r in self
            .volumetry_query("book check rows", BOOK_CHECK_ROWS_SQL, &[&ids])
            .await?
        {
            let id: i64 = col(&r, "check_id")?;
            let row = BookCheckRow {
                month: col(&r, "month")?,
                kind: BookCheckKind::parse(col(&r, "kind")?)?,
                label: col(&r, "label")?,
                txn_types: col(&r, "txn_types")?,
                books_rows: unsigned(col(&r, "books_rows")?),
                books_amount: col(&r, "books_amount")?,
                raw_rows: col::<Option<i64>>(&r, "raw_rows")?.map(unsigned),
                raw_amount: col(&r, "raw_amount")?,
            };
            if let Some(c) = checks.iter_mut().find(|c| c.id == id) {
                c.rows.push(row);
            }
        }
        Ok(checks)
    }

    /// Records the start of a `reports` run; returns its id.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn start_report_run(&self, r: &NewReportRun<'_>) -> Result<i64, SinkError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO backfill.report_runs \
                 (realm_id, range_start, range_end, period, accounting_method, reports) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &r.realm_id,
                    &r.range_start,
                    &r.range_end,
                    &r.period,
                    &r.accounting_method,
                    &r.reports,
                ],
            )
            .await
            .map_err(db("recording a reports run"))?;
        row.try_get(0).map_err(db("recording a reports run"))
    }

    /// Records the end of `reports` run `id`.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn finish_report_run(
        &self,
        id: i64,
        end: &ReportRunEnd<'_>,
    ) -> Result<(), SinkError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE backfill.report_runs SET status = $2, periods_loaded = $3, \
                 periods_failed = $4, periods_left = $5, api_calls = $6, error = $7, \
                 finished_at = now() WHERE id = $1",
                &[
                    &id,
                    &end.status.as_str(),
                    &int(end.periods_loaded),
                    &int(end.periods_failed),
                    &int(end.periods_left),
                    &big(end.api_calls),
                    &end.error,
                ],
            )
            .await
            .map(|_| ())
            .map_err(db("finishing a reports run"))
    }
}

fn check_from_row(r: &Row) -> Result<BookCheck, SinkError> {
    Ok(BookCheck {
        id: col(r, "id")?,
        realm_id: col(r, "realm_id")?,
        range_start: col(r, "range_start")?,
        range_end: col(r, "range_end")?,
        accounting_method: col(r, "accounting_method")?,
        status: BookCheckStatus::parse(col(r, "status")?)?,
        months_planned: small(col(r, "months_planned")?),
        months_compared: small(col(r, "months_compared")?),
        compared_through: col(r, "compared_through")?,
        api_calls: unsigned(col(r, "api_calls")?),
        error: col(r, "error")?,
        started_at: col(r, "started_at")?,
        finished_at: col(r, "finished_at")?,
        last_load_at: col(r, "last_load_at")?,
        stale: col(r, "stale")?,
        rows: Vec::new(),
    })
}
