//! Reading QBO: the queries of a window range ([`build_query`], [`count_range`]), offset
//! paging with overlapping pages ([`load_attempt`]), one page under a page permit
//! ([`fetch_page`]) and reading by sub-ranges that each fit one page ([`load_narrowed`]).
//!
//! Invariants: consecutive pages overlap by `page_overlap` items that must repeat, else the
//! attempt fails as changed; a short page ends a query only when a COUNT says nothing lies
//! beyond it (or, with verification off, the next page is empty); a page holds a page permit
//! from before its request until it is written; no request is sent once a stop is requested or
//! the request budget is spent.

use std::sync::atomic::Ordering;

use futures::stream::{FuturesOrdered, StreamExt};
use qbo_client::{Op, Order, Page, QboError, Query, Value};
use raw_sink::Window as WindowRow;
use time::{OffsetDateTime, UtcOffset};

use crate::WindowField;
use crate::window::{Window, format_utc};

use super::load::{AttemptError, Loaded, WindowTally};
use super::write::write_page;
use super::{Ctx, SEGMENT_PAGES, duration_ms, stoppable};

/// The query for `range`: filter on the window field, inactive rows for name lists, and for
/// SELECTs ordering and MAXRESULTS (STARTPOSITION is set per page).
pub(super) fn build_query(
    ctx: &Ctx<'_>,
    kind: QueryKind,
    range: Window,
) -> Result<Query, QboError> {
    build_query_since(ctx, kind, range, None)
}

/// [`build_query`], restricted to records changed since `since` when given.
pub(super) fn build_query_since(
    ctx: &Ctx<'_>,
    kind: QueryKind,
    range: Window,
    since: Option<OffsetDateTime>,
) -> Result<Query, QboError> {
    let field = ctx.cfg.window_field;
    let (lo, hi) = if field.is_date() {
        (
            Value::Date(range.start.to_offset(UtcOffset::UTC).date()),
            Value::Date(range.end.to_offset(UtcOffset::UTC).date()),
        )
    } else {
        (Value::DateTime(range.start), Value::DateTime(range.end))
    };
    let mut q = match kind {
        QueryKind::Select => Query::select(ctx.entity),
        QueryKind::Count => Query::count(ctx.entity),
    };
    q = q
        .filter(field.as_str(), Op::Ge, lo)
        .filter(field.as_str(), Op::Lt, hi);
    if let Some(since) = since {
        q = q.filter(
            WindowField::LastUpdatedTime.as_str(),
            Op::Ge,
            Value::DateTime(since),
        );
    }
    if ctx.name_list {
        q = q.include_inactive();
    }
    if let QueryKind::Select = kind {
        // ORDERBY the window field so offsets are stable; TxnDate has many ties, CreateTime few.
        let order_field = if field.is_date() {
            WindowField::CreateTime
        } else {
            field
        };
        q = q
            .order_by(order_field.as_str(), Order::Asc)
            .max_results(ctx.cfg.page_size.clamp(1, 1000));
    }
    Ok(q.build()?)
}

#[derive(Clone, Copy)]
pub(super) enum QueryKind {
    Select,
    Count,
}

/// A COUNT of `range`. Callers run it under [`stoppable`]: with the request budget spent it
/// sends nothing and waits for the stop it requested.
pub(super) async fn count_range(ctx: &Ctx<'_>, range: Window) -> Result<u64, QboError> {
    let q = build_query(ctx, QueryKind::Count, range)?;
    if !ctx.may_call() {
        ctx.cfg.shutdown.requested().await;
        std::future::pending::<()>().await;
    }
    ctx.requests.fetch_add(1, Ordering::Relaxed);
    ctx.client.count(&q).await
}

/// Pages `range` once, upserting each page (split by window) while the next one is fetched.
///
/// Invariants: consecutive pages overlap by `page_overlap` items, which must repeat (else
/// records moved: [`AttemptError::Changed`]); a page shorter than MAXRESULTS ends the query
/// only when a COUNT (the probe's, or one taken here) says nothing lies beyond it, or, with
/// verification off, when the next page is empty.
pub(super) async fn load_attempt(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    range: Window,
    expected: Option<u64>,
) -> Result<Loaded, AttemptError> {
    let cfg = ctx.cfg;
    let page_size = cfg.page_size.clamp(1, 1000);
    let overlap = cfg.page_overlap.min(page_size / 4);
    let step = page_size - overlap;
    let base = build_query(ctx, QueryKind::Select, range).map_err(AttemptError::Qbo)?;

    let mut tallies = vec![WindowTally::default(); windows.len()];
    let mut counted: Option<u64> = None;
    let mut page_number: u32 = 1;
    let mut tail: Vec<String> = Vec::new();
    let fetch = |start: u32| fetch_page(ctx, base.with_start_position(start));
    // Pages fetched ahead, in order. Beyond the next page, only pages a COUNT says exist, and
    // only while page permits are free: a lone segment (the tail of a run) pages in parallel.
    // (Queueing more fetches on the permits was measured worse: pages fetched early hold
    // permits while they wait for their predecessors, and the API budget idles.)
    let mut ahead = FuturesOrdered::new();
    ahead.push_back(fetch(1));
    let mut next_fetch = 1 + step;
    let Some(first) = ahead.next().await else {
        return Err(AttemptError::Interrupted);
    };
    let (mut current, mut permit) = first?;
    loop {
        let len = current.len();
        let start_position = current.start_position;
        // Check the overlap: the first items must be the previous page's last items.
        let skip = if page_number > 1 && !tail.is_empty() {
            let head: Vec<&str> = current.items().take(tail.len()).map(|i| i.key()).collect();
            if head != tail.iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(AttemptError::Changed(format!(
                    "page {page_number} at position {start_position} should start with ids {tail:?}, got {head:?}"
                )));
            }
            tail.len()
        } else {
            0
        };
        event!(ctx, info, "page_loaded",
            window_start = %format_utc(range.start),
            window_end = %format_utc(range.end),
            page_number,
            start_position,
            rows = len,
            rejected = current.rejects.len(),
            latency_ms = duration_ms(current.latency),
            intuit_tid = current.intuit_tid.as_deref().unwrap_or(""));
        let full = len >= page_size as usize;
        let more = if full {
            true
        } else if len <= skip {
            // Nothing beyond the overlapping items (an empty page, in effect): the end.
            false
        } else {
            // A short page: the end only if a COUNT says no record lies beyond it.
            let beyond = u64::from(start_position - 1) + len as u64;
            let total = match expected.or(counted) {
                Some(n) => Some(n),
                None if cfg.verify => {
                    let Some(n) = stoppable(ctx, count_range(ctx, range)).await else {
                        return Err(AttemptError::Interrupted);
                    };
                    let n = n.map_err(AttemptError::Qbo)?;
                    counted = Some(n);
                    Some(n)
                }
                // Verification off and no COUNT: the next page (empty at the end) decides.
                None => None,
            };
            let more = total.is_none_or(|n| beyond < n);
            if more {
                event!(ctx, warn, "short_page",
                    window_start = %format_utc(range.start),
                    window_end = %format_utc(range.end),
                    page_number,
                    start_position,
                    rows = len,
                    count = total);
                // Positions after a short page: drop the look-ahead fetched for full pages.
                ahead = FuturesOrdered::new();
                // The next page starts with this one's last `overlap` items, as after a full one.
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                next_fetch = (start_position + len).saturating_sub(overlap.min(len));
            }
            more
        };
        tail = current
            .items()
            .skip(len.saturating_sub(overlap as usize))
            .map(|i| i.key().to_owned())
            .collect();

        if more {
            if ahead.is_empty() {
                ahead.push_back(fetch(next_fetch));
                next_fetch += step;
            }
            while expected.is_some_and(|n| u64::from(next_fetch) <= n)
                && ahead.len() < ctx.pages.available_permits().min(SEGMENT_PAGES as usize)
            {
                ahead.push_back(fetch(next_fetch));
                next_fetch += step;
            }
        }
        // The page's permit is released as soon as it is written, even while the next page is
        // still on its way.
        let write = async {
            let w = write_page(ctx, windows, &mut tallies, &current, skip, page_number).await;
            drop(permit);
            w
        };
        let (written, next) = if more {
            let (w, n) = tokio::join!(write, ahead.next());
            (w, Some(n.ok_or(AttemptError::Interrupted)))
        } else {
            (write.await, None)
        };
        written?;
        match next {
            None => break,
            Some(n) => {
                (current, permit) = n??;
                page_number += 1;
                if current.len() < tail.len() {
                    return Err(AttemptError::Changed(format!(
                        "page {page_number} at position {} returned {} rows, fewer than the {} overlapping ones",
                        current.start_position,
                        current.len(),
                        tail.len()
                    )));
                }
            }
        }
    }
    Ok(Loaded { tallies, counted })
}

/// Fetches one page, holding a page permit from before the request until the page is written
/// (the caller drops it).
pub(super) async fn fetch_page<'c>(
    ctx: &'c Ctx<'_>,
    q: Result<Query, qbo_client::QueryError>,
) -> Result<(Page, tokio::sync::SemaphorePermit<'c>), AttemptError> {
    let q = q.map_err(|e| AttemptError::Qbo(e.into()))?;
    // The semaphore is never closed; an error could only mean that, and is treated as a stop.
    let Some(Ok(permit)) = stoppable(ctx, ctx.pages.acquire()).await else {
        return Err(AttemptError::Interrupted);
    };
    if !ctx.may_call() {
        return Err(AttemptError::Interrupted);
    }
    ctx.requests.fetch_add(1, Ordering::Relaxed);
    match stoppable(ctx, ctx.client.query_page(&q)).await {
        None => Err(AttemptError::Interrupted),
        Some(page) => page.map(|p| (p, permit)).map_err(AttemptError::Qbo),
    }
}

/// Reads one window as sub-ranges that each fit in one page: a sub-range whose page comes back
/// full is halved (at whole seconds, which is what QBO's timestamps resolve) and read again; a
/// one-page query has no second page, so records inserted or deleted meanwhile cannot make it
/// skip any. A sub-range of one second that still fills a page is paged as usual.
pub(super) async fn load_narrowed(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    range: Window,
) -> Result<Loaded, AttemptError> {
    let page_size = ctx.cfg.page_size.clamp(1, 1000) as usize;
    let mut tallies = vec![WindowTally::default(); windows.len()];
    let mut stack = vec![range];
    let mut page_number = 0u32;
    while let Some(part) = stack.pop() {
        let q = build_query(ctx, QueryKind::Select, part)
            .map_err(AttemptError::Qbo)?
            .with_start_position(1);
        let (page, permit) = fetch_page(ctx, q).await?;
        let seconds = (part.end - part.start).whole_seconds();
        if page.len() >= page_size && seconds >= 2 {
            drop(permit);
            let mid = part.start + time::Duration::seconds(seconds / 2);
            stack.push(Window {
                start: mid,
                end: part.end,
            });
            stack.push(Window {
                start: part.start,
                end: mid,
            });
            continue;
        }
        if page.len() >= page_size {
            drop(permit);
            let paged = Box::pin(load_attempt(ctx, windows, part, None)).await?;
            for (t, p) in tallies.iter_mut().zip(paged.tallies) {
                t.absorb(p);
            }
            continue;
        }
        page_number += 1;
        event!(ctx, info, "page_loaded",
            window_start = %format_utc(part.start),
            window_end = %format_utc(part.end),
            page_number,
            start_position = 1,
            rows = page.len(),
            narrowed = true,
            latency_ms = duration_ms(page.latency),
            intuit_tid = page.intuit_tid.as_deref().unwrap_or(""));
        write_page(ctx, windows, &mut tallies, &page, 0, page_number).await?;
        drop(permit);
    }
    // Sub-ranges are verified by the caller's COUNT of the whole window.
    Ok(Loaded {
        tallies,
        counted: None,
    })
}
