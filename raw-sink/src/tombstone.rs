//! Tombstones: marking raw rows whose record QBO deleted, never deleting them (issue 14).
//!
//! Invariants: a tombstone only ever sets `deleted_at_utc` / `deleted_stub` on a live row (a
//! row already tombstoned keeps its first mark, so applying the same deletions again writes
//! nothing); the payload is kept; the upsert of a returned record clears the mark
//! ([`crate::upsert`]). Ids and times are bound as arrays; the table comes from [`RawTable`].

use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::error::SinkError;
use crate::sink::Sink;
use crate::table::RawTable;

/// One record to mark deleted, for [`Sink::tombstone`].
#[derive(Debug, Clone, Copy)]
pub struct Tombstone<'a> {
    /// The record's QBO `Id`.
    pub id: &'a str,
    /// When QBO deleted it (the CDC stub's `MetaData.LastUpdatedTime`), or when the deletion
    /// was found (reconcile) when QBO does not say.
    pub deleted_at: OffsetDateTime,
    /// The CDC stub exactly as it came (`{"status":"Deleted","Id":..}`), when there is one.
    pub stub: Option<&'a RawValue>,
}

/// What [`Sink::tombstone`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TombstoneOutcome {
    /// Ids whose live row got its tombstone now, sorted.
    pub marked: Vec<String>,
    /// Ids given that were already tombstoned (nothing written for them).
    pub already: u64,
    /// Ids given that have no row in the table (never loaded: nothing to mark).
    pub absent: u64,
}

/// The tombstone statement: live rows among the given ids get the mark; the other ids are
/// classified without writing.
fn tombstone_sql(table: RawTable) -> String {
    format!(
        r#"WITH input AS (
    SELECT d.id, d.at, d.stub
    FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS d(id, at, stub)
),
marked AS (
    UPDATE {table} r SET deleted_at_utc = i.at, deleted_stub = i.stub::jsonb
    FROM input i
    WHERE r.realm_id = $1::text AND r.id = i.id AND r.deleted_at_utc IS NULL
    RETURNING r.id
)
SELECT i.id,
       EXISTS (SELECT 1 FROM marked m WHERE m.id = i.id) AS marked,
       EXISTS (SELECT 1 FROM {table} o WHERE o.realm_id = $1::text AND o.id = i.id) AS stored
FROM input i
ORDER BY i.id"#,
        table = table.quoted()
    )
}

impl Sink {
    /// Marks the rows of `ids` in `table` (company `realm_id`) deleted, in one statement,
    /// keeping their payload. Rows already tombstoned are left as they are; ids without a row
    /// are counted as `absent`. Ids repeated in `rows` count once (the first occurrence wins).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn tombstone(
        &self,
        table: RawTable,
        realm_id: &str,
        rows: &[Tombstone<'_>],
    ) -> Result<TombstoneOutcome, SinkError> {
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        let unique: Vec<&Tombstone<'_>> = rows.iter().filter(|r| seen.insert(r.id)).collect();
        if unique.is_empty() {
            return Ok(TombstoneOutcome::default());
        }
        let ids: Vec<&str> = unique.iter().map(|r| r.id).collect();
        let times: Vec<OffsetDateTime> = unique.iter().map(|r| r.deleted_at).collect();
        let stubs: Vec<Option<&str>> = unique.iter().map(|r| r.stub.map(RawValue::get)).collect();
        let ctx = || format!("tombstoning {} rows of {table}", ids.len());
        let client = self.client().await?;
        let found = client
            .query(&tombstone_sql(table), &[&realm_id, &ids, &times, &stubs])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let mut out = TombstoneOutcome::default();
        for row in &found {
            let id: String = row.try_get(0).map_err(|e| SinkError::query(ctx(), e))?;
            let marked: bool = row.try_get(1).map_err(|e| SinkError::query(ctx(), e))?;
            let stored: bool = row.try_get(2).map_err(|e| SinkError::query(ctx(), e))?;
            if marked {
                out.marked.push(id);
            } else if stored {
                out.already += 1;
            } else {
                out.absent += 1;
            }
        }
        Ok(out)
    }

    /// The ids of `table`'s live rows (`deleted_at_utc IS NULL`) of company `realm_id` whose
    /// `MetaData.CreateTime` is in `[from, to)`, sorted: what reconcile compares with QBO.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn live_ids_created_in(
        &self,
        table: RawTable,
        realm_id: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<String>, SinkError> {
        let sql = format!(
            "SELECT id FROM {table} WHERE realm_id = $1 AND deleted_at_utc IS NULL \
             AND (payload->'MetaData'->>'CreateTime')::timestamptz >= $2 \
             AND (payload->'MetaData'->>'CreateTime')::timestamptz < $3 ORDER BY id",
            table = table.quoted()
        );
        let client = self.client().await?;
        let rows = client
            .query(&sql, &[&realm_id, &from, &to])
            .await
            .map_err(|e| SinkError::query(format!("reading live ids of {table}"), e))?;
        rows.iter()
            .map(|r| {
                r.try_get(0)
                    .map_err(|e| SinkError::query(format!("reading live ids of {table}"), e))
            })
            .collect()
    }

    /// The earliest and the latest `MetaData.CreateTime` among `table`'s live rows of company
    /// `realm_id` (`None` when it has none): the span reconcile compares.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn live_created_span(
        &self,
        table: RawTable,
        realm_id: &str,
    ) -> Result<Option<(OffsetDateTime, OffsetDateTime)>, SinkError> {
        let sql = format!(
            "SELECT min((payload->'MetaData'->>'CreateTime')::timestamptz), \
                    max((payload->'MetaData'->>'CreateTime')::timestamptz) FROM {table} \
             WHERE realm_id = $1 AND deleted_at_utc IS NULL",
            table = table.quoted()
        );
        let ctx = || format!("reading the span of the live rows of {table}");
        let client = self.client().await?;
        let row = client
            .query_one(&sql, &[&realm_id])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let first: Option<OffsetDateTime> =
            row.try_get(0).map_err(|e| SinkError::query(ctx(), e))?;
        let last: Option<OffsetDateTime> =
            row.try_get(1).map_err(|e| SinkError::query(ctx(), e))?;
        Ok(first.zip(last))
    }

    /// The `MetaData.CreateTime` of every live row (`deleted_at_utc IS NULL`) of company
    /// `realm_id` in `table`, oldest first: what reconcile splits a differing range by (one
    /// read, then counts and medians of any range come from memory).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn live_created_times(
        &self,
        table: RawTable,
        realm_id: &str,
    ) -> Result<Vec<OffsetDateTime>, SinkError> {
        let sql = format!(
            "SELECT c FROM (SELECT (payload->'MetaData'->>'CreateTime')::timestamptz AS c \
             FROM {table} WHERE realm_id = $1 AND deleted_at_utc IS NULL) s \
             WHERE c IS NOT NULL ORDER BY c",
            table = table.quoted()
        );
        let ctx = || format!("reading the creation times of the live rows of {table}");
        let client = self.client().await?;
        let rows = client
            .query(&sql, &[&realm_id])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(|e| SinkError::query(ctx(), e)))
            .collect()
    }

    /// Live rows (`deleted_at_utc IS NULL`) of company `realm_id` in `table` whose
    /// `MetaData.CreateTime` is in `[from, to)`.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn live_count_created_in(
        &self,
        table: RawTable,
        realm_id: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<u64, SinkError> {
        let sql = format!(
            "SELECT count(*) FROM {table} WHERE realm_id = $1 AND deleted_at_utc IS NULL \
             AND (payload->'MetaData'->>'CreateTime')::timestamptz >= $2 \
             AND (payload->'MetaData'->>'CreateTime')::timestamptz < $3",
            table = table.quoted()
        );
        let client = self.client().await?;
        let row = client
            .query_one(&sql, &[&realm_id, &from, &to])
            .await
            .map_err(|e| SinkError::query(format!("counting live rows of {table}"), e))?;
        let n: i64 = row
            .try_get(0)
            .map_err(|e| SinkError::query(format!("counting live rows of {table}"), e))?;
        Ok(u64::try_from(n).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_marks_only_live_rows_of_the_quoted_table() {
        let sql = tombstone_sql(RawTable::INVOICES);
        assert!(sql.contains("UPDATE \"raw\".\"qb_invoices\" r"));
        assert!(sql.contains("r.deleted_at_utc IS NULL"));
    }
}
