//! Reading QBO: the queries of a window range ([`build_query`]) and the loop's two choke
//! points, one per kind of request: [`count_range`] (a COUNT) and [`fetch_page`] (one page,
//! under a memory reservation); and reading by sub-ranges that each fit one page
//! ([`load_narrowed`]). Paging a range is [`super::paging`].
//!
//! Invariants: every QBO query of the loop goes through [`count_range`] or [`fetch_page`];
//! neither sends a request once a stop is requested or the request budget is spent
//! ([`Ctx::claim_call`], which counts the request); a page reserves its estimated bytes from
//! the memory budget before its request is sent and holds them until it is written. With
//! `--batch`, both hand their query to the run's [`super::batcher`] after those two steps, and
//! only then: a page with what it should hold ([`ExpectedRows`]), so that a page the batch cut
//! is read again alone; a page whose expectation is unknown (`None`) goes as a single query.

use qbo_client::{ExpectedRows, Op, Order, Page, QboError, Query, Value};
use raw_sink::Window as WindowRow;
use time::{OffsetDateTime, UtcOffset};

use crate::WindowField;
use crate::window::{Window, format_utc};

use super::budget::Reservation;
use super::load::{AttemptError, Loaded, WindowTally};
use super::write::write_page;
use super::{Ctx, duration_ms, sent, stoppable};

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

/// A COUNT of `range`; `None` when a stop is requested before it is sent or while it is in
/// flight (but a COUNT already sent when the request budget runs out is awaited, see
/// [`sent`]), and when the request budget is spent: then nothing is sent and the stop is
/// requested.
pub(super) async fn count_range(ctx: &Ctx<'_>, range: Window) -> Option<Result<u64, QboError>> {
    let q = match build_query(ctx, QueryKind::Count, range) {
        Ok(q) => q,
        Err(e) => return Some(Err(e)),
    };
    if !ctx.claim_call() {
        return None;
    }
    match &ctx.batcher {
        Some(b) => sent(ctx, b.count(ctx, q)).await,
        None => sent(ctx, ctx.client.count(&q)).await,
    }
}

/// Fetches one page: reserves its estimated bytes from the memory budget before the request
/// is sent, and re-sizes the reservation to the page's real size once it arrives. The caller
/// holds the reservation until the page is written. The client's limiter (rate, requests in
/// flight) is taken inside `query_page` only once the memory is reserved, and is released as
/// soon as the answer is read. With `--batch`, a page with an `expected` goes through the
/// batcher, checked against it; without one (nothing can tell a cut page from a short one) it
/// goes as a single query.
pub(super) async fn fetch_page<'c>(
    ctx: &'c Ctx<'_>,
    q: Result<Query, qbo_client::QueryError>,
    expected: Option<ExpectedRows>,
) -> Result<(Page, Reservation<'c>), AttemptError> {
    let q = q.map_err(|e| AttemptError::Qbo(e.into()))?;
    let rows = q.max_results().unwrap_or(ctx.cfg.page_size);
    let estimate = ctx.memory.estimate(rows);
    // The budget is never closed; `None` could only mean that, and is treated as a stop.
    let Some(Some(mut reservation)) = stoppable(ctx, ctx.memory.reserve(estimate)).await else {
        return Err(AttemptError::Interrupted);
    };
    if !ctx.claim_call() {
        return Err(AttemptError::Interrupted);
    }
    ctx.ahead.sending();
    let answer = match (&ctx.batcher, expected) {
        (Some(b), Some(expected)) => sent(ctx, b.page(ctx, q, expected)).await,
        _ => sent(ctx, ctx.client.query_page(&q)).await,
    };
    match answer {
        None => Err(AttemptError::Interrupted),
        Some(Ok(page)) => {
            let bytes = page.held_bytes();
            ctx.memory.observe(page.len(), bytes);
            reservation.resize(bytes);
            Ok((page, reservation))
        }
        Some(Err(e)) => Err(AttemptError::Qbo(e)),
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
        // A narrowed page's size is what decides whether to halve it: never batched.
        let (page, reservation) = fetch_page(ctx, q, None).await?;
        let seconds = (part.end - part.start).whole_seconds();
        if page.len() >= page_size && seconds >= 2 {
            drop(page);
            drop(reservation);
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
            // The page is read again by the paging below: freed first, with its memory.
            drop(page);
            drop(reservation);
            let paged =
                Box::pin(super::paging::load_attempt(ctx, windows, part, None, None)).await?;
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
        drop(reservation);
    }
    // Sub-ranges are verified by the caller's COUNT of the whole window.
    Ok(Loaded {
        tallies,
        counted: None,
    })
}
