//! The reliability options of a pipeline run (`--workers`, `--lease-ttl`, `--db-retry-for`),
//! the signal handlers, and the worker that holds this process's share of the QBO budget.

use std::time::Duration;

use clap::Args;
use qbo_client::RateLimit;
use raw_sink::Sink;

use crate::claim::{BudgetRequest, DEFAULT_LEASE_TTL, Worker, WorkerConfig};
use crate::dbretry::{DbRetry, parse_duration};
use crate::shutdown::{Shutdown, StopReason};
use crate::{Error, RunConfig, RunReport};

/// Options for several processes sharing a backfill, leases and database loss.
#[derive(Debug, Clone, Args)]
pub struct ReliabilityArgs {
    /// Processes sharing this backfill (start each with the same range, trigger and N); each
    /// takes 1/N of --requests-per-min and --max-in-flight, so the realm's QBO budget holds.
    #[arg(long, env = "QB_WORKERS", default_value = "1", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub workers: u32,
    /// Lease of this process and of the windows it holds (renewed every third of it); a dead
    /// process's windows are taken over when it expires (at once on the same machine).
    #[arg(long, env = "QB_LEASE_TTL", default_value = "30s", value_parser = parse_lease)]
    pub lease_ttl: Duration,
    /// How long to keep retrying while PostgreSQL is unreachable before stopping with exit
    /// code 5 (nothing is lost; the next run resumes).
    #[arg(long, env = "QB_DB_RETRY_FOR", default_value = "60s", value_parser = parse_duration)]
    pub db_retry_for: Duration,
}

impl Default for ReliabilityArgs {
    fn default() -> Self {
        ReliabilityArgs {
            workers: 1,
            lease_ttl: DEFAULT_LEASE_TTL,
            db_retry_for: DbRetry::default().give_up_after,
        }
    }
}

fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(300) {
        return Err(format!("{s:?} is too short for a lease (at least 300ms)"));
    }
    Ok(d)
}

/// Installs the SIGINT/SIGTERM handlers: the first signal stops the run cleanly (exit 130 or
/// 143 once its windows are released); a second one exits at once with the same code.
pub(crate) fn install_signal_handlers(bin: &str) -> Shutdown {
    let shutdown = Shutdown::new();
    let bin = bin.to_owned();
    let installed = shutdown.install_signal_handlers(move |reason: StopReason| {
        eprintln!(
            "{bin}: {reason} again: exiting at once; windows in progress resume when their lease expires"
        );
        std::process::exit(i32::from(reason.exit_status().code()));
    });
    if let Err(e) = installed {
        tracing::warn!(error = %e, "signal handlers not installed; SIGINT/SIGTERM end the process at once");
    }
    shutdown
}

/// Registers this process as a worker of `realm_id` and waits for its share of the budget.
pub(crate) async fn start_worker(
    sink: &Sink,
    pipeline: &str,
    realm_id: &str,
    total: RateLimit,
    args: &ReliabilityArgs,
    shutdown: &Shutdown,
) -> Result<Worker, Error> {
    let mut cfg = WorkerConfig::new(pipeline, realm_id);
    cfg.lease_ttl = args.lease_ttl;
    cfg.db_retry = DbRetry::for_duration(args.db_retry_for);
    cfg.budget = Some(BudgetRequest {
        total,
        workers: args.workers,
    });
    Worker::start(sink, &cfg, shutdown).await
}

/// Puts the worker, the stop request and the retry bound into the run's configuration.
pub(crate) fn configure(
    cfg: &mut RunConfig,
    args: &ReliabilityArgs,
    worker: &Worker,
    shutdown: &Shutdown,
) {
    cfg.workers = args.workers;
    cfg.worker = Some(worker.clone());
    cfg.lease_ttl = args.lease_ttl;
    cfg.shutdown = shutdown.clone();
    cfg.db_retry = DbRetry::for_duration(args.db_retry_for);
}

/// Ends the worker: releases whatever it still holds and its budget share.
pub(crate) async fn stop_worker(worker: &Worker, result: &Result<RunReport, Error>) {
    let reason = match result {
        Ok(r) if r.interrupted.is_some() => "interrupted; the next run resumes it",
        Ok(_) => "run finished",
        Err(_) => "the run stopped on an error; the next run resumes it",
    };
    worker.stop(reason).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        r: ReliabilityArgs,
    }

    #[test]
    fn defaults_and_values() {
        let t = T::try_parse_from(["t"]).unwrap();
        assert_eq!(t.r.workers, 1);
        assert_eq!(t.r.lease_ttl, Duration::from_secs(30));
        assert_eq!(t.r.db_retry_for, Duration::from_secs(60));
        let t = T::try_parse_from([
            "t",
            "--workers",
            "4",
            "--lease-ttl",
            "2s",
            "--db-retry-for",
            "3m",
        ])
        .unwrap();
        assert_eq!(
            (t.r.workers, t.r.lease_ttl, t.r.db_retry_for),
            (4, Duration::from_secs(2), Duration::from_secs(180))
        );
        assert!(T::try_parse_from(["t", "--workers", "0"]).is_err());
        assert!(T::try_parse_from(["t", "--lease-ttl", "10ms"]).is_err());
        assert!(T::try_parse_from(["t", "--db-retry-for", "soon"]).is_err());
    }
}
