//! `raw.qb_rejects`: records QBO returned that cannot be stored in their raw table.
//!
//! Invariant: a reject is written in the transaction of its page, under the same window check
//! as the page's rows, and a window's rejects are those of its current attempt (an attempt's
//! start clears the window's earlier ones, see `Ledger::start_claimed_attempt`).

use time::OffsetDateTime;

use crate::error::SinkError;
use crate::ledger::{Ledger, RunId, col};
use crate::upsert::{OwnedReject, PageWrite};

/// Adds `rejects` to `raw.qb_rejects` for the page's window (a text already recorded for the
/// window is not added twice) and their number to the window's `rejected`.
pub(crate) async fn quarantine(
    client: &impl tokio_postgres::GenericClient,
    page: &PageWrite<'_>,
    rejects: &[OwnedReject],
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Option<&str>> = rejects.iter().map(|r| r.record_id.as_deref()).collect();
    let texts: Vec<&str> = rejects.iter().map(|r| r.raw_text.as_str()).collect();
    let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
    let window = page.owner.map(|o| o.window.get());
    let run = page.owner.and_then(|o| o.run).map(RunId::get);
    client
        .execute(
            "WITH added AS ( \
                 INSERT INTO raw.qb_rejects (realm_id, entity, record_id, raw_text, reason, \
                     window_id, window_start, window_end, request_payload, page_number, run_id) \
                 SELECT $1::text, $2::text, t.rid, t.raw, t.reason, $6::int8, $7::timestamptz, \
                     $8::timestamptz, $9::text, $10::int4, $11::int8 \
                 FROM unnest($3::text[], $4::text[], $5::text[]) AS t(rid, raw, reason) \
                 ON CONFLICT (realm_id, entity, coalesce(window_id, 0), md5(raw_text)) DO NOTHING \
                 RETURNING 1 \
             ) \
             UPDATE backfill.windows SET rejected = rejected + (SELECT count(*) FROM added), \
                 updated_at = now() \
             WHERE id = $6::int8",
            &[
                &page.meta.realm_id,
                &page.entity,
                &ids,
                &texts,
                &reasons,
                &window,
                &page.meta.window_start,
                &page.meta.window_end,
                &page.meta.request_payload,
                &page.meta.page_number,
                &run,
            ],
        )
        .await?;
    Ok(())
}

/// A row of `raw.qb_rejects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRecord {
    /// The QBO company.
    pub realm_id: String,
    /// The QBO entity (e.g. `Invoice`).
    pub entity: String,
    /// The record's `Id`, when it could be read.
    pub record_id: Option<String>,
    /// Why it could not be stored.
    pub reason: String,
    /// The window it was read in.
    pub window_start: OffsetDateTime,
    /// End of that window.
    pub window_end: OffsetDateTime,
    /// The exact text received.
    pub raw_text: String,
}

impl Ledger {
    /// The rejects of `entity` in `realm_id`, oldest window first.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn rejects(
        &self,
        realm_id: &str,
        entity: &str,
    ) -> Result<Vec<RejectRecord>, SinkError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT realm_id, entity, record_id, reason, window_start, window_end, raw_text \
                 FROM raw.qb_rejects WHERE realm_id = $1 AND entity = $2 \
                 ORDER BY window_start, record_id NULLS LAST, id",
                &[&realm_id, &entity],
            )
            .await
            .map_err(|e| SinkError::query("reading raw.qb_rejects", e))?;
        rows.iter()
            .map(|r| {
                Ok(RejectRecord {
                    realm_id: col(r, "realm_id")?,
                    entity: col(r, "entity")?,
                    record_id: col(r, "record_id")?,
                    reason: col(r, "reason")?,
                    window_start: col(r, "window_start")?,
                    window_end: col(r, "window_end")?,
                    raw_text: col(r, "raw_text")?,
                })
            })
            .collect()
    }
}
