//! The loop: one generic function, [`run()`], that back-fills one entity over planned windows.
//!
//! Shape of a run:
//! 1. trigger check (completed or disabled → refused unless `force`), run row opened;
//! 2. the planned windows are ensured in the ledger; windows already `done` are skipped unless
//!    `force`; the rest are **claimed** (window leases, see [`crate::claim`]) in chunks of
//!    adjacent windows, so that several processes can share one backfill; a chunk forms maximal
//!    runs of adjacent windows ("segments");
//! 3. **sparse probing**: a segment is COUNTed as a whole; an empty one is marked `done` with
//!    source count 0 in one statement; one holding at most [`SEGMENT_PAGES`] pages of records
//!    (or a single window) is loaded with one paged query whose records are split into their
//!    windows, the COUNT verifying the load; a larger one is split in one level into parts
//!    sized from its COUNT (see `split_parts`) and those are probed again;
//! 4. a window (or small segment) is paged with overlapping pages: each page starts `overlap`
//!    rows before the previous one ended and those rows must be the same ids, otherwise records
//!    were inserted or deleted mid-paging and the window is paged again (bounded attempts);
//! 5. each page is upserted with the window's progress in one transaction while the next page
//!    (and, when a COUNT says they exist, further ones while page permits are free) is fetched;
//!    pages in memory are capped process-wide at `concurrency + 1`;
//! 6. verification: the COUNT for the same filter must equal the distinct ids loaded, else the
//!    window is paged again and finally marked `mismatch`;
//! 7. up to `concurrency` segments/windows in flight; a failed window never stops the others;
//! 8. a worker with nothing left to claim waits while other workers hold windows of the plan
//!    (their process may die, and then their windows are claimed again), then ends;
//! 9. a stop request ([`crate::Shutdown`]) ends the run cleanly: no new request, fetched pages
//!    written, running windows back to `pending`, leases released, run `interrupted`;
//!    database statements that fail for a retryable reason are retried ([`crate::DbRetry`]).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use qbo_client::{
    Op, Order, Page, PageItem, QboClient, QboError, Query, Record, TokenStoreError, Value,
};
use raw_sink::{
    Ledger, NewRun, PageMeta, PageOwner, PageWrite, RawRow, RejectRow, Reload, RunId, RunStatus,
    RunSummary, Sink, SinkError, TriggerKey, TriggerStatus, UpsertCounts, Window as WindowRow,
    WindowClaim, WindowId, WindowOutcome, WindowScope, WindowSpan, WindowStatus,
};
use time::{OffsetDateTime, UtcOffset};

use crate::claim::{DEFAULT_LEASE_TTL, Worker, WorkerConfig, lease_lost};
use crate::dbretry::{DbRetry, with_retry};
use crate::shutdown::{Shutdown, StopReason};
use crate::window::{Window, format_utc};
use crate::{Entity, Error, ExitStatus, Progress, WindowField};

/// Everything a run needs besides the client and the sink. Build with [`RunConfig::new`] and
/// adjust the public fields.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The planned windows, ascending and adjacent (see [`crate::window::plan`]).
    pub windows: Vec<Window>,
    /// Start of the range as requested (UTC), recorded with the run and the trigger.
    pub range_start: OffsetDateTime,
    /// End of the range (after clipping), recorded with the run and the trigger.
    pub range_end: OffsetDateTime,
    /// The timestamp that places records in windows.
    pub window_field: WindowField,
    /// The one-time trigger this run executes.
    pub trigger: String,
    /// Windows (or segments) in flight at once.
    pub concurrency: usize,
    /// Compare a COUNT with the distinct ids loaded for every window.
    pub verify: bool,
    /// Run a completed/disabled trigger and reload windows already done.
    pub force: bool,
    /// `MAXRESULTS` (1..=1000).
    pub page_size: u32,
    /// Rows by which consecutive pages overlap to detect records inserted or deleted mid-paging
    /// (0 disables the check). At most a quarter of `page_size` is used, so a small page size
    /// does not cost about one request per new row.
    pub page_overlap: u32,
    /// Attempts per window before it is marked `failed` or `mismatch`.
    pub max_window_attempts: u32,
    /// Before a window starts, the access token must stay valid at least this long.
    pub token_margin: Duration,
    /// COUNT segments first so that empty stretches cost no request per window.
    pub probe: bool,
    /// Terminal progress display.
    pub progress: Progress,
    /// How many processes are expected to share this backfill (`--workers`): with more than
    /// one, windows are claimed in smaller chunks so that every worker gets some.
    pub workers: u32,
    /// The registered worker this run claims windows as (the CLI registers one with a share
    /// of the realm's QBO budget); `None` registers one for the run, without a budget share.
    pub worker: Option<Worker>,
    /// Lease of claimed windows when the run registers its own worker.
    pub lease_ttl: Duration,
    /// Stop request: see [`crate::shutdown`].
    pub shutdown: Shutdown,
    /// At most this many QBO API calls (every attempt, retries included; see
    /// [`QboClient::api_calls`]) for the run: when they are spent the run stops cleanly, as on
    /// a stop request, with exit code 1 and its windows back to `pending` for the next run.
    pub max_api_calls: Option<u64>,
    /// Retries of database statements while the database is unreachable.
    pub db_retry: DbRetry,
}

impl RunConfig {
    /// Which windows already done this run loads again: all with `force`; with verification
    /// on, those done without it (a verifying run verifies its whole plan); else none.
    #[must_use]
    pub fn reload(&self) -> Reload {
        if self.force {
            Reload::All
        } else if self.verify {
            Reload::Unverified
        } else {
            Reload::Nothing
        }
    }

    /// A configuration with the defaults of the CLI for the given windows and trigger.
    #[must_use]
    pub fn new(
        windows: Vec<Window>,
        window_field: WindowField,
        trigger: impl Into<String>,
    ) -> RunConfig {
        let range_start = windows
            .first()
            .map_or(OffsetDateTime::UNIX_EPOCH, |w| w.start);
        let range_end = windows.last().map_or(OffsetDateTime::UNIX_EPOCH, |w| w.end);
        RunConfig {
            windows,
            range_start,
            range_end,
            window_field,
            trigger: trigger.into(),
            concurrency: 4,
            verify: true,
            force: false,
            page_size: 1000,
            page_overlap: 3,
            max_window_attempts: 3,
            token_margin: Duration::from_secs(600),
            probe: true,
            progress: Progress::hidden(),
            workers: 1,
            worker: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            shutdown: Shutdown::new(),
            max_api_calls: None,
            db_retry: DbRetry::default(),
        }
    }
}

/// A window that did not end `done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowProblem {
    /// The window.
    pub window: Window,
    /// `failed` or `mismatch`.
    pub status: WindowStatus,
    /// What went wrong.
    pub error: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The ledger's run id.
    pub run_id: i64,
    /// Final run status.
    pub status: RunStatus,
    /// Windows in the plan.
    pub windows_planned: u64,
    /// Windows skipped because they were already done.
    pub windows_skipped: u64,
    /// Windows done by this run (including empty ones).
    pub windows_done: u64,
    /// Windows done by this run that hold no record.
    pub windows_empty: u64,
    /// Windows that failed or mismatched.
    pub problems: Vec<WindowProblem>,
    /// Rows received from QBO (distinct per page).
    pub rows: u64,
    /// Upsert totals.
    pub counts: UpsertCounts,
    /// QBO queries issued by the loop (pages and COUNTs; the client's retries not included).
    pub requests: u64,
    /// QBO API calls the run made, retries included: what Intuit meters. Also in
    /// `backfill.runs.api_calls`.
    pub api_calls: u64,
    /// Records of the plan's windows kept in `raw.qb_rejects` (QBO returned them; PostgreSQL
    /// cannot store them).
    pub rejected: u64,
    /// Windows of the plan done without verification (`--no-verify`).
    pub unverified: u64,
    /// Records read again by the catch-up of a run windowed on a date field (`TxnDate`):
    /// those of the range changed since the run started.
    pub caught_up: u64,
    /// The end of the planned windows (the requested end, unless clipped to now).
    pub loaded_until: OffsetDateTime,
    /// Whether the plan reached the requested end (a range reaching into the future does not,
    /// and its trigger stays pending until a later run gets there).
    pub covers_range: bool,
    /// Whether the trigger is now completed.
    pub trigger_completed: bool,
    /// Wall time.
    pub duration: Duration,
    /// Set when the run was stopped by a signal or stop request before its windows were done.
    pub interrupted: Option<StopReason>,
    /// The worker id that claimed this run's windows (see `backfill.workers`).
    pub worker: String,
}

impl RunReport {
    /// The process exit status for this report: 130/143 when interrupted, 0 when every window
    /// of the plan is done and every record QBO returned is stored, else 1.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        if let Some(reason) = self.interrupted {
            return reason.exit_status();
        }
        if self.problems.is_empty() && self.rejected == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::WindowsFailed
        }
    }
}

/// Run-wide shared state.
struct Ctx<'a> {
    client: &'a QboClient,
    sink: &'a Sink,
    ledger: Ledger,
    cfg: &'a RunConfig,
    pipeline: &'static str,
    entity: &'static str,
    name_list: bool,
    table: raw_sink::RawTable,
    scope: WindowScope,
    realm: String,
    run_id: RunId,
    worker: Worker,
    /// One token check at a time per process (each holds a database lock across processes).
    token_gate: tokio::sync::Mutex<()>,
    /// Pages held in memory (from the start of their fetch until they are written), across all
    /// segments: `concurrency + 1`, so segments still fetch ahead while others write, but peak
    /// memory no longer grows with two pages per segment.
    pages: tokio::sync::Semaphore,
    requests: AtomicU64,
    /// The client's API call count when the run started.
    calls_at_start: u64,
    rows: AtomicU64,
    inserted: AtomicU64,
    updated: AtomicU64,
    unchanged: AtomicU64,
    rejected: AtomicU64,
}

macro_rules! event {
    ($ctx:expr, $lvl:ident, $name:literal $(, $($rest:tt)*)?) => {
        tracing::$lvl!(
            pipeline = $ctx.pipeline,
            realm = %$ctx.realm,
            run_id = $ctx.run_id.get(),
            $($($rest)*,)?
            $name
        )
    };
}

/// A unit of work in the queue.
enum Task {
    /// COUNT a segment of adjacent pending windows and decide what to do with it.
    Probe(Vec<WindowRow>),
    /// Load adjacent windows with one paged query; `expected` is a COUNT already taken.
    Load {
        windows: Vec<WindowRow>,
        expected: Option<u64>,
    },
}

/// What finishing a task produced.
enum TaskResult {
    /// Nothing more to do for these windows (no longer held).
    Finished {
        done: u64,
        empty: u64,
        problems: Vec<WindowProblem>,
        windows: Vec<WindowId>,
    },
    /// More tasks to queue (their windows still held).
    Split(Vec<Task>),
    /// A stop was requested: these windows are left for the end of the run to release.
    Interrupted { windows: Vec<WindowId> },
}

/// Most pages a probed segment of several windows is loaded with as one paged query (larger
/// ones are split, see [`split_parts`]). Bigger segments save COUNT requests; smaller ones
/// cost less to page again window by window when a segment fails verification.
pub(crate) const SEGMENT_PAGES: u64 = 8;

/// Runs pipeline `E` over `cfg.windows` for the client's realm.
///
/// # Errors
/// [`Error::TriggerCompleted`] / [`Error::TriggerDisabled`] (exit 4) before anything is loaded;
/// [`Error::Auth`] (exit 3) when QBO rejects the credentials; [`Error::Database`] (exit 5)
/// when the ledger cannot be read or written. Failures of single windows are not errors: they
/// are in the report.
pub async fn run<E: Entity>(
    client: &QboClient,
    sink: &Sink,
    cfg: &RunConfig,
) -> Result<RunReport, Error> {
    let started = Instant::now();
    let ledger = sink.ledger();
    let realm = client.realm_id().to_owned();
    let pipeline = E::PIPELINE;
    let key = TriggerKey::new(pipeline, realm.clone(), cfg.trigger.clone());

    let trigger = with_retry(&cfg.db_retry, "creating the trigger", || {
        ledger.create_or_get_trigger(&key, cfg.range_start, cfg.range_end)
    })
    .await
    .map_err(ledger_error)?;
    match trigger.status {
        TriggerStatus::Completed if !cfg.force => {
            return Err(Error::TriggerCompleted {
                name: cfg.trigger.clone(),
                completed_at: trigger
                    .completed_at
                    .map_or_else(|| "unknown".to_owned(), format_utc),
            });
        }
        TriggerStatus::Disabled if !cfg.force => {
            return Err(Error::TriggerDisabled {
                name: cfg.trigger.clone(),
            });
        }
        TriggerStatus::Disabled => {
            with_retry(&cfg.db_retry, "enabling the trigger", || {
                ledger.enable_trigger(&key)
            })
            .await
            .map_err(Error::Database)?;
        }
        _ => {}
    }
    if let Some(reason) = cfg.shutdown.reason() {
        return Err(Error::Interrupted(reason));
    }

    let new_run = NewRun {
        pipeline: pipeline.to_owned(),
        realm_id: realm.clone(),
        range_start: cfg.range_start,
        range_end: cfg.range_end,
        window_field: cfg.window_field.as_str().to_owned(),
        trigger_name: Some(cfg.trigger.clone()),
        windows_planned: u32::try_from(cfg.windows.len()).unwrap_or(u32::MAX),
    };
    // The worker that claims the windows: the caller's (with its budget share) or our own. It
    // exists before the run, and the run is recorded already attached to it, so a process
    // killed at any moment leaves a run that the next worker can find and close.
    let (worker, own_worker) = match &cfg.worker {
        Some(w) => (w.clone(), false),
        None => {
            let mut wc = WorkerConfig::new(pipeline, realm.clone());
            wc.lease_ttl = cfg.lease_ttl;
            wc.db_retry = cfg.db_retry;
            (Worker::start(sink, &wc, &cfg.shutdown).await?, true)
        }
    };
    let run_id = match with_retry(&cfg.db_retry, "recording the run", || {
        ledger.start_worker_run(&new_run, worker.id(), &cfg.trigger)
    })
    .await
    {
        Ok(id) => id,
        Err(e) => {
            if own_worker {
                worker.stop("the run could not start").await;
            }
            return Err(Error::Database(e));
        }
    };
    if let Err(e) = with_retry(&cfg.db_retry, "marking the trigger running", || {
        ledger.mark_trigger_running(&key, run_id, cfg.force)
    })
    .await
    {
        let err = ledger_error(e);
        let mut summary = RunSummary::new(RunStatus::Failed);
        summary.error = Some(error_chain(&err));
        let _ = ledger.finish_run(run_id, &summary).await;
        if own_worker {
            worker.stop("the run could not start").await;
        }
        return Err(err);
    }

    let ctx = Ctx {
        client,
        sink,
        ledger: ledger.clone(),
        cfg,
        pipeline,
        entity: E::NAME,
        name_list: E::NAME_LIST,
        table: E::TABLE,
        scope: WindowScope::new(pipeline, realm.clone(), cfg.window_field.as_str()),
        realm: realm.clone(),
        run_id,
        worker: worker.clone(),
        token_gate: tokio::sync::Mutex::new(()),
        pages: tokio::sync::Semaphore::new(cfg.concurrency.max(1) + 1),
        requests: AtomicU64::new(0),
        calls_at_start: client.api_calls(),
        rows: AtomicU64::new(0),
        inserted: AtomicU64::new(0),
        updated: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    };

    let run_started = OffsetDateTime::now_utc();
    let mut outcome = drive(&ctx).await;
    if let Ok(d) = &mut outcome
        && d.interrupted.is_none()
        && cfg.window_field.is_date()
    {
        match catch_up(&ctx, run_started - CATCH_UP_MARGIN).await {
            Ok(n) => d.caught_up = n,
            Err(e) => outcome = Err((e, std::mem::take(d))),
        }
    }
    let result = conclude(&ctx, &key, outcome, started).await;
    if own_worker {
        worker
            .stop(match &result {
                Ok(r) if r.interrupted.is_some() => "interrupted; the next run resumes it",
                Ok(_) => "run finished",
                Err(_) => "the run stopped on an error; the next run resumes it",
            })
            .await;
    }
    result
}

/// Records the end of the run (ledger, trigger, events) and builds the report.
async fn conclude(
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
    let api_calls = ctx.api_calls();
    cfg.progress.finish();

    let drive = match outcome {
        Ok(d) => d,
        Err((e, partial)) => {
            let msg = error_chain(&e);
            let mut summary = run_summary(RunStatus::Failed, &partial, rows, counts);
            summary.error = Some(msg.clone());
            summary.api_calls = api_calls;
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
    summary.api_calls = api_calls;
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
        rejected,
        unverified,
        caught_up = drive.caught_up,
        covers_range,
        trigger_completed,
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
        requests,
        api_calls,
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
struct PlanState {
    /// Records of the plan's windows kept in `raw.qb_rejects`.
    rejected: u64,
    /// Windows of the plan done without verification.
    unverified: u64,
}

#[derive(Default)]
struct DriveOutcome {
    /// Records loaded again by the catch-up of a date-windowed run.
    caught_up: u64,
    skipped: u64,
    done: u64,
    empty: u64,
    problems: Vec<WindowProblem>,
    interrupted: Option<StopReason>,
}

fn run_summary(status: RunStatus, d: &DriveOutcome, rows: u64, counts: UpsertCounts) -> RunSummary {
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

fn spans(windows: &[Window]) -> Vec<WindowSpan> {
    windows
        .iter()
        .map(|w| WindowSpan::new(w.start, w.end))
        .collect()
}

/// A ledger failure: a trigger name reused with another range is the user's error (exit 2),
/// anything else is the database's (exit 5).
fn ledger_error(e: SinkError) -> Error {
    if matches!(e, SinkError::TriggerConflict { .. }) {
        Error::TriggerConflict(e)
    } else {
        Error::Database(e)
    }
}

/// Plans the work, claims and runs it, and collects the outcome. On error, also returns what was
/// done so far for the run's record.
async fn drive(ctx: &Ctx<'_>) -> Result<DriveOutcome, (Error, DriveOutcome)> {
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
                        Task::Probe(seg)
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
fn claim_chunk(pending: usize, cfg: &RunConfig) -> u32 {
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
fn adjacent_segments(windows: Vec<WindowRow>) -> Vec<Vec<WindowRow>> {
    let mut segments: Vec<Vec<WindowRow>> = Vec::new();
    for w in windows {
        match segments.last_mut() {
            Some(seg) if seg.last().is_some_and(|l| l.span.end == w.span.start) => seg.push(w),
            _ => segments.push(vec![w]),
        }
    }
    segments
}

impl Ctx<'_> {
    /// QBO API calls made since the run started.
    fn api_calls(&self) -> u64 {
        self.client.api_calls().saturating_sub(self.calls_at_start)
    }

    /// Whether the run may send one more request: `false` (and a stop requested, so that the
    /// run ends as on a signal, windows back to `pending`) once `max_api_calls` are spent.
    fn may_call(&self) -> bool {
        match self.cfg.max_api_calls {
            Some(max) if self.api_calls() >= max => {
                if self.cfg.shutdown.request(StopReason::Budget) {
                    event!(
                        self,
                        warn,
                        "request_budget_spent",
                        max_api_calls = max,
                        api_calls = self.api_calls()
                    );
                }
                false
            }
            _ => !self.cfg.shutdown.is_requested(),
        }
    }

    /// A ledger statement with the run's database retries.
    async fn db<T, F, Fut>(&self, what: &str, op: F) -> Result<T, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SinkError>>,
    {
        with_retry(&self.cfg.db_retry, what, op).await
    }
}

/// `fut`, unless a stop is (or gets) requested first: `None` then, and `fut` is dropped (an
/// HTTP request in flight is abandoned; nothing of it was written).
async fn stoppable<T>(ctx: &Ctx<'_>, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = ctx.cfg.shutdown.requested() => None,
        v = fut => Some(v),
    }
}

/// Makes sure the access token outlives the next window, refreshing it if needed. Refreshes of
/// a realm (these and those a 401 forces) are serialised across processes by the token
/// store's lock (`TokenStore::lock_refresh`; a database lock for the default store), so that
/// cooperating workers never present the same rotating refresh token twice.
async fn ensure_token(ctx: &Ctx<'_>) -> Result<(), QboError> {
    let _one_at_a_time = ctx.token_gate.lock().await;
    ctx.client
        .ensure_token_valid_for(ctx.cfg.token_margin)
        .await
}

fn window_ids(windows: &[WindowRow]) -> Vec<WindowId> {
    windows.iter().map(|w| w.id).collect()
}

fn interrupted(windows: &[WindowRow]) -> TaskResult {
    TaskResult::Interrupted {
        windows: window_ids(windows),
    }
}

/// A QBO error as the run's error: rejected credentials → `Auth`; the ledger database failing
/// under the token store (saving a rotated token, taking the refresh lock) → `Database`, like
/// any other database failure; anything else → `Qbo`.
fn qbo_error(e: QboError) -> Error {
    if e.is_auth() {
        return Error::Auth(e);
    }
    match e {
        QboError::TokenStore(TokenStoreError::Backend { retryable, source }) => {
            match source.downcast::<SinkError>() {
                Ok(db) => Error::Database(*db),
                Err(source) => Error::Qbo(QboError::TokenStore(TokenStoreError::backend(
                    retryable, source,
                ))),
            }
        }
        other => Error::Qbo(other),
    }
}

/// Whether QBO refused in a way that no other window can escape either: rejected credentials,
/// or a fault whose cure is the operator's (the app's keys, the company, the environment, a
/// request QBO rejects whatever the window): the run stops with that error (exit 3 or 6)
/// rather than fail every window one by one.
fn stops_the_run(e: &QboError) -> bool {
    e.is_auth() || (e.fault().is_some() && e.diagnosis().remedy.stops_the_job())
}

/// Whether `e` is the ledger database failing under the token store.
fn is_database_failure(e: &QboError) -> bool {
    matches!(e, QboError::TokenStore(TokenStoreError::Backend { source, .. }) if source.is::<SinkError>())
}

async fn run_task(ctx: &Ctx<'_>, task: Task) -> Result<TaskResult, Error> {
    match task {
        Task::Probe(seg) => probe(ctx, seg).await,
        Task::Load { windows, expected } => load(ctx, windows, expected).await,
    }
}

fn segment_window(seg: &[WindowRow]) -> Window {
    Window {
        start: seg
            .first()
            .map_or(OffsetDateTime::UNIX_EPOCH, |w| w.span.start),
        end: seg
            .last()
            .map_or(OffsetDateTime::UNIX_EPOCH, |w| w.span.end),
    }
}

fn row_window(w: &WindowRow) -> Window {
    Window {
        start: w.span.start,
        end: w.span.end,
    }
}

/// COUNTs a segment and decides: all empty, load as one, split, or one by one.
async fn probe(ctx: &Ctx<'_>, seg: Vec<WindowRow>) -> Result<TaskResult, Error> {
    let range = segment_window(&seg);
    let mut attempt = 1;
    let count = loop {
        let Some(counted) = stoppable(ctx, count_range(ctx, range)).await else {
            return Ok(interrupted(&seg));
        };
        match counted {
            Ok(c) => break c,
            Err(e) if stops_the_run(&e) => return Err(qbo_error(e)),
            Err(e) if e.is_retryable() && attempt < ctx.cfg.max_window_attempts => {
                event!(ctx, warn, "probe_retry",
                    window_start = %format_utc(range.start),
                    window_end = %format_utc(range.end),
                    attempt,
                    cause = %error_chain(&e));
                attempt += 1;
            }
            Err(e) => {
                // QBO keeps failing after the client's retries: record every window as failed
                // rather than spend one more failing request per window.
                let msg = error_chain(&e);
                return fail_all(ctx, &seg, &msg).await;
            }
        }
    };
    let page = u64::from(ctx.cfg.page_size);
    let n = seg.len() as u64;
    if count == 0 {
        let ids = window_ids(&seg);
        let marked = ctx
            .db("marking empty windows done", || {
                ctx.ledger
                    .mark_claimed_windows_done_empty(&ids, ctx.run_id, ctx.worker.id())
            })
            .await
            .map_err(Error::Database)?;
        for id in ids.iter().filter(|id| !marked.contains(id)) {
            lease_lost(&ctx.worker, *id);
        }
        let n = marked.len() as u64;
        event!(ctx, info, "windows_empty",
            window_start = %format_utc(range.start),
            window_end = %format_utc(range.end),
            windows = n);
        finished_windows(ctx, n);
        return Ok(TaskResult::Finished {
            done: n,
            empty: n,
            problems: Vec::new(),
            windows: ids,
        });
    }
    // Up to SEGMENT_PAGES pages are loaded as one paged query, verified by this COUNT: splitting
    // never saves a page (pages(a) + pages(b) >= pages(a + b)), it only costs two more COUNTs,
    // and loading dense windows one by one costs a verification COUNT each.
    if n == 1 || count <= page.saturating_mul(SEGMENT_PAGES) {
        return Ok(TaskResult::Split(vec![Task::Load {
            windows: seg,
            expected: Some(count),
        }]));
    }
    let parts = split_parts(count, n, page);
    Ok(TaskResult::Split(
        split_even(seg, parts)
            .into_iter()
            .map(Task::Probe)
            .collect(),
    ))
}

/// Into how many parts a segment of `windows` windows holding `count` records is split: as
/// many as would each hold about three quarters of [`SEGMENT_PAGES`] pages were the records
/// spread evenly, and at least two. A dense range then costs one level of COUNTs instead of
/// log2 levels (3 years holding 50k invoices: 10 COUNTs instead of 15), and the parts of a
/// bunched range that hold its records are split again.
fn split_parts(count: u64, windows: u64, page: u64) -> u64 {
    let target = (page.saturating_mul(SEGMENT_PAGES) * 3 / 4).max(1);
    count.div_ceil(target).clamp(2, windows.max(2))
}

/// `seg` cut into `parts` runs of adjacent windows whose lengths differ by at most one. Each
/// part is a vector of its own size (`Vec::split_off` would leave every part holding the
/// capacity of everything after it: 42 MB of window rows for a 1M-invoice plan).
fn split_even(seg: Vec<WindowRow>, parts: u64) -> Vec<Vec<WindowRow>> {
    let mut left = seg.len();
    let parts = usize::try_from(parts)
        .unwrap_or(usize::MAX)
        .clamp(1, left.max(1));
    let mut rows = seg.into_iter();
    let mut out = Vec::with_capacity(parts);
    for remaining in (1..=parts).rev() {
        let take = left.div_ceil(remaining);
        out.push(rows.by_ref().take(take).collect());
        left -= take;
    }
    out
}

fn finished_windows(ctx: &Ctx<'_>, n: u64) {
    ctx.cfg
        .progress
        .windows_finished(n, ctx.rows.load(Ordering::Relaxed));
}

async fn fail_all(ctx: &Ctx<'_>, seg: &[WindowRow], msg: &str) -> Result<TaskResult, Error> {
    let mut problems = Vec::with_capacity(seg.len());
    for w in seg {
        let outcome = WindowOutcome {
            status: WindowStatus::Failed,
            source_count: None,
            verified: false,
            duration: Duration::ZERO,
            error: Some(msg.to_owned()),
        };
        // A probed window has no attempt yet: start one so that the failure is recorded.
        let held = ctx
            .db("starting a window", || {
                ctx.ledger.start_claimed_attempt(
                    w.id,
                    ctx.run_id,
                    ctx.worker.id(),
                    ctx.worker.lease_ttl(),
                )
            })
            .await
            .map_err(Error::Database)?
            .is_some()
            && ctx
                .db("finishing a window", || {
                    ctx.ledger
                        .finish_claimed_window(w.id, ctx.run_id, ctx.worker.id(), &outcome)
                })
                .await
                .map_err(Error::Database)?
                .is_some();
        if !held {
            lease_lost(&ctx.worker, w.id);
            continue;
        }
        problems.push(WindowProblem {
            window: row_window(w),
            status: WindowStatus::Failed,
            error: msg.to_owned(),
        });
    }
    finished_windows(ctx, seg.len() as u64);
    Ok(TaskResult::Finished {
        done: 0,
        empty: 0,
        problems,
        windows: window_ids(seg),
    })
}

/// Per-window tallies of one loading attempt.
#[derive(Default, Clone)]
struct WindowTally {
    /// Distinct ids stored (written or found unchanged).
    ids: HashSet<String>,
    /// Distinct records QBO returned that went to `raw.qb_rejects` (by id, or by text).
    rejected: HashSet<String>,
    rows: u64,
    counts: UpsertCounts,
}

impl WindowTally {
    /// Distinct records QBO returned for the window: stored or quarantined.
    fn seen(&self) -> u64 {
        (self.ids.len() + self.rejected.len()) as u64
    }
}

/// What a loading attempt produced: per-window tallies, and a COUNT it had to take (a short
/// page is the end of a query only if a COUNT says so).
struct Loaded {
    tallies: Vec<WindowTally>,
    counted: Option<u64>,
}

/// Why an attempt did not produce a verified load.
enum AttemptError {
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
    fn describe(&self) -> String {
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
enum Reading {
    /// Offset paging with overlapping pages.
    Paged,
    /// Sub-ranges that each fit in one page (a one-page query cannot skip records): after
    /// paging detected records changing, re-paging the same way would likely fail again.
    Narrowed,
}

/// Loads adjacent windows with one paged query per attempt, verifies, and records the outcome.
/// A multi-window segment that cannot be loaded and verified, for any reason, is split into
/// single windows, so that one bad window never fails its neighbours.
async fn load(
    ctx: &Ctx<'_>,
    windows: Vec<WindowRow>,
    mut expected: Option<u64>,
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
            Reading::Paged => load_attempt(ctx, &windows, range, expected).await,
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
                let Some(counted) = stoppable(ctx, count_range(ctx, range)).await else {
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
async fn lease_lost_release(ctx: &Ctx<'_>, windows: &[WindowRow]) -> Result<TaskResult, Error> {
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
async fn finish_loaded(
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
async fn finish_unloaded(
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
async fn start_attempts(ctx: &Ctx<'_>, windows: &[WindowRow]) -> Result<bool, Error> {
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
async fn finish(
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

/// The query for `range`: filter on the window field, inactive rows for name lists, and for
/// SELECTs ordering and MAXRESULTS (STARTPOSITION is set per page).
fn build_query(ctx: &Ctx<'_>, kind: QueryKind, range: Window) -> Result<Query, QboError> {
    build_query_since(ctx, kind, range, None)
}

/// [`build_query`], restricted to records changed since `since` when given.
fn build_query_since(
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
enum QueryKind {
    Select,
    Count,
}

/// A COUNT of `range`. Callers run it under [`stoppable`]: with the request budget spent it
/// sends nothing and waits for the stop it requested.
async fn count_range(ctx: &Ctx<'_>, range: Window) -> Result<u64, QboError> {
    let q = build_query(ctx, QueryKind::Count, range)?;
    if !ctx.may_call() {
        ctx.cfg.shutdown.requested().await;
        std::future::pending::<()>().await;
    }
    ctx.requests.fetch_add(1, Ordering::Relaxed);
    ctx.client.count(&q).await
}

/// The field a record is placed in a window by.
fn record_key(field: WindowField, r: &Record) -> Option<OffsetDateTime> {
    match field {
        WindowField::CreateTime => Some(r.create_time),
        WindowField::LastUpdatedTime => Some(r.last_updated_time),
        WindowField::TxnDate => r.txn_date.map(|d| d.midnight().assume_utc()),
    }
}

/// Pages `range` once, upserting each page (split by window) while the next one is fetched.
///
/// Invariants: consecutive pages overlap by `page_overlap` items, which must repeat (else
/// records moved: [`AttemptError::Changed`]); a page shorter than MAXRESULTS ends the query
/// only when a COUNT (the probe's, or one taken here) says nothing lies beyond it, or, with
/// verification off, when the next page is empty.
async fn load_attempt(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    range: Window,
    expected: Option<u64>,
) -> Result<Loaded, AttemptError> {
    let cfg = ctx.cfg;
    let page_size = cfg.page_size.clamp(1, 1000);
    let overlap = cfg.page_overlap.min(page_size / 4);
    let step = page_size - overlap;
    let base = build_query(ctx, QueryKind::Select, range).map_err(AttemptError::Qbo)?;

    let mut tallies = vec![WindowTally::default(); windows.len()];
    let mut counted: Option<u64> = None;
    let mut page_number: u32 = 1;
    let mut tail: Vec<String> = Vec::new();
    let fetch = |start: u32| fetch_page(ctx, base.with_start_position(start));
    // Pages fetched ahead, in order. Beyond the next page, only pages a COUNT says exist, and
    // only while page permits are free: a lone segment (the tail of a run) pages in parallel.
    // (Queueing more fetches on the permits was measured worse: pages fetched early hold
    // permits while they wait for their predecessors, and the API budget idles.)
    let mut ahead = FuturesOrdered::new();
    ahead.push_back(fetch(1));
    let mut next_fetch = 1 + step;
    let Some(first) = ahead.next().await else {
        return Err(AttemptError::Interrupted);
    };
    let (mut current, mut permit) = first?;
    loop {
        let len = current.len();
        let start_position = current.start_position;
        // Check the overlap: the first items must be the previous page's last items.
        let skip = if page_number > 1 && !tail.is_empty() {
            let head: Vec<&str> = current.items().take(tail.len()).map(|i| i.key()).collect();
            if head != tail.iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(AttemptError::Changed(format!(
                    "page {page_number} at position {start_position} should start with ids {tail:?}, got {head:?}"
                )));
            }
            tail.len()
        } else {
            0
        };
        event!(ctx, info, "page_loaded",
            window_start = %format_utc(range.start),
            window_end = %format_utc(range.end),
            page_number,
            start_position,
            rows = len,
            rejected = current.rejects.len(),
            latency_ms = duration_ms(current.latency),
            intuit_tid = current.intuit_tid.as_deref().unwrap_or(""));
        let full = len >= page_size as usize;
        let more = if full {
            true
        } else if len <= skip {
            // Nothing beyond the overlapping items (an empty page, in effect): the end.
            false
        } else {
            // A short page: the end only if a COUNT says no record lies beyond it.
            let beyond = u64::from(start_position - 1) + len as u64;
            let total = match expected.or(counted) {
                Some(n) => Some(n),
                None if cfg.verify => {
                    let Some(n) = stoppable(ctx, count_range(ctx, range)).await else {
                        return Err(AttemptError::Interrupted);
                    };
                    let n = n.map_err(AttemptError::Qbo)?;
                    counted = Some(n);
                    Some(n)
                }
                // Verification off and no COUNT: the next page (empty at the end) decides.
                None => None,
            };
            let more = total.is_none_or(|n| beyond < n);
            if more {
                event!(ctx, warn, "short_page",
                    window_start = %format_utc(range.start),
                    window_end = %format_utc(range.end),
                    page_number,
                    start_position,
                    rows = len,
                    count = total);
                // Positions after a short page: drop the look-ahead fetched for full pages.
                ahead = FuturesOrdered::new();
                next_fetch = start_position + u32::try_from(len).unwrap_or(u32::MAX);
                next_fetch = next_fetch.saturating_sub(overlap.min(next_fetch - start_position));
            }
            more
        };
        tail = current
            .items()
            .skip(len.saturating_sub(overlap as usize))
            .map(|i| i.key().to_owned())
            .collect();

        if more {
            if ahead.is_empty() {
                ahead.push_back(fetch(next_fetch));
                next_fetch += step;
            }
            while expected.is_some_and(|n| u64::from(next_fetch) <= n)
                && ahead.len() < ctx.pages.available_permits().min(SEGMENT_PAGES as usize)
            {
                ahead.push_back(fetch(next_fetch));
                next_fetch += step;
            }
        }
        // The page's permit is released as soon as it is written, even while the next page is
        // still on its way.
        let write = async {
            let w = write_page(ctx, windows, &mut tallies, &current, skip, page_number).await;
            drop(permit);
            w
        };
        let (written, next) = if more {
            let (w, n) = tokio::join!(write, ahead.next());
            (w, Some(n.ok_or(AttemptError::Interrupted)))
        } else {
            (write.await, None)
        };
        written?;
        match next {
            None => break,
            Some(n) => {
                (current, permit) = n??;
                page_number += 1;
                if current.len() < tail.len() {
                    return Err(AttemptError::Changed(format!(
                        "page {page_number} at position {} returned {} rows, fewer than the {} overlapping ones",
                        current.start_position,
                        current.len(),
                        tail.len()
                    )));
                }
            }
        }
    }
    Ok(Loaded { tallies, counted })
}

/// Fetches one page, holding a page permit from before the request until the page is written
/// (the caller drops it).
async fn fetch_page<'c>(
    ctx: &'c Ctx<'_>,
    q: Result<Query, qbo_client::QueryError>,
) -> Result<(Page, tokio::sync::SemaphorePermit<'c>), AttemptError> {
    let q = q.map_err(|e| AttemptError::Qbo(e.into()))?;
    // The semaphore is never closed; an error could only mean that, and is treated as a stop.
    let Some(Ok(permit)) = stoppable(ctx, ctx.pages.acquire()).await else {
        return Err(AttemptError::Interrupted);
    };
    if !ctx.may_call() {
        return Err(AttemptError::Interrupted);
    }
    ctx.requests.fetch_add(1, Ordering::Relaxed);
    match stoppable(ctx, ctx.client.query_page(&q)).await {
        None => Err(AttemptError::Interrupted),
        Some(page) => page.map(|p| (p, permit)).map_err(AttemptError::Qbo),
    }
}

/// Reads one window as sub-ranges that each fit in one page: a sub-range whose page comes back
/// full is halved (at whole seconds, which is what QBO's timestamps resolve) and read again; a
/// one-page query has no second page, so records inserted or deleted meanwhile cannot make it
/// skip any. A sub-range of one second that still fills a page is paged as usual.
async fn load_narrowed(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    range: Window,
) -> Result<Loaded, AttemptError> {
    let page_size = ctx.cfg.page_size.clamp(1, 1000) as usize;
    let mut tallies = vec![WindowTally::default(); windows.len()];
    let mut counted = None;
    let mut stack = vec![range];
    let mut page_number = 0u32;
    while let Some(part) = stack.pop() {
        let q = build_query(ctx, QueryKind::Select, part)
            .map_err(AttemptError::Qbo)?
            .with_start_position(1);
        let (page, permit) = fetch_page(ctx, q).await?;
        let seconds = (part.end - part.start).whole_seconds();
        if page.len() >= page_size && seconds >= 2 {
            drop(permit);
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
            drop(permit);
            let paged = Box::pin(load_attempt(ctx, windows, part, None)).await?;
            for (t, p) in tallies.iter_mut().zip(paged.tallies) {
                t.ids.extend(p.ids);
                t.rejected.extend(p.rejected);
                t.rows += p.rows;
                t.counts += p.counts;
            }
            counted = None;
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
        drop(permit);
    }
    Ok(Loaded { tallies, counted })
}

/// The metadata stored with the rows a page brings into window `w`.
fn page_meta(ctx: &Ctx<'_>, w: &WindowRow, page: &Page, page_number: u32) -> PageMeta {
    PageMeta {
        realm_id: ctx.realm.clone(),
        window_start: w.span.start,
        window_end: w.span.end,
        page_number: i32::try_from(page_number).unwrap_or(i32::MAX),
        page_size: i32::try_from(page.max_results).unwrap_or(i32::MAX),
        request_payload: page.query.clone(),
    }
}

/// Which of `windows` an instant falls in.
fn window_of(windows: &[WindowRow], key: OffsetDateTime) -> Option<usize> {
    windows
        .iter()
        .position(|w| w.span.start <= key && key < w.span.end)
}

/// Splits a page's new items by window and writes each group with its window's progress:
/// records into the raw table, items that are not usable records (and records PostgreSQL
/// cannot store) into `raw.qb_rejects`, only while this attempt holds the window.
async fn write_page(
    ctx: &Ctx<'_>,
    windows: &[WindowRow],
    tallies: &mut [WindowTally],
    page: &Page,
    skip: usize,
    page_number: u32,
) -> Result<(), AttemptError> {
    let field = ctx.cfg.window_field;
    let mut rows: Vec<Vec<RawRow<'_>>> = vec![Vec::new(); windows.len()];
    let mut rejects: Vec<Vec<RejectRow<'_>>> = vec![Vec::new(); windows.len()];
    for item in page.items().skip(skip) {
        match item {
            PageItem::Record(r) => {
                let key = record_key(field, r).ok_or_else(|| {
                    AttemptError::Stray(format!("record {} has no {field}", r.id))
                })?;
                let idx = window_of(windows, key).ok_or_else(|| {
                    AttemptError::Stray(format!(
                        "record {} has {field} {} outside the queried windows",
                        r.id,
                        format_utc(key)
                    ))
                })?;
                rows[idx].push(RawRow {
                    id: &r.id,
                    payload: &r.raw,
                });
            }
            // Without a usable timestamp a reject belongs to the query's window only when the
            // query has one window; a segment of several is split and read window by window.
            PageItem::Reject(r) if windows.len() == 1 => rejects[0].push(RejectRow {
                record_id: r.id.as_deref(),
                raw_text: r.raw.get(),
                reason: &r.reason,
            }),
            PageItem::Reject(r) => {
                return Err(AttemptError::Stray(format!(
                    "a record ({}) cannot be placed in one of the {} windows read together: {}",
                    r.id.as_deref().unwrap_or("no Id"),
                    windows.len(),
                    r.reason
                )));
            }
        }
    }
    for (idx, w) in windows.iter().enumerate() {
        let (rows, rejects) = (&rows[idx], &rejects[idx]);
        if rows.is_empty() && rejects.is_empty() {
            continue;
        }
        let meta = page_meta(ctx, w, page, page_number);
        let write = PageWrite {
            table: ctx.table,
            entity: ctx.entity,
            meta: &meta,
            rows,
            rejects,
            owner: Some(PageOwner {
                window: w.id,
                run: Some(ctx.run_id),
                worker: Some(ctx.worker.id()),
            }),
        };
        let outcome = ctx
            .db("upserting a page", || ctx.sink.write_page(&write))
            .await
            .map_err(|e| match e {
                SinkError::WindowNotRunning { .. } | SinkError::NotFound { .. } => {
                    AttemptError::LeaseLost
                }
                e if e.is_retryable() => AttemptError::DatabaseGone(e),
                e => AttemptError::Sink(e),
            })?;
        let t = &mut tallies[idx];
        for r in rejects {
            t.rejected
                .insert(r.record_id.unwrap_or(r.raw_text).to_owned());
        }
        let mut refused: HashSet<&str> = HashSet::new();
        for r in &outcome.rejected {
            if let Some(id) = &r.record_id {
                t.rejected.insert(id.clone());
                refused.insert(id);
            }
        }
        let stored = rows.iter().filter(|r| !refused.contains(r.id));
        let mut received = 0u64;
        for r in stored {
            received += 1;
            t.ids.insert(r.id.to_owned());
        }
        let counts = outcome.counts;
        t.rows += received;
        t.counts += counts;
        ctx.rows.fetch_add(received, Ordering::Relaxed);
        ctx.inserted.fetch_add(counts.inserted, Ordering::Relaxed);
        ctx.updated.fetch_add(counts.updated, Ordering::Relaxed);
        ctx.unchanged.fetch_add(counts.unchanged, Ordering::Relaxed);
        ctx.rejected.fetch_add(counts.rejected, Ordering::Relaxed);
    }
    Ok(())
}

/// How far before the run's start the catch-up of a date-windowed run looks: QBO's clock and
/// ours may differ, and its query results are eventually consistent.
pub(crate) const CATCH_UP_MARGIN: time::Duration = time::Duration::minutes(10);

/// The catch-up of a run windowed on a date field (`TxnDate`): business dates can be edited at
/// will, moving a record into a window this run already finished, and any record can change
/// after its window was read. Every record of the range changed since the run started (less
/// [`CATCH_UP_MARGIN`]) is read again, in one paged query over the whole range, and written
/// into its window's rows (a newer version replaces an older one; nothing older replaces
/// anything). Returns the records read.
async fn catch_up(ctx: &Ctx<'_>, since: OffsetDateTime) -> Result<u64, Error> {
    let Some(range) = ctx
        .cfg
        .windows
        .first()
        .zip(ctx.cfg.windows.last())
        .map(|(a, b)| Window {
            start: a.start,
            end: b.end,
        })
    else {
        return Ok(0);
    };
    let planned = spans(&ctx.cfg.windows);
    let rows = ctx
        .db("reading the windows", || {
            ctx.ledger.ensure_windows(&ctx.scope, &planned)
        })
        .await
        .map_err(Error::Database)?;
    let page_size = ctx.cfg.page_size.clamp(1, 1000);
    let base = build_query_since(ctx, QueryKind::Select, range, Some(since)).map_err(qbo_error)?;
    let mut start = 1u32;
    let mut read = 0u64;
    let mut page_number = 0u32;
    loop {
        let q = base.with_start_position(start);
        let (page, permit) = match fetch_page(ctx, q).await {
            Ok(p) => p,
            Err(AttemptError::Qbo(e)) => return Err(qbo_error(e)),
            Err(AttemptError::Interrupted) => return Ok(read),
            Err(e) => return Err(Error::Usage(e.describe())),
        };
        page_number += 1;
        let len = page.len();
        read += len as u64;
        let mut by_window: Vec<Vec<RawRow<'_>>> = vec![Vec::new(); rows.len()];
        for r in &page.records {
            let Some(key) = record_key(ctx.cfg.window_field, r) else {
                continue;
            };
            // Records dated outside the range are not this backfill's.
            if let Some(i) = window_of(&rows, key) {
                by_window[i].push(RawRow {
                    id: &r.id,
                    payload: &r.raw,
                });
            }
        }
        for (w, records) in rows.iter().zip(&by_window) {
            if records.is_empty() {
                continue;
            }
            let meta = page_meta(ctx, w, &page, page_number);
            let write = PageWrite {
                table: ctx.table,
                entity: ctx.entity,
                meta: &meta,
                rows: records,
                rejects: &[],
                owner: None,
            };
            let out = ctx
                .db("upserting a catch-up page", || ctx.sink.write_page(&write))
                .await
                .map_err(Error::Database)?;
            ctx.inserted
                .fetch_add(out.counts.inserted, Ordering::Relaxed);
            ctx.updated.fetch_add(out.counts.updated, Ordering::Relaxed);
            ctx.unchanged
                .fetch_add(out.counts.unchanged, Ordering::Relaxed);
        }
        drop(permit);
        event!(ctx, info, "catch_up_page",
            since = %format_utc(since),
            start_position = start,
            rows = len);
        // A short page is no proof of the end: an empty one is.
        if len == 0 {
            break;
        }
        start += u32::try_from(len).unwrap_or(page_size);
    }
    Ok(read)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `error: cause: cause` on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let text = cause.to_string();
        if !text.is_empty() && !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod claim_tests {
    use super::*;
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

    fn row(id: i64, d: i64) -> WindowRow {
        WindowRow {
            id: WindowId::new(id),
            scope: WindowScope::new("p", "r", "f"),
            span: WindowSpan::new(
                datetime!(2023-01-01 00:00 UTC) + time::Duration::days(d),
                datetime!(2023-01-01 00:00 UTC) + time::Duration::days(d + 1),
            ),
            status: WindowStatus::Pending,
            attempts: 0,
            pages: 0,
            rows: 0,
            inserted: 0,
            updated: 0,
            unchanged: 0,
            source_count: None,
            verified: false,
            rejected: 0,
            duration: None,
            last_error: None,
            run_id: None,
            started_at: None,
            finished_at: None,
            updated_at: datetime!(2023-01-01 00:00 UTC),
        }
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

    #[test]
    fn a_token_store_database_failure_is_a_database_error() {
        let db = SinkError::NotFound {
            entity: "token",
            key: String::new(),
        };
        let e = QboError::TokenStore(TokenStoreError::backend(true, db));
        assert!(is_database_failure(&e));
        assert_eq!(qbo_error(e).exit_status(), ExitStatus::Database);
        let other = QboError::TokenStore(TokenStoreError::backend(false, "disk full"));
        assert!(!is_database_failure(&other));
        assert_eq!(qbo_error(other).exit_status(), ExitStatus::WindowsFailed);
    }

    #[test]
    fn a_dense_segment_is_split_in_one_level_a_bunched_one_at_least_in_halves() {
        // 50k records over 1,096 days, 1,000-row pages: parts of ~6,000 records.
        assert_eq!(split_parts(50_000, 1096, 1000), 9);
        // Just over a segment's worth: halves.
        assert_eq!(split_parts(8_001, 1096, 1000), 2);
        // Never more parts than windows, never fewer than two.
        assert_eq!(split_parts(1_000_000, 3, 1000), 3);
        assert_eq!(split_parts(10, 2, 1), 2);
        assert_eq!(split_parts(5, 10, 0), 5);
    }

    #[test]
    fn a_segment_splits_into_adjacent_runs_of_near_equal_length() {
        let seg: Vec<WindowRow> = (0..10).map(|d| row(d + 1, d)).collect();
        let parts = split_even(seg, 3);
        let ids: Vec<Vec<i64>> = parts
            .iter()
            .map(|s| s.iter().map(|w| w.id.get()).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![5, 6, 7], vec![8, 9, 10]]);
        // No part keeps the capacity of the whole segment.
        let seg: Vec<WindowRow> = (0..1000).map(|d| row(d + 1, d)).collect();
        let parts = split_even(seg, 100);
        assert!(parts.iter().all(|p| p.len() == 10 && p.capacity() < 20));
        let seg: Vec<WindowRow> = (0..2).map(|d| row(d + 1, d)).collect();
        assert_eq!(split_even(seg, 9).len(), 2);
    }
}
