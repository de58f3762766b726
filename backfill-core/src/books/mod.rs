//! QBO's own books: report snapshots loaded period by period (`reports`, [`load`]) and the
//! cross-check of the raw layer against QBO's TransactionList (`check-books`, [`check`]).
//!
//! Invariants: every report request goes through `QboClient::report` (the client's limits,
//! retries and call count); a period is `done` in the ledger only with its snapshot stored;
//! amounts are compared as exact decimal text turned into cents, never through `f64`.

pub mod check;
pub mod load;
mod transaction_list;

use time::{Date, Month};

use crate::Error;

/// The report names `reports` loads by default (QBO's names).
pub const DEFAULT_REPORTS: [&str; 7] = [
    "ProfitAndLoss",
    "BalanceSheet",
    "TrialBalance",
    "GeneralLedger",
    "AgedReceivables",
    "AgedPayables",
    "TransactionList",
];

/// How the range is cut into report periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Period {
    /// Calendar months.
    Month,
    /// Calendar quarters.
    Quarter,
    /// Calendar years.
    Year,
}

impl Period {
    /// Its name on the command line and in the ledger.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
        }
    }
}

/// `accounting_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccountingMethod {
    /// Accrual basis.
    #[value(name = "Accrual", alias = "accrual")]
    Accrual,
    /// Cash basis.
    #[value(name = "Cash", alias = "cash")]
    Cash,
}

impl AccountingMethod {
    /// QBO's word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accrual => "Accrual",
            Self::Cash => "Cash",
        }
    }

    /// The canonical text of the parameters other than the period, as stored.
    #[must_use]
    pub fn params_text(self) -> String {
        format!("accounting_method={}", self.as_str())
    }
}

/// Parses `YYYY-MM-DD`.
///
/// # Errors
/// [`Error::Usage`] when it is not a date.
pub fn parse_date(s: &str) -> Result<Date, Error> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &f).map_err(|_| Error::Usage(format!("{s:?} is not a date (YYYY-MM-DD)")))
}

fn first_month_of(p: Period, m: Month) -> Month {
    let n = u8::from(m);
    let first = match p {
        Period::Month => n,
        Period::Quarter => (n - 1) / 3 * 3 + 1,
        Period::Year => 1,
    };
    Month::try_from(first).unwrap_or(Month::January)
}

fn add_months(d: Date, months: u8) -> Option<Date> {
    let total = i32::from(u8::from(d.month())) - 1 + i32::from(months);
    let y = d.year() + total.div_euclid(12);
    let m = Month::try_from(u8::try_from(total.rem_euclid(12) + 1).ok()?).ok()?;
    Date::from_calendar_date(y, m, 1).ok()
}

/// The periods covering `start..=end`, each a calendar month, quarter or year clipped to the
/// range, oldest first.
///
/// # Errors
/// [`Error::Usage`] when `end` is before `start`.
pub fn periods(start: Date, end: Date, period: Period) -> Result<Vec<(Date, Date)>, Error> {
    if end < start {
        return Err(Error::Usage(format!(
            "--end {end} is before --start {start}"
        )));
    }
    let step = match period {
        Period::Month => 1,
        Period::Quarter => 3,
        Period::Year => 12,
    };
    let mut out = Vec::new();
    let mut cur = Date::from_calendar_date(start.year(), first_month_of(period, start.month()), 1)
        .map_err(|e| Error::Usage(e.to_string()))?;
    while cur <= end {
        let next = add_months(cur, step).ok_or_else(|| Error::Usage("date out of range".into()))?;
        let last = next.previous_day().unwrap_or(next);
        out.push((cur.max(start), last.min(end)));
        cur = next;
    }
    Ok(out)
}

/// Decimal text (`"-12.5"`, `"639.00"`, `"1e2"` refused) in cents, rounded half away from
/// zero; `None` when it is not a plain decimal.
#[must_use]
pub fn cents(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f = frac.as_bytes();
    let digit = |i: usize| f.get(i).map_or(0, |b| i128::from(b - b'0'));
    let mut c = whole.checked_mul(100)? + digit(0) * 10 + digit(1);
    if digit(2) >= 5 {
        c += 1;
    }
    Some(if neg { -c } else { c })
}

/// Cents as money text (`-12.05`).
#[must_use]
pub fn money(c: i128) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::date;

    #[test]
    fn periods_are_calendar_units_clipped_to_the_range() {
        let p = periods(date!(2023 - 01 - 15), date!(2023 - 03 - 02), Period::Month).unwrap();
        assert_eq!(
            p,
            [
                (date!(2023 - 01 - 15), date!(2023 - 01 - 31)),
                (date!(2023 - 02 - 01), date!(2023 - 02 - 28)),
                (date!(2023 - 03 - 01), date!(2023 - 03 - 02)),
            ]
        );
        let q = periods(
            date!(2023 - 02 - 01),
            date!(2024 - 01 - 01),
            Period::Quarter,
        )
        .unwrap();
        assert_eq!(q.len(), 5);
        assert_eq!(q[0], (date!(2023 - 02 - 01), date!(2023 - 03 - 31)));
        assert_eq!(q[4], (date!(2024 - 01 - 01), date!(2024 - 01 - 01)));
        let y = periods(date!(2022 - 12 - 31), date!(2023 - 01 - 01), Period::Year).unwrap();
        assert_eq!(y.len(), 2);
        assert!(periods(date!(2023 - 02 - 01), date!(2023 - 01 - 01), Period::Month).is_err());
    }

    #[test]
    fn cents_are_exact() {
        assert_eq!(cents("639.00"), Some(63_900));
        assert_eq!(cents("-12.5"), Some(-1250));
        assert_eq!(cents("0.005"), Some(1));
        assert_eq!(cents("7"), Some(700));
        assert_eq!(cents(""), None);
        assert_eq!(cents("1e2"), None);
        assert_eq!(money(-1205), "-12.05");
    }
}
