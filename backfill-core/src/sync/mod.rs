//! `sync`: keeping a backfilled entity current (issue 14). From the entity's marks in the
//! ledger, the records changed since (`MetaData.LastUpdatedTime`, [`changes`]) are upserted and
//! the deletions CDC reports since (confirmed by a read by `Id`, [`deletes`]) tombstoned; the
//! sync is recorded in `backfill.syncs` and, only when it succeeds, the marks move.
//! `reconcile` ([`reconcile`]) finds deletions of any age by comparing counts.
//!
//! Invariants:
//! - Marks are QBO's clock: the changes mark is the newest `LastUpdatedTime` loaded, the
//!   deletions mark the `time` of the last CDC answer; the 30-day horizon is measured on the
//!   `time` of the sync's first answer, never on the local clock.
//! - Both spans start [`SyncConfig::overlap`] behind their mark (QBO's eventual consistency: a
//!   change can become visible a little after its `LastUpdatedTime`).
//! - Nothing is written before the horizon check: a refused sync leaves the raw layer as it was.
//! - The marks move only in the transaction recording a succeeded sync; a sync that dies
//!   (SIGKILL included) leaves them, and its re-run reads the same spans again. Upserts and
//!   tombstones are idempotent, so a second sync right after a first writes nothing.
//! - One sync per entity and company at a time (an advisory lock); a sync found `running`
//!   under the lock died, and is recorded `interrupted`.
//! - A CDC `Deleted` is tombstoned only when a read by `Id` no longer returns the record.

pub mod changes;
pub mod deletes;
pub mod reconcile;

use std::time::Duration;

use qbo_client::{Op, QboClient, QboError, Query};
use raw_sink::{NewSync, Sink, SyncKind, SyncMarks, SyncRow, SyncStatus, SyncTally};
use time::OffsetDateTime;

use crate::window::format_utc;
use crate::{Entity, Error};

/// Default safety overlap behind each mark.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(10 * 60);

/// How a sync runs.
#[derive(Debug, Clone, Copy)]
pub struct SyncConfig {
    /// How far behind each mark the spans start (QBO's eventual consistency).
    pub overlap: Duration,
    /// MAXRESULTS of the changed-records queries (≤ 1000).
    pub page_size: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            overlap: DEFAULT_OVERLAP,
            page_size: qbo_client::MAX_RESULTS_LIMIT,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The ledger row, as finished.
    pub row: SyncRow,
    /// Whether the marks before were derived from the backfill (first sync).
    pub first: bool,
}

/// The QBO error as the crate's: authentication apart.
pub(crate) fn qbo(e: QboError) -> Error {
    if e.is_auth() {
        Error::Auth(e)
    } else {
        Error::Qbo(e)
    }
}

/// The marks a sync of `E` starts from: the ledger's, or for a first sync the backfill's
/// ([`raw_sink::Ledger::backfill_mark`], for both).
///
/// # Errors
/// [`Error::NotBackfilled`] when `E` has no done window in the company; [`Error::Database`].
pub async fn start_marks<E: Entity>(sink: &Sink, realm: &str) -> Result<(SyncMarks, bool), Error> {
    let ledger = sink.ledger();
    if let Some(m) = ledger
        .sync_marks(E::PIPELINE, realm)
        .await
        .map_err(Error::Database)?
    {
        return Ok((m, false));
    }
    match ledger
        .backfill_mark(E::PIPELINE, realm)
        .await
        .map_err(Error::Database)?
    {
        Some(m) => Ok((
            SyncMarks {
                changes: m,
                deletes: m,
            },
            true,
        )),
        None => Err(Error::NotBackfilled {
            pipeline: E::PIPELINE,
            realm: realm.to_owned(),
        }),
    }
}

fn overlap(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// A sync or reconcile under way: its lock, the marks it starts from (and whether they came
/// from the backfill), and its ledger row.
pub(crate) struct Started {
    pub(crate) lock: raw_sink::AdvisoryLock,
    pub(crate) before: SyncMarks,
    pub(crate) first: bool,
    pub(crate) id: raw_sink::SyncId,
}

/// Takes the entity's sync lock (one sync or reconcile per entity and company), reads its
/// marks and records the start in `backfill.syncs`.
pub(crate) async fn begin<E: Entity>(
    sink: &Sink,
    realm: &str,
    kind: SyncKind,
) -> Result<Started, Error> {
    let ledger = sink.ledger();
    let lock = ledger
        .advisory_lock(&format!("sync:{}:{realm}", E::PIPELINE))
        .await
        .map_err(Error::Database)?;
    let (before, first) = start_marks::<E>(sink, realm).await?;
    let id = ledger
        .start_sync(&NewSync {
            kind,
            pipeline: E::PIPELINE.to_owned(),
            realm_id: realm.to_owned(),
            entity: E::NAME.to_owned(),
            marks_before: Some(before),
        })
        .await
        .map_err(Error::Database)?;
    Ok(Started {
        lock,
        before,
        first,
        id,
    })
}

/// Records how a sync or reconcile ended (the marks move only with `after`), then releases its
/// lock; the ledger row as it now stands.
pub(crate) async fn finish(
    sink: &Sink,
    lock: raw_sink::AdvisoryLock,
    id: raw_sink::SyncId,
    outcome: (SyncStatus, Option<SyncMarks>, Option<String>),
    tally: &SyncTally,
) -> Result<raw_sink::SyncRow, Error> {
    let (status, after, error) = outcome;
    let row = sink
        .ledger()
        .finish_sync(id, status, tally, after, error.as_deref())
        .await
        .map_err(Error::Database)?;
    let _ = lock.release().await;
    Ok(row)
}

/// Syncs entity `E`: changed records and confirmed deletions since its marks.
///
/// # Errors
/// [`Error::SyncGap`] (nothing written) when deletions are synced only up to longer ago than
/// CDC's 30 days; [`Error::NotBackfilled`]; QBO and database errors. Every case but the
/// missing backfill is recorded in `backfill.syncs`.
pub async fn sync<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    cfg: &SyncConfig,
) -> Result<SyncReport, Error> {
    let realm = client.realm_id().to_owned();
    let Started {
        lock,
        before,
        first,
        id,
    } = begin::<E>(sink, &realm, SyncKind::Sync).await?;
    tracing::info!(
        pipeline = E::PIPELINE,
        realm = realm.as_str(),
        sync_id = id.get(),
        changes_mark = %format_utc(before.changes),
        deletes_mark = %format_utc(before.deletes),
        first,
        "sync_started"
    );
    let calls_before = client.api_calls();
    let mut tally = SyncTally::default();
    let result = run_sync::<E>(client, sink, cfg, before, &mut tally).await;
    tally.api_calls = client.api_calls() - calls_before;
    let outcome = match &result {
        Ok(after) => (SyncStatus::Succeeded, Some(*after), None),
        Err(e @ Error::SyncGap { .. }) => (SyncStatus::Refused, None, Some(e.to_string())),
        Err(e) => (SyncStatus::Failed, None, Some(crate::run::error_chain(e))),
    };
    let row = finish(sink, lock, id, outcome, &tally).await?;
    result?;
    tracing::info!(
        pipeline = E::PIPELINE,
        realm = realm.as_str(),
        sync_id = id.get(),
        inserted = tally.inserted,
        updated = tally.updated,
        unchanged = tally.unchanged,
        tombstoned = tally.tombstoned,
        deletes_refuted = tally.deletes_refuted,
        api_calls = tally.api_calls,
        "sync_finished"
    );
    Ok(SyncReport { row, first })
}

async fn run_sync<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    cfg: &SyncConfig,
    before: SyncMarks,
    tally: &mut SyncTally,
) -> Result<SyncMarks, Error> {
    let overlap = overlap(cfg.overlap);
    let from = before.changes - overlap;
    // The first call: how many records changed, and QBO's clock for the horizon check.
    let mut probe = Query::count(E::NAME).filter("MetaData.LastUpdatedTime", Op::Ge, from);
    if E::NAME_LIST {
        probe = probe.include_inactive();
    }
    let probe = probe.build().map_err(|e| qbo(e.into()))?;
    let (changed, server_now) = client.count_with_time(&probe).await.map_err(qbo)?;
    let server_now = server_now.unwrap_or_else(OffsetDateTime::now_utc);
    check_horizon::<E>(client.realm_id(), before.deletes, server_now, overlap)?;
    tracing::debug!(pipeline = E::PIPELINE, changed, "sync_changes_counted");
    let deletes_after =
        deletes::apply::<E>(client, sink, before.deletes - overlap, server_now, tally).await?;
    let changes_after = changes::load::<E>(client, sink, cfg, from, before.changes, tally).await?;
    Ok(SyncMarks {
        changes: changes_after,
        deletes: deletes_after.max(before.deletes),
    })
}

/// Refuses when CDC could not answer from `mark - overlap` at QBO's `now`.
fn check_horizon<E: Entity>(
    realm: &str,
    mark: OffsetDateTime,
    now: OffsetDateTime,
    overlap: time::Duration,
) -> Result<(), Error> {
    let horizon = time::Duration::try_from(qbo_client::CDC_MAX_AGE).unwrap_or(time::Duration::MAX);
    if now - (mark - overlap) > horizon {
        return Err(Error::SyncGap {
            pipeline: E::PIPELINE,
            realm: realm.to_owned(),
            mark: format_utc(mark),
            days: (now - mark).whole_days(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Invoice;
    use time::macros::datetime;

    #[test]
    fn the_horizon_counts_the_overlap() {
        let now = datetime!(2026-03-31 12:00 UTC);
        let ten = time::Duration::minutes(10);
        assert!(check_horizon::<Invoice>("r", now - time::Duration::days(29), now, ten).is_ok());
        let edge = now - time::Duration::days(30) + ten;
        assert!(check_horizon::<Invoice>("r", edge, now, ten).is_ok());
        let err =
            check_horizon::<Invoice>("r", edge - time::Duration::seconds(1), now, ten).unwrap_err();
        assert_eq!(err.exit_status().code(), 7);
        assert!(err.to_string().contains("reconcile"), "{err}");
    }
}
