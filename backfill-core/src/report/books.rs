//! The report's "books check" section: the latest `check-books` of each company
//! ([`raw_sink::volumetry::BOOK_CHECKS_SQL`] and its rows), rendered for the terminal and for
//! `report.md` (`report.json` serialises [`BooksCheckSection`]).
//!
//! It never claims more than was checked: the months compared are named, the months of the
//! range it did not reach are listed as not compared, and a check older than the company's
//! latest load is flagged stale.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use raw_sink::{BookCheck, BookCheckKind, BookCheckStatus, Sink};
use serde::Serialize;

use super::markdown::md;
use crate::Error;
use crate::window::format_utc;

/// The latest `check-books` of a company and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct BooksCheckSection {
    /// Company.
    pub realm_id: String,
    /// Its `backfill.book_checks` id.
    pub id: i64,
    /// `agreed`, `differs`, `stopped` or `failed`.
    pub status: String,
    /// The range asked (first and last day).
    pub range_start: String,
    /// Last day asked.
    pub range_end: String,
    /// `accounting_method` of the TransactionList compared.
    pub accounting_method: String,
    /// Months in the range.
    pub months_planned: u32,
    /// Months compared (the first ones of the range).
    pub months_compared: u32,
    /// The last day compared, if any month was.
    pub compared_through: Option<String>,
    /// The part of the range not compared (`first..last`), if any.
    pub not_compared: Option<String>,
    /// Start (UTC).
    pub started_at: String,
    /// End (UTC).
    pub finished_at: Option<String>,
    /// QBO calls it made.
    pub api_calls: u64,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// A load (run or sync that wrote raw rows) ended after the check started.
    pub stale: bool,
    /// The end of the company's latest load (UTC).
    pub last_load_at: Option<String>,
    /// Month × entity totals that agree.
    pub agreed: u64,
    /// Every month × entity that differs.
    pub differences: Vec<BooksDifference>,
    /// Entities the books hold and the raw layer never loaded.
    pub not_loaded: Vec<BooksNotLoaded>,
    /// Transaction types the books hold that no raw table carries, with their counts.
    pub unmapped: BTreeMap<String, u64>,
}

/// One month and entity where the books and the raw layer differ.
#[derive(Debug, Clone, Serialize)]
pub struct BooksDifference {
    /// `YYYY-MM`.
    pub month: String,
    /// Entity.
    pub entity: String,
    /// The report's transaction types behind it.
    pub types: Vec<String>,
    /// Transactions in the books.
    pub books_rows: u64,
    /// Their total (home currency).
    pub books_amount: String,
    /// Live raw rows.
    pub raw_rows: u64,
    /// Their total.
    pub raw_amount: String,
}

/// An entity never loaded.
#[derive(Debug, Clone, Serialize)]
pub struct BooksNotLoaded {
    /// Entity.
    pub entity: String,
    /// The report's transaction types behind it.
    pub types: Vec<String>,
    /// Transactions in the books per year (of the months compared).
    pub per_year: BTreeMap<String, u64>,
    /// The command that loads it.
    pub command: String,
}

fn month(d: time::Date) -> String {
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

fn section(c: &BookCheck) -> BooksCheckSection {
    let mut differences = Vec::new();
    let mut not_loaded: BTreeMap<String, BooksNotLoaded> = BTreeMap::new();
    let mut unmapped = BTreeMap::new();
    let mut agreed = 0;
    for r in &c.rows {
        match r.kind {
            BookCheckKind::Agrees => agreed += 1,
            BookCheckKind::Differs => differences.push(BooksDifference {
                month: month(r.month),
                entity: r.label.clone(),
                types: r.txn_types.clone(),
                books_rows: r.books_rows,
                books_amount: r.books_amount.clone(),
                raw_rows: r.raw_rows.unwrap_or(0),
                raw_amount: r.raw_amount.clone().unwrap_or_default(),
            }),
            BookCheckKind::NotLoaded => {
                let e = not_loaded
                    .entry(r.label.clone())
                    .or_insert_with(|| BooksNotLoaded {
                        entity: r.label.clone(),
                        types: Vec::new(),
                        per_year: BTreeMap::new(),
                        command: format!("qb-backfill --entity {}", r.label),
                    });
                for t in &r.txn_types {
                    if !e.types.contains(t) {
                        e.types.push(t.clone());
                    }
                }
                *e.per_year.entry(r.month.year().to_string()).or_default() += r.books_rows;
            }
            BookCheckKind::Unmapped => {
                *unmapped.entry(r.label.clone()).or_default() += r.books_rows;
            }
        }
    }
    let not_compared = match c.compared_through {
        Some(t) if t >= c.range_end => None,
        Some(t) => t.next_day().map(|n| format!("{n}..{}", c.range_end)),
        None => Some(format!("{}..{}", c.range_start, c.range_end)),
    };
    BooksCheckSection {
        realm_id: c.realm_id.clone(),
        id: c.id,
        status: c.status.to_string(),
        range_start: c.range_start.to_string(),
        range_end: c.range_end.to_string(),
        accounting_method: c.accounting_method.clone(),
        months_planned: c.months_planned,
        months_compared: c.months_compared,
        compared_through: c.compared_through.map(|d| d.to_string()),
        not_compared,
        started_at: format_utc(c.started_at),
        finished_at: c.finished_at.map(format_utc),
        api_calls: c.api_calls,
        error: c.error.clone(),
        stale: c.stale,
        last_load_at: c.last_load_at.map(format_utc),
        agreed,
        differences,
        not_loaded: not_loaded.into_values().collect(),
        unmapped,
    }
}

/// The latest check of each company in scope.
///
/// # Errors
/// [`Error::Database`] when the query fails.
pub(super) async fn load(
    sink: &Sink,
    realm: Option<&str>,
) -> Result<Vec<BooksCheckSection>, Error> {
    Ok(sink
        .latest_book_checks(realm)
        .await
        .map_err(Error::Database)?
        .iter()
        .map(section)
        .collect())
}

impl BooksCheckSection {
    /// What was compared, in words.
    fn scope_words(&self) -> String {
        let compared = match &self.compared_through {
            Some(t) => format!(
                "{} of {} months compared ({}..{t})",
                self.months_compared, self.months_planned, self.range_start
            ),
            None => format!(
                "no month of {}..{} compared",
                self.range_start, self.range_end
            ),
        };
        match &self.not_compared {
            Some(rest) if self.compared_through.is_some() => {
                format!("{compared}; {rest} not compared")
            }
            _ => compared,
        }
    }

    fn verdict(&self) -> &'static str {
        match self.status.as_str() {
            s if s == BookCheckStatus::Agreed.as_str() => {
                "every month compared agrees with QuickBooks' TransactionList"
            }
            s if s == BookCheckStatus::Differs.as_str() => "the raw layer differs from the books",
            s if s == BookCheckStatus::Stopped.as_str() => "stopped before the end of its range",
            _ => "failed",
        }
    }

    fn stale_words(&self) -> Option<String> {
        self.stale.then(|| {
            format!(
                "STALE: a load ended at {} after this check started; run check-books again",
                self.last_load_at.as_deref().unwrap_or("?")
            )
        })
    }
}

/// The section for the terminal summary.
pub(super) fn text(s: &mut String, checks: &[BooksCheckSection]) {
    if checks.is_empty() {
        return;
    }
    let _ = writeln!(s, "books check (latest check-books per company):");
    for c in checks {
        let _ = writeln!(
            s,
            "  {} · {} · {} · {} · {} agree, {} differ, {} entities never loaded · calls {}",
            c.realm_id,
            c.finished_at.as_deref().unwrap_or(&c.started_at),
            c.verdict(),
            c.scope_words(),
            c.agreed,
            c.differences.len(),
            c.not_loaded.len(),
            c.api_calls
        );
        if let Some(w) = c.stale_words() {
            let _ = writeln!(s, "    {w}");
        }
        for d in &c.differences {
            let _ = writeln!(
                s,
                "    {} {} ({}): books {} for {}, raw {} for {}",
                d.month,
                d.entity,
                d.types.join(", "),
                d.books_rows,
                d.books_amount,
                d.raw_rows,
                d.raw_amount
            );
        }
        for n in &c.not_loaded {
            let _ = writeln!(
                s,
                "    never loaded: {} ({}) {}: run `{}`",
                n.entity,
                n.types.join("/"),
                years(&n.per_year),
                n.command
            );
        }
        for (t, count) in &c.unmapped {
            let _ = writeln!(s, "    {count} {t} transactions that no raw table carries");
        }
    }
}

fn years(per_year: &BTreeMap<String, u64>) -> String {
    per_year
        .iter()
        .map(|(y, n)| format!("{n} in {y}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The section of `report.md`.
pub(super) fn markdown(m: &mut String, checks: &[BooksCheckSection]) {
    let _ = writeln!(
        m,
        "\n## Books check (latest `check-books` per company)\n\n\
         QuickBooks' TransactionList against the raw tables' live rows, month by month and \
         entity by entity (count and total in home currency). Only the months a check \
         compared are shown; the rest of its range is named as not compared.\n"
    );
    if checks.is_empty() {
        let _ = writeln!(
            m,
            "No check recorded: run `qb-backfill check-books --start … --end …`."
        );
        return;
    }
    for c in checks {
        let _ = writeln!(
            m,
            "### {}\n\nCheck {} ({}), {} → {}: **{}**; {}; accounting method {}; {} QBO calls.",
            md(&c.realm_id),
            c.id,
            c.status,
            c.started_at,
            c.finished_at.as_deref().unwrap_or("-"),
            c.verdict(),
            c.scope_words(),
            md(&c.accounting_method),
            c.api_calls
        );
        if let Some(w) = c.stale_words() {
            let _ = writeln!(m, "\n**{w}.**");
        }
        if let Some(e) = &c.error {
            let _ = writeln!(m, "\nError: {}", md(e));
        }
        let _ = writeln!(m, "\n{} month × entity totals agree.", c.agreed);
        if !c.differences.is_empty() {
            let _ = writeln!(
                m,
                "\n| month | entity | types | books count | books amount | raw count | raw amount |\n|---|---|---|---:|---:|---:|---:|"
            );
            for d in &c.differences {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    d.month,
                    d.entity,
                    md(&d.types.join(", ")),
                    d.books_rows,
                    d.books_amount,
                    d.raw_rows,
                    d.raw_amount
                );
            }
        }
        for n in &c.not_loaded {
            let _ = writeln!(
                m,
                "\n- Never loaded: **{}** ({}), {} in the books: run `{}`.",
                n.entity,
                md(&n.types.join("/")),
                years(&n.per_year),
                n.command
            );
        }
        for (t, count) in &c.unmapped {
            let _ = writeln!(
                m,
                "\n- {count} {} transactions in the books that no raw table carries.",
                md(t)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use raw_sink::BookCheckRow;
    use time::OffsetDateTime;
    use time::macros::date;

    use super::*;

    fn row(month: time::Date, kind: BookCheckKind, label: &str, books: u64) -> BookCheckRow {
        let loaded = matches!(kind, BookCheckKind::Agrees | BookCheckKind::Differs);
        BookCheckRow {
            month,
            kind,
            label: label.to_owned(),
            txn_types: vec![if label == "Purchase" { "Check" } else { label }.to_owned()],
            books_rows: books,
            books_amount: "10.00".to_owned(),
            raw_rows: loaded.then_some(if kind == BookCheckKind::Agrees {
                books
            } else {
                books - 1
            }),
            raw_amount: loaded.then(|| "10.00".to_owned()),
        }
    }

    fn stopped_check() -> BookCheck {
        BookCheck {
            id: 7,
            realm_id: "r|1".to_owned(),
            range_start: date!(2024 - 01 - 01),
            range_end: date!(2024 - 03 - 31),
            accounting_method: "Accrual".to_owned(),
            status: BookCheckStatus::Stopped,
            months_planned: 3,
            months_compared: 2,
            compared_through: Some(date!(2024 - 02 - 29)),
            api_calls: 2,
            error: None,
            started_at: OffsetDateTime::UNIX_EPOCH,
            finished_at: Some(OffsetDateTime::UNIX_EPOCH),
            last_load_at: Some(OffsetDateTime::UNIX_EPOCH),
            stale: true,
            rows: vec![
                row(date!(2024 - 01 - 01), BookCheckKind::Agrees, "Invoice", 4),
                row(
                    date!(2024 - 01 - 01),
                    BookCheckKind::NotLoaded,
                    "Purchase",
                    3,
                ),
                row(date!(2024 - 02 - 01), BookCheckKind::Differs, "Invoice", 5),
                row(
                    date!(2024 - 02 - 01),
                    BookCheckKind::NotLoaded,
                    "Purchase",
                    2,
                ),
                row(
                    date!(2024 - 02 - 01),
                    BookCheckKind::Unmapped,
                    "Payroll Check",
                    1,
                ),
            ],
        }
    }

    #[test]
    fn a_stopped_check_names_what_it_did_not_compare() {
        let s = section(&stopped_check());
        assert_eq!(s.not_compared.as_deref(), Some("2024-03-01..2024-03-31"));
        assert_eq!(s.agreed, 1);
        assert_eq!(s.differences.len(), 1);
        assert_eq!(s.differences[0].month, "2024-02");
        assert_eq!(
            (s.differences[0].books_rows, s.differences[0].raw_rows),
            (5, 4)
        );
        assert_eq!(s.not_loaded.len(), 1);
        assert_eq!(s.not_loaded[0].per_year["2024"], 5);
        assert_eq!(s.not_loaded[0].command, "qb-backfill --entity Purchase");
        assert_eq!(s.unmapped["Payroll Check"], 1);

        let mut md = String::new();
        markdown(&mut md, std::slice::from_ref(&s));
        assert!(md.contains("2 of 3 months compared (2024-01-01..2024-02-29); 2024-03-01..2024-03-31 not compared"), "{md}");
        assert!(md.contains("stopped before the end of its range"), "{md}");
        assert!(!md.contains("every month compared agrees"), "{md}");
        assert!(md.contains("**STALE"), "{md}");
        assert!(md.contains("### r\\|1"), "{md}");
        assert!(md.contains("run `qb-backfill --entity Purchase`"), "{md}");

        let mut t = String::new();
        text(&mut t, &[s]);
        assert!(
            t.contains("2024-02 Invoice (Invoice): books 5 for 10.00, raw 4 for 10.00"),
            "{t}"
        );
        assert!(
            t.contains("1 Payroll Check transactions that no raw table carries"),
            "{t}"
        );
    }

    #[test]
    fn nothing_compared_is_said_so() {
        let mut c = stopped_check();
        c.compared_through = None;
        c.months_compared = 0;
        c.rows.clear();
        let s = section(&c);
        assert_eq!(s.not_compared.as_deref(), Some("2024-01-01..2024-03-31"));
        let mut t = String::new();
        text(&mut t, &[s]);
        assert!(
            t.contains("no month of 2024-01-01..2024-03-31 compared"),
            "{t}"
        );
    }
}
