//! `check-books`: the raw layer against QBO's TransactionList, month by month.

use clap::Args;

use super::reports::{QboArgs, connect};
use crate::books::check::check;
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
    let (client, sink) = connect(&args.qbo).await?;
    let out = check(&client, &sink, args.start, args.end).await;
    client.note_last_success().await;
    let out = out?;
    for line in out.lines() {
        println!("{line}");
    }
    Ok(out.exit_status())
}
