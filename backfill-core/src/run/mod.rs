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
//!    sized from its COUNT (see `split_parts`) and those are probed again, a part the COUNT
//!    says is dense with its first page requested together with its COUNT;
//! 4. a window (or small segment) is paged with overlapping pages: each page starts `overlap`
//!    rows before the previous one ended and those rows must be the same ids, otherwise records
//!    were inserted or deleted mid-paging and the window is paged again (bounded attempts);
//!    when a COUNT is known, every page it implies is requested at once (but no more pages
//!    ahead of a segment's writer than it writes while one arrives, by Little's law), and
//!    pages are compared as soon as neighbours have both arrived, whatever their order;
//! 5. each page is upserted with the window's progress in one transaction as soon as it
//!    arrives (one write at a time per segment, segments in parallel); pages in memory are
//!    bounded process-wide by bytes (`--memory-budget`, reserved before each request is sent),
//!    requests in flight by the client's per-realm limiter (rate and cap), independently: a
//!    page waiting to be written holds memory, not a request slot, so requests in flight
//!    settle at min(cap, rate × latency) whenever enough pages are wanted;
//! 6. verification: the COUNT for the same filter must equal the distinct ids loaded, else the
//!    window is paged again and finally marked `mismatch`;
//! 7. up to `concurrency` segments/windows in play (probing or loading); a failed window never
//!    stops the others;
//! 8. a worker with nothing left to claim waits while other workers hold windows of the plan
//!    (their process may die, and then their windows are claimed again), then ends;
//! 9. a stop request ([`crate::Shutdown`]) ends the run cleanly: no new request, fetched pages
//!    written, running windows back to `pending`, leases released, run `interrupted`;
//!    database statements that fail for a retryable reason are retried ([`crate::DbRetry`]);
//!    the request budget (`max_api_calls`) is claimed before each request is sent, so
//!    requests in parallel never pass it;
//! 10. with `--batch` ([`RunConfig::batch`]), the queries of both choke points go through the
//!     run's batcher, which packs them into batch requests when the batch budget has a slot
//!     and checks every page it gets back against what it should hold; each query still claims
//!     one call (the budget counts queries), and its page's memory is reserved before it
//!     reaches the batcher.
//!
//! Files, in the order data flows (each states the invariants it enforces): `config` (what a
//! run is asked to do), `drive` (claims, segments, the task queue: steps 2, 7, 8), `probe`
//! (step 3), `load` (attempts, verification, window outcomes: steps 4 and 6), `paging` (one
//! paged reading, pages in parallel: step 4), `pages` (its pure parts: the positions to
//! request and the overlap check), `ahead` (how many pages an attempt keeps ahead of its
//! writer), `fetch` (the queries and the two choke points every QBO
//! request of the loop goes through: `count_range` and `fetch_page`), `batcher` (`--batch`:
//! batch requests under those two choke points, step 10), `budget` (the memory budget),
//! `write` (step 5), `catch_up` (the TxnDate catch-up), `outcome` (the run's end, status and
//! trigger), `failure` (how errors map onto the run). This file holds the shape of a run,
//! [`run()`], and the state its stages share.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qbo_client::{QboClient, QboError};
use raw_sink::{
    Ledger, NewRun, RunId, RunStatus, RunSummary, Sink, SinkError, TriggerKey, TriggerStatus,
    UpsertCounts, Window as WindowRow, WindowId, WindowScope, WindowSpan, WindowStatus,
};
use time::OffsetDateTime;

use crate::claim::{Worker, WorkerConfig};
use crate::dbretry::with_retry;
use crate::shutdown::StopReason;
use crate::window::{Window, format_utc};
use crate::{Entity, Error, ExitStatus};

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
    /// Most bytes of pages the run held in memory at once, as `--memory-budget` counts them
    /// (reserved from before a request is sent until its page is written).
    pub peak_page_bytes: u64,
    /// QBO queries issued by the loop (pages and COUNTs; the client's retries not included).
    pub requests: u64,
    /// QBO API calls the run made, retries included, counted as queries (a batch request
    /// counts as its items): what `max_api_calls` counts. Also in `backfill.runs.api_calls`.
    pub api_calls: u64,
    /// HTTP requests the run sent to QBO, retries included (a batch request is one): what the
    /// 500 requests a minute count. Equals `api_calls` without `--batch`.
    pub api_requests: u64,
    /// Of `api_requests`, the batch requests (`--batch`).
    pub api_batches: u64,
    /// Query items those batch requests carried (each counted in `api_calls`).
    pub api_batch_items: u64,
    /// Batch items whose page the batch cut (shorter than its COUNT promised), read again
    /// alone as single queries.
    pub batch_items_cut: u64,
    /// Batch items that failed alone (their own fault), sent again alone as single queries.
    pub batch_items_failed: u64,
    /// Whether the run saw QBO cap a whole batch at 1,000 objects (the per-batch reading of
    /// the cap): later batches were packed to expect at most 1,000 rows in all.
    pub batch_cap_per_batch: bool,
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
    /// Bytes of pages in memory (from before their request until they are written), across
    /// all segments: `--memory-budget`.
    memory: budget::MemoryBudget,
    /// How many pages a paging attempt keeps ahead of its writer (the run's page and write
    /// times).
    ahead: ahead::Ahead,
    /// Requests the loop sent (or is about to send): claimed by [`Ctx::claim_call`].
    requests: AtomicU64,
    /// The client's counts when the run started.
    calls_at_start: Meter,
    /// `--batch`: the queue of queries packed into batch requests.
    batcher: Option<batcher::Batcher>,
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

mod ahead;
mod batcher;
mod budget;
mod catch_up;
mod config;
mod drive;
mod failure;
mod fetch;
mod load;
mod outcome;
mod pages;
mod paging;
mod probe;
mod write;

pub use budget::{DEFAULT_MEMORY_BUDGET, parse_memory_budget};
pub use config::RunConfig;
pub(crate) use failure::error_chain;

use catch_up::{CATCH_UP_MARGIN, catch_up};
use drive::drive;
use failure::ledger_error;
use load::load;
use outcome::conclude;
use probe::probe;

/// A unit of work in the queue.
enum Task {
    /// COUNT a segment of adjacent pending windows and decide what to do with it; `dense`
    /// when its parent's COUNT spread over its windows says it holds at least half a page
    /// (its first page is then requested together with its COUNT).
    Probe {
        windows: Vec<WindowRow>,
        dense: bool,
    },
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
/// ones are split, see `probe::split_parts`). Bigger segments save COUNT requests and give
/// the fetcher more pages to request at once (a segment's pages are fetched in parallel);
/// smaller ones cost less to page again window by window when a segment fails verification.
/// 24: 100k invoices cost 7 COUNTs for ~101 pages (8 cost 18).
pub(crate) const SEGMENT_PAGES: u64 = 24;

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

    // Pages in memory and the client's free answer buffers share `--memory-budget`.
    let (pages_budget, reused_bodies) = budget::split(cfg.memory_budget);
    client.limit_reused_bodies(reused_bodies);
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
        memory: budget::MemoryBudget::new(pages_budget),
        ahead: ahead::Ahead::default(),
        requests: AtomicU64::new(0),
        calls_at_start: Meter::of(client),
        batcher: cfg.batch.then(batcher::Batcher::new),
        rows: AtomicU64::new(0),
        inserted: AtomicU64::new(0),
        updated: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    };

    let run_started = OffsetDateTime::now_utc();
    let work = async {
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
        outcome
    };
    // The batcher is served while the run works, and dropped with whatever it holds when the
    // work ends (nothing: every query's caller awaited its answer).
    let outcome = tokio::select! {
        outcome = work => outcome,
        never = batcher::serve(&ctx) => match never {},
    };
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

fn spans(windows: &[Window]) -> Vec<WindowSpan> {
    windows
        .iter()
        .map(|w| WindowSpan::new(w.start, w.end))
        .collect()
}

/// What the client counted: HTTP requests, of which batch requests, and their items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Meter {
    /// HTTP requests (a batch is one), retries included.
    pub(crate) requests: u64,
    /// Of which batch requests.
    pub(crate) batches: u64,
    /// Items those batch requests carried.
    pub(crate) batch_items: u64,
}

impl Meter {
    fn of(client: &QboClient) -> Meter {
        Meter {
            requests: client.api_calls(),
            batches: client.api_batches(),
            batch_items: client.api_batch_items(),
        }
    }

    /// Queries: single queries plus batch items (a batch counted as its items): the metered
    /// figure the run's budgets use (`api_calls`).
    pub(crate) fn queries(self) -> u64 {
        self.requests
            .saturating_sub(self.batches)
            .saturating_add(self.batch_items)
    }

    fn since(self, start: Meter) -> Meter {
        Meter {
            requests: self.requests.saturating_sub(start.requests),
            batches: self.batches.saturating_sub(start.batches),
            batch_items: self.batch_items.saturating_sub(start.batch_items),
        }
    }
}

impl Ctx<'_> {
    /// What the client counted since the run started.
    fn meter(&self) -> Meter {
        Meter::of(self.client).since(self.calls_at_start)
    }

    /// QBO API calls made since the run started, counted as queries: a single query is one,
    /// a batch request counts as its items (see [`Meter::queries`]). Retries included.
    fn api_calls(&self) -> u64 {
        self.meter().queries()
    }

    /// Whether the run may send one more request: `false` (and a stop requested, so that the
    /// run ends as on a signal, windows back to `pending`) once `max_api_calls` are spent.
    fn may_call(&self) -> bool {
        match self.cfg.max_api_calls {
            Some(max) if self.api_calls() >= max => {
                self.budget_spent(max);
                false
            }
            _ => !self.cfg.shutdown.is_requested(),
        }
    }

    /// Claims one request of the loop before it is sent: `false` (nothing may be sent) once a
    /// stop is requested or the run's request budget is spent, counting both the API calls
    /// made (retries included) and the requests other tasks claimed but have not sent yet, so
    /// that requests sent in parallel never pass `max_api_calls`.
    fn claim_call(&self) -> bool {
        if !self.may_call() {
            return false;
        }
        let before = self.requests.fetch_add(1, Ordering::Relaxed);
        match self.cfg.max_api_calls {
            Some(max) if before >= max => {
                self.requests.fetch_sub(1, Ordering::Relaxed);
                // Spent by requests claimed meanwhile: stop as `may_call` does.
                self.budget_spent(max);
                false
            }
            _ => true,
        }
    }

    /// Requests the stop of a spent request budget, logging it once (the first request wins).
    fn budget_spent(&self, max: u64) {
        if self.cfg.shutdown.request(StopReason::Budget) {
            event!(
                self,
                warn,
                "request_budget_spent",
                max_api_calls = max,
                api_calls = self.api_calls()
            );
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

/// A request already sent (`fut`), unless a stop is requested first: `None` then, and `fut`
/// is dropped; but a request the budget paid for is awaited when the stop is the request
/// budget's own (it was sent before the budget ran out: its answer is used, and every call
/// counted reached QBO).
async fn sent<T>(ctx: &Ctx<'_>, fut: impl Future<Output = T>) -> Option<T> {
    let mut fut = std::pin::pin!(fut);
    let reason = tokio::select! {
        biased;
        reason = ctx.cfg.shutdown.requested() => reason,
        v = &mut fut => return Some(v),
    };
    match reason {
        StopReason::Budget => Some(fut.await),
        _ => None,
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

async fn run_task(ctx: &Ctx<'_>, task: Task) -> Result<TaskResult, Error> {
    match task {
        Task::Probe { windows, dense } => probe(ctx, windows, dense).await,
        Task::Load { windows, expected } => load(ctx, windows, expected, None).await,
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

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Ledger rows for the unit tests of the stages.
#[cfg(test)]
mod test_rows {
    use super::*;
    use time::macros::datetime;

    pub(super) fn row(id: i64, d: i64) -> WindowRow {
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
}
