//! The end of a run: [`conclude`] records it in the ledger, settles the trigger and builds the
//! [`RunReport`](super::RunReport).
//!
//! Invariants: the status and the exit code come from the ledger's view of the *whole plan*,
//! not from what this process did (a window a peer worker or an overlapping run failed counts
//! as much as one failed here); an interrupted run is `interrupted`, whatever its windows; a
//! run succeeds only when every window is done and no record is quarantined; a trigger
//! completes only when the run was not interrupted, every window of the plan is done and the
//! plan reaches the requested end.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use raw_sink::{
    RunStatus, RunSummary, SinkError, TriggerKey, TriggerStatus, UpsertCounts, WindowStatus,
};
use time::OffsetDateTime;

use crate::Error;
use crate::dbretry::{DbRetry, with_retry};
use crate::shutdown::StopReason;
use crate::window::format_utc;

use super::drive::DriveOutcome;
use super::failure::error_chain;
use super::{Ctx, Meter, RunReport, WindowProblem, duration_ms, row_window, spans};

/// Records the end of the run (ledger, trigger, events) and builds the report.
pub(super) async fn conclude(
    ctx: &Ctx<'_>,
    key: &TriggerKey,
    outcome: Result<DriveOutcome, (Error, DriveOutcome)>,
    started: Instant,
) -> Result<RunReport, Error> {
    let cfg = ctx.cfg;
    let ledger = &ctx.ledger;
    let run_id = ctx.run_id;
    let worker = ctx.worker.id();
    let duration = started.elapsed();
    let counts = UpsertCounts {
        inserted: ctx.inserted.load(Ordering::Relaxed),
        updated: ctx.updated.load(Ordering::Relaxed),
        unchanged: ctx.unchanged.load(Ordering::Relaxed),
        duplicates: 0,
        rejected: ctx.rejected.load(Ordering::Relaxed),
    };
    let rows = ctx.rows.load(Ordering::Relaxed);
    let requests = ctx.requests.load(Ordering::Relaxed);
    let meter = ctx.meter();
    let batched = ctx
        .batcher
        .as_ref()
        .map(super::batcher::Batcher::tally)
        .unwrap_or_default();
    let api_calls = meter.queries();
    cfg.progress.finish();

    let drive = match outcome {
        Ok(d) => d,
        Err((e, partial)) => {
            let msg = error_chain(&e);
            let mut summary = run_summary(RunStatus::Failed, &partial, rows, counts);
            summary.error = Some(msg.clone());
            metered(&mut summary, meter);
            // Best effort, briefly: the ledger may be the thing that failed. Windows not
            // released here keep their lease until it expires, then anyone resumes them.
            let quick =
                DbRetry::for_duration(cfg.db_retry.give_up_after.min(Duration::from_secs(3)));
            let reason = format!("the run stopped: {msg}");
            let _ = with_retry(&quick, "releasing windows", || {
                ledger.release_windows(worker, None, &reason)
            })
            .await;
            let _ = with_retry(&quick, "recording the failed run", || {
                ledger.finish_run(run_id, &summary)
            })
            .await;
            let _ = with_retry(&quick, "releasing the trigger", || {
                ledger.settle_trigger(key, run_id, worker, false)
            })
            .await;
            event!(ctx, error, "pipeline_finished",
                status = "failed", error = %msg, rows, requests,
                duration_ms = duration_ms(duration));
            return Err(e);
        }
    };

    let mut drive = drive;
    // The outcome is the ledger's, for the whole plan: a window of the range that a peer
    // worker or an overlapping run failed counts as much as one this run failed.
    let plan_state = if drive.interrupted.is_none() {
        let planned = spans(&cfg.windows);
        let windows = with_retry(&cfg.db_retry, "checking the windows", || {
            ledger.ensure_windows(&ctx.scope, &planned)
        })
        .await
        .map_err(Error::Database)?;
        let reported: HashSet<(OffsetDateTime, OffsetDateTime)> = drive
            .problems
            .iter()
            .map(|p| (p.window.start, p.window.end))
            .collect();
        for w in &windows {
            if w.status != WindowStatus::Done && !reported.contains(&(w.span.start, w.span.end)) {
                drive.problems.push(WindowProblem {
                    window: row_window(w),
                    status: w.status,
                    error: w
                        .last_error
                        .clone()
                        .unwrap_or_else(|| format!("{} (by another worker or run)", w.status)),
                });
            }
        }
        Some(PlanState {
            rejected: windows.iter().map(|w| w.rejected).sum(),
            unverified: windows
                .iter()
                .filter(|w| w.status == WindowStatus::Done && !w.verified)
                .count() as u64,
        })
    } else {
        None
    };
    let rejected = plan_state.as_ref().map_or(0, |p| p.rejected);
    let unverified = plan_state.as_ref().map_or(0, |p| p.unverified);
    // A plan clipped to now does not cover the requested range: its trigger waits for a run
    // that reaches the requested end.
    let plan_end = cfg.windows.last().map_or(cfg.range_start, |w| w.end);
    let covers_range = plan_end >= cfg.range_end;

    let status = if drive.interrupted.is_some() {
        RunStatus::Interrupted
    } else if drive.problems.is_empty() && rejected == 0 {
        RunStatus::Succeeded
    } else {
        RunStatus::Partial
    };
    let mut summary = run_summary(status, &drive, rows, counts);
    metered(&mut summary, meter);
    summary.error = match drive.interrupted {
        Some(StopReason::Budget) => Some(format!(
            "stopped: the request budget of {} QBO calls (--max-requests) is spent; the next \
             run resumes the remaining windows",
            cfg.max_api_calls.unwrap_or_default()
        )),
        Some(reason) => Some(format!(
            "interrupted by {reason}; the next run resumes the remaining windows"
        )),
        None if !drive.problems.is_empty() => Some(format!(
            "{} window(s) of the range failed or mismatched",
            drive.problems.len()
        )),
        None if rejected > 0 => Some(format!(
            "{rejected} record(s) QBO returned cannot be stored and are in raw.qb_rejects"
        )),
        None => None,
    };
    if let Some(reason) = drive.interrupted {
        let why = format!("interrupted by {reason}; the next run resumes it");
        let released = with_retry(&cfg.db_retry, "releasing windows", || {
            ledger.release_windows(worker, None, &why)
        })
        .await
        .map_err(Error::Database)?;
        event!(
            ctx,
            warn,
            "windows_released",
            reason = reason.as_str(),
            windows = released
        );
    }
    match with_retry(&cfg.db_retry, "recording the end of the run", || {
        ledger.finish_run(run_id, &summary)
    })
    .await
    {
        Ok(_) => {}
        // A peer declared this worker dead meanwhile (it lost the database longer than its
        // lease) and closed the run: its windows were resumed by others; nothing to record.
        Err(e @ SinkError::InvalidTransition { .. }) => {
            event!(ctx, warn, "run_already_closed", cause = %error_chain(&e));
        }
        Err(e) => return Err(Error::Database(e)),
    }

    // The trigger completes once every window of the requested range is done (by this run,
    // earlier runs or cooperating workers).
    let all_done = drive.interrupted.is_none() && drive.problems.is_empty() && covers_range;
    if !covers_range && drive.interrupted.is_none() {
        event!(ctx, warn, "trigger_waits_for_range_end",
            trigger = %cfg.trigger,
            loaded_until = %format_utc(plan_end),
            requested_end = %format_utc(cfg.range_end));
    }
    let trigger_status = with_retry(&cfg.db_retry, "settling the trigger", || {
        ledger.settle_trigger(key, run_id, worker, all_done)
    })
    .await
    .map_err(Error::Database)?;
    let trigger_completed = trigger_status == TriggerStatus::Completed;

    let failed = drive
        .problems
        .iter()
        .filter(|p| p.status == WindowStatus::Failed)
        .count();
    event!(
        ctx,
        info,
        "pipeline_finished",
        status = status.as_str(),
        windows_planned = cfg.windows.len(),
        windows_skipped = drive.skipped,
        windows_done = drive.done,
        windows_empty = drive.empty,
        windows_failed = failed,
        windows_mismatch = drive.problems.len() - failed,
        rows,
        inserted = counts.inserted,
        updated = counts.updated,
        unchanged = counts.unchanged,
        requests,
        api_calls,
        api_requests = meter.requests,
        api_batches = meter.batches,
        api_batch_items = meter.batch_items,
        batch_items_cut = batched.cut,
        batch_items_failed = batched.failed,
        batch_cap_per_batch = batched.cap_per_batch,
        rejected,
        unverified,
        caught_up = drive.caught_up,
        covers_range,
        trigger_completed,
        peak_page_bytes = ctx.memory.peak(),
        interrupted = drive.interrupted.map(StopReason::as_str),
        worker,
        duration_ms = duration_ms(duration)
    );
    for p in &drive.problems {
        event!(ctx, warn, "window_problem",
            window_start = %format_utc(p.window.start),
            window_end = %format_utc(p.window.end),
            status = p.status.as_str(),
            error = %p.error);
    }

    Ok(RunReport {
        run_id: run_id.get(),
        status,
        windows_planned: cfg.windows.len() as u64,
        windows_skipped: drive.skipped,
        windows_done: drive.done,
        windows_empty: drive.empty,
        problems: drive.problems,
        rows,
        counts,
        peak_page_bytes: ctx.memory.peak(),
        requests,
        api_calls,
        api_requests: meter.requests,
        api_batches: meter.batches,
        api_batch_items: meter.batch_items,
        batch_items_cut: batched.cut,
        batch_items_failed: batched.failed,
        batch_cap_per_batch: batched.cap_per_batch,
        rejected,
        unverified,
        caught_up: drive.caught_up,
        loaded_until: plan_end,
        covers_range,
        trigger_completed,
        duration,
        interrupted: drive.interrupted,
        worker: worker.to_owned(),
    })
}

/// What the ledger says of the whole plan at the end of a run.
pub(super) struct PlanState {
    /// Records of the plan's windows kept in `raw.qb_rejects`.
    rejected: u64,
    /// Windows of the plan done without verification.
    unverified: u64,
}

/// The run's QBO calls counted both ways into `s`: queries (`api_calls`, what the budgets
/// use) and HTTP requests, batch requests and their items.
fn metered(s: &mut RunSummary, meter: Meter) {
    s.api_calls = meter.queries();
    s.api_requests = meter.requests;
    s.api_batches = meter.batches;
    s.api_batch_items = meter.batch_items;
}

pub(super) fn run_summary(
    status: RunStatus,
    d: &DriveOutcome,
    rows: u64,
    counts: UpsertCounts,
) -> RunSummary {
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let failed = d
        .problems
        .iter()
        .filter(|p| p.status == WindowStatus::Failed)
        .count() as u64;
    let mut s = RunSummary::new(status);
    s.windows_done = small(d.done);
    s.windows_skipped = small(d.skipped);
    s.windows_failed = small(failed);
    s.windows_mismatch = small(d.problems.len() as u64 - failed);
    s.rows = rows;
    s.inserted = counts.inserted;
    s.updated = counts.updated;
    s.unchanged = counts.unchanged;
    s
}
