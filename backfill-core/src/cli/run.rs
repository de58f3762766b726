//! The backfill run itself: its options ([`RunArgs`]), their validation against the entity and
//! the clock, the dry-run plan, the run, and the summary printed on a terminal.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use qbo_client::{QboClient, QboConfig};
use raw_sink::{PgConfig, Sink};
use time::OffsetDateTime;

use super::connect;
use super::reliability::{self, ReliabilityArgs};
use crate::batch_metrics;
use crate::run::{RunConfig, RunReport};
use crate::window::{self, Plan, PlanRequest, WindowSize, format_utc};
use crate::{Entity, Error, ExitStatus, Progress, WindowField};

/// Options of a pipeline run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Range start: RFC 3339 with offset, or a date (00:00 UTC).
    #[arg(long = "fecha-inicio", visible_alias = "start", env = "FECHA_INICIO", required = true, value_parser = parse_instant_arg)]
    pub start: Option<OffsetDateTime>,
    /// Range end (exclusive): RFC 3339 with offset, or a date (00:00 UTC).
    #[arg(long = "fecha-fin", visible_alias = "end", env = "FECHA_FIN", required = true, value_parser = parse_instant_arg)]
    pub end: Option<OffsetDateTime>,
    /// Window size: minutes dividing a day (15m, 6h) or whole days (1d, 7d).
    #[arg(long, default_value = "1d", value_parser = parse_window_size_arg)]
    pub window: WindowSize,
    /// Timestamp that places a record in a window.
    #[arg(long, value_parser = parse_window_field_arg, help = "Window field: MetaData.CreateTime (default), MetaData.LastUpdatedTime, or TxnDate (transactions)")]
    pub window_field: Option<WindowField>,
    /// Segments (runs of windows) in play at once; their pages are fetched in parallel within
    /// --memory-budget and the realm's --max-in-flight.
    #[arg(long, default_value = "4")]
    pub concurrency: NonZeroUsize,
    /// Bytes of pages held in memory at once, counted from before each request is sent until
    /// the page is written, answer buffers kept for reuse included (a quarter of it): e.g.
    /// 96MB, 512K, 1G (powers of 1024).
    #[arg(long, default_value = "96MB", value_parser = crate::parse_memory_budget)]
    pub memory_budget: u64,
    /// Skip the COUNT verification of each window.
    #[arg(long)]
    pub no_verify: bool,
    /// Plan and print the windows; call nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One-time trigger name (default: pipeline + range).
    #[arg(long)]
    pub trigger: Option<String>,
    /// Run a completed or disabled trigger again and reload windows already done.
    #[arg(long)]
    pub force: bool,
    /// Where the rotating refresh token is kept: db (the ledger schema) or file:PATH.
    #[arg(long, default_value = "db")]
    pub token_store: TokenStoreSpec,
    /// QBO requests per minute for this realm (QBO allows 500).
    #[arg(long, default_value = "500", value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_min: u32,
    /// QBO requests per second for this realm while the minute's budget lasts (QBO allows
    /// 10): default 10 with the default --requests-per-min, otherwise requests are spread
    /// evenly over the minute unless this is given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_sec: Option<u32>,
    /// QBO requests in flight at once for this realm (QBO allows 10).
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// How long QBO may keep failing (throttled, 5xx, unreachable) with no success in between
    /// before requests stop being retried: minutes or hours, e.g. 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_give_up_arg)]
    pub give_up_after: GiveUpAfter,
    /// Stop cleanly (exit 1, windows back to pending; the next run resumes) once this run has
    /// made this many QBO API calls, retries included: Intuit meters read calls.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: Option<u64>,
    /// Send pages and COUNTs packed into QBO batch requests (up to 30 queries each) whenever
    /// the batch budget has a slot free, single queries otherwise; pages a batch cut are read
    /// again alone. Off by default until measured against a real company. Every query still
    /// counts as one call toward --max-requests and --monthly-requests.
    #[arg(long)]
    pub batch: bool,
    /// QBO batch requests per minute for this realm (QBO allows 40), split between
    /// cooperating workers like --requests-per-min.
    #[arg(long, default_value = "40", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_requests_per_min: u32,
    /// Rows per page (MAXRESULTS, at most 1000).
    #[arg(long, default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Write the run's final figures here as a node_exporter textfile (atomic rename).
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<PathBuf>,
    /// PUT the run's final figures (the textfile's) to this Prometheus Pushgateway, grouped
    /// under job `qb_backfill`, pipeline and realm (`http[s]://[user:password@]host:9091`).
    #[arg(long, value_name = "URL", value_parser = parse_push_url)]
    pub metrics_push: Option<reqwest::Url>,
    /// Cooperative workers, leases and database loss.
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
    /// Many companies in one invocation.
    #[command(flatten)]
    pub realms: super::realms::RealmsArgs,
}

/// `--metrics-push`: an http(s) URL (its path, if any, prefixes the Pushgateway's).
fn parse_push_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("a Pushgateway URL is http:// or https:// with a host".to_owned());
    }
    Ok(url)
}

/// Where the refresh token is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStoreSpec {
    /// `backfill.oauth_tokens` in PostgreSQL (the default).
    Db,
    /// A 0600 file.
    File(PathBuf),
}

impl FromStr for TokenStoreSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "db" {
            return Ok(TokenStoreSpec::Db);
        }
        match s.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(TokenStoreSpec::File(PathBuf::from(path))),
            _ => Err(Error::Usage(format!(
                "token store {s:?} is not `db` or `file:PATH`"
            ))),
        }
    }
}

/// The give-up horizon of `--give-up-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveUpAfter(std::time::Duration);

impl GiveUpAfter {
    /// The horizon.
    #[must_use]
    pub fn as_duration(self) -> std::time::Duration {
        self.0
    }
}

pub(super) fn parse_give_up_arg(s: &str) -> Result<GiveUpAfter, Error> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        Error::Usage(format!(
            "--give-up-after {s:?} is not a duration such as 90s, 5m or 1h"
        ))
    })?;
    let secs = match unit {
        "s" => n,
        "m" | "" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => {
            return Err(Error::Usage(format!(
                "--give-up-after {s:?} is not a duration such as 90s, 5m or 1h"
            )));
        }
    };
    if secs == 0 {
        return Err(Error::Usage("--give-up-after must be positive".into()));
    }
    Ok(GiveUpAfter(std::time::Duration::from_secs(secs)))
}

fn parse_instant_arg(s: &str) -> Result<OffsetDateTime, Error> {
    window::parse_instant(s)
}

fn parse_window_size_arg(s: &str) -> Result<WindowSize, Error> {
    s.parse()
}

fn parse_window_field_arg(s: &str) -> Result<WindowField, String> {
    s.parse()
        .map_err(|e: crate::entity::UnknownWindowField| e.to_string())
}

/// A run's options after validation against the entity and the clock.
#[derive(Debug, Clone)]
pub struct ValidatedRun {
    /// The planned windows.
    pub plan: Plan,
    /// The window field.
    pub window_field: WindowField,
    /// The trigger name (given or default).
    pub trigger: String,
}

impl RunArgs {
    /// Checks the options for entity `E` at time `now` and plans the windows.
    ///
    /// # Errors
    /// Usage errors ([`Error::exit_status`] = 2): a missing bound, a bad range, a window field
    /// the entity lacks, or a range that `TxnDate` windows cannot cut.
    pub fn validate<E: Entity>(&self, now: OffsetDateTime) -> Result<ValidatedRun, Error> {
        let (Some(start), Some(end)) = (self.start, self.end) else {
            return Err(Error::Usage(
                "--fecha-inicio and --fecha-fin are required (or FECHA_INICIO / FECHA_FIN)".into(),
            ));
        };
        let window_field = self.window_field.unwrap_or(E::DEFAULT_WINDOW_FIELD);
        if !E::supports_window_field(window_field) {
            return Err(Error::WindowFieldNotApplicable {
                field: window_field,
                entity: E::NAME,
            });
        }
        let plan = window::plan(&PlanRequest {
            start,
            end,
            size: self.window,
            now,
            whole_days: window_field.is_date(),
        })?;
        let trigger = match &self.trigger {
            Some(name) if name.trim().is_empty() => {
                return Err(Error::Usage("--trigger needs a non-empty name".into()));
            }
            Some(name) if name.chars().any(char::is_control) => {
                return Err(Error::Usage(format!(
                    "--trigger {:?} holds control characters; use printable text",
                    window::printable(name)
                )));
            }
            Some(name) => name.clone(),
            // The requested (not the clipped) end, so that re-runs name the same trigger.
            None => default_trigger_name::<E>(start, end),
        };
        Ok(ValidatedRun {
            plan,
            window_field,
            trigger,
        })
    }
}

/// The default trigger name: pipeline and range, e.g.
/// `qb_invoices_backfill 2023-01-01T00:00:00Z..2023-02-01T00:00:00Z`.
#[must_use]
pub fn default_trigger_name<E: Entity>(start: OffsetDateTime, end: OffsetDateTime) -> String {
    format!("{} {}..{}", E::PIPELINE, format_utc(start), format_utc(end))
}

/// Validates everything, then connects, migrates, and runs pipeline `E`.
pub(super) async fn pipeline<E: Entity>(
    args: &RunArgs,
    now: OffsetDateTime,
    progress: Progress,
) -> Result<ExitStatus, Error> {
    let valid = args.validate::<E>(now)?;
    if args.dry_run {
        print_plan::<E>(args, &valid);
        return Ok(ExitStatus::Success);
    }
    if args.realms.is_many() {
        return super::realms::pipeline_realms::<E>(args, &valid).await;
    }
    // All configuration is checked before anything is called or written.
    let qbo = QboConfig::from_env().map_err(Error::QboConfig)?;
    pipeline_for::<E>(args, &valid, qbo, args.max_requests, progress).await
}

/// [`pipeline`] for one company, `qbo`, with at most `max_requests` API calls.
pub(crate) async fn pipeline_for<E: Entity>(
    args: &RunArgs,
    valid: &ValidatedRun,
    qbo: QboConfig,
    max_requests: Option<u64>,
    progress: Progress,
) -> Result<ExitStatus, Error> {
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let token_key = crate::token_key_from_env()?;
    if let Some(requested) = valid.plan.clipped_from {
        tracing::warn!(
            pipeline = E::PIPELINE,
            requested_end = %format_utc(requested),
            clipped_end = %format_utc(valid.plan.end),
            "range_clipped_to_now"
        );
    }

    // A token file is checked before the database is touched: a bad path writes nothing.
    let file_store =
        connect::file_token_store(&args.token_store, &qbo.realm_id, token_key.clone()).await?;
    let shutdown = reliability::install_signal_handlers(E::PIPELINE);
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    // The trigger is checked before anything is written (migrations, worker rows): a name used
    // for another range, or a trigger already completed or disabled, ends with nothing behind.
    let range_end = valid.plan.clipped_from.unwrap_or(valid.plan.end);
    precheck_trigger::<E>(&sink, &qbo.realm_id, valid, range_end, args.force).await?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let store = connect::token_store(file_store, &sink, &qbo.realm_id, token_key).await?;
    // The company's own app, when it was connected with another than QBO_CLIENT_ID.
    let qbo = super::apps::with_company_app(store.as_ref(), qbo).await?;
    // Expiries within 30 days are warned about in every run's log and its summary.
    let token_warnings =
        super::auth::warn_expiring(store.as_ref(), &qbo.realm_id, &qbo.credentials.client_id).await;
    let limits = connect::ClientLimits {
        realm_budget: connect::realm_budget(
            args.requests_per_min,
            args.requests_per_sec,
            args.max_in_flight,
        ),
        realm_batch_per_minute: args.batch_requests_per_min,
        give_up_after: args.give_up_after.as_duration(),
    };
    // This process's share of the realm's budget (waits while other processes hold it all).
    let (client, worker) = connect::client_with_share(
        E::PIPELINE,
        qbo,
        store,
        &sink,
        limits,
        &args.reliability,
        &shutdown,
    )
    .await?;

    let mut cfg = RunConfig::new(
        valid.plan.windows.clone(),
        valid.window_field,
        valid.trigger.clone(),
    );
    cfg.range_start = valid.plan.start;
    // The requested end names the trigger, so that a re-run of a clipped range finds it again.
    cfg.range_end = range_end;
    cfg.concurrency = args.concurrency.get();
    cfg.memory_budget = args.memory_budget;
    cfg.verify = !args.no_verify;
    cfg.force = args.force;
    cfg.page_size = args.page_size;
    cfg.batch = args.batch;
    cfg.max_api_calls = max_requests;
    cfg.progress = progress;
    reliability::configure(&mut cfg, &args.reliability, &worker, &shutdown);
    let started = std::time::Instant::now();
    let result = crate::run::<E>(&client, &sink, &cfg).await;
    client.note_last_success().await;
    reliability::stop_worker(&worker, &result).await;
    if args.metrics_textfile.is_some() || args.metrics_push.is_some() {
        let figures =
            batch_metrics::figures(E::PIPELINE, client.realm_id(), &result, started.elapsed());
        batch_metrics::publish(
            &sink,
            args.metrics_textfile.as_deref(),
            args.metrics_push.as_ref(),
            &figures,
        )
        .await;
    }
    let report = result?;
    if std::io::stdout().is_terminal() {
        print_summary::<E>(&client, &cfg, &report);
        for w in &token_warnings {
            println!("warning: {w}");
        }
    }
    Ok(report.exit_status())
}

/// The trigger checks of [`crate::run()`], read-only, before anything is written.
async fn precheck_trigger<E: Entity>(
    sink: &Sink,
    realm: &str,
    valid: &ValidatedRun,
    range_end: OffsetDateTime,
    force: bool,
) -> Result<(), Error> {
    let key = raw_sink::TriggerKey::new(E::PIPELINE, realm, valid.trigger.clone());
    let trigger = sink
        .ledger()
        .check_trigger(&key, valid.plan.start, range_end)
        .await
        .map_err(|e| match e {
            e @ raw_sink::SinkError::TriggerConflict { .. } => Error::TriggerConflict(e),
            e => Error::Database(e),
        })?;
    match trigger {
        Some(t) if t.status == raw_sink::TriggerStatus::Completed && !force => {
            Err(Error::TriggerCompleted {
                name: valid.trigger.clone(),
                completed_at: t
                    .completed_at
                    .map_or_else(|| "unknown".to_owned(), format_utc),
            })
        }
        Some(t) if t.status == raw_sink::TriggerStatus::Disabled && !force => {
            Err(Error::TriggerDisabled {
                name: valid.trigger.clone(),
            })
        }
        _ => Ok(()),
    }
}

fn print_plan<E: Entity>(args: &RunArgs, valid: &ValidatedRun) {
    let plan = &valid.plan;
    println!(
        "{} dry run: {} window(s) of {} on {} over [{}, {}), trigger {:?}",
        E::PIPELINE,
        plan.windows.len(),
        args.window,
        valid.window_field,
        format_utc(plan.start),
        format_utc(plan.end),
        valid.trigger
    );
    if let Some(requested) = plan.clipped_from {
        println!(
            "warning: the requested end {} is in the future; clipped to now",
            format_utc(requested)
        );
    }
    for w in &plan.windows {
        println!("{}\t{}", format_utc(w.start), format_utc(w.end));
    }
}

fn print_summary<E: Entity>(client: &QboClient, cfg: &RunConfig, r: &RunReport) {
    const LISTED: usize = 10;
    println!(
        "{} · realm {} · run {} · {} in {:.1}s",
        E::PIPELINE,
        client.realm_id(),
        r.run_id,
        r.status,
        r.duration.as_secs_f64()
    );
    println!(
        "range [{}, {}) on {} · trigger {:?}{}",
        format_utc(cfg.range_start),
        format_utc(cfg.range_end),
        cfg.window_field,
        cfg.trigger,
        if r.trigger_completed {
            " completed"
        } else {
            ""
        }
    );
    let failed = r
        .problems
        .iter()
        .filter(|p| p.status == raw_sink::WindowStatus::Failed)
        .count();
    println!(
        "windows: {} planned · {} already done · {} done ({} empty) · {} failed · {} mismatch",
        r.windows_planned,
        r.windows_skipped,
        r.windows_done,
        r.windows_empty,
        failed,
        r.problems.len() - failed
    );
    println!(
        "rows: {} received · {} inserted · {} updated · {} unchanged · {} QBO queries ({} API calls with retries)",
        r.rows, r.counts.inserted, r.counts.updated, r.counts.unchanged, r.requests, r.api_calls
    );
    if cfg.batch {
        println!(
            "requests: {} HTTP requests to QBO · {} batch requests carrying {} queries · {} \
             single queries (--max-requests counts queries: {})",
            r.api_requests,
            r.api_batches,
            r.api_batch_items,
            r.api_requests.saturating_sub(r.api_batches),
            r.api_calls
        );
    }
    if r.interrupted == Some(crate::StopReason::Budget) {
        println!(
            "stopped: the request budget (--max-requests {}) is spent; run again to resume",
            cfg.max_api_calls.unwrap_or_default()
        );
    }
    if r.rejected > 0 {
        println!(
            "quarantined: {} record(s) QBO returned cannot be stored; they are in raw.qb_rejects \
             with the reason (exit 1)",
            r.rejected
        );
    }
    if r.unverified > 0 {
        println!(
            "unverified: {} window(s) of the range were loaded without a COUNT (--no-verify)",
            r.unverified
        );
    }
    if r.caught_up > 0 {
        println!(
            "catch-up: {} record(s) changed during the run were read again",
            r.caught_up
        );
    }
    if !r.covers_range {
        println!(
            "range reaches into the future: loaded until {}; the trigger stays pending until a \
             run reaches {}",
            format_utc(r.loaded_until),
            format_utc(cfg.range_end)
        );
    }
    for p in r.problems.iter().take(LISTED) {
        println!("  {} {}: {}", p.status, p.window, p.error);
    }
    if r.problems.len() > LISTED {
        println!(
            "  … and {} more (see backfill.windows)",
            r.problems.len() - LISTED
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse;
    use crate::logging::LogFormat;
    use crate::{Customer, Invoice};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn give_up_after_takes_seconds_minutes_or_hours() {
        let secs = |s: &str| parse_give_up_arg(s).map(|g| g.as_duration().as_secs());
        assert_eq!(secs("90s").unwrap(), 90);
        assert_eq!(secs("5m").unwrap(), 300);
        assert_eq!(secs("2h").unwrap(), 7200);
        assert_eq!(secs("10").unwrap(), 600);
        for bad in ["", "0m", "5d", "m", "-1s", "1.5m"] {
            assert!(parse_give_up_arg(bad).is_err(), "{bad}");
        }
        let cli = parse(&["--start", "2023-01-01", "--end", "2023-01-02"]).unwrap();
        assert_eq!(cli.run.give_up_after.as_duration().as_secs(), 300);
    }

    #[test]
    fn defaults_and_aliases() {
        let cli = parse(&[
            "--start",
            "2023-01-01",
            "--end",
            "2023-01-03T00:00:00-05:00",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let r = &cli.run;
        assert_eq!(r.concurrency.get(), 4);
        assert_eq!(r.memory_budget, crate::DEFAULT_MEMORY_BUDGET);
        assert_eq!(r.requests_per_min, 500);
        assert_eq!(r.max_in_flight, 10);
        assert_eq!(r.page_size, 1000);
        assert_eq!(r.window, WindowSize::DAY);
        assert_eq!(r.token_store, TokenStoreSpec::Db);
        assert!(!r.force && !r.dry_run && !r.no_verify);
        let v = r.validate::<Invoice>(NOW).unwrap();
        assert_eq!(v.window_field, WindowField::CreateTime);
        assert_eq!(v.plan.windows.len(), 3);
        assert_eq!(v.plan.end, datetime!(2023-01-03 05:00 UTC));
        assert_eq!(
            v.trigger,
            "qb_invoices_backfill 2023-01-01T00:00:00Z..2023-01-03T05:00:00Z"
        );
    }

    #[test]
    fn every_flag_parses() {
        let cli = parse(&[
            "--fecha-inicio",
            "2023-01-01T00:00:00+00:00",
            "--fecha-fin",
            "2023-02-01T00:00:00+00:00",
            "--window",
            "6h",
            "--window-field",
            "MetaData.LastUpdatedTime",
            "--concurrency",
            "2",
            "--no-verify",
            "--dry-run",
            "--trigger",
            "t1",
            "--force",
            "--log-format",
            "json",
            "--token-store",
            "file:/tmp/tok",
            "--requests-per-min",
            "100",
            "--max-in-flight",
            "3",
            "--page-size",
            "50",
        ])
        .unwrap();
        let r = &cli.run;
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        assert_eq!(r.token_store, TokenStoreSpec::File("/tmp/tok".into()));
        assert_eq!(r.window_field, Some(WindowField::LastUpdatedTime));
        assert_eq!(
            (
                r.concurrency.get(),
                r.requests_per_min,
                r.max_in_flight,
                r.page_size
            ),
            (2, 100, 3, 50)
        );
        let v = r.validate::<Customer>(NOW).unwrap();
        assert_eq!(v.plan.windows.len(), 31 * 4);
        assert_eq!(v.trigger, "t1");
    }

    #[test]
    fn usage_errors() {
        // Offset-less timestamp, reversed range, unknown flag, bad window, missing end.
        assert!(parse(&["--start", "2023-01-01T00:00:00", "--end", "2023-02-01"]).is_err());
        assert!(parse(&["--start", "2023-01-01", "--end", "2023-02-01", "--bogus"]).is_err());
        assert!(
            parse(&[
                "--start",
                "2023-01-01",
                "--end",
                "2023-02-01",
                "--window",
                "5h"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "--start",
                "2023-01-01",
                "--end",
                "2023-02-01",
                "--page-size",
                "1001"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "--start",
                "2023-01-01",
                "--end",
                "2023-02-01",
                "--concurrency",
                "0"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "--start",
                "2023-01-01",
                "--end",
                "2023-02-01",
                "--token-store",
                "s3:x"
            ])
            .is_err()
        );
        let reversed = parse(&["--start", "2023-02-01", "--end", "2023-01-01"]).unwrap();
        assert!(matches!(
            reversed.run.validate::<Invoice>(NOW),
            Err(Error::EmptyRange { .. })
        ));
        let txn = parse(&[
            "--start",
            "2023-01-01",
            "--end",
            "2023-02-01",
            "--window-field",
            "TxnDate",
        ])
        .unwrap();
        assert!(txn.run.validate::<Invoice>(NOW).is_ok());
        assert!(matches!(
            txn.run.validate::<Customer>(NOW),
            Err(Error::WindowFieldNotApplicable { .. })
        ));
    }
}
