//! Writing pages into the raw layer: [`Sink::upsert_page`] (strict) and [`Sink::write_page`]
//! (quarantining records PostgreSQL refuses), the preparation of a page's rows (sorted,
//! distinct, in chunks of at most [`CHUNK_BYTES`]) and the row-by-row fallback.
//!
//! Invariants: a page, its quarantined records and its window's progress commit in one
//! transaction, and (with an owner) only while that attempt holds the window; rows are written
//! sorted and distinct by id (one global lock order, so overlapping pages cannot deadlock); a
//! page is one statement unless its payload exceeds [`CHUNK_BYTES`] or PostgreSQL refuses one
//! of its records (then its rows are written one by one and the refused ones quarantined).

use std::collections::HashMap;

use crate::error::SinkError;
use crate::ledger::{RunId, WindowId};
use crate::quarantine::quarantine;
use crate::sink::Sink;
use crate::table::RawTable;
use crate::upsert::{
    OwnedReject, PageMeta, PageOutcome, PageOwner, PageWrite, RawRow, Rejected, UpsertCounts,
    has_nul_escape, upsert_sql,
};

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
        let len = row.payload.len();
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
            payloads: unique.iter().map(|r| r.payload).collect(),
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
        if let Some(bad) = rows.iter().find(|r| has_nul_escape(r.payload)) {
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
                let bad = has_nul_escape(r.payload);
                if bad {
                    rejects.push(OwnedReject {
                        record_id: Some(r.id.to_owned()),
                        raw_text: r.payload.to_owned(),
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
    use serde_json::value::RawValue;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn dedupe_keeps_last_and_sorts() {
        let (a1, b, a2) = (raw("1"), raw("2"), raw("3"));
        let rows = [
            RawRow {
                id: "a",
                payload: a1.get(),
            },
            RawRow {
                id: "b",
                payload: b.get(),
            },
            RawRow {
                id: "a",
                payload: a2.get(),
            },
        ];
        let unique = dedupe(&rows);
        assert_eq!(unique.len(), 2);
        assert_eq!(unique[0].id, "a");
        assert_eq!(unique[0].payload, "3");
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
            .map(|(id, payload)| RawRow {
                id,
                payload: payload.get(),
            })
            .collect();
        // 8 bytes a chunk; the 9-byte row is a chunk of its own.
        assert_eq!(chunks(&rows, 8), vec![0..2, 2..3, 3..4, 4..6]);
        assert_eq!(chunks(&rows, 1 << 20), vec![0..6]);
        assert_eq!(chunks(&rows, 0), vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(chunks(&[], 8), vec![0..0]);
    }
}
