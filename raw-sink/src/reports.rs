//! QBO report snapshots (`raw.qb_reports`) and the reports ledger
//! (`backfill.report_periods`), issue 17.
//!
//! Invariants: one row per (realm, report, parameters, period); storing the same report again
//! writes nothing unless its payload changed, ignoring `Header.Time` (the moment QBO rendered
//! it, different on every answer); a period is marked `done` in the same transaction that
//! stores its snapshot, so a crash never leaves a `done` period without its report. This
//! module knows nothing of QBO's report shape beyond that one field.

use time::Date;

use crate::error::SinkError;
use crate::sink::Sink;

/// Which snapshot: company, report, parameters other than the period, period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportKey<'a> {
    /// The company.
    pub realm_id: &'a str,
    /// QBO's report name (`ProfitAndLoss`).
    pub report_name: &'a str,
    /// The canonical text of the other parameters (`accounting_method=Accrual`).
    pub params: &'a str,
    /// First day of the period.
    pub period_start: Date,
    /// Last day of the period (inclusive).
    pub period_end: Date,
}

/// What [`Sink::store_report`] did with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportWrite {
    /// A new row.
    Inserted,
    /// The stored payload differed and was replaced.
    Updated,
    /// The same payload was stored already: nothing written to `raw.qb_reports`.
    Unchanged,
}

impl ReportWrite {
    /// The ledger's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inserted => "inserted",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

/// The snapshot upsert: updates only when the payload (without `Header.Time`) differs.
pub const STORE_REPORT_SQL: &str = r#"INSERT INTO raw.qb_reports AS r
    (realm_id, report_name, params, period_start, period_end, request, payload, fetched_at_utc)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, now())
ON CONFLICT (realm_id, report_name, params, period_start, period_end) DO UPDATE
    SET payload = EXCLUDED.payload, request = EXCLUDED.request,
        fetched_at_utc = EXCLUDED.fetched_at_utc, changes = r.changes + 1
    WHERE (r.payload #- '{Header,Time}') IS DISTINCT FROM (EXCLUDED.payload #- '{Header,Time}')
RETURNING (xmax = 0) AS inserted"#;

const MARK_PERIOD_SQL: &str = r#"INSERT INTO backfill.report_periods AS p
    (realm_id, report_name, params, period_start, period_end, status, outcome, api_calls, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (realm_id, report_name, params, period_start, period_end) DO UPDATE
    SET status = EXCLUDED.status, outcome = COALESCE(EXCLUDED.outcome, p.outcome),
        api_calls = p.api_calls + EXCLUDED.api_calls, error = EXCLUDED.error, updated_at = now()"#;

/// A stored snapshot, for [`Sink::reports_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// First day of the period.
    pub period_start: Date,
    /// Last day of the period.
    pub period_end: Date,
    /// The report's JSON text (as PostgreSQL renders the stored `jsonb`).
    pub payload: String,
}

fn db(ctx: &'static str) -> impl Fn(tokio_postgres::Error) -> SinkError {
    move |e| SinkError::query(ctx, e)
}

impl Sink {
    /// Stores a report snapshot (`payload` is its JSON text, `request` the query string as
    /// sent) and marks its period `done` in the ledger with the `api_calls` it took, in one
    /// transaction.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`] (also for a payload that is not JSON).
    pub async fn store_report(
        &self,
        key: &ReportKey<'_>,
        request: &str,
        payload: &str,
        api_calls: u64,
    ) -> Result<ReportWrite, SinkError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(db("starting a report's transaction"))?;
        let row = tx
            .query_opt(
                STORE_REPORT_SQL,
                &[
                    &key.realm_id,
                    &key.report_name,
                    &key.params,
                    &key.period_start,
                    &key.period_end,
                    &request,
                    &payload,
                ],
            )
            .await
            .map_err(db("storing a report snapshot"))?;
        let outcome = match row {
            None => ReportWrite::Unchanged,
            Some(r) => {
                let inserted: bool = r.try_get(0).map_err(db("storing a report snapshot"))?;
                if inserted {
                    ReportWrite::Inserted
                } else {
                    ReportWrite::Updated
                }
            }
        };
        mark(&tx, key, "done", Some(outcome.as_str()), api_calls, None).await?;
        tx.commit()
            .await
            .map_err(db("committing a report snapshot"))?;
        Ok(outcome)
    }

    /// Marks a report period `failed` with the error's text and the `api_calls` spent on it.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn report_period_failed(
        &self,
        key: &ReportKey<'_>,
        api_calls: u64,
        error: &str,
    ) -> Result<(), SinkError> {
        let client = self.client().await?;
        mark(&client, key, "failed", None, api_calls, Some(error)).await
    }

    /// The periods of a report (company, name, parameters) already `done`, oldest first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn done_report_periods(
        &self,
        realm_id: &str,
        report_name: &str,
        params: &str,
    ) -> Result<Vec<(Date, Date)>, SinkError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT period_start, period_end FROM backfill.report_periods \
                 WHERE realm_id = $1 AND report_name = $2 AND params = $3 AND status = 'done' \
                 ORDER BY period_start, period_end",
                &[&realm_id, &report_name, &params],
            )
            .await
            .map_err(db("reading the reports ledger"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db("reading the reports ledger"))
    }

    /// The stored snapshots of a report (company, name, parameters) whose period lies within
    /// `from..=to`, oldest first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn reports_in(
        &self,
        realm_id: &str,
        report_name: &str,
        params: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<StoredReport>, SinkError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT period_start, period_end, payload::text FROM raw.qb_reports \
                 WHERE realm_id = $1 AND report_name = $2 AND params = $3 \
                 AND period_start >= $4 AND period_end <= $5 \
                 ORDER BY period_start, period_end",
                &[&realm_id, &report_name, &params, &from, &to],
            )
            .await
            .map_err(db("reading report snapshots"))?;
        rows.iter()
            .map(|r| {
                Ok(StoredReport {
                    period_start: r.try_get(0)?,
                    period_end: r.try_get(1)?,
                    payload: r.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db("reading report snapshots"))
    }
}

async fn mark<C: deadpool_postgres::GenericClient + Sync>(
    c: &C,
    key: &ReportKey<'_>,
    status: &str,
    outcome: Option<&str>,
    api_calls: u64,
    error: Option<&str>,
) -> Result<(), SinkError> {
    let calls = i64::try_from(api_calls).unwrap_or(i64::MAX);
    c.execute(
        MARK_PERIOD_SQL,
        &[
            &key.realm_id,
            &key.report_name,
            &key.params,
            &key.period_start,
            &key.period_end,
            &status,
            &outcome,
            &calls,
            &error,
        ],
    )
    .await
    .map(|_| ())
    .map_err(db("writing the reports ledger"))
}
