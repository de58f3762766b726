//! One paged reading of a range: [`load_attempt`] requests the pages its [`PagePlan`] knows of
//! in parallel (every page a COUNT implies, else one at a time; at most its share of the
//! memory budget's pages held at once, see [`super::budget`]), writes each as it arrives, in
//! any order, one write at a time, and decides in QBO's order where the query ends; it keeps
//! no more pages ahead of its writer than the writer can use ([`super::ahead`]).
//!
//! Invariants: a page's items that repeat its predecessor's are not written again; pages are
//! compared by the [`OverlapChain`] whenever neighbours have both arrived, and a disagreement
//! fails the attempt as changed; a page shorter than MAXRESULTS ends the query only when a
//! COUNT (the probe's, or one taken here) says nothing lies beyond it, or, with verification
//! off, when the next page holds nothing new; a short page with more beyond replans every later
//! position (requests already sent for the old ones are abandoned, pages that came are
//! dropped); a page holds its memory reservation until written, never a request slot; on a
//! stop, the pages already fetched are written before the attempt ends.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use futures::future::{AbortHandle, AbortRegistration, Abortable, BoxFuture, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use qbo_client::{ExpectedRows, Page};
use raw_sink::Window as WindowRow;

use crate::window::{Window, format_utc};

use super::budget::Reservation;
use super::fetch::{QueryKind, build_query, count_range, fetch_page};
use super::load::{AttemptError, Loaded, WindowTally};
use super::pages::{Ends, OverlapChain, PagePlan};
use super::write::write_page;
use super::{Ctx, duration_ms};

/// A query's first page requested ahead (by the probe, with its COUNT), possibly still in
/// flight, with its memory.
pub(super) type Prefetched<'c> = BoxFuture<'c, Result<(Page, Reservation<'c>), AttemptError>>;

/// Pages `range` once (see the module's invariants); `first` is its page 1 if already fetched.
pub(super) async fn load_attempt<'c>(
    ctx: &'c Ctx<'_>,
    windows: &[WindowRow],
    range: Window,
    expected: Option<u64>,
    first: Option<Prefetched<'c>>,
) -> Result<Loaded, AttemptError> {
    let cfg = ctx.cfg;
    let page_size = cfg.page_size.clamp(1, 1000);
    let overlap = cfg.page_overlap.min(page_size / 4);
    let base = build_query(ctx, QueryKind::Select, range).map_err(AttemptError::Qbo)?;

    let mut plan = PagePlan::new(page_size, overlap, expected);
    let mut chain = OverlapChain::new(overlap);
    let mut tallies = vec![WindowTally::default(); windows.len()];
    let mut counted: Option<u64> = None;

    let fetch = |k: usize, start: u32, expected: ExpectedRows, reg: AbortRegistration| {
        let q = base.with_start_position(start);
        Abortable::new(
            Either::Left(async move { (k, start, fetch_page(ctx, q, Some(expected)).await) }),
            reg,
        )
    };
    let mut in_flight = FuturesUnordered::new();
    let mut aborts: BTreeMap<usize, AbortHandle> = BTreeMap::new();
    let mut issued = 0usize;
    // This attempt's share of the memory budget's pages (see `budget`), taken again as other
    // attempts start and end.
    let _sharing = ctx.memory.paging();
    if let Some(page) = first {
        // The probe's page 1 (a request like the others, sent earlier); fetched again if it
        // failed.
        let (handle, reg) = AbortHandle::new_pair();
        aborts.insert(0, handle);
        let q = base.with_start_position(1);
        let again = plan.expected();
        in_flight.push(Abortable::new(
            Either::Right(async move {
                let page = match page.await {
                    Err(AttemptError::Qbo(_)) => fetch_page(ctx, q, Some(again)).await,
                    p => p,
                };
                (0, 1, page)
            }),
            reg,
        ));
        issued = 1;
    }
    // Pages arrived and waiting for the writer, by index.
    let mut ready: VecDeque<(usize, Page, Reservation<'_>)> = VecDeque::new();
    let mut writing = None;
    // The first page whose place in the query (more after it, or the end) is not decided yet.
    let mut frontier = 0usize;
    let mut ended = false;
    let mut failure: Option<AttemptError> = None;

    loop {
        // The writer takes the next page first, so that what is ahead of it is counted
        // without it.
        if writing.is_none()
            && let Some((k, page, reservation)) = ready.pop_front()
        {
            let skip = plan.get(k).map_or(0, |p| p.skip as usize);
            writing = Some(Box::pin(write_owned(
                ctx,
                windows,
                page,
                reservation,
                skip,
                k,
            )));
        }
        // Whether requests wait for the limit on pages ahead (which may grow by itself).
        let mut limited = false;
        if failure.is_none() && !ended {
            let share = ctx.memory.share(page_size);
            while issued < plan.len() {
                let held = in_flight.len() + ready.len() + usize::from(writing.is_some());
                // Beyond its share only while the budget has room to spare (pages wait in
                // flight, not for writers), one page at a time: the room is reserved when the
                // request is sent, after this loop.
                let beyond = held >= share;
                if beyond && !ctx.memory.has_room(page_size) {
                    break;
                }
                // No more pages ahead of the writer than it can use (see `ahead`).
                if in_flight.len() + ready.len() >= ctx.ahead.limit(Instant::now()) {
                    limited = true;
                    break;
                }
                let Some(p) = plan.get(issued) else { break };
                let (handle, reg) = AbortHandle::new_pair();
                aborts.insert(issued, handle);
                in_flight.push(fetch(issued, p.start, plan.expected(), reg));
                issued += 1;
                if beyond {
                    break;
                }
            }
        }
        if writing.is_none() && in_flight.is_empty() {
            break;
        }
        let grows = if limited {
            ctx.ahead.grows_at(Instant::now())
        } else {
            None
        };
        tokio::select! {
            () = async {
                match grows {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            }, if grows.is_some() => {}
            written = async {
                match writing.as_mut() {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            }, if writing.is_some() => {
                writing = None;
                match written {
                    Ok(t) => {
                        for (all, one) in tallies.iter_mut().zip(t) {
                            all.absorb(one);
                        }
                    }
                    Err(e) => fail(&mut failure, &mut ready, &aborts, e),
                }
            }
            arrived = in_flight.next(), if !in_flight.is_empty() => {
                // An abandoned request (replanned, ended or failed): nothing to do.
                let Some(Ok((k, start, result))) = arrived else { continue };
                let stopping = matches!(failure, Some(AttemptError::Interrupted));
                if plan.get(k).is_none_or(|p| p.start != start)
                    || ended
                    || (failure.is_some() && !stopping)
                {
                    continue;
                }
                aborts.remove(&k);
                let (page, reservation) = match result {
                    Ok(p) => p,
                    Err(e) => {
                        fail(&mut failure, &mut ready, &aborts, e);
                        continue;
                    }
                };
                if stopping {
                    // A request sent before the stop (the budget's) came back: written.
                    ready.push_back((k, page, reservation));
                    continue;
                }
                event!(ctx, info, "page_loaded",
                    window_start = %format_utc(range.start),
                    window_end = %format_utc(range.end),
                    page_number = k + 1,
                    start_position = start,
                    rows = page.len(),
                    rejected = page.rejects.len(),
                    latency_ms = duration_ms(page.latency),
                    intuit_tid = page.intuit_tid.as_deref().unwrap_or(""));
                if let Err(e) = chain.arrive(k, page_ends(&page, overlap)) {
                    fail(&mut failure, &mut ready, &aborts, AttemptError::Changed(e));
                    continue;
                }
                ctx.ahead.arrived(reservation.age());
                ready.push_back((k, page, reservation));
                // Decide, in QBO's order, what follows each page that has arrived.
                while !ended && failure.is_none() {
                    let Some(ends) = chain.get(frontier).cloned() else { break };
                    let skip = plan.get(frontier).map_or(0, |p| p.skip);
                    let decided =
                        decide(ctx, range, &ends, skip, expected.or(counted), frontier + 1).await;
                    let next = match decided {
                        Ok(d) => d,
                        Err(e) => {
                            fail(&mut failure, &mut ready, &aborts, e);
                            break;
                        }
                    };
                    if let Some(n) = next.counted {
                        counted = Some(n);
                        plan.set_total(n);
                    }
                    match next.after {
                        After::Full => plan.after_full(frontier),
                        After::Short => {
                            plan.after_short(frontier, ends.len);
                            // The next page was planned afresh: it is requested again.
                            abandon_after(frontier, &plan, &mut chain, &mut aborts, &mut ready, &mut issued);
                        }
                        After::End => {
                            plan.end_at(frontier);
                            abandon_after(frontier, &plan, &mut chain, &mut aborts, &mut ready, &mut issued);
                            ended = true;
                        }
                    }
                    frontier += 1;
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Loaded { tallies, counted }),
    }
}

/// What follows a page, in QBO's order.
enum After {
    /// A full page: the next page follows.
    Full,
    /// A short page with more records beyond it: later positions are planned again.
    Short,
    /// Nothing lies beyond this page.
    End,
}

struct Decided {
    after: After,
    /// A COUNT this decision had to take.
    counted: Option<u64>,
}

/// Decides what follows the page described by `ends` (the frontier's), taking a COUNT when
/// a short page needs one and none is known (verification on).
async fn decide(
    ctx: &Ctx<'_>,
    range: Window,
    ends: &Ends,
    skip: u32,
    total: Option<u64>,
    page_number: usize,
) -> Result<Decided, AttemptError> {
    let page_size = ctx.cfg.page_size.clamp(1, 1000);
    if ends.len >= page_size {
        return Ok(Decided {
            after: After::Full,
            counted: None,
        });
    }
    if ends.len <= skip {
        // Nothing beyond the overlapping items (an empty page, in effect): the end.
        return Ok(Decided {
            after: After::End,
            counted: None,
        });
    }
    let beyond = u64::from(ends.start - 1) + u64::from(ends.len);
    let (total, counted) = match total {
        Some(n) => (Some(n), None),
        None if ctx.cfg.verify => {
            let Some(n) = count_range(ctx, range).await else {
                return Err(AttemptError::Interrupted);
            };
            let n = n.map_err(AttemptError::Qbo)?;
            (Some(n), Some(n))
        }
        // Verification off and no COUNT: the next page (empty at the end) decides.
        None => (None, None),
    };
    let more = total.is_none_or(|n| beyond < n);
    if more {
        event!(ctx, warn, "short_page",
            window_start = %format_utc(range.start),
            window_end = %format_utc(range.end),
            page_number,
            start_position = ends.start,
            rows = ends.len,
            count = total);
    }
    Ok(Decided {
        after: if more { After::Short } else { After::End },
        counted,
    })
}

/// Abandons what was requested or received for pages after `k`, keeping what the plan now
/// holds there (a replanned next page is requested afresh).
fn abandon_after(
    k: usize,
    plan: &PagePlan,
    chain: &mut OverlapChain,
    aborts: &mut BTreeMap<usize, AbortHandle>,
    ready: &mut VecDeque<(usize, Page, Reservation<'_>)>,
    issued: &mut usize,
) {
    for (_, handle) in aborts.split_off(&(k + 1)) {
        handle.abort();
    }
    ready.retain(|(i, _, _)| *i <= k);
    chain.forget_after(k);
    *issued = (*issued).min(k + 1).min(plan.len());
}

/// Records the attempt's first failure and stops it: nothing more is requested, requests in
/// flight are abandoned and pages waiting to be written are dropped; except on a stop, where
/// pages fetched are written, as the loop promises, and requests in flight end by themselves
/// (abandoned on a signal, awaited when the request budget ran out after they were sent).
fn fail(
    failure: &mut Option<AttemptError>,
    ready: &mut VecDeque<(usize, Page, Reservation<'_>)>,
    aborts: &BTreeMap<usize, AbortHandle>,
    e: AttemptError,
) {
    if failure.is_some() {
        return;
    }
    if !matches!(e, AttemptError::Interrupted) {
        ready.clear();
        for handle in aborts.values() {
            handle.abort();
        }
    }
    *failure = Some(e);
}

/// What the overlap check keeps of a page.
fn page_ends(page: &Page, overlap: u32) -> Ends {
    let len = page.len();
    let n = overlap as usize;
    Ends {
        start: page.start_position,
        len: u32::try_from(len).unwrap_or(u32::MAX),
        head: page.items().take(n).map(|i| i.key().to_owned()).collect(),
        tail: page
            .items()
            .skip(len.saturating_sub(n))
            .map(|i| i.key().to_owned())
            .collect(),
    }
}

/// Writes page `k` (its first `skip` items repeat its predecessor's), times a write that
/// succeeded for the limit on pages ahead, and frees its memory.
async fn write_owned(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    page: Page,
    reservation: Reservation<'_>,
    skip: usize,
    k: usize,
) -> Result<Vec<WindowTally>, AttemptError> {
    let mut tallies = vec![WindowTally::default(); windows.len()];
    let page_number = u32::try_from(k + 1).unwrap_or(u32::MAX);
    let started = Instant::now();
    let written = write_page(ctx, windows, &mut tallies, &page, skip, page_number).await;
    if written.is_ok() {
        ctx.ahead.written(started.elapsed());
    }
    drop(page);
    drop(reservation);
    written.map(|()| tallies)
}
