//! Writing pages: [`write_page`] splits a page's new items by window ([`record_key`],
//! [`window_of`]) and upserts each group with its window's progress ([`page_meta`]).
//!
//! Invariants: a record goes into the one window its key falls in, or the attempt fails as
//! stray; items that are not usable records, and records PostgreSQL cannot store, go to
//! `raw.qb_rejects`; each window's share of a page is written together with that window's
//! progress in one transaction (`Sink::write_page`), which the sink refuses unless this
//! attempt still holds the window (the attempt then ends as lease lost, nothing written).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use qbo_client::{Page, PageItem, Record};
use raw_sink::{PageMeta, PageOwner, PageWrite, RawRow, RejectRow, SinkError, Window as WindowRow};
use time::OffsetDateTime;

use crate::WindowField;
use crate::window::format_utc;

use super::Ctx;
use super::load::{AttemptError, WindowTally};

/// The field a record is placed in a window by.
pub(super) fn record_key(field: WindowField, r: &Record) -> Option<OffsetDateTime> {
    match field {
        WindowField::CreateTime => Some(r.create_time),
        WindowField::LastUpdatedTime => Some(r.last_updated_time),
        WindowField::TxnDate => r.txn_date.map(|d| d.midnight().assume_utc()),
    }
}

/// The metadata stored with the rows a page brings into window `w`.
pub(super) fn page_meta(ctx: &Ctx<'_>, w: &WindowRow, page: &Page, page_number: u32) -> PageMeta {
    PageMeta {
        realm_id: ctx.realm.clone(),
        window_start: w.span.start,
        window_end: w.span.end,
        page_number: i32::try_from(page_number).unwrap_or(i32::MAX),
        page_size: i32::try_from(page.max_results).unwrap_or(i32::MAX),
        request_payload: page.query.clone(),
    }
}

/// Which of `windows` an instant falls in.
pub(super) fn window_of(windows: &[WindowRow], key: OffsetDateTime) -> Option<usize> {
    windows
        .iter()
        .position(|w| w.span.start <= key && key < w.span.end)
}

/// Splits a page's new items by window and writes each group with its window's progress:
/// records into the raw table, items that are not usable records (and records PostgreSQL
/// cannot store) into `raw.qb_rejects`, only while this attempt holds the window.
pub(super) async fn write_page(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    tallies: &mut [WindowTally],
    page: &Page,
    skip: usize,
    page_number: u32,
) -> Result<(), AttemptError> {
    let field = ctx.cfg.window_field;
    let mut rows: Vec<Vec<RawRow<'_>>> = vec![Vec::new(); windows.len()];
    let mut rejects: Vec<Vec<RejectRow<'_>>> = vec![Vec::new(); windows.len()];
    for item in page.items().skip(skip) {
        match item {
            PageItem::Record(r) => {
                let key = record_key(field, r).ok_or_else(|| {
                    AttemptError::Stray(format!("record {} has no {field}", r.id))
                })?;
                let idx = window_of(windows, key).ok_or_else(|| {
                    AttemptError::Stray(format!(
                        "record {} has {field} {} outside the queried windows",
                        r.id,
                        format_utc(key)
                    ))
                })?;
                rows[idx].push(RawRow {
                    id: &r.id,
                    payload: r.raw.get(),
                });
            }
            // Without a usable timestamp a reject belongs to the query's window only when the
            // query has one window; a segment of several is split and read window by window.
            PageItem::Reject(r) if windows.len() == 1 => rejects[0].push(RejectRow {
                record_id: r.id.as_deref(),
                raw_text: r.raw.get(),
                reason: &r.reason,
            }),
            PageItem::Reject(r) => {
                return Err(AttemptError::Stray(format!(
                    "a record ({}) cannot be placed in one of the {} windows read together: {}",
                    r.id.as_deref().unwrap_or("no Id"),
                    windows.len(),
                    r.reason
                )));
            }
        }
    }
    for (idx, w) in windows.iter().enumerate() {
        let (rows, rejects) = (&rows[idx], &rejects[idx]);
        if rows.is_empty() && rejects.is_empty() {
            continue;
        }
        let meta = page_meta(ctx, w, page, page_number);
        let write = PageWrite {
            table: ctx.table,
            entity: ctx.entity,
            meta: &meta,
            rows,
            rejects,
            owner: Some(PageOwner {
                window: w.id,
                run: Some(ctx.run_id),
                worker: Some(ctx.worker.id()),
            }),
        };
        let outcome = ctx
            .db("upserting a page", || ctx.sink.write_page(&write))
            .await
            .map_err(|e| match e {
                SinkError::WindowNotRunning { .. } | SinkError::NotFound { .. } => {
                    AttemptError::LeaseLost
                }
                e if e.is_retryable() => AttemptError::DatabaseGone(e),
                e => AttemptError::Sink(e),
            })?;
        let t = &mut tallies[idx];
        for r in rejects {
            t.rejected
                .insert(r.record_id.unwrap_or(r.raw_text).to_owned());
        }
        let mut refused: HashSet<&str> = HashSet::new();
        for r in &outcome.rejected {
            if let Some(id) = &r.record_id {
                t.rejected.insert(id.clone());
                refused.insert(id);
            }
        }
        let stored = rows.iter().filter(|r| !refused.contains(r.id));
        let mut received = 0u64;
        for r in stored {
            received += 1;
            t.ids.insert(r.id.to_owned());
        }
        let counts = outcome.counts;
        t.rows += received;
        t.counts += counts;
        ctx.rows.fetch_add(received, Ordering::Relaxed);
        ctx.inserted.fetch_add(counts.inserted, Ordering::Relaxed);
        ctx.updated.fetch_add(counts.updated, Ordering::Relaxed);
        ctx.unchanged.fetch_add(counts.unchanged, Ordering::Relaxed);
        ctx.rejected.fetch_add(counts.rejected, Ordering::Relaxed);
    }
    Ok(())
}
