//! The command line shared by every pipeline binary.
//!
//! This module is the binaries' front end (SPEC §2 puts the shared CLI in this crate): unlike
//! the rest of the crate it prints to stdout/stderr (help, the dry-run plan, the final summary,
//! one-line usage errors). Everything else is reported through `tracing`.
//!
//! Here live the entry points ([`main`], [`main_any`]), the logging set-up and the mapping of
//! every outcome to an exit code; each subcommand has its own module with its argument types:
//! `run` (the backfill itself, no subcommand), `triggers`, `report`, `serve`, `auth`, `sync`
//! and `reconcile`. `reliability` holds
//! the run's options for cooperative workers, leases and database loss; `help` the texts of
//! `--help`.

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use time::OffsetDateTime;

use crate::entity::{ENTITIES, EntityInfo, EntityVisitor, with_entity};
use crate::logging::{self, LogFormat};
use crate::run::error_chain;
use crate::{Entity, Error, ExitStatus, Progress};

mod apps;
mod auth;
mod check_books;
mod connect;
mod help;
mod realms;
mod reconcile;
mod reliability;
mod report;
mod reports;
mod run;
mod serve;
mod sync;
mod triggers;

pub use apps::APPS_FILE_ENV;
pub use auth::{
    AuthAction, ConnectArgs, DEFAULT_REDIRECT_URI, EXPIRY_WARNING_DAYS, RealmArgs, StatusArgs,
    expiry_warnings, warn_expiring,
};
pub use check_books::CheckBooksArgs;
use help::{any_help, examples};
pub use realms::RealmsArgs;
pub use reliability::ReliabilityArgs;
pub use report::ReportArgs;
pub use reports::{QboArgs, ReportsArgs};
pub use run::{RunArgs, TokenStoreSpec, ValidatedRun, default_trigger_name};
pub use serve::ServeArgs;
pub use sync::SyncArgs;
pub use triggers::TriggersAction;

/// The command line of a pipeline binary.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Back-fills a QuickBooks Online entity into PostgreSQL (raw layer), window by window.",
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
    /// Connect companies and watch their connection: connect, status, revoke, disconnect.
    Auth {
        /// What to do.
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Load QBO's reports (P&L, balance sheet, …) period by period into raw.qb_reports.
    Reports(ReportsArgs),
    /// Compare the raw layer with QBO's TransactionList, month by month and type by type.
    CheckBooks(CheckBooksArgs),
    /// Read-only status page (runs, triggers, windows, verification, volumetry) and /metrics
    /// (OpenMetrics) on 127.0.0.1:8080 unless --listen says otherwise.
    Serve(ServeArgs),
    /// Keeps the backfilled raw layer current: records changed since the last sync and
    /// deletions CDC reports (confirmed by a read), recorded in backfill.syncs. Exit 7 when the
    /// last sync is older than CDC's 30 days (run reconcile).
    Sync(SyncArgs),
    /// Finds deletions of any age: QBO's COUNT per CreateTime range against the raw layer's
    /// live rows, re-paging only ranges that differ; tombstones them and prints the calls spent.
    Reconcile(SyncArgs),
}

/// The entry point of a pipeline binary: parses the command line, runs, and maps the outcome
/// to the exit codes of SPEC §8.
#[must_use]
pub fn main<E: Entity>() -> ExitCode {
    let bin = bin_name(&E::PIPELINE.replace('_', "-"));
    match parse_as(&bin, std::env::args_os()) {
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
    let outcome = match cli.command {
        Some(Command::Auth { action }) => auth::auth(action).await,
        Some(Command::Report(ref args)) => report::report_cmd(args, ENTITIES.to_vec()).await,
        Some(Command::Serve(ref args)) => serve::serve_cmd(args, ENTITIES.to_vec()).await,
        Some(Command::Sync(ref args)) => sync::sync_all_cmd(bin, args, &cli.run).await,
        Some(Command::Reports(ref args)) => reports::reports_cmd(args).await,
        Some(Command::CheckBooks(ref args)) => check_books::check_books_cmd(args).await,
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
        Some(Command::Triggers { action }) => triggers::triggers::<E>(action).await,
        Some(Command::Report(args)) => {
            report::report_cmd(&args, report::entities::<E>(&args)).await
        }
        Some(Command::Serve(args)) => serve::serve_cmd(&args, serve::entities::<E>()).await,
        Some(Command::Auth { action }) => auth::auth(action).await,
        Some(Command::Sync(args)) => sync::sync_cmd::<E>(&args, &cli.run).await,
        Some(Command::Reconcile(args)) => reconcile::reconcile_cmd::<E>(&args, &cli.run).await,
        Some(Command::Reports(args)) => reports::reports_cmd(&args).await,
        Some(Command::CheckBooks(args)) => check_books::check_books_cmd(&args).await,
        None => run::pipeline::<E>(&cli.run, OffsetDateTime::now_utc(), progress).await,
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

fn progress_safe_eprintln(bin: &str, e: &Error) {
    let mut line = format!("{bin}: error: {}", error_chain(e));
    if let Some(runbook) = e.runbook() {
        line.push_str("; ");
        line.push_str(runbook);
    }
    eprintln!("{line}");
}

/// Parses a dedicated binary's command line (the tests of every subcommand use it).
#[cfg(test)]
fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    parse_as(
        "qb-test-backfill",
        std::iter::once("qb-test-backfill").chain(args.iter().copied()),
    )
}

/// Parses the command line of the dedicated binary `bin`, whose `--help` names it.
fn parse_as<I, T>(bin: &str, args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::command()
        .after_help(examples(bin))
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WindowField;

    fn parse_any(args: &[&str]) -> Result<AnyCli, clap::Error> {
        AnyCli::try_parse_from(std::iter::once("qb-backfill").chain(args.iter().copied()))
    }

    #[test]
    fn sync_and_reconcile_need_no_range_and_take_their_options() {
        let cli = parse(&["--page-size", "10", "sync", "--overlap", "1h"]).unwrap();
        let Some(Command::Sync(args)) = &cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(args.overlap, std::time::Duration::from_secs(3600));
        assert!(!args.all);
        assert_eq!(cli.run.page_size, 10);
        let cli = parse(&["reconcile"]).unwrap();
        let Some(Command::Reconcile(args)) = &cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(args.overlap, crate::sync::DEFAULT_OVERLAP);
        let any = parse_any(&["sync", "--all"]).unwrap();
        assert!(any.entity.is_none());
        assert!(matches!(
            any.cli.command,
            Some(Command::Sync(SyncArgs { all: true, .. }))
        ));
        assert!(parse(&["sync", "--overlap", "soon"]).is_err());
    }

    #[test]
    fn sync_and_reconcile_take_the_companies_before_the_subcommand() {
        let cli = parse(&["--realm", "1", "--realm", "2", "reconcile"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Reconcile(_))));
        assert_eq!(cli.run.realms.realms, ["1", "2"]);
        assert!(cli.run.realms.names_companies());
        let any = parse_any(&[
            "--all-realms",
            "--realms-in-flight",
            "3",
            "--monthly-requests",
            "90",
            "sync",
            "--all",
        ])
        .unwrap();
        let r = &any.cli.run.realms;
        assert!(r.all_realms && r.names_companies());
        assert_eq!((r.realms_in_flight, r.monthly_requests), (3, Some(90)));
        // A monthly budget alone keeps the one company of QBO_REALM_ID.
        let cli = parse(&["--monthly-requests", "9", "sync"]).unwrap();
        assert!(!cli.run.realms.names_companies());
        assert!(parse(&["--all-realms", "--realm", "1", "sync"]).is_err());
        let any = parse_any(&["auth", "connect", "--paste", "--app", "ABc"]).unwrap();
        let Some(Command::Auth {
            action: AuthAction::Connect(c),
        }) = any.cli.command
        else {
            panic!("not auth connect");
        };
        assert_eq!(c.app.as_deref(), Some("ABc"));
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
