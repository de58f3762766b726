//! Idempotent page upsert into the raw layer (SPEC §6).

use std::collections::HashMap;

use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::error::SinkError;
use crate::ledger::{RunId, WindowId};
use crate::quarantine::quarantine;
use crate::sink::Sink;
use crate::table::RawTable;

/// Metadata stored with every row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMeta {
    /// The QBO company.
    pub realm_id: String,
    /// Start of the extraction window (inclusive).
    pub window_start: OffsetDateTime,
    /// End of the extraction window (exclusive).
    pub window_end: OffsetDateTime,
    /// 1-based page number within the window.
    pub page_number: i32,
    /// `MAXRESULTS` of the request.
    pub page_size: i32,
    /// The exact query text sent.
    pub request_payload: String,
}

/// The attempt a page belongs to. The page commits only while `window` is `running` and, for
/// each of `run` / `worker` that is given, while the window's attempt is that run's and its
/// lease that worker's: a worker that lost its lease (or a run whose attempt was taken over)
/// writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageOwner<'a> {
    /// The window whose progress takes the page.
    pub window: WindowId,
    /// The run whose attempt must be the window's current one.
    pub run: Option<RunId>,
    /// The worker that must hold the window's lease.
    pub worker: Option<&'a str>,
}

/// A record the caller could not decode, to keep in `raw.qb_rejects` (see
/// [`Sink::write_page`]).
#[derive(Debug, Clone, Copy)]
pub struct RejectRow<'a> {
    /// The record's QBO `Id`, when it could be read.
    pub record_id: Option<&'a str>,
    /// The record's text exactly as received.
    pub raw_text: &'a str,
    /// Why it cannot be stored (never a secret).
    pub reason: &'a str,
}

/// One page as the pipeline writes it, for [`Sink::write_page`].
#[derive(Debug, Clone, Copy)]
pub struct PageWrite<'a> {
    /// The raw table.
    pub table: RawTable,
    /// The QBO entity name, recorded with rejects (e.g. `Invoice`).
    pub entity: &'a str,
    /// Metadata stored with every row.
    pub meta: &'a PageMeta,
    /// The decoded records.
    pub rows: &'a [RawRow<'a>],
    /// Records that could not be decoded.
    pub rejects: &'a [RejectRow<'a>],
    /// The window attempt the page belongs to, if any.
    pub owner: Option<PageOwner<'a>>,
}

/// A record of a page that went to `raw.qb_rejects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its QBO `Id`, when it could be read.
    pub record_id: Option<String>,
    /// Why it could not be stored.
    pub reason: String,
}

/// What [`Sink::write_page`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// Rows written, unchanged and rejected.
    pub counts: UpsertCounts,
    /// The records quarantined, with their reasons.
    pub rejected: Vec<Rejected>,
}

/// A reject owned by the write (decode rejects, and rows found unstorable while writing).
pub(crate) struct OwnedReject {
    pub(crate) record_id: Option<String>,
    pub(crate) raw_text: String,
    pub(crate) reason: String,
}

/// One record of a page: its QBO id and the entity's JSON exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    /// QBO `Id`.
    pub id: &'a str,
    /// The entity object, raw JSON text (never parsed into floats).
    pub payload: &'a RawValue,
}

/// What an upsert did, per distinct id of the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    /// New ids.
    pub inserted: u64,
    /// Existing ids whose payload changed (row and metadata rewritten).
    pub updated: u64,
    /// Existing ids with the same payload (row untouched).
    pub unchanged: u64,
    /// Rows of the page dropped because their id appeared again later in the same page (the
    /// last occurrence wins).
    pub duplicates: u64,
    /// Records kept in `raw.qb_rejects` instead (see [`Sink::write_page`]).
    pub rejected: u64,
}

impl UpsertCounts {
    /// Distinct ids written or confirmed: `inserted + updated + unchanged`.
    #[must_use]
    pub fn distinct(&self) -> u64 {
        self.inserted + self.updated + self.unchanged
    }
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.inserted += rhs.inserted;
        self.updated += rhs.updated;
        self.unchanged += rhs.unchanged;
        self.duplicates += rhs.duplicates;
        self.rejected += rhs.rejected;
    }
}

/// The statement of a page (or of one chunk of a large page, see [`CHUNK_BYTES`]): lock the
/// window (when given, and only while the attempt that fetched the page still owns it: same
/// run, same lease owner) so the page and the window's progress commit together,
/// insert-or-update the deduplicated rows in id order (a stable lock order, so concurrent
/// overlapping pages cannot deadlock), skip rows whose payload is unchanged or older than the
/// stored version (`backfill.qbo_is_newer`: `SyncToken`, then `MetaData.LastUpdatedTime`), and
/// add the counts to the window.
///
/// Unchanged rows are filtered out *before* the `INSERT` (a primary-key lookup per row):
/// `ON CONFLICT DO UPDATE ... WHERE` alone would lock each conflicting row before testing the
/// `WHERE`, and a row lock writes a WAL record and dirties the heap page, so a re-run of an
/// unchanged range would rewrite the whole table at the next checkpoint. The `ON CONFLICT`
/// clause stays for rows that appear or change concurrently. The lookup is a scalar subquery,
/// which PostgreSQL runs per row through the index and never turns into a join (as `NOT
/// EXISTS` would be: a hash anti-join planned while the table is small scans the whole table
/// on every page), and it parses the payload only when the id exists. `unnest ... WITH
/// ORDINALITY` is known to the planner to come out in `ord` order, so the `ORDER BY` costs no
/// sort.
fn upsert_sql(table: RawTable) -> String {
    format!(
        r#"WITH win AS (
    SELECT id FROM backfill.windows
    WHERE id = $9::int8 AND status = 'running'
      AND ($13::int8 IS NULL OR run_id = $13::int8)
      AND ($14::text IS NULL OR lease_owner = $14::text)
    FOR UPDATE
),
input AS (
    SELECT t.id, t.payload, t.ord
    FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(id, payload, ord)
),
up AS (
    INSERT INTO {table} AS r (realm_id, id, payload, ingested_at_utc,
        extract_window_start_utc, extract_window_end_utc, page_number, page_size, request_payload)
    SELECT $1::text, i.id, i.payload::jsonb, now(), $4::timestamptz, $5::timestamptz,
        $6::int4, $7::int4, $8::text
    FROM input i
    WHERE ($9::int8 IS NULL OR EXISTS (SELECT 1 FROM win))
      AND NOT coalesce((
        SELECT o.payload = i.payload::jsonb FROM {table} o
        WHERE o.realm_id = $1::text AND o.id = i.id
      ), false)
    ORDER BY i.ord
    ON CONFLICT (realm_id, id) DO UPDATE SET
        payload = EXCLUDED.payload,
        ingested_at_utc = EXCLUDED.ingested_at_utc,
        extract_window_start_utc = EXCLUDED.extract_window_start_utc,
        extract_window_end_utc = EXCLUDED.extract_window_end_utc,
        page_number = EXCLUDED.page_number,
        page_size = EXCLUDED.page_size,
        request_payload = EXCLUDED.request_payload
    WHERE r.payload IS DISTINCT FROM EXCLUDED.payload
      AND NOT backfill.qbo_is_newer(r.payload, EXCLUDED.payload)
    RETURNING (r.xmax = 0) AS inserted
),
counts AS (
    SELECT count(*) FILTER (WHERE inserted) AS ins,
           count(*) FILTER (WHERE NOT inserted) AS upd
    FROM up
),
progress AS (
    UPDATE backfill.windows w SET
        pages = w.pages + $12::int4,
        rows = w.rows + $10::int8,
        inserted = w.inserted + c.ins,
        updated = w.updated + c.upd,
        unchanged = w.unchanged + ($11::int8 - c.ins - c.upd),
        updated_at = now()
    FROM counts c
    WHERE w.id IN (SELECT id FROM win)
    RETURNING w.id
)
SELECT c.ins, c.upd, EXISTS (SELECT 1 FROM progress) AS window_updated
FROM counts c"#,
        table = table.quoted()
    )
}

/// Whether the JSON text holds the escape `\u0000`, which `jsonb` cannot store.
fn has_nul_escape(json: &str) -> bool {
    // Fast path (every payload is scanned): no "u0000" at all, no such escape.
    if !json.contains("u0000") {
        return false;
    }
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2; // skip the escaped character (handles `\\u0000`, a literal backslash)
        } else {
            i += 1;
        }
    }
    false
}

/// Sorted, de-duplicated rows (last occurrence of an id wins).
fn dedupe<'a>(rows: &[RawRow<'a>]) -> Vec<RawRow<'a>> {
    let mut last: HashMap<&str, RawRow<'a>> = HashMap::with_capacity(rows.len());
    for row in rows {
        last.insert(row.id, *row);
    }
    let mut unique: Vec<RawRow<'a>> = last.into_values().collect();
    unique.sort_unstable_by(|a, b| a.id.cmp(b.id));
    unique
}

/// Pages with at least this many distinct rows run a cached prepared statement, shorter ones a
/// statement prepared for the call.
///
/// A cached statement gets a generic plan after five runs: that saves planning each page (a
/// custom plan takes the page's arrays as constants, ~15 ms for 1,000 rows), but a generic plan
/// made while the table is still tiny keeps its sequential scan for the unchanged-row check as
/// the table grows (measured: ~250 ms per statement late in a run). Short pages plan in about a
/// millisecond with the table's current size; by the time a connection has run five long
/// pages, the table is large enough that the generic plan probes the primary key.
const CACHED_STATEMENT_MIN_ROWS: usize = 256;

/// Payload bytes per statement. A statement's parameters are encoded into one contiguous
/// buffer, which tokio-postgres then copies into the connection's write buffer, and both
/// buffers keep their capacity for the life of the connection: a 4 MB page sent in one
/// statement costs ~16 MB of retained memory per connection. Pages larger than this are sent
/// as several statements in one transaction, which bounds that cost to ~4 × `CHUNK_BYTES` per
/// connection; smaller pages stay a single statement and a single round trip.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Splits sorted, deduplicated rows into consecutive chunks of at most [`CHUNK_BYTES`] of
/// payload (a single larger row is a chunk of its own). Chunks stay in id order, so the row
/// locks of a page are still taken in one global order.
fn chunks(rows: &[RawRow<'_>], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, row) in rows.iter().enumerate() {
        let len = row.payload.get().len();
        if i > start && bytes + len > max_bytes {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < rows.len() || out.is_empty() {
        out.push(start..rows.len());
    }
    out
}

/// What one chunk statement reported.
#[derive(Debug, Default, Clone, Copy)]
struct ChunkOutcome {
    inserted: i64,
    updated: i64,
    /// Whether the window (when given) was `running` and took the progress.
    window_updated: bool,
}

impl ChunkOutcome {
    fn add(&mut self, o: ChunkOutcome) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.window_updated = o.window_updated;
    }
}

/// The parameters every chunk statement of a page shares.
struct ChunkParams<'a> {
    meta: &'a PageMeta,
    owner: Option<PageOwner<'a>>,
    statement: &'a tokio_postgres::Statement,
}

impl ChunkParams<'_> {
    /// Runs the page statement for `ids`/`payloads` (sorted, distinct), adding `pages` and
    /// `extra` received rows (duplicates) to the window's progress.
    async fn run(
        &self,
        client: &impl tokio_postgres::GenericClient,
        ids: &[&str],
        payloads: &[&str],
        pages: i32,
        extra: usize,
    ) -> Result<ChunkOutcome, tokio_postgres::Error> {
        let received = count(ids.len() + extra);
        let distinct = count(ids.len());
        let window_id = self.owner.map(|o| o.window.get());
        let run = self.owner.and_then(|o| o.run).map(RunId::get);
        let worker = self.owner.and_then(|o| o.worker);
        let row = client
            .query_one(
                self.statement,
                &[
                    &self.meta.realm_id,
                    &ids,
                    &payloads,
                    &self.meta.window_start,
                    &self.meta.window_end,
                    &self.meta.page_number,
                    &self.meta.page_size,
                    &self.meta.request_payload,
                    &window_id,
                    &received,
                    &distinct,
                    &pages,
                    &run,
                    &worker,
                ],
            )
            .await?;
        Ok(ChunkOutcome {
            inserted: row.get(0),
            updated: row.get(1),
            window_updated: row.get(2),
        })
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether PostgreSQL refused a value of the statement (SQLSTATE class 22, "data exception":
/// e.g. a JSON text `jsonb` cannot hold), as opposed to the database failing.
fn is_data_exception(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("22"))
}

/// PostgreSQL's own words for a refused value, without the statement's text or parameters.
fn refusal(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("PostgreSQL refused it: {} ({detail})", db.message()),
            None => format!("PostgreSQL refused it: {}", db.message()),
        },
        None => "PostgreSQL refused it".to_owned(),
    }
}

/// The rows of a page, ready for the statements: sorted, distinct, and split into chunks.
struct Prepared<'a> {
    ids: Vec<&'a str>,
    payloads: Vec<&'a str>,
    parts: Vec<std::ops::Range<usize>>,
    duplicates: usize,
}

impl<'a> Prepared<'a> {
    fn new(rows: &[RawRow<'a>]) -> Self {
        let unique = dedupe(rows);
        Prepared {
            ids: unique.iter().map(|r| r.id).collect(),
            payloads: unique.iter().map(|r| r.payload.get()).collect(),
            parts: chunks(&unique, CHUNK_BYTES),
            duplicates: rows.len() - unique.len(),
        }
    }
}

impl Sink {
    /// Upserts one page into `table` in one statement (one round trip; a page over
    /// [`CHUNK_BYTES`] of payload: one transaction of several statements) and, when `window`
    /// is given, adds the page to that window's progress (pages + 1, rows + `rows.len()`, and
    /// the counts) in the same transaction, so a crash replays at most this page.
    ///
    /// Ids repeated within the page are written once (last wins). A row whose payload is
    /// unchanged, or older than the stored version (`SyncToken`, then
    /// `MetaData.LastUpdatedTime`), is not rewritten (no new tuple, `ingested_at_utc` kept).
    /// Payloads are stored from their raw text, so numbers keep every digit.
    ///
    /// This is the strict form: a record that cannot be stored fails the page. The pipeline
    /// writes with [`Sink::write_page`], which quarantines such records instead.
    ///
    /// # Errors
    /// [`SinkError::InvalidPayload`] (nothing written) for a payload holding `\u0000`;
    /// [`SinkError::InvalidTransition`] / [`SinkError::NotFound`] (nothing written) when the
    /// window is not `running`; [`SinkError::Pool`] / [`SinkError::Query`] otherwise.
    pub async fn upsert_page(
        &self,
        table: RawTable,
        meta: &PageMeta,
        rows: &[RawRow<'_>],
        window: Option<WindowId>,
    ) -> Result<UpsertCounts, SinkError> {
        if let Some(bad) = rows.iter().find(|r| has_nul_escape(r.payload.get())) {
            return Err(SinkError::InvalidPayload {
                id: bad.id.to_owned(),
                reason: "the JSON holds \\u0000, which PostgreSQL jsonb cannot store",
            });
        }
        let owner = window.map(|window| PageOwner {
            window,
            run: None,
            worker: None,
        });
        let page = PageWrite {
            table,
            entity: table.name(),
            meta,
            rows,
            rejects: &[],
            owner,
        };
        let prepared = Prepared::new(rows);
        let mut client = self.client().await?;
        let outcome = self
            .write_prepared(&mut client, &page, &prepared, &[])
            .await
            .map_err(|e| SinkError::query(page_context(&page), e))?;
        drop(client);
        self.page_outcome(&page, &prepared, prepared.ids.len(), outcome, 0)
            .await
    }

    /// Writes one page of the pipeline: like [`Sink::upsert_page`], but records that cannot be
    /// stored do not fail their page. The page's `rejects` (records the caller could not
    /// decode), rows holding `\u0000`, and rows PostgreSQL refuses (found row by row when the
    /// page's statement is refused) are kept in `raw.qb_rejects` with the reason, in the same
    /// transaction as the rest of the page and the window's progress (`rejected` + n).
    ///
    /// With `owner.run` / `owner.worker` set, the page commits only while that run's attempt
    /// holds the window: a worker that lost its lease writes nothing.
    ///
    /// # Errors
    /// [`SinkError::WindowNotRunning`] / [`SinkError::NotFound`] (nothing written) when the
    /// window is not running for this attempt; [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn write_page(&self, page: &PageWrite<'_>) -> Result<PageOutcome, SinkError> {
        let mut rejects: Vec<OwnedReject> = page
            .rejects
            .iter()
            .map(|r| OwnedReject {
                record_id: r.record_id.map(str::to_owned),
                raw_text: r.raw_text.to_owned(),
                reason: r.reason.to_owned(),
            })
            .collect();
        let storable: Vec<RawRow<'_>> = page
            .rows
            .iter()
            .filter(|r| {
                let bad = has_nul_escape(r.payload.get());
                if bad {
                    rejects.push(OwnedReject {
                        record_id: Some(r.id.to_owned()),
                        raw_text: r.payload.get().to_owned(),
                        reason: "the JSON holds \\u0000, which PostgreSQL jsonb cannot store"
                            .to_owned(),
                    });
                }
                !bad
            })
            .copied()
            .collect();
        let prepared = Prepared::new(&storable);
        let before = rejects.len();
        let mut client = self.client().await?;
        let outcome = match self
            .write_prepared(&mut client, page, &prepared, &rejects)
            .await
        {
            Ok(o) => o,
            Err(e) if is_data_exception(&e) => {
                tracing::debug!(
                    table = %page.table,
                    page = page.meta.page_number,
                    "page_refused_row_by_row"
                );
                self.write_row_by_row(&mut client, page, &prepared, &mut rejects)
                    .await
                    .map_err(|e| SinkError::query(page_context(page), e))?
            }
            Err(e) => return Err(SinkError::query(page_context(page), e)),
        };
        drop(client);
        // Rows PostgreSQL refused were distinct rows of the page, not written.
        let stored = prepared.ids.len() - (rejects.len() - before);
        let counts = self
            .page_outcome(page, &prepared, stored, outcome, rejects.len())
            .await?;
        Ok(PageOutcome {
            counts,
            rejected: rejects
                .into_iter()
                .map(|r| Rejected {
                    record_id: r.record_id,
                    reason: r.reason,
                })
                .collect(),
        })
    }

    /// The counts of a written page, or the reason its window did not take it.
    async fn page_outcome(
        &self,
        page: &PageWrite<'_>,
        prepared: &Prepared<'_>,
        stored: usize,
        outcome: ChunkOutcome,
        rejected: usize,
    ) -> Result<UpsertCounts, SinkError> {
        if let Some(owner) = page.owner
            && !outcome.window_updated
        {
            return Err(self.ledger().window_not_running(owner.window).await);
        }
        let inserted = u64::try_from(outcome.inserted).unwrap_or_default();
        let updated = u64::try_from(outcome.updated).unwrap_or_default();
        let counts = UpsertCounts {
            inserted,
            updated,
            unchanged: (stored as u64).saturating_sub(inserted + updated),
            duplicates: prepared.duplicates as u64,
            rejected: rejected as u64,
        };
        tracing::trace!(
            table = %page.table,
            page = page.meta.page_number,
            inserted = counts.inserted,
            updated = counts.updated,
            unchanged = counts.unchanged,
            "page_upserted"
        );
        Ok(counts)
    }

    /// The page's statements: one autocommit statement when the page is one chunk with
    /// nothing to quarantine, else one transaction of its chunks and its rejects.
    async fn write_prepared(
        &self,
        client: &mut deadpool_postgres::Client,
        page: &PageWrite<'_>,
        p: &Prepared<'_>,
        rejects: &[OwnedReject],
    ) -> Result<ChunkOutcome, tokio_postgres::Error> {
        let statement = self.page_statement(client, page.table, p.ids.len()).await?;
        let chunk = ChunkParams {
            meta: page.meta,
            owner: page.owner,
            statement: &statement,
        };
        if let ([only], true) = (p.parts.as_slice(), rejects.is_empty()) {
            let ids = &p.ids[only.clone()];
            let payloads = &p.payloads[only.clone()];
            return chunk.run(&***client, ids, payloads, 1, p.duplicates).await;
        }
        let tx = client.transaction().await?;
        let mut total = ChunkOutcome::default();
        let last = p.parts.len() - 1;
        for (i, part) in p.parts.iter().enumerate() {
            // The window's progress takes the page (pages + 1, and the duplicates among its
            // rows) with the last chunk.
            let (pages, extra) = if i == last { (1, p.duplicates) } else { (0, 0) };
            let ids = &p.ids[part.clone()];
            let payloads = &p.payloads[part.clone()];
            let done = chunk.run(&*tx, ids, payloads, pages, extra).await?;
            total.add(done);
            if page.owner.is_some() && !done.window_updated {
                // Not this attempt's window any more: keep nothing (the dropped transaction
                // rolls back); the caller says why.
                return Ok(total);
            }
        }
        if !rejects.is_empty() {
            quarantine(&*tx, page, rejects).await?;
        }
        tx.commit().await?;
        Ok(total)
    }

    /// The page again, one row per savepoint, after PostgreSQL refused the page's statement:
    /// the rows it refuses join `rejects`; the rest, the page's progress and the rejects
    /// commit together.
    async fn write_row_by_row(
        &self,
        client: &mut deadpool_postgres::Client,
        page: &PageWrite<'_>,
        p: &Prepared<'_>,
        rejects: &mut Vec<OwnedReject>,
    ) -> Result<ChunkOutcome, tokio_postgres::Error> {
        let statement = self.page_statement(client, page.table, 0).await?;
        let chunk = ChunkParams {
            meta: page.meta,
            owner: page.owner,
            statement: &statement,
        };
        let mut tx = client.transaction().await?;
        let mut total = ChunkOutcome::default();
        for (id, payload) in p.ids.iter().zip(&p.payloads) {
            let sp = tx.savepoint("qb_row").await?;
            match chunk.run(&*sp, &[id], &[payload], 0, 0).await {
                Ok(done) if page.owner.is_some() && !done.window_updated => {
                    return Ok(ChunkOutcome::default());
                }
                Ok(done) => {
                    sp.commit().await?;
                    total.add(done);
                }
                Err(e) if is_data_exception(&e) => {
                    sp.rollback().await?;
                    rejects.push(OwnedReject {
                        record_id: Some((*id).to_owned()),
                        raw_text: (*payload).to_owned(),
                        reason: refusal(&e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        // The page itself: pages + 1 (and its duplicates), whatever was refused.
        let done = chunk.run(&*tx, &[], &[], 1, p.duplicates).await?;
        total.add(done);
        if page.owner.is_some() && !done.window_updated {
            return Ok(total);
        }
        quarantine(&*tx, page, rejects).await?;
        tx.commit().await?;
        Ok(total)
    }

    async fn page_statement(
        &self,
        client: &deadpool_postgres::Client,
        table: RawTable,
        rows: usize,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        let sql = upsert_sql(table);
        if rows >= CACHED_STATEMENT_MIN_ROWS {
            client.prepare_cached(&sql).await
        } else {
            client.prepare(&sql).await
        }
    }
}

fn page_context(page: &PageWrite<'_>) -> String {
    format!(
        "upserting page {} into {}",
        page.meta.page_number, page.table
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn nul_escape_detection() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"x\\u0000y"}"#)); // literal backslash + "u0000"
        assert!(has_nul_escape(r#"{"a":"x\\\u0000"}"#));
        assert!(!has_nul_escape(
            r#"{"a":"\u00001"}"#.replace("0000", "0001").as_str()
        ));
        assert!(!has_nul_escape(r#"{"a":"\""}"#));
        assert!(!has_nul_escape(r#"{"a":"\\"}"#));
    }

    #[test]
    fn dedupe_keeps_last_and_sorts() {
        let (a1, b, a2) = (raw("1"), raw("2"), raw("3"));
        let rows = [
            RawRow {
                id: "a",
                payload: &a1,
            },
            RawRow {
                id: "b",
                payload: &b,
            },
            RawRow {
                id: "a",
                payload: &a2,
            },
        ];
        let unique = dedupe(&rows);
        assert_eq!(unique.len(), 2);
        assert_eq!(unique[0].id, "a");
        assert_eq!(unique[0].payload.get(), "3");
        assert_eq!(unique[1].id, "b");
    }

    #[test]
    fn chunks_cover_every_row_once_in_order_within_the_byte_budget() {
        let payloads: Vec<Box<RawValue>> = [4, 4, 4, 9, 1, 1]
            .iter()
            .map(|&n: &usize| raw(&"7".repeat(n)))
            .collect();
        let ids = ["a", "b", "c", "d", "e", "f"];
        let rows: Vec<RawRow<'_>> = ids
            .iter()
            .zip(&payloads)
            .map(|(id, payload)| RawRow { id, payload })
            .collect();
        // 8 bytes a chunk; the 9-byte row is a chunk of its own.
        assert_eq!(chunks(&rows, 8), vec![0..2, 2..3, 3..4, 4..6]);
        assert_eq!(chunks(&rows, 1 << 20), vec![0..6]);
        assert_eq!(chunks(&rows, 0), vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(chunks(&[], 8), vec![0..0]);
    }

    #[test]
    fn sql_quotes_the_table() {
        let sql = upsert_sql(RawTable::INVOICES);
        assert!(sql.contains("INSERT INTO \"raw\".\"qb_invoices\" AS r"));
    }

    #[test]
    fn counts_add_up() {
        let mut total = UpsertCounts::default();
        total += UpsertCounts {
            inserted: 2,
            updated: 1,
            unchanged: 3,
            duplicates: 1,
            rejected: 2,
        };
        total += UpsertCounts {
            inserted: 1,
            ..UpsertCounts::default()
        };
        assert_eq!(total.distinct(), 7);
        assert_eq!(total.duplicates, 1);
        assert_eq!(total.rejected, 2);
    }
}
