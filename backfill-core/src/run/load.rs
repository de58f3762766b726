//! Loading a task's windows: [`load`] runs bounded attempts (paged, then narrowed after
//! records changed mid-paging), verifies each against a COUNT and records the outcome per
//! window ([`finish_loaded`], [`finish_unloaded`]).
//!
//! Invariants: a window is `done` only when the COUNT for its filter equals the distinct
//! records QBO returned for it (stored or quarantined), or unverified with `--no-verify`; a
//! multi-window segment that cannot be loaded and verified is split into single windows, so
//! one bad window never fails its neighbours; an attempt that lost a lease writes nothing more
//! and gives the windows back ([`lease_lost_release`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use qbo_client::QboError;
use raw_sink::{
    SinkError, UpsertCounts, Window as WindowRow, WindowId, WindowOutcome, WindowStatus,
};

use crate::Error;
use crate::claim::lease_lost;
use crate::window::format_utc;

use super::failure::{error_chain, is_database_failure, qbo_error, stops_the_run};
use super::fetch::{count_range, load_narrowed};
use super::paging::{Prefetched, load_attempt};
use super::probe::finished_windows;
use super::{
    Ctx, Task, TaskResult, WindowProblem, duration_ms, ensure_token, interrupted, row_window,
    segment_window, window_ids,
};

/// Per-window tallies of one loading attempt.
#[derive(Default, Clone)]
pub(super) struct WindowTally {
    /// Distinct ids stored (written or found unchanged).
    pub(super) ids: HashSet<String>,
    /// Distinct records QBO returned that went to `raw.qb_rejects` (by id, or by text).
    pub(super) rejected: HashSet<String>,
    pub(super) rows: u64,
    pub(super) counts: UpsertCounts,
}

impl WindowTally {
    /// Distinct records QBO returned for the window: stored or quarantined.
    pub(super) fn seen(&self) -> u64 {
        (self.ids.len() + self.rejected.len()) as u64
    }

    /// Adds what another read of the same window found.
    pub(super) fn absorb(&mut self, other: WindowTally) {
        self.ids.extend(other.ids);
        self.rejected.extend(other.rejected);
        self.rows += other.rows;
        self.counts += other.counts;
    }
}

/// What a loading attempt produced: per-window tallies, and a COUNT it had to take (a short
/// page is the end of a query only if a COUNT says so).
pub(super) struct Loaded {
    pub(super) tallies: Vec<WindowTally>,
    pub(super) counted: Option<u64>,
}

/// Why an attempt did not produce a verified load.
pub(super) enum AttemptError {
    /// Records were inserted or deleted while paging (overlap check failed).
    Changed(String),
    /// COUNT disagrees with the distinct records loaded.
    Mismatch { count: u64, loaded: u64 },
    /// QBO failed after the client's retries.
    Qbo(QboError),
    /// A record fell outside every window of the query (the source broke the filter), or one
    /// without a usable timestamp cannot be placed in one of several windows.
    Stray(String),
    /// Writing a page failed.
    Sink(SinkError),
    /// This attempt no longer holds a window (its lease ran out and another worker took it):
    /// nothing of the page was written.
    LeaseLost,
    /// The database stayed unreachable beyond the retry bound: the run stops (exit code 5).
    DatabaseGone(SinkError),
    /// A stop was requested; the pages fetched so far are written.
    Interrupted,
}

impl AttemptError {
    pub(super) fn describe(&self) -> String {
        match self {
            AttemptError::Changed(s) => format!("records changed during paging: {s}"),
            AttemptError::Mismatch { count, loaded } => {
                format!("COUNT says {count} records, {loaded} distinct records were loaded")
            }
            AttemptError::Qbo(e) => error_chain(e),
            AttemptError::Stray(s) => s.clone(),
            AttemptError::Sink(e) | AttemptError::DatabaseGone(e) => error_chain(e),
            AttemptError::LeaseLost => "lease lost mid-attempt".to_owned(),
            AttemptError::Interrupted => "interrupted".to_owned(),
        }
    }
}

/// How an attempt reads its range.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Offset paging with overlapping pages.
    Paged,
    /// Sub-ranges that each fit in one page (a one-page query cannot skip records): after
    /// paging detected records changing, re-paging the same way would likely fail again.
    Narrowed,
}

/// Loads adjacent windows with one paged query per attempt, verifies, and records the outcome.
/// `first`, the query's first page when the probe fetched it with its COUNT, serves the first
/// attempt.
/// A multi-window segment that cannot be loaded and verified, for any reason, is split into
/// single windows, so that one bad window never fails its neighbours.
pub(super) async fn load<'c>(
    ctx: &'c Ctx<'_>,
    windows: Vec<WindowRow>,
    mut expected: Option<u64>,
    mut first: Option<Prefetched<'c>>,
) -> Result<TaskResult, Error> {
    let cfg = ctx.cfg;
    let range = segment_window(&windows);
    let started = Instant::now();
    let single = windows.len() == 1;
    let attempts = if single {
        cfg.max_window_attempts.max(1)
    } else {
        1
    };
    let mut reading = Reading::Paged;
    let mut last_error: Option<AttemptError> = None;
    let mut tallies: Vec<WindowTally> = Vec::new();
    let mut verified = false;
    for attempt in 1..=attempts {
        if cfg.shutdown.is_requested() {
            return Ok(interrupted(&windows));
        }
        match ensure_token(ctx).await {
            Ok(()) => {}
            Err(e) if stops_the_run(&e) || is_database_failure(&e) => return Err(qbo_error(e)),
            Err(e) => {
                last_error = Some(AttemptError::Qbo(e));
                break;
            }
        }
        if !start_attempts(ctx, &windows).await? {
            return lease_lost_release(ctx, &windows).await;
        }
        event!(ctx, info, "window_started",
            window_start = %format_utc(range.start),
            window_end = %format_utc(range.end),
            windows = windows.len(),
            attempt,
            narrowed = reading == Reading::Narrowed);
        let result = match reading {
            Reading::Paged => load_attempt(ctx, &windows, range, expected, first.take()).await,
            Reading::Narrowed => load_narrowed(ctx, &windows, range).await,
        };
        match result {
            Ok(loaded) => {
                tallies = loaded.tallies;
                if loaded.counted.is_some() {
                    expected = loaded.counted;
                }
                let seen: u64 = tallies.iter().map(WindowTally::seen).sum();
                // A COUNT already taken (the probe's, or one for a short page) that agrees is
                // a verification, with or without --no-verify.
                if expected == Some(seen) {
                    verified = true;
                    last_error = None;
                    break;
                }
                if !cfg.verify {
                    last_error = None;
                    break;
                }
                let Some(counted) = count_range(ctx, range).await else {
                    return Ok(interrupted(&windows));
                };
                match counted {
                    Ok(count) if count == seen => {
                        verified = true;
                        last_error = None;
                        break;
                    }
                    Ok(count) => {
                        expected = Some(count);
                        last_error = Some(AttemptError::Mismatch {
                            count,
                            loaded: seen,
                        });
                    }
                    Err(e) if stops_the_run(&e) => return Err(qbo_error(e)),
                    Err(e) => {
                        last_error = Some(AttemptError::Qbo(e));
                        break;
                    }
                }
            }
            Err(AttemptError::Interrupted) => return Ok(interrupted(&windows)),
            Err(AttemptError::DatabaseGone(e)) => return Err(Error::Database(e)),
            Err(AttemptError::LeaseLost) => return lease_lost_release(ctx, &windows).await,
            Err(AttemptError::Qbo(e)) if stops_the_run(&e) => {
                return Err(qbo_error(e));
            }
            Err(e @ AttemptError::Changed(_)) => {
                // Records are being inserted or deleted while the window is paged: read it as
                // one-page sub-ranges from now on (not possible for date-valued fields).
                if single && !cfg.window_field.is_date() {
                    reading = Reading::Narrowed;
                }
                last_error = Some(e);
            }
            Err(e @ AttemptError::Mismatch { .. }) => last_error = Some(e),
            // Still transient after the client's own retries: give the window another attempt.
            Err(AttemptError::Qbo(e)) if e.is_retryable() => {
                last_error = Some(AttemptError::Qbo(e));
            }
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
        if let Some(e) = &last_error {
            event!(ctx, warn, "window_retry",
                window_start = %format_utc(range.start),
                window_end = %format_utc(range.end),
                attempt,
                cause = %e.describe());
        }
    }

    let elapsed = started.elapsed();
    match last_error {
        None => finish_loaded(ctx, &windows, &tallies, verified, elapsed).await,
        Some(e) if !single => {
            // Whatever went wrong (a record that cannot be placed, a change, a failure that
            // outlived the retries), retry window by window: each gets its own attempts and
            // verification, and a bad window no longer fails its neighbours.
            event!(ctx, info, "segment_split",
                window_start = %format_utc(range.start),
                window_end = %format_utc(range.end),
                windows = windows.len(),
                cause = %e.describe());
            Ok(TaskResult::Split(
                windows
                    .into_iter()
                    .map(|w| Task::Load {
                        windows: vec![w],
                        expected: None,
                    })
                    .collect(),
            ))
        }
        Some(e) => finish_unloaded(ctx, &windows, &e, elapsed).await,
    }
}

/// This worker no longer holds some of these windows (its lease had expired and another worker
/// took them over): give the rest back; whoever claims them next loads them.
pub(super) async fn lease_lost_release(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
) -> Result<TaskResult, Error> {
    let ids = window_ids(windows);
    ctx.db("releasing windows", || {
        ctx.ledger
            .release_windows(ctx.worker.id(), Some(&ids), "lease lost mid-attempt")
    })
    .await
    .map_err(Error::Database)?;
    Ok(TaskResult::Finished {
        done: 0,
        empty: 0,
        problems: Vec::new(),
        windows: ids,
    })
}

/// Records loaded windows as `done`: verified (source count = what QBO returned for each) or,
/// with `--no-verify` and no COUNT to compare, unverified (no source count).
pub(super) async fn finish_loaded(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    tallies: &[WindowTally],
    verified: bool,
    elapsed: Duration,
) -> Result<TaskResult, Error> {
    let mut done = 0u64;
    let mut empty = 0u64;
    for (w, t) in windows.iter().zip(tallies) {
        let source = t.seen();
        let outcome = WindowOutcome {
            status: WindowStatus::Done,
            source_count: verified.then_some(source),
            verified,
            duration: elapsed,
            error: None,
        };
        if finish(ctx, w.id, &outcome).await?.is_none() {
            continue;
        }
        empty += u64::from(source == 0);
        done += 1;
        event!(ctx, info, "window_finished",
            window_start = %format_utc(w.span.start),
            window_end = %format_utc(w.span.end),
            status = "done",
            rows = t.rows,
            inserted = t.counts.inserted,
            updated = t.counts.updated,
            unchanged = t.counts.unchanged,
            rejected = t.rejected.len(),
            source_count = source,
            verified,
            duration_ms = duration_ms(elapsed));
    }
    finished_windows(ctx, done);
    Ok(TaskResult::Finished {
        done,
        empty,
        problems: Vec::new(),
        windows: window_ids(windows),
    })
}

/// Records windows whose attempts all failed or mismatched.
pub(super) async fn finish_unloaded(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    e: &AttemptError,
    elapsed: Duration,
) -> Result<TaskResult, Error> {
    let (status, source, verified) = match e {
        AttemptError::Mismatch { count, .. } => (WindowStatus::Mismatch, Some(*count), true),
        AttemptError::Changed(_) => (WindowStatus::Mismatch, None, false),
        _ => (WindowStatus::Failed, None, false),
    };
    let msg = e.describe();
    let mut problems = Vec::new();
    for w in windows {
        let outcome = WindowOutcome {
            status,
            source_count: source,
            verified,
            duration: elapsed,
            error: Some(msg.clone()),
        };
        if finish(ctx, w.id, &outcome).await?.is_none() {
            continue;
        }
        event!(ctx, warn, "window_finished",
            window_start = %format_utc(w.span.start),
            window_end = %format_utc(w.span.end),
            status = status.as_str(),
            error = %msg,
            duration_ms = duration_ms(elapsed));
        problems.push(WindowProblem {
            window: row_window(w),
            status,
            error: msg.clone(),
        });
    }
    finished_windows(ctx, windows.len() as u64);
    Ok(TaskResult::Finished {
        done: 0,
        empty: 0,
        problems,
        windows: window_ids(windows),
    })
}

/// Starts an attempt on every window of a task; `false` if this worker no longer holds one.
pub(super) async fn start_attempts(ctx: &Ctx<'_>, windows: &[WindowRow]) -> Result<bool, Error> {
    let mut all = true;
    for w in windows {
        let started = ctx
            .db("starting a window", || {
                ctx.ledger.start_claimed_attempt(
                    w.id,
                    ctx.run_id,
                    ctx.worker.id(),
                    ctx.worker.lease_ttl(),
                )
            })
            .await
            .map_err(Error::Database)?;
        if started.is_none() {
            lease_lost(&ctx.worker, w.id);
            all = false;
        }
    }
    Ok(all)
}

/// Ends this run's attempt on a window; `None` (logged) if another worker took it over.
pub(super) async fn finish(
    ctx: &Ctx<'_>,
    id: WindowId,
    outcome: &WindowOutcome,
) -> Result<Option<WindowRow>, Error> {
    let row = ctx
        .db("finishing a window", || {
            ctx.ledger
                .finish_claimed_window(id, ctx.run_id, ctx.worker.id(), outcome)
        })
        .await
        .map_err(Error::Database)?;
    if row.is_none() {
        lease_lost(&ctx.worker, id);
    }
    Ok(row)
}
