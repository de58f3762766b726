//! The command line shared by every pipeline binary.
//!
//! This module is the binaries' front end (SPEC §2 puts the shared CLI in this crate): unlike
//! the rest of the crate it prints to stdout/stderr (help, the dry-run plan, the final summary,
//! one-line usage errors). Everything else is reported through `tracing`.

use std::future::Future;
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::str::FromStr;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use qbo_client::{QboClient, QboConfig, RateLimit};
use raw_sink::{PgConfig, Sink, SinkError, TriggerKey};
use time::OffsetDateTime;

use crate::entity::{ENTITIES, EntityInfo, EntityVisitor, with_entity};
use crate::logging::{self, LogFormat};
use crate::report::{self, ReportScope};
use crate::run::{RunConfig, RunReport, error_chain};
use crate::window::{self, Plan, PlanRequest, WindowSize, format_utc};
use crate::{Entity, Error, ExitStatus, Progress, WindowField};

mod reliability;
pub use reliability::ReliabilityArgs;

const EXAMPLES: &str = "\
Examples:
  # One month of history (UTC):
  qb-invoices-backfill --fecha-inicio 2023-01-01T00:00:00+00:00 --fecha-fin 2023-02-01T00:00:00+00:00

  # Plain dates mean 00:00 UTC; any offset is converted to UTC:
  qb-customers-backfill --start 2020-01-01 --end 2023-01-01T00:00:00-05:00

  # From an orchestrator's variables, 7-day windows, JSON logs:
  FECHA_INICIO=2022-01-01 FECHA_FIN=2023-01-01 qb-items-backfill --window 7d --log-format json

  # See the windows without calling anything:
  qb-invoices-backfill --start 2023-01-01 --end 2023-03-01 --dry-run

  # One-time triggers:
  qb-invoices-backfill --start 2023-01-01 --end 2024-01-01 --trigger initial-load
  qb-invoices-backfill triggers list
  qb-invoices-backfill triggers disable initial-load

  # Volumetry evidence (every entity) as report.md, report.json and rows_per_day.svg:
  qb-invoices-backfill report --all --out ./evidence

  # Any other QBO entity: the generic binary
  qb-backfill --entity JournalEntry --start 2023-01-01 --end 2024-01-01

  # Four processes (any machines) sharing one backfill and the realm's QBO budget:
  qb-invoices-backfill --start 2020-01-01 --end 2024-01-01 --trigger initial-load --workers 4

Environment: QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, QBO_ENV
(sandbox|production), optional QBO_BASE_URL / QBO_TOKEN_URL; DATABASE_URL or PG_HOST, PG_PORT,
PG_DB, PG_USER, PG_PASSWORD. Any secret X may be given as X_FILE (a path) instead.

Exit codes: 0 all windows done, 1 some windows failed or mismatched, 2 usage or configuration
error, 3 QBO authentication failed (rotate the refresh token), 4 trigger already completed,
5 database unreachable or migrations failed, 6 QuickBooks refused for a reason no re-run fixes
(app keys, company, environment, subscription, an invalid request: the message names the fix),
130 / 143 interrupted by SIGINT / SIGTERM (windows
released, run recorded `interrupted`; run again to resume; a second signal exits at once).
`report` exits 1 when a window is not done or mismatches its source COUNT.";

/// The command line of a pipeline binary.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Back-fills a QuickBooks Online entity into PostgreSQL (raw layer), window by window.",
    after_help = EXAMPLES,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Subcommand (without one, the pipeline runs).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
    /// Log format: json or pretty (default: pretty on a terminal, json otherwise).
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
}

/// Subcommands of a pipeline binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage one-time triggers.
    Triggers {
        /// What to do.
        #[command(subcommand)]
        action: TriggersAction,
    },
    /// Volumetry report: totals per table, rows per window, verification, runs, triggers and
    /// re-run comparison; prints a summary and writes report.md, report.json and
    /// rows_per_day.svg with --out.
    Report(ReportArgs),
}

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write report.md, report.json and rows_per_day.svg into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Cover every entity, not only this binary's.
    #[arg(long)]
    pub all: bool,
    /// Only this company (default: QBO_REALM_ID when set).
    #[arg(long, env = "QBO_REALM_ID", conflicts_with = "all_realms")]
    pub realm: Option<String>,
    /// Every company, even when QBO_REALM_ID is set.
    #[arg(long)]
    pub all_realms: bool,
    /// How many of the latest runs to list.
    #[arg(long, default_value = "50")]
    pub runs: u32,
}

/// `triggers` actions.
#[derive(Debug, Subcommand)]
pub enum TriggersAction {
    /// List this pipeline's triggers with their status.
    List {
        /// Only this company (default: every company).
        #[arg(long, env = "QBO_REALM_ID")]
        realm: Option<String>,
    },
    /// Disable a trigger so that it is refused until run with --force.
    Disable {
        /// Trigger name.
        name: String,
        /// The company the trigger belongs to.
        #[arg(long, env = "QBO_REALM_ID", required = true)]
        realm: Option<String>,
    },
}

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
    /// Segments (runs of windows) in flight at once; pages held in memory are capped at this + 1.
    #[arg(long, default_value = "4")]
    pub concurrency: NonZeroUsize,
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
    /// QBO requests in flight at once for this realm (QBO allows 10).
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Rows per page (MAXRESULTS, at most 1000).
    #[arg(long, default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Cooperative workers, leases and database loss.
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
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

/// The entry point of a pipeline binary: parses the command line, runs, and maps the outcome
/// to the exit codes of SPEC §8.
#[must_use]
pub fn main<E: Entity>() -> ExitCode {
    let bin = bin_name(E::PIPELINE);
    match Cli::try_parse() {
        Ok(cli) => block_on(&bin, execute::<E>(&bin, cli)),
        Err(e) => clap_exit(&bin, &e),
    }
}

/// The command line of the generic binary `qb-backfill`: the pipeline options plus `--entity`.
#[derive(Debug, Parser)]
#[command(
    name = "qb-backfill",
    version,
    about = "Back-fills any QuickBooks Online entity into PostgreSQL (raw.qb_<plural>), window by window.",
    after_help = any_help(),
    subcommand_negates_reqs = true
)]
pub struct AnyCli {
    /// The QBO entity (case-insensitive), e.g. Invoice or JournalEntry; listed below.
    #[arg(long, env = "QB_ENTITY", global = true, value_parser = parse_entity_arg)]
    pub entity: Option<&'static EntityInfo>,
    /// Everything else, as for the dedicated binaries.
    #[command(flatten)]
    pub cli: Cli,
}

fn parse_entity_arg(s: &str) -> Result<&'static EntityInfo, Error> {
    EntityInfo::find(s).ok_or_else(|| Error::UnknownEntity {
        name: if s.trim().is_empty() {
            "(empty)".to_owned()
        } else {
            s.to_owned()
        },
        known: ENTITIES
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Help text of `qb-backfill`: examples and the entity table.
fn any_help() -> String {
    let mut text = String::from(
        "\
Examples:
  # Bills created in 2023 (windows on MetaData.CreateTime, the default):
  qb-backfill --entity Bill --fecha-inicio 2023-01-01T00:00:00+00:00 --fecha-fin 2024-01-01T00:00:00+00:00

  # Journal entries by transaction date, 7-day windows:
  qb-backfill --entity journalentry --start 2023-01-01 --end 2024-01-01 --window-field TxnDate --window 7d

  # The entity from the environment (e.g. one image, many Kubernetes Jobs):
  QB_ENTITY=Vendor FECHA_INICIO=2020-01-01 FECHA_FIN=2024-01-01 qb-backfill

  # Triggers and the volumetry report (without --entity: every entity):
  qb-backfill --entity Payment triggers list
  qb-backfill report --out ./evidence

Entities (table; name lists include inactive records with Active IN (true, false), transactions
may be windowed on TxnDate):
",
    );
    for e in ENTITIES {
        let kind = if e.name_list {
            "name list"
        } else {
            "transaction"
        };
        text.push_str(&format!(
            "  {:<15} {:<26} {kind}\n",
            e.name,
            e.table.to_string()
        ));
    }
    text.push_str(
        "\nEnvironment, secrets (X_FILE) and exit codes: as for qb-invoices-backfill (see its --help).",
    );
    text
}

/// The entry point of the generic binary `qb-backfill`: `--entity NAME` picks the entity.
#[must_use]
pub fn main_any() -> ExitCode {
    let bin = bin_name("qb-backfill");
    match AnyCli::try_parse() {
        Ok(any) => block_on(&bin, execute_any(&bin, any)),
        Err(e) => clap_exit(&bin, &e),
    }
}

/// Runs [`execute`] for the entity's static type.
struct Execute<'a> {
    bin: &'a str,
    cli: Cli,
}

impl<'a> EntityVisitor for Execute<'a> {
    type Output = Pin<Box<dyn Future<Output = ExitStatus> + 'a>>;

    fn visit<E: Entity>(self) -> Self::Output {
        Box::pin(execute::<E>(self.bin, self.cli))
    }
}

async fn execute_any(bin: &str, any: AnyCli) -> ExitStatus {
    if let Some(entity) = any.entity {
        let run = with_entity(entity.name, Execute { bin, cli: any.cli });
        return match run {
            Some(run) => run.await,
            None => ExitStatus::Usage,
        };
    }
    let cli = any.cli;
    let _progress = init_logging(&cli);
    let outcome = match &cli.command {
        Some(Command::Report(args)) => report_cmd(args, ENTITIES.to_vec()).await,
        _ => Err(Error::Usage(format!(
            "--entity NAME (or QB_ENTITY) is required; one of: {}",
            ENTITIES
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    };
    finish(bin, outcome)
}

fn bin_name(default: &str) -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| default.to_owned())
}

fn block_on(bin: &str, work: impl Future<Output = ExitStatus>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{bin}: error: starting the async runtime: {e}");
            return ExitStatus::Usage.into();
        }
    };
    let status = runtime.block_on(work);
    // Do not wait for stray blocking tasks (e.g. a stuck DNS lookup) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    status.into()
}

/// Help and version go to stdout with code 0; usage errors are one line with code 2.
fn clap_exit(bin: &str, e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitStatus::Success.into()
        }
        _ => {
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            eprintln!("{bin}: error: {line} (see --help)");
            ExitStatus::Usage.into()
        }
    }
}

/// Installs the log subscriber; returns the progress display for a pipeline run.
fn init_logging(cli: &Cli) -> Progress {
    let format = cli.log_format.unwrap_or_else(LogFormat::detect);
    let interactive = std::io::stderr().is_terminal() && format == LogFormat::Pretty;
    let progress = if interactive && cli.command.is_none() && !cli.run.dry_run {
        Progress::stderr()
    } else {
        Progress::hidden()
    };
    logging::init(format, &progress);
    progress
}

/// Runs a parsed command line; every failure is reported as one line on stderr.
async fn execute<E: Entity>(bin: &str, cli: Cli) -> ExitStatus {
    let progress = init_logging(&cli);
    let outcome = match cli.command {
        Some(Command::Triggers { action }) => triggers::<E>(action).await,
        Some(Command::Report(args)) => {
            let mut entities = vec![EntityInfo::of::<E>()];
            if args.all {
                entities = ENTITIES.to_vec();
                if !entities.contains(&EntityInfo::of::<E>()) {
                    entities.push(EntityInfo::of::<E>());
                }
            }
            report_cmd(&args, entities).await
        }
        None => pipeline::<E>(&cli.run, OffsetDateTime::now_utc(), progress).await,
    };
    finish(bin, outcome)
}

fn finish(bin: &str, outcome: Result<ExitStatus, Error>) -> ExitStatus {
    match outcome {
        Ok(status) => status,
        Err(e) => {
            progress_safe_eprintln(bin, &e);
            e.exit_status()
        }
    }
}

/// `report`: builds the volumetry report, prints its summary, writes the files with `--out`.
/// Exits 1 when a window in scope is not done or mismatches its source COUNT.
async fn report_cmd(args: &ReportArgs, entities: Vec<EntityInfo>) -> Result<ExitStatus, Error> {
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let scope = ReportScope {
        entities,
        realm_id: if args.all_realms {
            None
        } else {
            args.realm.clone().filter(|r| !r.trim().is_empty())
        },
        runs_limit: args.runs,
    };
    let report = report::build(&sink, &scope).await?;
    print!("{}", report.summary());
    if let Some(dir) = &args.out {
        let files = report.write_to(dir)?;
        println!(
            "evidence: {}, {}, {}",
            files.markdown.display(),
            files.json.display(),
            files.svg.display()
        );
    }
    Ok(if report.ok {
        ExitStatus::Success
    } else {
        ExitStatus::WindowsFailed
    })
}

fn progress_safe_eprintln(bin: &str, e: &Error) {
    let mut line = format!("{bin}: error: {}", error_chain(e));
    if let Some(runbook) = e.runbook() {
        line.push_str("; ");
        line.push_str(runbook);
    }
    eprintln!("{line}");
}

/// Validates everything, then connects, migrates, and runs pipeline `E`.
async fn pipeline<E: Entity>(
    args: &RunArgs,
    now: OffsetDateTime,
    progress: Progress,
) -> Result<ExitStatus, Error> {
    let valid = args.validate::<E>(now)?;
    if args.dry_run {
        print_plan::<E>(args, &valid);
        return Ok(ExitStatus::Success);
    }
    // All configuration is checked before anything is called or written.
    let qbo = QboConfig::from_env().map_err(Error::QboConfig)?;
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

    let shutdown = reliability::install_signal_handlers(E::PIPELINE);
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let location = match &args.token_store {
        TokenStoreSpec::Db => crate::TokenStoreLocation::Database(&sink),
        TokenStoreSpec::File(path) => crate::TokenStoreLocation::File(path),
    };
    let store = crate::open_token_store(location, &qbo.realm_id, token_key).await?;
    let realm_budget = RateLimit {
        per_minute: args.requests_per_min,
        max_concurrency: args.max_in_flight,
    };
    // This process's share of the realm's budget (waits while other processes hold it all).
    let worker = reliability::start_worker(
        &sink,
        E::PIPELINE,
        &qbo.realm_id,
        realm_budget,
        &args.reliability,
        &shutdown,
    )
    .await?;
    let client = match QboClient::builder(qbo)
        .token_store(store)
        .rate_limit(worker.rate_limit().unwrap_or(realm_budget))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            worker.stop("the QBO client could not be built").await;
            return Err(Error::Qbo(e));
        }
    };

    let mut cfg = RunConfig::new(
        valid.plan.windows.clone(),
        valid.window_field,
        valid.trigger.clone(),
    );
    cfg.range_start = valid.plan.start;
    // The requested end names the trigger, so that a re-run of a clipped range finds it again.
    cfg.range_end = valid.plan.clipped_from.unwrap_or(valid.plan.end);
    cfg.concurrency = args.concurrency.get();
    cfg.verify = !args.no_verify;
    cfg.force = args.force;
    cfg.page_size = args.page_size;
    cfg.progress = progress;
    reliability::configure(&mut cfg, &args.reliability, &worker, &shutdown);
    let result = crate::run::<E>(&client, &sink, &cfg).await;
    reliability::stop_worker(&worker, &result).await;
    let report = result?;
    if std::io::stdout().is_terminal() {
        print_summary::<E>(&client, &cfg, &report);
    }
    Ok(report.exit_status())
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
        "rows: {} received · {} inserted · {} updated · {} unchanged · {} QBO queries",
        r.rows, r.counts.inserted, r.counts.updated, r.counts.unchanged, r.requests
    );
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

/// `triggers list` / `triggers disable NAME`.
async fn triggers<E: Entity>(action: TriggersAction) -> Result<ExitStatus, Error> {
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let ledger = sink.ledger();
    match action {
        TriggersAction::List { realm } => {
            let list = ledger
                .list_triggers(Some(E::PIPELINE), realm.as_deref())
                .await
                .map_err(Error::Database)?;
            println!(
                "{:<10} {:<12} {:<42} {:<22} name",
                "status", "realm", "range", "completed"
            );
            for t in list {
                println!(
                    "{:<10} {:<12} {:<42} {:<22} {}",
                    t.status,
                    t.key.realm_id,
                    format!("{}..{}", format_utc(t.range_start), format_utc(t.range_end)),
                    t.completed_at.map_or_else(|| "-".to_owned(), format_utc),
                    t.key.name
                );
            }
        }
        TriggersAction::Disable { name, realm } => {
            let realm = realm.unwrap_or_default();
            let key = TriggerKey::new(E::PIPELINE, realm, name.clone());
            match ledger.disable_trigger(&key).await {
                Ok(t) => println!(
                    "trigger {:?} of realm {} is now {}",
                    name, t.key.realm_id, t.status
                ),
                Err(SinkError::NotFound { .. }) => {
                    return Err(Error::UnknownTrigger {
                        pipeline: E::PIPELINE,
                        name,
                    });
                }
                Err(e) => return Err(Error::Database(e)),
            }
        }
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Customer, Invoice};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("qb-test-backfill").chain(args.iter().copied()))
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

    #[test]
    fn subcommands_need_no_range() {
        let cli = parse(&["triggers", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Triggers {
                action: TriggersAction::List { .. }
            })
        ));
        let cli = parse(&[
            "--log-format",
            "json",
            "triggers",
            "disable",
            "t1",
            "--realm",
            "9",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Triggers { action: TriggersAction::Disable { ref name, ref realm } })
                if name == "t1" && realm.as_deref() == Some("9")
        ));
    }

    #[test]
    fn report_subcommand_parses() {
        let cli = parse(&[
            "report", "--out", "ev", "--all", "--realm", "9", "--runs", "5",
        ])
        .unwrap();
        let Some(Command::Report(r)) = cli.command else {
            panic!("not a report")
        };
        assert_eq!(r.out.as_deref(), Some(std::path::Path::new("ev")));
        assert!(r.all && !r.all_realms);
        assert_eq!((r.realm.as_deref(), r.runs), (Some("9"), 5));
        assert!(parse(&["report", "--realm", "9", "--all-realms"]).is_err());
    }

    fn parse_any(args: &[&str]) -> Result<AnyCli, clap::Error> {
        AnyCli::try_parse_from(std::iter::once("qb-backfill").chain(args.iter().copied()))
    }

    #[test]
    fn generic_cli_maps_entity_names_case_insensitively() {
        let any = parse_any(&[
            "--entity",
            "journalentry",
            "--start",
            "2023-01-01",
            "--end",
            "2023-01-08",
            "--window-field",
            "TxnDate",
        ])
        .unwrap();
        let e = any.entity.unwrap();
        assert_eq!(
            (e.name, e.table.name()),
            ("JournalEntry", "qb_journal_entries")
        );
        assert_eq!(any.cli.run.window_field, Some(WindowField::TxnDate));
        // The entity may follow a subcommand, and report needs none.
        let any = parse_any(&["triggers", "list", "--entity", "Vendor"]).unwrap();
        assert_eq!(any.entity.map(|e| e.name), Some("Vendor"));
        let any = parse_any(&["report", "--out", "x"]).unwrap();
        assert!(any.entity.is_none());
        let err = parse_any(&[
            "--entity",
            "Invoices",
            "--start",
            "2023-01-01",
            "--end",
            "2023-01-02",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("JournalEntry"), "{err}");
    }

    #[test]
    fn generic_help_lists_every_entity_with_examples() {
        let text = parse_any(&["--help"]).unwrap_err().to_string();
        assert!(text.contains("Examples:") && text.contains("qb-backfill --entity Bill"));
        for e in ENTITIES {
            assert!(
                text.contains(&e.table.to_string()),
                "{} missing from help",
                e.name
            );
        }
    }

    #[test]
    fn help_has_examples() {
        let err = parse(&["--help"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Examples:") && text.contains("--fecha-inicio"));
        assert!(text.contains("FECHA_INICIO"));
    }
}
