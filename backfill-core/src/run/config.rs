//! What a run is asked to do: [`RunConfig`], built with the CLI's defaults by
//! [`RunConfig::new`] and adjusted through its public fields.
//!
//! Invariant: the planned windows are ascending and adjacent; the loop relies on it to form
//! segments and to place every record in exactly one window.

use std::time::Duration;

use raw_sink::Reload;
use time::OffsetDateTime;

use crate::claim::{DEFAULT_LEASE_TTL, Worker};
use crate::dbretry::DbRetry;
use crate::shutdown::Shutdown;
use crate::window::Window;
use crate::{Progress, WindowField};

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
    /// Bytes of pages held in memory at once, from before a page's request is sent until the
    /// page is written, with the client's free answer buffers kept for reuse (a quarter of it)
    /// (`--memory-budget`); a page larger than this is still fetched, alone.
    pub memory_budget: u64,
    /// Send the loop's queries (pages and COUNTs) packed into batch requests of up to 30
    /// items when the realm's batch budget has a slot free, and as single queries otherwise
    /// (`--batch`, off by default; see `run/batcher.rs`). Every query still counts as one call
    /// toward `max_api_calls`.
    pub batch: bool,
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
            memory_budget: super::budget::DEFAULT_MEMORY_BUDGET,
            batch: false,
        }
    }
}
