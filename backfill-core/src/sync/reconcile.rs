//! `reconcile`: deletions of any age, found without re-reading history.
//!
//! A record's `MetaData.CreateTime` never changes, so QBO's `COUNT(*)` of a CreateTime range
//! drops exactly when a record of that range is deleted. Reconcile compares that COUNT with the
//! live rows the raw layer holds for the range, spending as few calls as it can:
//! - one COUNT of the whole span of live rows (first live row's CreateTime to the last's);
//! - a range whose counts agree is skipped;
//! - a range where QBO counts fewer is split at its median live row (by the rows the raw layer
//!   holds, not by time, so each half holds half the rows whatever the volume's shape): only
//!   the left half is counted, the right half's count is the parent's less the left's;
//! - a differing range holding at most one page (1,000) of live rows is re-paged (one call,
//!   as its QBO count is smaller still), and its live ids missing from QBO's answer, confirmed
//!   gone by a read by `Id`, are tombstoned.
//!
//! Cost with `d` deletions in distinct ranges among `n` live rows: about
//! `1 + d × log2(n / 1000)` COUNTs, `d` re-pages and `⌈d / 100⌉` reads, against `⌈n / 1000⌉`
//! pages for a full re-read (50,000 invoices, 3 deletions: about 21 calls against 50).
//!
//! Limit (documented in the runbook): an insert and a delete in the same range cancel in a
//! count, so such a deletion is not seen here; the next `sync`'s CDC reports it when it
//! happened within the last 30 days. A range where QBO counts more than the raw layer holds
//! has new records: loading them is `sync`'s job.

use std::collections::BTreeSet;

use qbo_client::{Op, Order, Query};
use raw_sink::{Sink, SyncKind, SyncMarks, SyncStatus, SyncTally, Tombstone};
use time::OffsetDateTime;

use super::{Calls, IDS_PER_READ, Started, SyncConfig, SyncReport, begin, finish, qbo};
use crate::entity::EntityInfo;
use crate::{Entity, Error};

/// Live rows a differing range may hold and be re-paged rather than split (one page).
const PAGE_ROWS: usize = qbo_client::MAX_RESULTS_LIMIT as usize;

/// What a reconcile did, beyond its ledger row.
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    /// The sync ledger row (kind `reconcile`).
    pub sync: SyncReport,
    /// Ranges counted (COUNT calls).
    pub ranges_counted: u64,
    /// Ranges re-paged.
    pub ranges_repaged: u64,
    /// Page calls a full re-read of the compared span would take at the least (one per 1,000
    /// records QBO counts in it, no COUNT), for comparison with the calls spent.
    pub full_reread_calls: u64,
}

#[derive(Default)]
struct Figures {
    counted: u64,
    repaged: u64,
    full_reread: u64,
}

fn created_query(
    info: EntityInfo,
    from: OffsetDateTime,
    to: OffsetDateTime,
    count: bool,
    start: u32,
) -> Result<Query, Error> {
    let mut q = if count {
        Query::count(info.name)
    } else {
        Query::select(info.name)
    }
    .filter("MetaData.CreateTime", Op::Ge, from)
    .filter("MetaData.CreateTime", Op::Lt, to);
    if !count {
        q = q
            .order_by("MetaData.CreateTime", Order::Asc)
            .start_position(start)
            .max_results(qbo_client::MAX_RESULTS_LIMIT);
    }
    if info.name_list {
        q = q.include_inactive();
    }
    q.build().map_err(|e| qbo(e.into()))
}

/// Reconciles entity `E`: finds and tombstones records deleted in QBO at any time.
///
/// # Errors
/// [`Error::NotBackfilled`]; [`Error::SyncStopped`] on a stop or the budget spent (the
/// tombstones applied are kept; the marks do not move); QBO and database errors (recorded in
/// `backfill.syncs`).
pub async fn reconcile<E: Entity>(
    client: &qbo_client::QboClient,
    sink: &Sink,
    cfg: &SyncConfig,
) -> Result<ReconcileReport, Error> {
    let info = EntityInfo::of::<E>();
    let realm = client.realm_id().to_owned();
    let Started {
        lock,
        before,
        first,
        id,
    } = begin(sink, &realm, info, SyncKind::Reconcile).await?;
    let calls = Calls::new(client, cfg);
    let mut tally = SyncTally::default();
    let mut figures = Figures::default();
    let result = run(&calls, sink, info, &mut tally, &mut figures).await;
    tally.api_calls = calls.spent();
    let outcome = match &result {
        Ok(now) => (
            SyncStatus::Succeeded,
            Some(SyncMarks {
                changes: before.changes,
                deletes: (*now).max(before.deletes),
            }),
            None,
        ),
        Err(e @ Error::SyncStopped(_)) => (SyncStatus::Interrupted, None, Some(e.to_string())),
        Err(e) => (SyncStatus::Failed, None, Some(crate::run::error_chain(e))),
    };
    let row = finish(sink, lock, id, outcome, &tally).await?;
    result?;
    tracing::info!(
        pipeline = info.pipeline,
        realm = realm.as_str(),
        sync_id = id.get(),
        tombstoned = tally.tombstoned,
        api_calls = tally.api_calls,
        ranges_counted = figures.counted,
        ranges_repaged = figures.repaged,
        full_reread_calls = figures.full_reread,
        "reconcile_finished"
    );
    Ok(ReconcileReport {
        sync: SyncReport { row, first },
        ranges_counted: figures.counted,
        ranges_repaged: figures.repaged,
        full_reread_calls: figures.full_reread,
    })
}

/// A CreateTime range under comparison: `[from, to)`, the indexes `[lo, hi)` of its live rows
/// in the sorted creation times, and QBO's count of it.
struct Range {
    from: OffsetDateTime,
    to: OffsetDateTime,
    lo: usize,
    hi: usize,
    in_qbo: u64,
}

/// Returns QBO's clock at the start (the new deletions mark).
async fn run(
    calls: &Calls<'_>,
    sink: &Sink,
    info: EntityInfo,
    tally: &mut SyncTally,
    figures: &mut Figures,
) -> Result<OffsetDateTime, Error> {
    let client = calls.client();
    let realm = client.realm_id();
    let times = sink
        .live_created_times(info.table, realm)
        .await
        .map_err(Error::Database)?;
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        // Nothing live to compare: QBO's clock is still the new mark.
        let q = created_query(
            info,
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::now_utc(),
            true,
            1,
        )?;
        let (_, now) = calls.call(client.count_with_time(&q)).await?;
        figures.counted += 1;
        return Ok(now.unwrap_or_else(OffsetDateTime::now_utc));
    };
    // Records created after the last live row are not in the raw layer: nothing of theirs
    // can have vanished from it.
    let end = last + time::Duration::SECOND;
    // One COUNT of the whole span, with QBO's clock (the new deletions mark).
    let q = created_query(info, first, end, true, 1)?;
    let (whole, now) = calls.call(client.count_with_time(&q)).await?;
    let now = now.unwrap_or_else(OffsetDateTime::now_utc);
    figures.counted += 1;
    figures.full_reread = whole
        .div_ceil(u64::from(qbo_client::MAX_RESULTS_LIMIT))
        .max(1);
    // The index of the first live row created at or after `t`.
    let at = |t: OffsetDateTime| times.partition_point(|c| *c < t);
    let mut stack = vec![Range {
        from: first,
        to: end,
        lo: 0,
        hi: times.len(),
        in_qbo: whole,
    }];
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    while let Some(r) = stack.pop() {
        let live = (r.hi - r.lo) as u64;
        if r.in_qbo >= live {
            continue;
        }
        // The median live row's creation second splits the range (the rows sharing it go
        // right); a range that cannot be split (its rows share one second) is re-paged whole.
        let mid = times[r.lo + (r.hi - r.lo) / 2];
        let split = r.hi - r.lo > PAGE_ROWS && mid > r.from && mid < r.to;
        if !split {
            figures.repaged += 1;
            let missing = repage(calls, sink, info, &r).await?;
            candidates.extend(missing);
            continue;
        }
        let q = created_query(info, r.from, mid, true, 1)?;
        let left = calls.call(client.count(&q)).await?;
        figures.counted += 1;
        let m = at(mid);
        // The right half's count follows from the whole's (one call saved per split).
        stack.push(Range {
            from: mid,
            to: r.to,
            lo: m,
            hi: r.hi,
            in_qbo: r.in_qbo.saturating_sub(left),
        });
        stack.push(Range {
            from: r.from,
            to: mid,
            lo: r.lo,
            hi: m,
            in_qbo: left,
        });
    }
    if candidates.is_empty() {
        return Ok(now);
    }
    let ids: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let mut present = BTreeSet::new();
    for chunk in ids.chunks(IDS_PER_READ) {
        present.extend(
            calls
                .call(client.read_ids(info.name, chunk, info.name_list))
                .await?,
        );
    }
    tally.deletes_refuted += present.len() as u64;
    let gone: Vec<Tombstone<'_>> = candidates
        .iter()
        .filter(|id| !present.contains(*id))
        .map(|id| Tombstone {
            id,
            deleted_at: now,
            stub: None,
        })
        .collect();
    let out = sink
        .tombstone(info.table, realm, &gone)
        .await
        .map_err(Error::Database)?;
    tally.tombstoned += out.marked.len() as u64;
    Ok(now)
}

/// Pages range `r` (one page when QBO counts at most 1,000 in it; more only while pages come
/// back full and short of the count) and returns its live ids QBO did not return.
async fn repage(
    calls: &Calls<'_>,
    sink: &Sink,
    info: EntityInfo,
    r: &Range,
) -> Result<Vec<String>, Error> {
    let client = calls.client();
    let mut returned: BTreeSet<String> = BTreeSet::new();
    let mut start = 1u32;
    loop {
        let q = created_query(info, r.from, r.to, false, start)?;
        let page = calls.call(client.query_page(&q)).await?;
        let n = page.records.len() + page.rejects.len();
        returned.extend(page.records.into_iter().map(|x| x.id));
        returned.extend(page.rejects.into_iter().filter_map(|x| x.id));
        // QBO's count of the range says when everything was read; an empty page ends it too.
        if n == 0 || returned.len() as u64 >= r.in_qbo {
            break;
        }
        start = start.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
    let live = sink
        .live_ids_created_in(info.table, client.realm_id(), r.from, r.to)
        .await
        .map_err(Error::Database)?;
    Ok(live
        .into_iter()
        .filter(|id| !returned.contains(id))
        .collect())
}
