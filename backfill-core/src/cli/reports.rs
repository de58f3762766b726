//! `reports`: QBO report snapshots into `raw.qb_reports`, period by period, resumable; and
//! the QBO connection `check-books` shares with it.

use clap::Args;
use qbo_client::{QboClient, QboConfig, RateLimit, RetryPolicy};
use raw_sink::{PgConfig, Sink};

use super::run::{GiveUpAfter, parse_give_up_arg};
use crate::books::load::{LoadConfig, load};
use crate::books::{AccountingMethod, DEFAULT_REPORTS, Period, parse_date, periods};
use crate::{Error, ExitStatus};

/// The QBO request options `reports` and `check-books` share with the pipelines.
#[derive(Debug, Args)]
pub struct QboArgs {
    /// QBO requests per minute for this realm (QBO allows 500).
    #[arg(long, default_value = "500", value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_min: u32,
    /// QBO requests in flight at once for this realm (QBO allows 10).
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// How long QBO may keep failing with no success in between before requests stop being
    /// retried: e.g. 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = parse_give_up_arg)]
    pub give_up_after: GiveUpAfter,
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
    /// Stop cleanly (exit 1; the next run resumes) once this many QBO API calls are made.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: Option<u64>,
    /// Request options.
    #[command(flatten)]
    pub qbo: QboArgs,
}

/// The client and the migrated database of `reports` / `check-books`, all configuration
/// checked before anything is called or written.
pub(super) async fn connect(args: &QboArgs) -> Result<(QboClient, Sink), Error> {
    let qbo = QboConfig::from_env().map_err(Error::QboConfig)?;
    let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
    let token_key = crate::token_key_from_env()?;
    let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
    sink.migrate().await.map_err(Error::Migrations)?;
    let store = crate::open_token_store(
        crate::TokenStoreLocation::Database(&sink),
        &qbo.realm_id,
        token_key,
    )
    .await?;
    let qbo = super::apps::with_company_app(store.as_ref(), qbo).await?;
    // Expiries within 30 days are warned about in every run's log.
    super::auth::warn_expiring(store.as_ref(), &qbo.realm_id, &qbo.credentials.client_id).await;
    let client = QboClient::builder(qbo)
        .token_store(store)
        .rate_limit(RateLimit {
            per_minute: args.requests_per_min,
            max_concurrency: args.max_in_flight,
        })
        .retry_policy(RetryPolicy::default().with_give_up_after(args.give_up_after.as_duration()))
        .build()
        .map_err(Error::Qbo)?;
    Ok((client, sink))
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
    let (client, sink) = connect(&args.qbo).await?;
    let shutdown = super::reliability::install_signal_handlers("reports");
    let cfg = LoadConfig {
        reports,
        periods: plan,
        method: args.accounting_method,
        reload: args.reload,
        max_api_calls: args.max_requests,
        shutdown,
    };
    let out = load(&client, &sink, &cfg).await;
    client.note_last_success().await;
    let out = out?;
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
