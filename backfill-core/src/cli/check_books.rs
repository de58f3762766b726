//! `check-books`: the raw layer against QBO's TransactionList, month by month.

use clap::Args;

use super::reports::QboArgs;
use crate::books::check::{CheckConfig, check};
use crate::books::parse_date;
use crate::{Error, ExitStatus};

/// Options of `check-books`.
#[derive(Debug, Args)]
pub struct CheckBooksArgs {
    /// First day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub start: time::Date,
    /// Last day, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub end: time::Date,
    /// Request options.
    #[command(flatten)]
    pub qbo: QboArgs,
}

/// `check-books`: prints every difference; exit 0 when everything agrees, 1 otherwise.
pub(super) async fn check_books_cmd(args: &CheckBooksArgs) -> Result<ExitStatus, Error> {
    if args.end < args.start {
        return Err(Error::Usage(format!(
            "--end {} is before --start {}",
            args.end, args.start
        )));
    }
    let Some(session) = super::connect::session_within_month(&args.qbo, "check_books").await?
    else {
        return Ok(ExitStatus::WindowsFailed);
    };
    let cfg = CheckConfig {
        start: args.start,
        end: args.end,
        max_api_calls: session.max_requests,
        shutdown: session.shutdown.clone(),
    };
    let result = check(&session.client, &session.sink, &cfg).await;
    session
        .end(match &result {
            Ok(_) => "check-books finished",
            Err(_) => "check-books stopped on an error",
        })
        .await;
    let out = result?;
    for line in out.lines() {
        println!("{line}");
    }
    Ok(out.exit_status())
}
