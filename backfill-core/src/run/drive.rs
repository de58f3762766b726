//! Claiming and scheduling: [`drive`] ensures the plan's windows in the ledger, claims pending
//! ones in chunks ([`claim_chunk`]), cuts each chunk into runs of adjacent windows
//! ([`adjacent_segments`]) and keeps up to `concurrency` probe/load tasks in flight.
//!
//! Invariants: a window is worked on only while this worker holds its lease; a failed window
//! never stops the others; a worker with nothing left to claim waits while peers still hold
//! windows of the plan; on a stop, no new task starts and the windows still held go back to
//! `pending`.

use std::collections::{HashSet, VecDeque};

use futures::stream::{FuturesUnordered, StreamExt};
use raw_sink::{Window as WindowRow, WindowClaim, WindowId};
use time::OffsetDateTime;

use crate::Error;
use crate::shutdown::StopReason;
use crate::window::format_utc;

use super::failure::qbo_error;
use super::{Ctx, RunConfig, Task, TaskResult, WindowProblem, ensure_token, run_task, spans};

#[derive(Default)]
pub(super) struct DriveOutcome {
    /// Records loaded again by the catch-up of a date-windowed run.
    pub(super) caught_up: u64,
    pub(super) skipped: u64,
    pub(super) done: u64,
    pub(super) empty: u64,
    pub(super) problems: Vec<WindowProblem>,
    pub(super) interrupted: Option<StopReason>,
}

/// Plans the work, claims and runs it, and collects the outcome. On error, also returns what was
/// done so far for the run's record.
pub(super) async fn drive(ctx: &Ctx<'_>) -> Result<DriveOutcome, (Error, DriveOutcome)> {
    let cfg = ctx.cfg;
    let mut out = DriveOutcome::default();
    let planned = spans(&cfg.windows);
    let rows = match ctx
        .db("planning windows", || {
            ctx.ledger.ensure_windows(&ctx.scope, &planned)
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return Err((Error::Database(e), out)),
    };
    let plan: Vec<WindowId> = rows.iter().map(|w| w.id).collect();
    let mut segments = 0usize;
    let mut pending = 0usize;
    let mut previous_end: Option<OffsetDateTime> = None;
    let reload = cfg.reload();
    for w in &rows {
        if !reload.takes(w.status, w.verified) {
            out.skipped += 1;
            previous_end = None;
            continue;
        }
        pending += 1;
        if previous_end != Some(w.span.start) {
            segments += 1;
        }
        previous_end = Some(w.span.end);
    }
    cfg.progress.start(cfg.windows.len() as u64, out.skipped);
    event!(ctx, info, "pipeline_started",
        entity = ctx.entity,
        range_start = %format_utc(cfg.range_start),
        range_end = %format_utc(cfg.range_end),
        window_field = cfg.window_field.as_str(),
        trigger = %cfg.trigger,
        windows_planned = cfg.windows.len(),
        windows_pending = pending,
        windows_skipped = out.skipped,
        segments,
        concurrency = cfg.concurrency,
        workers = cfg.workers,
        worker = %ctx.worker.id(),
        verify = cfg.verify);

    if pending > 0 {
        // Fail fast on rejected credentials, before any window is touched.
        if let Err(e) = ensure_token(ctx).await {
            return Err((qbo_error(e), out));
        }
    }

    let chunk = claim_chunk(pending, cfg);
    // Windows this worker holds in its queue or in flight.
    let mut held: HashSet<WindowId> = HashSet::new();
    let mut queue: VecDeque<Task> = VecDeque::new();
    // A split pushes its parts to the front: probing proceeds depth-first, the queue stays small.
    let mut in_flight = FuturesUnordered::new();
    let limit = cfg.concurrency.max(1);
    // Whether the last claim found nothing (reset when something may have changed).
    let mut exhausted = false;
    let mut waiting_logged = false;
    loop {
        let stopping = cfg.shutdown.is_requested();
        if !stopping {
            while in_flight.len() < limit {
                if let Some(task) = queue.pop_front() {
                    in_flight.push(run_task(ctx, task));
                    continue;
                }
                if exhausted {
                    break;
                }
                let held_now: Vec<WindowId> = held.iter().copied().collect();
                let claim = WindowClaim {
                    worker: ctx.worker.id(),
                    run: ctx.run_id,
                    windows: &plan,
                    held: &held_now,
                    limit: chunk,
                    reload,
                    lease_ttl: ctx.worker.lease_ttl(),
                };
                let claimed = match ctx
                    .db("claiming windows", || ctx.ledger.claim_windows(&claim))
                    .await
                {
                    Ok(c) => c,
                    Err(e) => return Err((Error::Database(e), out)),
                };
                if claimed.is_empty() {
                    exhausted = true;
                    break;
                }
                event!(ctx, debug, "windows_claimed",
                    worker = %ctx.worker.id(),
                    windows = claimed.len(),
                    first = %format_utc(claimed[0].span.start));
                for seg in adjacent_segments(claimed) {
                    held.extend(seg.iter().map(|w| w.id));
                    queue.push_back(if cfg.probe && seg.len() > 1 {
                        Task::Probe {
                            windows: seg,
                            dense: false,
                        }
                    } else {
                        Task::Load {
                            windows: seg,
                            expected: None,
                        }
                    });
                }
            }
        }
        if in_flight.is_empty() {
            if stopping {
                break;
            }
            // Nothing held: either every window of the plan is settled, or other workers hold
            // some. Wait for those: if their worker dies, its windows become claimable here.
            let status = match ctx
                .db("reading the claims", || {
                    ctx.ledger
                        .claim_status(ctx.worker.id(), ctx.run_id, &plan, reload)
                })
                .await
            {
                Ok(s) => s,
                Err(e) => return Err((Error::Database(e), out)),
            };
            if status.claimable > 0 {
                exhausted = false;
                continue;
            }
            if status.leased_by_others == 0 {
                break;
            }
            match ctx.worker.reap_dead_peers().await {
                Ok(0) => {}
                Ok(_) => {
                    exhausted = false;
                    continue;
                }
                Err(e) => return Err((e, out)),
            }
            if !waiting_logged {
                event!(ctx, info, "waiting_for_peers",
                    worker = %ctx.worker.id(),
                    windows_held_by_others = status.leased_by_others,
                    next_lease_expiry = %status.next_expiry.map_or_else(String::new, format_utc));
                waiting_logged = true;
            }
            tokio::select! {
                () = tokio::time::sleep(ctx.worker.poll_interval()) => {}
                _ = cfg.shutdown.requested() => {}
            }
            exhausted = false;
            continue;
        }
        let result = tokio::select! {
            r = in_flight.next() => r,
            _ = cfg.shutdown.requested(), if !stopping => continue,
        };
        let Some(result) = result else { continue };
        match result {
            Ok(TaskResult::Finished {
                done,
                empty,
                problems,
                windows,
            }) => {
                out.done += done;
                out.empty += empty;
                out.problems.extend(problems);
                for id in windows {
                    held.remove(&id);
                }
            }
            Ok(TaskResult::Split(tasks)) => {
                for t in tasks.into_iter().rev() {
                    queue.push_front(t);
                }
            }
            Ok(TaskResult::Interrupted { windows }) => {
                for id in windows {
                    held.remove(&id);
                }
            }
            // Authentication or the database failed: nothing else can succeed. Windows still in
            // flight are released (or, if the database is gone, left to their leases); the
            // next run takes them over.
            Err(e) => return Err((e, out)),
        }
    }
    out.interrupted = cfg.shutdown.reason();
    Ok(out)
}

/// How many windows one claim takes: everything for a single worker (so that one COUNT can
/// cover a whole sparse range, as without claims), else a share small enough that every worker
/// of `workers` gets several chunks.
pub(super) fn claim_chunk(pending: usize, cfg: &RunConfig) -> u32 {
    let pending = u32::try_from(pending.max(1)).unwrap_or(u32::MAX);
    if cfg.workers <= 1 {
        return pending;
    }
    let parts = cfg
        .workers
        .saturating_mul(u32::try_from(cfg.concurrency.max(1)).unwrap_or(u32::MAX));
    pending.div_ceil(parts).max(1)
}

/// Splits windows (ordered by start) into maximal runs of adjacent windows.
pub(super) fn adjacent_segments(windows: Vec<WindowRow>) -> Vec<Vec<WindowRow>> {
    let mut segments: Vec<Vec<WindowRow>> = Vec::new();
    for w in windows {
        match segments.last_mut() {
            Some(seg) if seg.last().is_some_and(|l| l.span.end == w.span.start) => seg.push(w),
            _ => segments.push(vec![w]),
        }
    }
    segments
}

#[cfg(test)]
mod claim_tests {
    use super::super::test_rows::row;
    use super::*;
    use crate::WindowField;
    use crate::window::{PlanRequest, WindowSize, plan};
    use time::macros::datetime;

    fn cfg(days: i64, workers: u32, concurrency: usize) -> RunConfig {
        let p = plan(&PlanRequest {
            start: datetime!(2023-01-01 00:00 UTC),
            end: datetime!(2023-01-01 00:00 UTC) + time::Duration::days(days),
            size: WindowSize::DAY,
            now: datetime!(2026-01-01 00:00 UTC),
            whole_days: false,
        })
        .unwrap();
        let mut c = RunConfig::new(p.windows, WindowField::CreateTime, "t");
        c.workers = workers;
        c.concurrency = concurrency;
        c
    }

    #[test]
    fn a_lone_worker_claims_everything_and_peers_get_several_chunks_each() {
        assert_eq!(claim_chunk(1096, &cfg(1096, 1, 4)), 1096);
        assert_eq!(claim_chunk(0, &cfg(1, 1, 4)), 1);
        // 4 workers × 4 windows in flight: 16 chunks.
        assert_eq!(claim_chunk(1096, &cfg(1096, 4, 4)), 69);
        assert_eq!(claim_chunk(16, &cfg(16, 4, 2)), 2);
        assert_eq!(claim_chunk(3, &cfg(3, 8, 4)), 1);
    }

    #[test]
    fn claimed_windows_split_into_adjacent_runs() {
        let segs = adjacent_segments(vec![row(1, 0), row(2, 1), row(3, 3), row(4, 4), row(5, 9)]);
        let ids: Vec<Vec<i64>> = segs
            .iter()
            .map(|s| s.iter().map(|w| w.id.get()).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2], vec![3, 4], vec![5]]);
        assert!(adjacent_segments(Vec::new()).is_empty());
    }
}
