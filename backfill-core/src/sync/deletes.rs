//! The deletions of a sync: CDC `Deleted` stubs since each entity's deletions mark, confirmed by
//! a read by `Id`, tombstoned. Several entities share their CDC calls.
//!
//! Invariants:
//! - One CDC call names every entity that starts from the same time (QBO takes
//!   `entities=A,B,C`); entities synced together start from the earliest of their times, so
//!   their first call is one call (re-reading a little of another's span is harmless: stubs
//!   are confirmed and tombstoned idempotently).
//! - CDC answers at most 1,000 objects for all its entities together (QBO-API.md: "at most
//!   1000 objects per response") and has no paging. An answer under the cap is complete for
//!   every entity it names, and its `time` becomes their deletions mark. An answer at the cap
//!   may have left out the newest changes of any entity it names (each entity's list is its
//!   oldest changes first): an entity that had objects in it is asked again from the newest
//!   change time it held, one that had none from where it was, each group of entities sharing
//!   a time in one call; when a capped answer moved no entity forward its entities are asked
//!   one by one, and a single entity stuck at one second is [`Error::SyncStalled`].
//! - A stub whose record a read by `Id` still returns is counted as refuted and never
//!   tombstoned.

use std::collections::BTreeMap;

use qbo_client::CdcDeleted;
use raw_sink::{Sink, SyncTally, Tombstone};
use time::OffsetDateTime;

use super::{Calls, IDS_PER_READ};
use crate::Error;
use crate::entity::EntityInfo;

/// One entity's part of a CDC pass.
pub(crate) struct Task {
    /// The entity.
    pub(crate) info: EntityInfo,
    /// Its `changedSince`.
    since: OffsetDateTime,
    /// The mark when QBO's answer carries no `time`.
    fallback: OffsetDateTime,
    /// Asked alone (after a capped answer that moved nothing).
    solo: bool,
    stubs: BTreeMap<String, CdcDeleted>,
    /// What it spent and tombstoned.
    pub(crate) tally: SyncTally,
    /// The new deletions mark, once its pass was applied; or why it stopped.
    pub(crate) outcome: Option<Result<OffsetDateTime, Error>>,
}

impl Task {
    pub(crate) fn new(info: EntityInfo, since: OffsetDateTime, fallback: OffsetDateTime) -> Self {
        Self {
            info,
            since,
            fallback,
            solo: false,
            stubs: BTreeMap::new(),
            tally: SyncTally::default(),
            outcome: None,
        }
    }

    fn open(&self) -> bool {
        self.outcome.is_none()
    }
}

/// Applies the deletions QBO reports for every task's entity since its time: every task ends
/// with an outcome (its new deletions mark: the `time` of the answer that completed it).
pub(crate) async fn apply(calls: &Calls<'_>, sink: &Sink, tasks: &mut [Task]) {
    if tasks.is_empty() {
        return;
    }
    // Entities synced together start from one time: one call for them all.
    let start = tasks
        .iter()
        .map(|t| t.since)
        .min()
        .unwrap_or(tasks[0].since);
    for t in tasks.iter_mut() {
        t.since = start;
    }
    let mut marks: Vec<Option<OffsetDateTime>> = vec![None; tasks.len()];
    while let Some(group) = next_group(tasks) {
        let since = tasks[group[0]].since;
        let names: Vec<&str> = group.iter().map(|&i| tasks[i].info.name).collect();
        let c0 = calls.client().api_calls();
        let answer = calls.call(calls.client().cdc(&names, since)).await;
        // A call shared by several entities is counted on the first's row.
        tasks[group[0]].tally.api_calls += calls.client().api_calls() - c0;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                fail(tasks, &group, e);
                continue;
            }
        };
        let capped = answer.is_capped();
        let mut moved = false;
        for &i in &group {
            let t = &mut tasks[i];
            let Some(part) = answer.entity(t.info.name) else {
                if !capped {
                    marks[i] = Some(answer.time.unwrap_or(t.fallback));
                }
                continue;
            };
            let mut newest = t.since;
            for r in &part.records {
                newest = newest.max(r.last_updated_time);
            }
            for d in &part.deleted {
                if let Some(at) = d.deleted_at {
                    newest = newest.max(at);
                }
                t.stubs.insert(d.id.clone(), d.clone());
            }
            if !capped {
                marks[i] = Some(answer.time.unwrap_or(t.fallback));
            } else if newest > t.since {
                t.since = newest;
                moved = true;
            }
        }
        for &i in &group {
            if let Some(mark) = marks[i] {
                let r = confirm_and_tombstone(calls, sink, &mut tasks[i], mark).await;
                tasks[i].outcome = Some(r.map(|()| mark));
            }
        }
        if capped && !moved {
            if group.len() > 1 {
                for &i in &group {
                    tasks[i].solo = true;
                }
            } else {
                let t = &mut tasks[group[0]];
                t.outcome = Some(Err(Error::SyncStalled(format!(
                    "CDC answered its cap of {} objects for {} changes at {} alone; sync cannot \
                     go past that second",
                    qbo_client::CDC_MAX_OBJECTS,
                    t.info.name,
                    crate::window::format_utc(t.since)
                ))));
            }
        } else if capped {
            tracing::debug!(objects = answer.objects(), "cdc_capped");
        }
    }
}

/// The open tasks of the earliest time: all of them in one call, or the first alone when it
/// must be asked alone.
fn next_group(tasks: &[Task]) -> Option<Vec<usize>> {
    let first = (0..tasks.len())
        .filter(|&i| tasks[i].open())
        .min_by_key(|&i| (tasks[i].since, !tasks[i].solo))?;
    if tasks[first].solo {
        return Some(vec![first]);
    }
    let since = tasks[first].since;
    Some(
        (0..tasks.len())
            .filter(|&i| tasks[i].open() && !tasks[i].solo && tasks[i].since == since)
            .collect(),
    )
}

/// A failed shared call fails each of its entities (the error itself goes to the first).
fn fail(tasks: &mut [Task], group: &[usize], e: Error) {
    let first = tasks[group[0]].info.name;
    let text = crate::run::error_chain(&e);
    let reason = match &e {
        Error::SyncStopped(r) => Some(*r),
        _ => None,
    };
    for &i in &group[1..] {
        tasks[i].outcome = Some(Err(match reason {
            Some(r) => Error::SyncStopped(r),
            None => Error::SyncStalled(format!("the CDC call shared with {first} failed: {text}")),
        }));
    }
    tasks[group[0]].outcome = Some(Err(e));
}

/// Reads the task's stubs by `Id` and tombstones those QBO no longer returns.
async fn confirm_and_tombstone(
    calls: &Calls<'_>,
    sink: &Sink,
    t: &mut Task,
    mark: OffsetDateTime,
) -> Result<(), Error> {
    if t.stubs.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = t.stubs.keys().map(String::as_str).collect();
    let mut present = std::collections::BTreeSet::new();
    for chunk in ids.chunks(IDS_PER_READ) {
        let c0 = calls.client().api_calls();
        let r = calls
            .call(
                calls
                    .client()
                    .read_ids(t.info.name, chunk, t.info.name_list),
            )
            .await;
        t.tally.api_calls += calls.client().api_calls() - c0;
        present.extend(r?);
    }
    let gone: Vec<Tombstone<'_>> = t
        .stubs
        .values()
        .filter(|s| !present.contains(&s.id))
        .map(|s| Tombstone {
            id: &s.id,
            deleted_at: s.deleted_at.unwrap_or(mark),
            stub: Some(&s.raw),
        })
        .collect();
    let refuted = t.stubs.len() - gone.len();
    t.tally.deletes_refuted += refuted as u64;
    if refuted > 0 {
        tracing::warn!(
            entity = t.info.name,
            refuted,
            "cdc_deleted_but_still_present"
        );
    }
    let out = sink
        .tombstone(t.info.table, calls.client().realm_id(), &gone)
        .await
        .map_err(Error::Database)?;
    t.tally.tombstoned += out.marked.len() as u64;
    Ok(())
}
