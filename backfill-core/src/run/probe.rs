//! Sparse probing: [`probe`] COUNTs a segment of adjacent windows and decides: all empty
//! (marked `done` with source count 0 at once), load as one query (at most
//! [`SEGMENT_PAGES`](super::SEGMENT_PAGES) pages, or a single window: the probing task goes
//! on as the load), or split in one level into parts sized from the COUNT ([`split_parts`],
//! [`split_even`]) that are probed again. A part its parent's COUNT says is dense
//! ([`is_dense`]) requests its first page together with its COUNT.
//!
//! Invariants: a segment is never marked empty without a COUNT of zero for its whole range;
//! split parts stay adjacent, cover the segment exactly and are never more than its windows;
//! only parts known dense spend a page request before their COUNT is known (a sparse range
//! stays COUNT-first).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::{Either, ready, select};
use qbo_client::ExpectedRows;
use raw_sink::{Window as WindowRow, WindowOutcome, WindowStatus};

use crate::Error;
use crate::claim::lease_lost;
use crate::window::format_utc;

use super::failure::{error_chain, qbo_error, stops_the_run};
use super::fetch::{QueryKind, build_query, count_range, fetch_page};
use super::load::{AttemptError, load};
use super::paging::Prefetched;
use super::{
    Ctx, SEGMENT_PAGES, Task, TaskResult, WindowProblem, interrupted, row_window, segment_window,
    window_ids,
};

/// COUNTs a segment and decides: all empty, load as one, split, or one by one. A `dense`
/// segment (see [`Task::Probe`]) requests its first page together with its COUNT, so that no
/// serial round trip precedes its pages; the page serves the load if the COUNT says to load
/// it as one query, and is dropped otherwise (one request spent).
pub(super) async fn probe(
    ctx: &Ctx<'_>,
    seg: Vec<WindowRow>,
    dense: bool,
) -> Result<TaskResult, Error> {
    let range = segment_window(&seg);
    let mut attempt = 1;
    let mut first = None;
    let count = loop {
        let counting = count_range(ctx, range);
        let counted = if dense && attempt == 1 {
            let page: Prefetched<'_> = Box::pin(async move {
                let q = build_query(ctx, QueryKind::Select, range)
                    .map_err(AttemptError::Qbo)?
                    .with_start_position(1);
                // Nothing known of its rows yet (a short page is fine): unchecked; the load
                // pages on from where it really ended, by the COUNT.
                fetch_page(ctx, q, Some(ExpectedRows::MaxResults { window_ends: true })).await
            });
            // The COUNT decides; the page, still in flight, goes on with the load.
            match select(Box::pin(counting), page).await {
                Either::Left((counted, page)) => {
                    first = Some(page);
                    counted
                }
                Either::Right((page, counting)) => {
                    first = Some(Box::pin(ready(page)));
                    counting.await
                }
            }
        } else {
            counting.await
        };
        let Some(counted) = counted else {
            return Ok(interrupted(&seg));
        };
        match counted {
            Ok(c) => break c,
            Err(e) if stops_the_run(&e) => return Err(qbo_error(e)),
            Err(e) if e.is_retryable() && attempt < ctx.cfg.max_window_attempts => {
                event!(ctx, warn, "probe_retry",
                    window_start = %format_utc(range.start),
                    window_end = %format_utc(range.end),
                    attempt,
                    cause = %error_chain(&e));
                attempt += 1;
            }
            Err(e) => {
                // QBO keeps failing after the client's retries: record every window as failed
                // rather than spend one more failing request per window.
                let msg = error_chain(&e);
                return fail_all(ctx, &seg, &msg).await;
            }
        }
    };
    let page = u64::from(ctx.cfg.page_size);
    let n = seg.len() as u64;
    if count == 0 {
        let ids = window_ids(&seg);
        let marked = ctx
            .db("marking empty windows done", || {
                ctx.ledger
                    .mark_claimed_windows_done_empty(&ids, ctx.run_id, ctx.worker.id())
            })
            .await
            .map_err(Error::Database)?;
        for id in ids.iter().filter(|id| !marked.contains(id)) {
            lease_lost(&ctx.worker, *id);
        }
        let n = marked.len() as u64;
        event!(ctx, info, "windows_empty",
            window_start = %format_utc(range.start),
            window_end = %format_utc(range.end),
            windows = n);
        finished_windows(ctx, n);
        return Ok(TaskResult::Finished {
            done: n,
            empty: n,
            problems: Vec::new(),
            windows: ids,
        });
    }
    // Up to SEGMENT_PAGES pages are loaded as one paged query, verified by this COUNT: splitting
    // never saves a page (pages(a) + pages(b) >= pages(a + b)), it only costs two more COUNTs,
    // and loading dense windows one by one costs a verification COUNT each.
    if n == 1 || count <= page.saturating_mul(SEGMENT_PAGES) {
        // This task goes on as the segment's load (its page 1 may be here already).
        return load(ctx, seg, Some(count), first).await;
    }
    drop(first);
    let parts = split_parts(count, n, page);
    Ok(TaskResult::Split(
        split_even(seg, parts)
            .into_iter()
            .map(|windows| {
                let dense = is_dense(count, n, windows.len() as u64, page);
                Task::Probe { windows, dense }
            })
            .collect(),
    ))
}

/// Whether a part of `part` windows of a segment of `windows` windows holding `count` records
/// holds at least half a page of `page` rows were they spread evenly.
pub(super) fn is_dense(count: u64, windows: u64, part: u64, page: u64) -> bool {
    count.saturating_mul(part).saturating_mul(2) >= page.saturating_mul(windows.max(1))
}

/// Into how many parts a segment of `windows` windows holding `count` records is split: as
/// many as would each hold about three quarters of [`SEGMENT_PAGES`] pages were the records
/// spread evenly, and at least two. A dense range then costs one level of COUNTs instead of
/// log2 levels (3 years holding 50k invoices: 4 COUNTs), and the parts of a bunched range
/// that hold its records are split again.
pub(super) fn split_parts(count: u64, windows: u64, page: u64) -> u64 {
    let target = (page.saturating_mul(SEGMENT_PAGES) * 3 / 4).max(1);
    count.div_ceil(target).clamp(2, windows.max(2))
}

/// `seg` cut into `parts` runs of adjacent windows whose lengths differ by at most one. Each
/// part is a vector of its own size (`Vec::split_off` would leave every part holding the
/// capacity of everything after it: 42 MB of window rows for a 1M-invoice plan).
pub(super) fn split_even(seg: Vec<WindowRow>, parts: u64) -> Vec<Vec<WindowRow>> {
    let mut left = seg.len();
    let parts = usize::try_from(parts)
        .unwrap_or(usize::MAX)
        .clamp(1, left.max(1));
    let mut rows = seg.into_iter();
    let mut out = Vec::with_capacity(parts);
    for remaining in (1..=parts).rev() {
        let take = left.div_ceil(remaining);
        out.push(rows.by_ref().take(take).collect());
        left -= take;
    }
    out
}

pub(super) fn finished_windows(ctx: &Ctx<'_>, n: u64) {
    ctx.cfg
        .progress
        .windows_finished(n, ctx.rows.load(Ordering::Relaxed));
}

pub(super) async fn fail_all(
    ctx: &Ctx<'_>,
    seg: &[WindowRow],
    msg: &str,
) -> Result<TaskResult, Error> {
    let mut problems = Vec::with_capacity(seg.len());
    for w in seg {
        let outcome = WindowOutcome {
            status: WindowStatus::Failed,
            source_count: None,
            verified: false,
            duration: Duration::ZERO,
            error: Some(msg.to_owned()),
        };
        // A probed window has no attempt yet: start one so that the failure is recorded.
        let held = ctx
            .db("starting a window", || {
                ctx.ledger.start_claimed_attempt(
                    w.id,
                    ctx.run_id,
                    ctx.worker.id(),
                    ctx.worker.lease_ttl(),
                )
            })
            .await
            .map_err(Error::Database)?
            .is_some()
            && ctx
                .db("finishing a window", || {
                    ctx.ledger
                        .finish_claimed_window(w.id, ctx.run_id, ctx.worker.id(), &outcome)
                })
                .await
                .map_err(Error::Database)?
                .is_some();
        if !held {
            lease_lost(&ctx.worker, w.id);
            continue;
        }
        problems.push(WindowProblem {
            window: row_window(w),
            status: WindowStatus::Failed,
            error: msg.to_owned(),
        });
    }
    finished_windows(ctx, seg.len() as u64);
    Ok(TaskResult::Finished {
        done: 0,
        empty: 0,
        problems,
        windows: window_ids(seg),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_rows::row;
    use super::*;

    #[test]
    fn a_dense_segment_is_split_in_one_level_a_bunched_one_at_least_in_halves() {
        // 50k records over 1,096 days, 1,000-row pages: parts of ~18,000 records.
        assert_eq!(split_parts(50_000, 1096, 1000), 3);
        assert_eq!(split_parts(100_000, 182, 1000), 6);
        // Just over a segment's worth: halves.
        assert_eq!(split_parts(24_001, 1096, 1000), 2);
        // Never more parts than windows, never fewer than two.
        assert_eq!(split_parts(1_000_000, 3, 1000), 3);
        assert_eq!(split_parts(10, 2, 1), 2);
        assert_eq!(split_parts(5, 10, 0), 5);
    }

    #[test]
    fn a_part_holding_half_a_page_by_its_parents_count_is_dense() {
        // 100k records over 182 days, parts of 10 days: ~5,500 records each.
        assert!(is_dense(100_000, 182, 10, 1000));
        // 20k records over 1,096 days, parts of 274 days: ~5,000 evenly (bunched in fact).
        assert!(is_dense(20_000, 1096, 274, 1000));
        // 9k records over 1,096 days, parts of 20 days: ~164 each.
        assert!(!is_dense(9_000, 1096, 20, 1000));
        assert!(is_dense(1_000, 2, 1, 1000));
        assert!(!is_dense(999, 2, 1, 1000));
    }

    #[test]
    fn a_segment_splits_into_adjacent_runs_of_near_equal_length() {
        let seg: Vec<WindowRow> = (0..10).map(|d| row(d + 1, d)).collect();
        let parts = split_even(seg, 3);
        let ids: Vec<Vec<i64>> = parts
            .iter()
            .map(|s| s.iter().map(|w| w.id.get()).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![5, 6, 7], vec![8, 9, 10]]);
        // No part keeps the capacity of the whole segment.
        let seg: Vec<WindowRow> = (0..1000).map(|d| row(d + 1, d)).collect();
        let parts = split_even(seg, 100);
        assert!(parts.iter().all(|p| p.len() == 10 && p.capacity() < 20));
        let seg: Vec<WindowRow> = (0..2).map(|d| row(d + 1, d)).collect();
        assert_eq!(split_even(seg, 9).len(), 2);
    }
}
