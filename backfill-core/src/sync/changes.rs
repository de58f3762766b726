//! The changed records of a sync: `SELECT * FROM E WHERE MetaData.LastUpdatedTime >= cursor
//! ORDERBY MetaData.LastUpdatedTime` pages, upserted through [`Sink::write_page`].
//!
//! Invariant: paging is by key, not by offset: each query starts at the newest
//! `LastUpdatedTime` already read (STARTPOSITION 1), so a record changed while the sync reads
//! moves to the end of the order and is read again in its new version instead of shifting the
//! pages and making another record skipped (offset paging's pitfall). Records already written
//! by this sync with the same `LastUpdatedTime` are not written again. Records sharing the
//! newest timestamp of a page are skipped by offset within that timestamp (QBO orders ties
//! stably; should it not, the next sync's overlap reads them again). Only an empty page, or
//! one holding nothing new, ends the load (a short page alone proves nothing).

use std::collections::HashMap;

use qbo_client::{Op, Order, Query, Record, RecordReject};
use raw_sink::{PageMeta, PageWrite, RawRow, RejectRow, Sink, SyncTally};
use time::OffsetDateTime;

use super::{Calls, SyncConfig, qbo};
use crate::Error;
use crate::entity::EntityInfo;

/// Loads every record of the entity changed at or after `from`, moving `newest` (the changes
/// mark) to the newest `LastUpdatedTime` written as each page is: on an error or a stop it
/// holds what was applied (every change older than it is written, pages being in
/// `LastUpdatedTime` order).
///
/// # Errors
/// QBO and database errors; [`Error::SyncStopped`].
pub(crate) async fn load(
    calls: &Calls<'_>,
    sink: &Sink,
    cfg: &SyncConfig,
    info: EntityInfo,
    from: OffsetDateTime,
    newest: &mut OffsetDateTime,
    tally: &mut SyncTally,
) -> Result<(), Error> {
    let client = calls.client();
    let size = cfg.page_size.clamp(1, qbo_client::MAX_RESULTS_LIMIT);
    let mut cursor = from;
    let mut start = 1u32;
    let mut written: HashMap<String, OffsetDateTime> = HashMap::new();
    let mut page_number = 0i32;
    loop {
        let mut q = Query::select(info.name)
            .filter("MetaData.LastUpdatedTime", Op::Ge, cursor)
            .order_by("MetaData.LastUpdatedTime", Order::Asc)
            .start_position(start)
            .max_results(size);
        if info.name_list {
            q = q.include_inactive();
        }
        let q = q.build().map_err(|e| qbo(e.into()))?;
        let page = calls.call(client.query_page(&q)).await?;
        let fresh: Vec<&Record> = page
            .records
            .iter()
            .filter(|r| written.get(&r.id) != Some(&r.last_updated_time))
            .collect();
        let rejects: Vec<&RecordReject> = page
            .rejects
            .iter()
            .filter(|r| r.id.as_ref().is_none_or(|id| !written.contains_key(id)))
            .collect();
        if fresh.is_empty() && rejects.is_empty() {
            break;
        }
        page_number += 1;
        write(
            sink,
            info,
            client.realm_id(),
            &page.query,
            cursor,
            page_number,
            size,
            &fresh,
            &rejects,
            tally,
        )
        .await?;
        for r in &fresh {
            written.insert(r.id.clone(), r.last_updated_time);
            *newest = (*newest).max(r.last_updated_time);
        }
        for r in &rejects {
            if let Some(id) = &r.id {
                written.insert(id.clone(), cursor);
            }
        }
        let last = page
            .records
            .iter()
            .map(|r| r.last_updated_time)
            .max()
            .unwrap_or(cursor);
        // The next query starts at the newest timestamp read, past the records of that
        // timestamp already read (by offset within it: many records can share one second).
        let ties = page
            .records
            .iter()
            .filter(|r| r.last_updated_time == last)
            .count();
        let ties = u32::try_from(ties).unwrap_or(u32::MAX);
        if last == cursor {
            start = start.saturating_add(ties);
        } else {
            cursor = last;
            start = ties.saturating_add(1);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn write(
    sink: &Sink,
    info: EntityInfo,
    realm: &str,
    query: &str,
    cursor: OffsetDateTime,
    page_number: i32,
    size: u32,
    records: &[&Record],
    rejects: &[&RecordReject],
    tally: &mut SyncTally,
) -> Result<(), Error> {
    let rows: Vec<RawRow<'_>> = records
        .iter()
        .map(|r| RawRow {
            id: &r.id,
            payload: r.raw.get(),
        })
        .collect();
    let bad: Vec<RejectRow<'_>> = rejects
        .iter()
        .map(|r| RejectRow {
            record_id: r.id.as_deref(),
            raw_text: r.raw.get(),
            reason: &r.reason,
        })
        .collect();
    let end = records
        .iter()
        .map(|r| r.last_updated_time)
        .max()
        .unwrap_or(cursor)
        .max(cursor + time::Duration::SECOND);
    let meta = PageMeta {
        realm_id: realm.to_owned(),
        window_start: cursor,
        window_end: end,
        page_number,
        page_size: i32::try_from(size).unwrap_or(i32::MAX),
        request_payload: query.to_owned(),
    };
    let outcome = sink
        .write_page(&PageWrite {
            table: info.table,
            entity: info.name,
            meta: &meta,
            rows: &rows,
            rejects: &bad,
            owner: None,
        })
        .await
        .map_err(Error::Database)?;
    tally.inserted += outcome.counts.inserted;
    tally.updated += outcome.counts.updated;
    tally.unchanged += outcome.counts.unchanged;
    Ok(())
}
