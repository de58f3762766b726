//! `reports`: QBO report snapshots into `raw.qb_reports`, period by period, resumable; and
//! the connection options (`QboArgs`) that `check-books`, `sync` and `reconcile` share.

use clap::Args;

use super::connect;
use super::reliability::ReliabilityArgs;
use super::run::{GiveUpAfter, TokenStoreSpec, parse_give_up_arg};
use crate::books::load::{LoadConfig, load};
use crate::books::{AccountingMethod, DEFAULT_REPORTS, Period, parse_date, periods};
use crate::{Error, ExitStatus};

/// The QBO options `reports` and `check-books` share with the pipelines: the same token
/// store, per-realm limits (shared with every other process of the realm through the ledger),
/// retry horizon, request budget and monthly budget.
#[derive(Debug, Args)]
pub struct QboArgs {
    /// Where the rotating refresh token is kept: db (the ledger schema) or file:PATH.
    #[arg(long, default_value = "db")]
    pub token_store: TokenStoreSpec,
    /// QBO requests per minute for this realm (QBO allows 500), shared with every process of
    /// the realm (pipelines included): this one takes 1/--workers of it.
    #[arg(long, default_value = "500", value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_min: u32,
    /// QBO requests per second for this realm while the minute's budget lasts (QBO allows
    /// 10): default 10 with the default --requests-per-min, otherwise requests are spread
    /// evenly over the minute unless this is given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_sec: Option<u32>,
    /// QBO requests in flight at once for this realm (QBO allows 10), shared the same way.
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// How long QBO may keep failing with no success in between before requests stop being
    /// retried: e.g. 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_give_up_arg)]
    pub give_up_after: GiveUpAfter,
    /// Stop cleanly (exit 1; the next run resumes) once this many QBO API calls are made.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: Option<u64>,
    /// The app's QBO API calls allowed per calendar month (UTC), counted in the ledger across
    /// pipelines, `reports` and `check-books`: stop cleanly (exit 1) before the quota.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub monthly_requests: Option<u64>,
    /// Processes sharing the realm's budget, leases and database loss, as for a pipeline.
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
}

/// Options of `reports`.
#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// First day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub start: time::Date,
    /// Last day, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub end: time::Date,
    /// One report per month, quarter or year of the range.
    #[arg(long, value_enum, default_value = "month")]
    pub period: Period,
    /// `accounting_method` sent to QBO.
    #[arg(long, value_enum, default_value = "Accrual")]
    pub accounting_method: AccountingMethod,
    /// A report to load (QBO's name; repeatable). Default: ProfitAndLoss, BalanceSheet,
    /// TrialBalance, GeneralLedger, AgedReceivables, AgedPayables, TransactionList.
    #[arg(long = "report", value_name = "NAME")]
    pub reports: Vec<String>,
    /// Ask again for periods already loaded (an unchanged report writes nothing).
    #[arg(long)]
    pub reload: bool,
    /// Request options.
    #[command(flatten)]
    pub qbo: QboArgs,
}

/// `reports`: loads the snapshots, prints what it did, exits as the pipelines do.
pub(super) async fn reports_cmd(args: &ReportsArgs) -> Result<ExitStatus, Error> {
    let plan = periods(args.start, args.end, args.period)?;
    let reports: Vec<String> = if args.reports.is_empty() {
        DEFAULT_REPORTS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.reports.clone()
    };
    if let Some(bad) = reports
        .iter()
        .find(|r| r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(Error::Usage(format!(
            "--report {bad:?} is not a QBO report name"
        )));
    }
    let Some(session) = connect::session_within_month(&args.qbo, "reports").await? else {
        return Ok(ExitStatus::WindowsFailed);
    };
    let cfg = LoadConfig {
        reports,
        periods: plan,
        period: args.period,
        method: args.accounting_method,
        reload: args.reload,
        max_api_calls: session.max_requests,
        shutdown: session.shutdown.clone(),
    };
    let result = load(&session.client, &session.sink, &cfg).await;
    session
        .end(match &result {
            Ok(r) if r.stopped.is_some() => "reports stopped; the next run resumes",
            Ok(_) => "reports finished",
            Err(_) => "reports stopped on an error; the next run resumes",
        })
        .await;
    let out = result?;
    for f in &out.failed {
        println!("failed: {} {}..{}: {}", f.report, f.start, f.end, f.error);
    }
    println!(
        "reports: {} inserted, {} updated, {} unchanged, {} already done, {} failed, {} left; {} API calls",
        out.inserted,
        out.updated,
        out.unchanged,
        out.skipped,
        out.failed.len(),
        out.left,
        out.api_calls
    );
    if let Some(reason) = out.stopped {
        println!("stopped by {reason}: run the same command again to resume");
    }
    Ok(out.exit_status())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::books::{AccountingMethod, Period};
    use crate::cli::{Command, parse};

    #[test]
    fn reports_subcommand_parses() {
        let cli = parse(&[
            "reports",
            "--start",
            "2023-01-01",
            "--end",
            "2023-03-31",
            "--period",
            "quarter",
            "--accounting-method",
            "Cash",
            "--report",
            "ProfitAndLoss",
            "--report",
            "TransactionList",
        ])
        .unwrap();
        let Some(Command::Reports(r)) = cli.command else {
            panic!("not reports")
        };
        assert_eq!(r.period, Period::Quarter);
        assert_eq!(r.accounting_method, AccountingMethod::Cash);
        assert_eq!(r.reports, ["ProfitAndLoss", "TransactionList"]);
        assert!(parse(&["reports", "--start", "2023-01-01"]).is_err());
        assert!(parse(&["reports", "--start", "x", "--end", "2023-01-01"]).is_err());
    }
}
