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
//! - The marks move only in the transaction recording the sync's end: to where it finished
//!   when it succeeded; when it was stopped cleanly (SIGINT/SIGTERM, the request budget), to no
//!   further than what it applied (the changes mark to the newest `LastUpdatedTime` written,
//!   the deletions mark only if its CDC pass was applied whole). A sync that dies (SIGKILL
//!   included) leaves them, and its re-run reads the same spans again. Upserts and tombstones
//!   are idempotent, so a second sync right after a first writes nothing.
//! - Several entities synced together share their CDC calls: one call names them all
//!   (`deletes::apply`); each entity keeps its own ledger row and marks.
//! - Every QBO call goes through `Calls`: none starts once a stop is requested or the
//!   request budget is spent, and one in flight is abandoned on a stop (nothing of it was
//!   written).
//! - One sync per entity and company at a time (an advisory lock); a sync found `running`
//!   under the lock died, and is recorded `interrupted`.
//! - A CDC `Deleted` is tombstoned only when a read by `Id` no longer returns the record.

pub mod changes;
pub mod deletes;
pub mod reconcile;

use std::future::Future;
use std::time::Duration;

use qbo_client::{Op, QboClient, QboError, Query};
use raw_sink::{NewSync, Sink, SyncKind, SyncMarks, SyncRow, SyncStatus, SyncTally};
use time::OffsetDateTime;

use crate::entity::EntityInfo;
use crate::window::format_utc;
use crate::{Entity, Error, Shutdown, StopReason};

/// Default safety overlap behind each mark.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(10 * 60);

/// Ids per read by `Id` (one call each).
pub(crate) const IDS_PER_READ: usize = 100;

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How far behind each mark the spans start (QBO's eventual consistency).
    pub overlap: Duration,
    /// MAXRESULTS of the changed-records queries (≤ 1000).
    pub page_size: u32,
    /// At most this many QBO API calls (retries included) for the whole invocation; once
    /// spent, the sync stops cleanly as on a signal ([`Error::SyncStopped`], exit 1).
    pub max_requests: Option<u64>,
    /// A stop request (the CLI's SIGINT/SIGTERM handlers) that ends the sync cleanly.
    pub shutdown: Option<Shutdown>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            overlap: DEFAULT_OVERLAP,
            page_size: qbo_client::MAX_RESULTS_LIMIT,
            max_requests: None,
            shutdown: None,
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

/// The gate every QBO call of a sync or reconcile passes: no call starts once a stop was
/// requested or the request budget is spent, and a call in flight is abandoned on a stop.
pub(crate) struct Calls<'a> {
    client: &'a QboClient,
    start: u64,
    max: Option<u64>,
    stop: Shutdown,
}

impl<'a> Calls<'a> {
    pub(crate) fn new(client: &'a QboClient, cfg: &SyncConfig) -> Self {
        Self {
            client,
            start: client.api_calls(),
            max: cfg.max_requests,
            stop: cfg.shutdown.clone().unwrap_or_default(),
        }
    }

    pub(crate) fn client(&self) -> &'a QboClient {
        self.client
    }

    /// API calls made through the client since this gate was made.
    pub(crate) fn spent(&self) -> u64 {
        self.client.api_calls().saturating_sub(self.start)
    }

    /// `Err(SyncStopped)` once a stop was requested or the budget is spent.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if let Some(max) = self.max {
            let spent = self.spent();
            if spent >= max && self.stop.request(StopReason::Budget) {
                tracing::warn!(
                    max_requests = max,
                    api_calls = spent,
                    "request_budget_spent"
                );
            }
        }
        match self.stop.reason() {
            Some(reason) => Err(Error::SyncStopped(reason)),
            None => Ok(()),
        }
    }

    /// Runs one QBO call: refused when [`Calls::check`] is, abandoned on a stop.
    pub(crate) async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, QboError>>,
    ) -> Result<T, Error> {
        self.check()?;
        tokio::select! {
            biased;
            reason = self.stop.requested() => Err(Error::SyncStopped(reason)),
            r = f => r.map_err(qbo),
        }
    }
}

/// The marks a sync of `E` starts from: the ledger's, or for a first sync the backfill's
/// ([`raw_sink::Ledger::backfill_mark`], for both).
///
/// # Errors
/// [`Error::NotBackfilled`] when `E` has no done window in the company; [`Error::Database`].
pub async fn start_marks<E: Entity>(sink: &Sink, realm: &str) -> Result<(SyncMarks, bool), Error> {
    marks_of(sink, realm, EntityInfo::of::<E>()).await
}

async fn marks_of(sink: &Sink, realm: &str, info: EntityInfo) -> Result<(SyncMarks, bool), Error> {
    let ledger = sink.ledger();
    if let Some(m) = ledger
        .sync_marks(info.pipeline, realm)
        .await
        .map_err(Error::Database)?
    {
        return Ok((m, false));
    }
    match ledger
        .backfill_mark(info.pipeline, realm)
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
            pipeline: info.pipeline,
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
pub(crate) async fn begin(
    sink: &Sink,
    realm: &str,
    info: EntityInfo,
    kind: SyncKind,
) -> Result<Started, Error> {
    let ledger = sink.ledger();
    let lock = ledger
        .advisory_lock(&format!("sync:{}:{realm}", info.pipeline))
        .await
        .map_err(Error::Database)?;
    let (before, first) = marks_of(sink, realm, info).await?;
    let id = ledger
        .start_sync(&NewSync {
            kind,
            pipeline: info.pipeline.to_owned(),
            realm_id: realm.to_owned(),
            entity: info.name.to_owned(),
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
/// CDC's 30 days; [`Error::SyncStopped`] on a stop or the budget spent (what was applied kept,
/// the marks moved to it); [`Error::NotBackfilled`]; QBO and database errors. Every case but
/// the missing backfill is recorded in `backfill.syncs`.
pub async fn sync<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    cfg: &SyncConfig,
) -> Result<SyncReport, Error> {
    let info = EntityInfo::of::<E>();
    let mut out = sync_many(client, sink, cfg, &[info]).await;
    match out.pop() {
        Some((_, r)) => r,
        None => Err(Error::NotBackfilled {
            pipeline: info.pipeline,
            realm: client.realm_id().to_owned(),
        }),
    }
}

/// One entity of a [`sync_many`] under way.
struct Part {
    info: EntityInfo,
    started: Started,
    tally: SyncTally,
    /// Where the changed records are read from (the changes mark less the overlap).
    from: OffsetDateTime,
    /// Records changed since `from`, as QBO counted them.
    changed: u64,
    /// QBO's clock at the sync's first answer.
    now: OffsetDateTime,
    /// The deletions mark once the CDC pass was applied whole.
    deletes_after: Option<OffsetDateTime>,
    /// The newest `LastUpdatedTime` written (the changes mark before, at first).
    changes_after: OffsetDateTime,
    error: Option<Error>,
}

/// Syncs several entities of one company together: each is counted and checked against CDC's
/// horizon, then one CDC pass names every entity still going (`deletes::apply`: one call
/// unless an answer reaches the cap), then each loads its changed records. Each entity has its
/// own ledger row, marks and outcome, in the order given.
pub async fn sync_many(
    client: &QboClient,
    sink: &Sink,
    cfg: &SyncConfig,
    infos: &[EntityInfo],
) -> Vec<(EntityInfo, Result<SyncReport, Error>)> {
    let realm = client.realm_id().to_owned();
    let calls = Calls::new(client, cfg);
    let ov = overlap(cfg.overlap);
    let mut out = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    for &info in infos {
        let started = match begin(sink, &realm, info, SyncKind::Sync).await {
            Ok(s) => s,
            Err(e) => {
                out.push((info, Err(e)));
                continue;
            }
        };
        tracing::info!(
            pipeline = info.pipeline,
            realm = realm.as_str(),
            sync_id = started.id.get(),
            changes_mark = %format_utc(started.before.changes),
            deletes_mark = %format_utc(started.before.deletes),
            first = started.first,
            "sync_started"
        );
        let before = started.before;
        let mut part = Part {
            info,
            tally: SyncTally::default(),
            from: before.changes - ov,
            changed: 0,
            now: before.changes,
            deletes_after: None,
            changes_after: before.changes,
            error: None,
            started,
        };
        let c0 = client.api_calls();
        match probe(&calls, info, part.from, before.deletes, ov).await {
            Ok((changed, now)) => {
                part.changed = changed;
                part.now = now;
            }
            Err(e) => part.error = Some(e),
        }
        part.tally.api_calls += client.api_calls() - c0;
        parts.push(part);
    }
    // One CDC pass for every entity still going.
    let mut tasks: Vec<deletes::Task> = parts
        .iter()
        .filter(|p| p.error.is_none())
        .map(|p| deletes::Task::new(p.info, p.started.before.deletes - ov, p.now))
        .collect();
    deletes::apply(&calls, sink, &mut tasks).await;
    for task in tasks {
        let Some(p) = parts.iter_mut().find(|p| p.info == task.info) else {
            continue;
        };
        p.tally.add(&task.tally);
        match task.outcome {
            Some(Ok(mark)) => p.deletes_after = Some(mark),
            Some(Err(e)) => p.error = Some(e),
            None => {}
        }
    }
    for p in &mut parts {
        if p.error.is_some() {
            continue;
        }
        tracing::debug!(
            pipeline = p.info.pipeline,
            changed = p.changed,
            "sync_changes_counted"
        );
        if p.changed == 0 {
            // QBO counted no change since `from`: no page to read.
            continue;
        }
        let c0 = client.api_calls();
        let r = changes::load(
            &calls,
            sink,
            cfg,
            p.info,
            p.from,
            &mut p.changes_after,
            &mut p.tally,
        )
        .await;
        p.tally.api_calls += client.api_calls() - c0;
        if let Err(e) = r {
            p.error = Some(e);
        }
    }
    for p in parts {
        out.push((p.info, end_part(sink, &realm, p).await));
    }
    // In the order given.
    out.sort_by_key(|(info, _)| infos.iter().position(|i| i == info));
    out
}

async fn end_part(sink: &Sink, realm: &str, p: Part) -> Result<SyncReport, Error> {
    let before = p.started.before;
    let reached = SyncMarks {
        changes: p.changes_after.max(before.changes),
        deletes: p
            .deletes_after
            .unwrap_or(before.deletes)
            .max(before.deletes),
    };
    let outcome = match &p.error {
        None => (SyncStatus::Succeeded, Some(reached), None),
        Some(e @ Error::SyncGap { .. }) => (SyncStatus::Refused, None, Some(e.to_string())),
        Some(e @ Error::SyncStopped(_)) => {
            (SyncStatus::Interrupted, Some(reached), Some(e.to_string()))
        }
        Some(e) => (SyncStatus::Failed, None, Some(crate::run::error_chain(e))),
    };
    let status = outcome.0;
    let row = finish(sink, p.started.lock, p.started.id, outcome, &p.tally).await?;
    let t = &p.tally;
    tracing::info!(
        pipeline = p.info.pipeline,
        realm,
        sync_id = p.started.id.get(),
        status = status.as_str(),
        inserted = t.inserted,
        updated = t.updated,
        unchanged = t.unchanged,
        tombstoned = t.tombstoned,
        deletes_refuted = t.deletes_refuted,
        api_calls = t.api_calls,
        "sync_finished"
    );
    match p.error {
        Some(e) => Err(e),
        None => Ok(SyncReport {
            row,
            first: p.started.first,
        }),
    }
}

/// The first call of an entity's sync: how many records changed since `from`, and QBO's clock
/// for the horizon check (refused before anything is written).
async fn probe(
    calls: &Calls<'_>,
    info: EntityInfo,
    from: OffsetDateTime,
    deletes_mark: OffsetDateTime,
    ov: time::Duration,
) -> Result<(u64, OffsetDateTime), Error> {
    let mut probe = Query::count(info.name).filter("MetaData.LastUpdatedTime", Op::Ge, from);
    if info.name_list {
        probe = probe.include_inactive();
    }
    let probe = probe.build().map_err(|e| qbo(e.into()))?;
    let (changed, server_now) = calls.call(calls.client().count_with_time(&probe)).await?;
    let server_now = server_now.unwrap_or_else(OffsetDateTime::now_utc);
    check_horizon(
        info,
        calls.client().realm_id(),
        deletes_mark,
        server_now,
        ov,
    )?;
    Ok((changed, server_now))
}

/// Refuses when CDC could not answer from `mark - overlap` at QBO's `now`.
fn check_horizon(
    info: EntityInfo,
    realm: &str,
    mark: OffsetDateTime,
    now: OffsetDateTime,
    overlap: time::Duration,
) -> Result<(), Error> {
    let horizon = time::Duration::try_from(qbo_client::CDC_MAX_AGE).unwrap_or(time::Duration::MAX);
    if now - (mark - overlap) > horizon {
        return Err(Error::SyncGap {
            pipeline: info.pipeline,
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
        assert!(
            check_horizon(
                EntityInfo::of::<Invoice>(),
                "r",
                now - time::Duration::days(29),
                now,
                ten
            )
            .is_ok()
        );
        let edge = now - time::Duration::days(30) + ten;
        assert!(check_horizon(EntityInfo::of::<Invoice>(), "r", edge, now, ten).is_ok());
        let err = check_horizon(
            EntityInfo::of::<Invoice>(),
            "r",
            edge - time::Duration::seconds(1),
            now,
            ten,
        )
        .unwrap_err();
        assert_eq!(err.exit_status().code(), 7);
        assert!(err.to_string().contains("reconcile"), "{err}");
    }
}
