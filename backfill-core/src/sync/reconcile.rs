//! `reconcile`: deletions of any age, found without re-reading history.
//!
//! A record's `MetaData.CreateTime` never changes, so QBO's `COUNT(*)` of a CreateTime range
//! drops exactly when a record of that range is deleted. Reconcile compares that COUNT with the
//! live rows the raw layer holds for the range, from the first live row's CreateTime to the
//! last's; a range where QBO counts fewer is halved and both halves counted again (as sparse
//! probing narrows a range), until a range fits one page: only those ranges are re-paged, and
//! the live ids missing from them, confirmed gone by a read by `Id`, are tombstoned.
//!
//! Limit (documented in the runbook): an insert and a delete in the same range cancel in a
//! count, so such a deletion is not seen here; the next `sync`'s CDC reports it when it
//! happened within the last 30 days. A range where QBO counts more than the raw layer holds
//! has new records: loading them is `sync`'s job.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use qbo_client::{Op, Order, QboClient, Query};
use raw_sink::{Sink, SyncKind, SyncMarks, SyncStatus, SyncTally, Tombstone};
use time::OffsetDateTime;

use super::{Started, SyncConfig, SyncReport, begin, finish, qbo};
use crate::{Entity, Error};

/// What a reconcile did, beyond its ledger row.
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    /// The sync ledger row (kind `reconcile`).
    pub sync: SyncReport,
    /// Ranges counted.
    pub ranges_counted: u64,
    /// Ranges re-paged.
    pub ranges_repaged: u64,
    /// Page calls a full re-read of the compared span would take at the least (one per 1,000
    /// records QBO counts in it, no COUNT), for comparison with the calls spent.
    pub full_reread_calls: u64,
}

fn created_query<E: Entity>(
    from: OffsetDateTime,
    to: OffsetDateTime,
    count: bool,
) -> Result<Query, Error> {
    let mut q = if count {
        Query::count(E::NAME)
    } else {
        Query::select(E::NAME)
    }
    .filter("MetaData.CreateTime", Op::Ge, from)
    .filter("MetaData.CreateTime", Op::Lt, to);
    if !count {
        q = q
            .order_by("MetaData.CreateTime", Order::Asc)
            .max_results(qbo_client::MAX_RESULTS_LIMIT);
    }
    if E::NAME_LIST {
        q = q.include_inactive();
    }
    q.build().map_err(|e| qbo(e.into()))
}

/// Reconciles entity `E`: finds and tombstones records deleted in QBO at any time.
///
/// # Errors
/// [`Error::NotBackfilled`]; QBO and database errors (recorded in `backfill.syncs`).
pub async fn reconcile<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    _cfg: &SyncConfig,
) -> Result<ReconcileReport, Error> {
    let realm = client.realm_id().to_owned();
    let Started {
        lock,
        before,
        first,
        id,
    } = begin::<E>(sink, &realm, SyncKind::Reconcile).await?;
    let calls_before = client.api_calls();
    let mut tally = SyncTally::default();
    let mut figures = (0u64, 0u64, 0u64);
    let result = run::<E>(client, sink, &mut tally, &mut figures).await;
    tally.api_calls = client.api_calls() - calls_before;
    let outcome = match &result {
        Ok(now) => (
            SyncStatus::Succeeded,
            Some(SyncMarks {
                changes: before.changes,
                deletes: (*now).max(before.deletes),
            }),
            None,
        ),
        Err(e) => (SyncStatus::Failed, None, Some(crate::run::error_chain(e))),
    };
    let row = finish(sink, lock, id, outcome, &tally).await?;
    result?;
    tracing::info!(
        pipeline = E::PIPELINE,
        realm = realm.as_str(),
        sync_id = id.get(),
        tombstoned = tally.tombstoned,
        api_calls = tally.api_calls,
        full_reread_calls = figures.2,
        "reconcile_finished"
    );
    Ok(ReconcileReport {
        sync: SyncReport { row, first },
        ranges_counted: figures.0,
        ranges_repaged: figures.1,
        full_reread_calls: figures.2,
    })
}

/// Returns QBO's clock at the start (the new deletions mark).
async fn run<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    tally: &mut SyncTally,
    figures: &mut (u64, u64, u64),
) -> Result<OffsetDateTime, Error> {
    let realm = client.realm_id();
    let Some((first, last)) = sink
        .live_created_span(E::TABLE, realm)
        .await
        .map_err(Error::Database)?
    else {
        // Nothing live to compare: QBO's clock is still the new mark.
        let (_, now) = client
            .count_with_time(&created_query::<E>(
                OffsetDateTime::UNIX_EPOCH,
                OffsetDateTime::now_utc(),
                true,
            )?)
            .await
            .map_err(qbo)?;
        return Ok(now.unwrap_or_else(OffsetDateTime::now_utc));
    };
    // Records created after the last live row are not in the raw layer: nothing of theirs
    // can have vanished from it.
    let end = last + time::Duration::SECOND;
    // One COUNT of the whole span, with QBO's clock (the new deletions mark).
    let (first_count, now) = client
        .count_with_time(&created_query::<E>(first, end, true)?)
        .await
        .map_err(qbo)?;
    let now = now.unwrap_or_else(OffsetDateTime::now_utc);
    figures.0 += 1;
    figures.2 = first_count
        .div_ceil(u64::from(qbo_client::MAX_RESULTS_LIMIT))
        .max(1);
    let mut stack = vec![(first, end, first_count)];
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    while let Some((from, to, in_qbo)) = stack.pop() {
        let live = sink
            .live_count_created_in(E::TABLE, realm, from, to)
            .await
            .map_err(Error::Database)?;
        if in_qbo >= live {
            continue;
        }
        let width = to - from;
        if in_qbo <= u64::from(qbo_client::MAX_RESULTS_LIMIT) || width <= time::Duration::SECOND {
            figures.1 += 1;
            let q = created_query::<E>(from, to, false)?;
            let pages: Vec<qbo_client::Page> = client.pages(q).try_collect().await.map_err(qbo)?;
            let returned: BTreeSet<&str> = pages
                .iter()
                .flat_map(|p| {
                    p.records
                        .iter()
                        .map(|r| r.id.as_str())
                        .chain(p.rejects.iter().filter_map(|r| r.id.as_deref()))
                })
                .collect();
            let live_ids = sink
                .live_ids_created_in(E::TABLE, realm, from, to)
                .await
                .map_err(Error::Database)?;
            candidates.extend(
                live_ids
                    .into_iter()
                    .filter(|id| !returned.contains(id.as_str())),
            );
            continue;
        }
        let mid = from + width / 2;
        let left = client
            .count(&created_query::<E>(from, mid, true)?)
            .await
            .map_err(qbo)?;
        figures.0 += 1;
        // The right half's count follows from the whole's (one call saved per split).
        let right = in_qbo.saturating_sub(left);
        stack.push((mid, to, right));
        stack.push((from, mid, left));
    }
    if candidates.is_empty() {
        return Ok(now);
    }
    let ids: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let present = client
        .read_ids(E::NAME, &ids, E::NAME_LIST)
        .await
        .map_err(qbo)?;
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
        .tombstone(E::TABLE, realm, &gone)
        .await
        .map_err(Error::Database)?;
    tally.tombstoned += out.marked.len() as u64;
    Ok(now)
}
