//! Cooperative workers: several processes (same pipeline, realm, range and trigger; one machine
//! or many) share one backfill through the ledger, with no coordinator besides PostgreSQL.
//!
//! - **Registration and heartbeat.** A [`Worker`] is a row of `backfill.workers` whose lease a
//!   background task renews every third of [`WorkerConfig::lease_ttl`], together with the
//!   leases of every window the worker holds (one statement).
//! - **Claims.** The loop claims windows in start order with `FOR UPDATE SKIP LOCKED`, in
//!   chunks of adjacent windows that it then probes (one COUNT for a sparse stretch) and loads
//!   exactly as a single process would. A worker that dies stops renewing: its windows become
//!   claimable when their lease expires, or at once when a worker on the same machine sees that
//!   its process is gone.
//! - **Budget.** QBO's limits are per realm (500 requests/min, 10 in flight), whatever the
//!   number of processes. With [`BudgetRequest`], a worker waits until live workers of the realm
//!   leave room for its share (`total / workers`) and records the share on its row, so the sum
//!   over all processes never exceeds the total; the share is what its QBO client's limiter is
//!   built with. A worker that dies frees its share when its lease expires.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qbo_client::RateLimit;
use raw_sink::{BudgetShare, Ledger, NewWorker, ShareGrant, Sink, WorkerRow};
use tokio::task::JoinHandle;

use crate::dbretry::{DbRetry, with_retry};
use crate::shutdown::Shutdown;
use crate::{Error, run::error_chain};

/// Default lease of a worker and of the windows it holds.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// A request for a share of the realm's QBO budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetRequest {
    /// The realm's whole budget, shared by every process of the realm (QBO: 500/min, 10).
    pub total: RateLimit,
    /// How many processes share it: each takes `total / workers` (at least 1 request per
    /// minute and 1 in flight) and the per-second pace in proportion to its requests per
    /// minute (rounded down, so that the shares' paces never add up to more than the realm's).
    pub workers: u32,
}

impl BudgetRequest {
    /// The share one worker takes.
    #[must_use]
    pub fn share(&self) -> RateLimit {
        let n = self.workers.max(1);
        let per_minute = self.total.per_minute / n;
        let per_second = u64::from(self.total.per_second) * u64::from(per_minute)
            / u64::from(self.total.per_minute.max(1));
        RateLimit {
            per_minute: per_minute.max(1),
            per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
            max_concurrency: (self.total.max_concurrency / n).max(1),
        }
    }
}

/// How a [`Worker`] registers.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Pipeline name.
    pub pipeline: String,
    /// QBO company.
    pub realm_id: String,
    /// How long leases last without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// A share of the realm's QBO budget to wait for, if any (the CLI always asks for one; an
    /// embedding service that builds its own client may not).
    pub budget: Option<BudgetRequest>,
    /// Retries of the registration statements.
    pub db_retry: DbRetry,
}

impl WorkerConfig {
    /// A configuration with the default lease and no budget share.
    #[must_use]
    pub fn new(pipeline: impl Into<String>, realm_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            pipeline: pipeline.into(),
            realm_id: realm_id.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            budget: None,
            db_retry: DbRetry::default(),
        }
    }
}

/// A registered worker process: its id owns window leases; a background task renews its lease
/// until [`Worker::stop`]. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    ledger: Ledger,
    lease_ttl: Duration,
    share: Option<RateLimit>,
    identity: ProcessIdentity,
    realm_id: String,
    db_retry: DbRetry,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.inner.id)
            .field("lease_ttl", &self.inner.lease_ttl)
            .field("share", &self.inner.share)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Registers this process as a worker, waits for its budget share if one is requested
    /// (logging `budget_wait` with the holders, and freeing the shares of dead processes of this
    /// machine at once), and starts renewing its lease in the background.
    ///
    /// # Errors
    /// [`Error::Database`] when the ledger stays unreachable; [`Error::Interrupted`] when
    /// `shutdown` is requested while waiting for a share.
    pub async fn start(
        sink: &Sink,
        cfg: &WorkerConfig,
        shutdown: &Shutdown,
    ) -> Result<Worker, Error> {
        let ledger = sink.ledger();
        let identity = ProcessIdentity::current();
        let id = new_worker_id(&identity);
        let row = NewWorker {
            id: id.clone(),
            pipeline: cfg.pipeline.clone(),
            realm_id: cfg.realm_id.clone(),
            trigger_name: None,
            host: identity.host.clone(),
            pid: Some(identity.pid),
            pid_start: identity.start,
            lease_ttl: cfg.lease_ttl,
        };
        with_retry(&cfg.db_retry, "registering the worker", || {
            ledger.register_worker(&row)
        })
        .await
        .map_err(Error::Database)?;
        let share = cfg.budget.map(|b| b.share());
        let worker = Worker {
            inner: Arc::new(Inner {
                id,
                ledger,
                lease_ttl: cfg.lease_ttl,
                share,
                identity,
                realm_id: cfg.realm_id.clone(),
                db_retry: cfg.db_retry,
                heartbeat: Mutex::new(None),
            }),
        };
        worker.spawn_heartbeat();
        // Close what dead processes of this machine left behind (their runs, leases, shares).
        if let Err(e) = worker.reap_dead_peers().await {
            worker.stop("could not read the ledger").await;
            return Err(e);
        }
        if let (Some(req), Some(share)) = (cfg.budget, share)
            && let Err(e) = worker.wait_for_share(req, share, shutdown).await
        {
            worker.stop("stopped before it got a budget share").await;
            return Err(e);
        }
        tracing::info!(
            worker = %worker.inner.id,
            realm = %cfg.realm_id,
            pipeline = %cfg.pipeline,
            requests_per_min = share.map(|s| s.per_minute),
            max_in_flight = share.map(|s| s.max_concurrency),
            lease_ttl_ms = u64::try_from(cfg.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            "worker_started"
        );
        Ok(worker)
    }

    async fn wait_for_share(
        &self,
        req: BudgetRequest,
        share: RateLimit,
        shutdown: &Shutdown,
    ) -> Result<(), Error> {
        let want = BudgetShare {
            per_minute: share.per_minute,
            max_in_flight: share.max_concurrency,
        };
        let total = BudgetShare {
            per_minute: req.total.per_minute,
            max_in_flight: req.total.max_concurrency,
        };
        let mut last_holders: Option<Vec<String>> = None;
        loop {
            let grant = with_retry(&self.inner.db_retry, "taking a budget share", || {
                self.inner.ledger.take_budget_share(
                    &self.inner.id,
                    &self.inner.realm_id,
                    want,
                    total,
                )
            })
            .await
            .map_err(Error::Database)?;
            let (used, holders) = match grant {
                ShareGrant::Granted => return Ok(()),
                ShareGrant::Busy { used, holders } => (used, holders),
            };
            if self.reap_dead_peers().await? > 0 {
                continue;
            }
            if last_holders.as_ref() != Some(&holders) {
                tracing::warn!(
                    worker = %self.inner.id,
                    realm = %self.inner.realm_id,
                    wanted_per_minute = want.per_minute,
                    wanted_in_flight = want.max_in_flight,
                    used_per_minute = used.per_minute,
                    used_in_flight = used.max_in_flight,
                    total_per_minute = total.per_minute,
                    total_in_flight = total.max_in_flight,
                    holders = %holders.join(","),
                    "budget_wait: other processes of this realm hold its QBO budget; waiting for a share (start every worker with the same --workers N)"
                );
                last_holders = Some(holders);
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll_interval()) => {}
                reason = shutdown.requested() => return Err(Error::Interrupted(reason)),
            }
        }
    }

    fn spawn_heartbeat(&self) {
        let ledger = self.inner.ledger.clone();
        let id = self.inner.id.clone();
        let ttl = self.inner.lease_ttl;
        let period = (ttl / 3).max(Duration::from_millis(10));
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match ledger.renew_worker(&id, ttl).await {
                    Ok(r) => tracing::trace!(worker = %id, windows = r.windows, "lease_renewed"),
                    Err(e) => tracing::warn!(
                        worker = %id,
                        cause = %error_chain(&e),
                        "lease_renewal_failed"
                    ),
                }
            }
        });
        *self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
    }

    /// The id written on the leases of the windows this worker holds.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The lease length.
    #[must_use]
    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    /// The share of the realm's QBO budget this worker holds (build its client with it).
    #[must_use]
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.inner.share
    }

    /// How often a waiting worker looks again (a quarter of the lease, 50 ms..2 s).
    pub(crate) fn poll_interval(&self) -> Duration {
        (self.inner.lease_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
    }

    /// Frees the leases and budget shares of workers of this realm that ran on this machine
    /// and whose process is gone (killed or crashed), and marks their runs failed. Returns how
    /// many were found.
    ///
    /// # Errors
    /// [`Error::Database`] when the ledger stays unreachable.
    pub async fn reap_dead_peers(&self) -> Result<u64, Error> {
        if self.inner.identity.host.is_empty() {
            return Ok(0);
        }
        let live = with_retry(&self.inner.db_retry, "listing live workers", || {
            self.inner.ledger.live_workers(&self.inner.realm_id)
        })
        .await
        .map_err(Error::Database)?;
        let mut reaped = 0;
        for peer in live.iter().filter(|w| self.inner.identity.is_dead(w)) {
            let reason = format!(
                "worker {} (pid {}) ended without closing its run (killed or crashed); found by worker {}",
                peer.id,
                peer.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                self.inner.id
            );
            let freed = with_retry(&self.inner.db_retry, "expiring a dead worker", || {
                self.inner.ledger.expire_worker(&peer.id, &reason)
            })
            .await
            .map_err(Error::Database)?;
            tracing::warn!(
                worker = %self.inner.id,
                dead_worker = %peer.id,
                windows_freed = freed,
                "dead_worker_reaped"
            );
            reaped += 1;
        }
        Ok(reaped)
    }

    /// Stops renewing, releases every window still held (running ones go back to `pending`
    /// with `reason`) and the budget share. Best effort: if the database is unreachable the
    /// leases simply expire.
    pub async fn stop(&self, reason: &str) {
        if let Some(h) = self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
        let quick = DbRetry::for_duration(
            self.inner
                .db_retry
                .give_up_after
                .min(Duration::from_secs(5)),
        );
        if let Err(e) = with_retry(&quick, "stopping the worker", || {
            self.inner.ledger.stop_worker(&self.inner.id, reason)
        })
        .await
        {
            tracing::warn!(worker = %self.inner.id, cause = %error_chain(&e), "worker_stop_failed");
        }
    }
}

/// `host-pid-random`, readable in the ledger.
fn new_worker_id(identity: &ProcessIdentity) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(identity.pid);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    let name = identity
        .hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(40)
        .collect::<String>();
    let name = if name.is_empty() { "host" } else { &name };
    format!("{name}-{}-{:08x}", identity.pid, h.finish() & 0xffff_ffff)
}

/// Where this process runs, precisely enough to check another process of the same machine and
/// PID namespace.
#[derive(Debug, Clone)]
pub(crate) struct ProcessIdentity {
    /// `hostname/boot-id/pid-namespace`, or empty when unknown (then nobody checks our pid).
    pub(crate) host: String,
    hostname: String,
    pub(crate) pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub(crate) start: Option<u64>,
}

impl ProcessIdentity {
    pub(crate) fn current() -> ProcessIdentity {
        let pid = std::process::id();
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let hostname = read("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let boot = read("/proc/sys/kernel/random/boot_id");
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let start = proc_stat(pid).map(|(_, start)| start);
        let host = match (boot, pidns, start) {
            (Some(boot), Some(ns), Some(_)) => format!("{hostname}/{boot}/{ns}"),
            _ => String::new(),
        };
        ProcessIdentity {
            host,
            hostname,
            pid,
            start,
        }
    }

    /// Whether `peer` ran in this machine's PID namespace and its process is gone (no such
    /// pid, a zombie, or a new process reusing the pid).
    fn is_dead(&self, peer: &WorkerRow) -> bool {
        if self.host.is_empty() || peer.host != self.host {
            return false;
        }
        let Some(pid) = peer.pid else { return false };
        if pid == self.pid {
            return false;
        }
        match proc_stat(pid) {
            None => true,
            Some((state, start)) => {
                matches!(state, 'Z' | 'X' | 'x') || peer.pid_start.is_some_and(|s| s != start)
            }
        }
    }
}

/// `(state, start time)` of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u64)> {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the
    // last `)`. Field 3 is the state, field 22 the start time.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Logs that `worker` no longer holds `window` (its lease expired and another worker took it).
pub(crate) fn lease_lost(worker: &Worker, window: raw_sink::WindowId) {
    tracing::warn!(
        worker = %worker.id(),
        window = window.get(),
        "lease_lost: another worker took this window over (this worker's lease had expired); leaving it"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_the_budget() {
        let req = |per_minute, max_concurrency, workers| BudgetRequest {
            total: RateLimit {
                per_minute,
                per_second: 10,
                max_concurrency,
            },
            workers,
        };
        assert_eq!(req(500, 10, 1).share(), RateLimit::QBO);
        assert_eq!(
            req(500, 10, 4).share(),
            RateLimit {
                per_minute: 125,
                per_second: 2,
                max_concurrency: 2
            }
        );
        assert_eq!(req(500, 10, 2).share().per_second, 5);
        // Never zero (zero means unlimited to the client); the pace may be (then requests are
        // spread evenly over the minute).
        assert_eq!(
            req(5, 2, 20).share(),
            RateLimit {
                per_minute: 1,
                per_second: 0,
                max_concurrency: 1
            }
        );
        assert_eq!(req(500, 10, 20).share().per_second, 0);
        assert_eq!(req(500, 10, 0).share(), RateLimit::QBO);
    }

    #[test]
    fn stat_parsing() {
        let line = "4242 (qb (weird) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("garbage"), None);
        let me = ProcessIdentity::current();
        let (state, start) = proc_stat(me.pid).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(Some(start), me.start);
        assert!(!me.host.is_empty());
    }

    #[test]
    fn ids_are_unique_and_readable() {
        let me = ProcessIdentity::current();
        let a = new_worker_id(&me);
        let b = new_worker_id(&me);
        assert_ne!(a, b);
        assert!(a.contains(&me.pid.to_string()), "{a}");
    }
}
