//! Idempotent page upsert into the raw layer (SPEC §6): the types of a page write and the
//! page statement's SQL. The write paths that run it (chunking, the cached statement, the
//! row-by-row fallback that quarantines records) are in [`crate::write`].

use time::OffsetDateTime;

use crate::ledger::{RunId, WindowId};
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
/// [`Sink::write_page`](crate::Sink::write_page)).
#[derive(Debug, Clone, Copy)]
pub struct RejectRow<'a> {
    /// The record's QBO `Id`, when it could be read.
    pub record_id: Option<&'a str>,
    /// The record's text exactly as received.
    pub raw_text: &'a str,
    /// Why it cannot be stored (never a secret).
    pub reason: &'a str,
}

/// One page as the pipeline writes it, for [`Sink::write_page`](crate::Sink::write_page).
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

/// What [`Sink::write_page`](crate::Sink::write_page) did.
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
    /// The entity object, its JSON text exactly as received (never parsed into floats; an
    /// invalid one is refused by PostgreSQL and quarantined by [`Sink::write_page`](crate::Sink::write_page)).
    pub payload: &'a str,
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
    /// Records kept in `raw.qb_rejects` instead (see
    /// [`Sink::write_page`](crate::Sink::write_page)).
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

/// The statement of a page (or of one chunk of a large page, see
/// [`CHUNK_BYTES`](crate::write::CHUNK_BYTES)): lock the
/// window (when given, and only while the attempt that fetched the page still owns it: same
/// run, same lease owner) so the page and the window's progress commit together,
/// insert-or-update the deduplicated rows in id order (a stable lock order, so concurrent
/// overlapping pages cannot deadlock), skip rows whose payload is unchanged or older than the
/// stored version (`backfill.qbo_is_newer`: `SyncToken`, then `MetaData.LastUpdatedTime`), and
/// add the counts to the window. A tombstoned row (`deleted_at_utc` set, see
/// [`Sink::tombstone`](crate::Sink::tombstone)) that comes back is rewritten with its
/// tombstone cleared, even with the same payload, and counts as an update.
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
pub(crate) fn upsert_sql(table: RawTable) -> String {
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
        SELECT o.payload = i.payload::jsonb AND o.deleted_at_utc IS NULL FROM {table} o
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
        request_payload = EXCLUDED.request_payload,
        deleted_at_utc = NULL,
        deleted_stub = NULL
    WHERE (r.payload IS DISTINCT FROM EXCLUDED.payload OR r.deleted_at_utc IS NOT NULL)
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
pub(crate) fn has_nul_escape(json: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
