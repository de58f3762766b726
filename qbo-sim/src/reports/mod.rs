//! Reports computed from the simulator's own records, in QBO's report JSON shape.
//!
//! What the simulator computes (a small model, internally consistent, not QBO's engine):
//!
//! - **TransactionList**: one row per live posting transaction (Invoice, Payment,
//!   SalesReceipt, Bill, JournalEntry) whose `TxnDate` is in the period: date, type, number,
//!   name and amount in home currency (`TotalAmt × ExchangeRate`). Estimates are non-posting
//!   and left out, as QBO does by default.
//! - Every other report derives from one ledger of postings, each transaction posting its
//!   amount to two accounts. Accrual: Invoice A/R ↔ Sales, Payment Undeposited Funds ↔ A/R,
//!   SalesReceipt Undeposited Funds ↔ Sales, Bill Expenses ↔ A/P. Cash: an invoice posts
//!   nothing, a payment is income when received (Undeposited Funds ↔ Sales), a bill is paid
//!   when dated (Expenses ↔ Checking; the simulator has no BillPayment). Journal entries post
//!   nothing in this model (they appear in TransactionList only).
//! - **ProfitAndLoss**: Income and Expenses accounts over the period, Net Income.
//! - **BalanceSheet**: balance-sheet accounts from the beginning to the end date, equity as
//!   Retained Earnings (P&L before the start date) plus Net Income (P&L in the period), so
//!   total assets always equal total liabilities and equity.
//! - **TrialBalance**: every account's balance at the end date (P&L accounts for the period,
//!   the earlier P&L in Retained Earnings) as a debit or a credit; debits equal credits.
//! - **GeneralLedger**: one section per account, the period's postings, the account's total.
//! - **AgedReceivables** / **AgedPayables**: invoices / bills dated up to the end date with a
//!   non-zero `Balance` (the record's current balance, not the balance as of the date),
//!   per customer / vendor, aged by days past `DueDate` at the end date.
//!
//! Not modelled: classes, departments, columns by month (`summarize_column_by`), customised
//! columns, the fiscal year (Retained Earnings simply closes everything before the start).
//! An empty period still answers the whole shape, with `NoReportData` true.

mod render;

use time::{Date, Month};

use crate::realm::Realm;
use crate::schema;

pub(crate) use render::render;

/// The reports the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportName {
    TransactionList,
    ProfitAndLoss,
    BalanceSheet,
    TrialBalance,
    GeneralLedger,
    AgedReceivables,
    AgedPayables,
}

impl ReportName {
    /// Resolves a name from the URL (QBO's names, case-insensitive).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            Self::TransactionList,
            Self::ProfitAndLoss,
            Self::BalanceSheet,
            Self::TrialBalance,
            Self::GeneralLedger,
            Self::AgedReceivables,
            Self::AgedPayables,
        ]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::TransactionList => "TransactionList",
            Self::ProfitAndLoss => "ProfitAndLoss",
            Self::BalanceSheet => "BalanceSheet",
            Self::TrialBalance => "TrialBalance",
            Self::GeneralLedger => "GeneralLedger",
            Self::AgedReceivables => "AgedReceivables",
            Self::AgedPayables => "AgedPayables",
        }
    }
}

/// `accounting_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Accrual,
    Cash,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Accrual => "Accrual",
            Method::Cash => "Cash",
        }
    }
}

/// A report request's parameters, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) start: Date,
    pub(crate) end: Date,
    pub(crate) method: Method,
    pub(crate) date_macro: Option<String>,
}

impl Params {
    /// From the URL parameters; `today` (the company's local date) resolves a `date_macro`
    /// and the default period (this month to date). `Err` is the fault's detail.
    pub(crate) fn from_query(
        get: impl Fn(&str) -> Option<String>,
        today: Date,
    ) -> Result<Params, String> {
        let method = match get("accounting_method").as_deref() {
            None | Some("Accrual") | Some("accrual") => Method::Accrual,
            Some("Cash") | Some("cash") => Method::Cash,
            Some(other) => return Err(format!("Invalid accounting_method: {other}")),
        };
        let date_macro = get("date_macro");
        let (mut start, mut end) = match date_macro.as_deref() {
            Some(m) => macro_range(m, today).ok_or_else(|| format!("Invalid date_macro: {m}"))?,
            None => (first_of_month(today), today),
        };
        if let Some(s) = get("start_date") {
            start = parse_date(&s).ok_or_else(|| format!("Invalid start_date: {s}"))?;
        }
        if let Some(s) = get("end_date") {
            end = parse_date(&s).ok_or_else(|| format!("Invalid end_date: {s}"))?;
        }
        if end < start {
            return Err("end_date is before start_date".into());
        }
        Ok(Params {
            start,
            end,
            method,
            date_macro,
        })
    }
}

fn parse_date(s: &str) -> Option<Date> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &f).ok()
}

fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

fn last_of_month(d: Date) -> Date {
    let first = first_of_month(d);
    let next = if d.month() == Month::December {
        Date::from_calendar_date(d.year() + 1, Month::January, 1)
    } else {
        Date::from_calendar_date(d.year(), d.month().next(), 1)
    };
    next.ok().and_then(Date::previous_day).unwrap_or(first)
}

fn macro_range(m: &str, today: Date) -> Option<(Date, Date)> {
    let year = |y: i32| {
        Some((
            Date::from_calendar_date(y, Month::January, 1).ok()?,
            Date::from_calendar_date(y, Month::December, 31).ok()?,
        ))
    };
    match m.to_ascii_lowercase().as_str() {
        "today" => Some((today, today)),
        "this month" => Some((first_of_month(today), last_of_month(today))),
        "this month-to-date" => Some((first_of_month(today), today)),
        "last month" => {
            let prev = first_of_month(today).previous_day()?;
            Some((first_of_month(prev), prev))
        }
        "this year" => year(today.year()),
        "this year-to-date" => Some((year(today.year())?.0, today)),
        "last year" => year(today.year() - 1),
        _ => None,
    }
}

/// A posting transaction's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TxnKind {
    Invoice,
    Payment,
    SalesReceipt,
    Bill,
    JournalEntry,
}

impl TxnKind {
    const ALL: [TxnKind; 5] = [
        TxnKind::Invoice,
        TxnKind::Payment,
        TxnKind::SalesReceipt,
        TxnKind::Bill,
        TxnKind::JournalEntry,
    ];

    fn entity(self) -> &'static str {
        match self {
            TxnKind::Invoice => "Invoice",
            TxnKind::Payment => "Payment",
            TxnKind::SalesReceipt => "SalesReceipt",
            TxnKind::Bill => "Bill",
            TxnKind::JournalEntry => "JournalEntry",
        }
    }

    /// The "Transaction Type" QBO's reports print.
    pub(crate) fn label(self) -> &'static str {
        match self {
            TxnKind::Invoice => "Invoice",
            TxnKind::Payment => "Payment",
            TxnKind::SalesReceipt => "Sales Receipt",
            TxnKind::Bill => "Bill",
            TxnKind::JournalEntry => "Journal Entry",
        }
    }
}

/// What the reports need of one transaction.
#[derive(Debug, Clone)]
pub(crate) struct Txn {
    pub(crate) kind: TxnKind,
    pub(crate) id: String,
    pub(crate) date: Date,
    pub(crate) doc: String,
    pub(crate) name: String,
    /// `TotalAmt × ExchangeRate`, in cents.
    pub(crate) amount: i64,
    /// `Balance`, in cents (0 when absent).
    pub(crate) balance: i64,
    pub(crate) due: Option<Date>,
}

/// Money text (`"639.00"`, `12.5`, `-3`) in cents, rounded half away from zero.
pub(crate) fn cents_of(v: &serde_json::Value) -> Option<i64> {
    let text = match v {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    let x: f64 = text.trim().parse().ok()?;
    #[allow(clippy::cast_possible_truncation)]
    Some((x * 100.0).round() as i64)
}

/// Formats cents as QBO's money text (`"-12.05"`).
pub(crate) fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn txn_of(kind: TxnKind, json: &str) -> Option<Txn> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let date = parse_date(v["TxnDate"].as_str()?)?;
    let total = cents_of(&v["TotalAmt"]).unwrap_or(0);
    let rate = v["ExchangeRate"]
        .as_f64()
        .or_else(|| v["ExchangeRate"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let amount = (total as f64 * rate).round() as i64;
    let name = ["CustomerRef", "VendorRef"]
        .iter()
        .find_map(|k| v[*k]["name"].as_str())
        .unwrap_or("")
        .to_string();
    Some(Txn {
        kind,
        id: v["Id"].as_str().unwrap_or("").to_string(),
        date,
        doc: v["DocNumber"].as_str().unwrap_or("").to_string(),
        name,
        amount,
        balance: cents_of(&v["Balance"]).unwrap_or(0),
        due: v["DueDate"].as_str().and_then(parse_date),
    })
}

/// The live posting transactions dated `from..=to`, by date, type and numeric id.
pub(crate) fn transactions(realm: &Realm, from: Date, to: Date) -> Vec<Txn> {
    let mut out = Vec::new();
    for kind in TxnKind::ALL {
        let Some(def) = schema::entity(kind.entity()) else {
            continue;
        };
        out.extend(
            realm
                .rendered_by_txn_date(def, from, to)
                .iter()
                .filter_map(|j| txn_of(kind, j)),
        );
    }
    out.sort_by(|a, b| {
        (a.date, a.kind, a.id.len(), &a.id).cmp(&(b.date, b.kind, b.id.len(), &b.id))
    });
    out
}

/// The earliest date any report looks at.
pub(crate) fn beginning() -> Date {
    Date::from_calendar_date(1900, Month::January, 1).unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_cents() {
        assert_eq!(money(-1205), "-12.05");
        assert_eq!(money(0), "0.00");
        assert_eq!(cents_of(&serde_json::json!(639.0)), Some(63900));
        assert_eq!(cents_of(&serde_json::json!("12.5")), Some(1250));
    }

    #[test]
    fn periods_from_macros_and_dates() {
        let today = Date::from_calendar_date(2024, Month::March, 15).unwrap();
        let none = |_: &str| None;
        let p = Params::from_query(none, today).unwrap();
        assert_eq!((p.start.day(), p.end), (1, today));
        let last = |k: &str| (k == "date_macro").then(|| "Last Month".to_string());
        let p = Params::from_query(last, today).unwrap();
        assert_eq!(p.start.to_string(), "2024-02-01");
        assert_eq!(p.end.to_string(), "2024-02-29");
        let bad = |k: &str| (k == "start_date").then(|| "2024-13-01".to_string());
        assert!(Params::from_query(bad, today).is_err());
    }
}
