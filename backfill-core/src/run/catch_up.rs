//! The TxnDate catch-up: after the windows of a run windowed on a business date, every record
//! of the range changed since the run started (less [`CATCH_UP_MARGIN`]) is read again and
//! written into its window's rows.
//!
//! Invariant: a newer version replaces an older one and nothing older replaces anything, so
//! the catch-up can only bring rows forward.

use std::sync::atomic::Ordering;

use raw_sink::{PageWrite, RawRow};
use time::OffsetDateTime;

use crate::Error;
use crate::window::{Window, format_utc};

use super::failure::qbo_error;
use super::fetch::{QueryKind, build_query_since, fetch_page};
use super::load::AttemptError;
use super::write::{page_meta, record_key, window_of};
use super::{Ctx, spans};

/// How far before the run's start the catch-up of a date-windowed run looks: QBO's clock and
/// ours may differ, and its query results are eventually consistent.
pub(crate) const CATCH_UP_MARGIN: time::Duration = time::Duration::minutes(10);

/// The catch-up of a run windowed on a date field (`TxnDate`): business dates can be edited at
/// will, moving a record into a window this run already finished, and any record can change
/// after its window was read. Every record of the range changed since the run started (less
/// [`CATCH_UP_MARGIN`]) is read again, in one paged query over the whole range, and written
/// into its window's rows (a newer version replaces an older one; nothing older replaces
/// anything). Returns the records read.
pub(super) async fn catch_up(ctx: &Ctx<'_>, since: OffsetDateTime) -> Result<u64, Error> {
    let Some(range) = ctx
        .cfg
        .windows
        .first()
        .zip(ctx.cfg.windows.last())
        .map(|(a, b)| Window {
            start: a.start,
            end: b.end,
        })
    else {
        return Ok(0);
    };
    let planned = spans(&ctx.cfg.windows);
    let rows = ctx
        .db("reading the windows", || {
            ctx.ledger.ensure_windows(&ctx.scope, &planned)
        })
        .await
        .map_err(Error::Database)?;
    let page_size = ctx.cfg.page_size.clamp(1, 1000);
    let base = build_query_since(ctx, QueryKind::Select, range, Some(since)).map_err(qbo_error)?;
    let mut start = 1u32;
    let mut read = 0u64;
    let mut page_number = 0u32;
    loop {
        let q = base.with_start_position(start);
        // Paged until a short page: sent as single queries (a cut page would end it).
        let (page, permit) = match fetch_page(ctx, q, None).await {
            Ok(p) => p,
            Err(AttemptError::Qbo(e)) => return Err(qbo_error(e)),
            Err(AttemptError::Interrupted) => return Ok(read),
            Err(e) => return Err(Error::Usage(e.describe())),
        };
        page_number += 1;
        let len = page.len();
        read += len as u64;
        let mut by_window: Vec<Vec<RawRow<'_>>> = vec![Vec::new(); rows.len()];
        for r in &page.records {
            let Some(key) = record_key(ctx.cfg.window_field, r) else {
                continue;
            };
            // Records dated outside the range are not this backfill's.
            if let Some(i) = window_of(&rows, key) {
                by_window[i].push(RawRow {
                    id: &r.id,
                    payload: r.raw.get(),
                });
            }
        }
        for (w, records) in rows.iter().zip(&by_window) {
            if records.is_empty() {
                continue;
            }
            let meta = page_meta(ctx, w, &page, page_number);
            let write = PageWrite {
                table: ctx.table,
                entity: ctx.entity,
                meta: &meta,
                rows: records,
                rejects: &[],
                owner: None,
            };
            let out = ctx
                .db("upserting a catch-up page", || ctx.sink.write_page(&write))
                .await
                .map_err(Error::Database)?;
            ctx.inserted
                .fetch_add(out.counts.inserted, Ordering::Relaxed);
            ctx.updated.fetch_add(out.counts.updated, Ordering::Relaxed);
            ctx.unchanged
                .fetch_add(out.counts.unchanged, Ordering::Relaxed);
        }
        drop(permit);
        event!(ctx, info, "catch_up_page",
            since = %format_utc(since),
            start_position = start,
            rows = len);
        // A short page is no proof of the end: an empty one is.
        if len == 0 {
            break;
        }
        start += u32::try_from(len).unwrap_or(page_size);
    }
    Ok(read)
}
