//! `check-books`: the raw layer against QBO's own TransactionList, month by month.
//!
//! For each month of the range QBO's TransactionList (stored in `raw.qb_reports` like any
//! report) gives, per transaction type, a count and a total in home currency; the types are
//! mapped onto our entities ([`entity_of_type`]) and compared with the entity's live raw rows
//! of that month ([`raw_sink::volumetry::BOOKS_BY_MONTH_SQL`]). An entity the books hold but
//! whose raw table holds no row of the company is reported as never loaded, with the command
//! that loads it. Nothing here decides what QBO's numbers are: they come from QBO's report.
//!
//! Every check is recorded in `backfill.book_checks` with what it found per month
//! (`backfill.book_check_rows`) and the calls it made; the request budget and a stop request
//! are checked before each month's request, and a check stopped early compares (and records)
//! only the months it fetched, never the rest of the range.

use std::collections::{BTreeMap, BTreeSet};

use qbo_client::QboClient;
use raw_sink::{
    BookCheckEnd, BookCheckKind, BookCheckRow, BookCheckStatus, NewBookCheck, ReportKey, Sink,
};
use time::Date;

pub use super::transaction_list::{BookTotals, Tally, add_transaction_list};
use super::{AccountingMethod, Period, cents, money, periods};
use crate::entity::EntityInfo;
use crate::{Error, ExitStatus, Shutdown, StopReason};

/// The entity that holds the transactions of one TransactionList "Transaction Type".
#[must_use]
pub fn entity_of_type(label: &str) -> Option<&'static str> {
    Some(match label.trim() {
        "Invoice" => "Invoice",
        "Payment" => "Payment",
        "Bill" => "Bill",
        "Credit Memo" => "CreditMemo",
        "Sales Receipt" => "SalesReceipt",
        "Journal Entry" => "JournalEntry",
        "Refund" | "Refund Receipt" => "RefundReceipt",
        "Check" | "Expense" | "Cash Expense" | "Credit Card Expense" | "Credit Card Credit" => {
            "Purchase"
        }
        "Bill Payment (Check)" | "Bill Payment (Credit Card)" | "Bill Payment" => "BillPayment",
        "Deposit" => "Deposit",
        "Transfer" => "Transfer",
        "Vendor Credit" => "VendorCredit",
        "Estimate" => "Estimate",
        "Purchase Order" => "PurchaseOrder",
        _ => return None,
    })
}

/// One month and entity where the books and the raw layer differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `YYYY-MM`.
    pub month: String,
    /// Our entity.
    pub entity: &'static str,
    /// The report's transaction types behind it.
    pub types: Vec<String>,
    /// QBO's TransactionList.
    pub books: Tally,
    /// The raw table's live rows.
    pub raw: Tally,
}

/// An entity the books hold that the raw layer never loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLoaded {
    /// Our entity.
    pub entity: &'static str,
    /// The report's transaction types behind it.
    pub types: Vec<String>,
    /// Transactions per year in the books.
    pub per_year: BTreeMap<String, u64>,
}

/// What `check-books` compares.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// First day.
    pub start: Date,
    /// Last day, inclusive.
    pub end: Date,
    /// Stop once this check has made this many API calls.
    pub max_api_calls: Option<u64>,
    /// Stop requests (signals).
    pub shutdown: Shutdown,
}

/// The outcome of `check-books`.
#[derive(Debug, Clone, Default)]
pub struct BooksCheck {
    /// Its `backfill.book_checks` id, once recorded.
    pub id: Option<i64>,
    /// Months in the range.
    pub months_planned: usize,
    /// Months compared (the first ones of the range).
    pub months: usize,
    /// The last day compared, if any month was.
    pub compared_through: Option<Date>,
    /// Why it stopped before the end of the range, if it did.
    pub stopped: Option<StopReason>,
    /// What it found, month by month, as the ledger records it.
    pub rows: Vec<BookCheckRow>,
    /// Month × entity cells that agree.
    pub agreed: usize,
    /// Every month and entity that differs (entities never loaded apart).
    pub differences: Vec<Difference>,
    /// Entities the books hold and the raw layer never loaded.
    pub not_loaded: Vec<NotLoaded>,
    /// Transaction types the books hold that no entity of ours carries, with their counts.
    pub unmapped: BTreeMap<String, u64>,
    /// QBO API calls made.
    pub api_calls: u64,
}

impl BooksCheck {
    /// Whether everything agrees.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.stopped.is_none()
            && self.differences.is_empty()
            && self.not_loaded.is_empty()
            && self.unmapped.is_empty()
    }

    /// How the ledger records it.
    #[must_use]
    pub fn status(&self) -> BookCheckStatus {
        if self.stopped.is_some() {
            BookCheckStatus::Stopped
        } else if self.ok() {
            BookCheckStatus::Agreed
        } else {
            BookCheckStatus::Differs
        }
    }

    /// 0 when everything agrees, 1 otherwise (130 / 143 when a signal stopped it).
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self.stopped {
            Some(reason) => reason.exit_status(),
            None if self.ok() => ExitStatus::Success,
            None => ExitStatus::WindowsFailed,
        }
    }

    /// The lines the terminal shows.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.differences {
            out.push(format!(
                "{} {} ({}): the books hold {} for {}, the raw layer {} for {}",
                d.month,
                d.entity,
                d.types.join(", "),
                d.books.rows,
                money(d.books.cents),
                d.raw.rows,
                money(d.raw.cents)
            ));
        }
        for n in &self.not_loaded {
            for (year, count) in &n.per_year {
                out.push(format!(
                    "the books hold {count} {} transactions in {year} that the raw layer lacks: \
                     run `qb-backfill --entity {}`",
                    n.types.join("/"),
                    n.entity
                ));
            }
        }
        for (t, count) in &self.unmapped {
            out.push(format!(
                "the books hold {count} {t} transactions that no raw table carries"
            ));
        }
        if let Some(reason) = self.stopped {
            out.push(format!(
                "check-books: stopped by {reason} after {} of {} months{}: {} differences, {} \
                 entities never loaded, {} agree; the months after it were not compared (run it \
                 again)",
                self.months,
                self.months_planned,
                self.compared_through
                    .map(|d| format!(" (compared through {d})"))
                    .unwrap_or_default(),
                self.differences.len(),
                self.not_loaded.len(),
                self.agreed
            ));
            return out;
        }
        out.push(if self.ok() {
            format!(
                "check-books: {} months, {} month × entity totals agree with QuickBooks' TransactionList",
                self.months, self.agreed
            )
        } else {
            format!(
                "check-books: {} months: {} differences, {} entities never loaded, {} agree",
                self.months,
                self.differences.len(),
                self.not_loaded.len(),
                self.agreed
            )
        });
        out
    }
}

/// Fetches TransactionList month by month over `cfg.start..=cfg.end` (stored in
/// `raw.qb_reports`), compares it with the raw layer and records the check in the ledger.
///
/// # Errors
/// [`Error::Database`]; [`Error::Auth`] / [`Error::Qbo`] when QBO does not answer;
/// [`Error::Usage`] for an unreadable report. The check is recorded `failed` with the error.
pub async fn check(
    client: &QboClient,
    sink: &Sink,
    cfg: &CheckConfig,
) -> Result<BooksCheck, Error> {
    let realm = client.realm_id().to_owned();
    let method = AccountingMethod::Accrual;
    let months = periods(cfg.start, cfg.end, Period::Month)?;
    let id = sink
        .start_book_check(&NewBookCheck {
            realm_id: &realm,
            range_start: cfg.start,
            range_end: cfg.end,
            accounting_method: method.as_str(),
            months_planned: u32::try_from(months.len()).unwrap_or(u32::MAX),
        })
        .await
        .map_err(Error::Database)?;
    let calls_before = client.api_calls();
    let result = check_months(client, sink, cfg, &realm, method, &months).await;
    let api_calls = client.api_calls() - calls_before;
    match result {
        Ok(mut out) => {
            out.id = Some(id);
            out.api_calls = api_calls;
            sink.finish_book_check(
                id,
                &BookCheckEnd {
                    status: out.status(),
                    months_compared: u32::try_from(out.months).unwrap_or(u32::MAX),
                    compared_through: out.compared_through,
                    api_calls,
                    error: None,
                    rows: &out.rows,
                },
            )
            .await
            .map_err(Error::Database)?;
            Ok(out)
        }
        Err(e) => {
            let text = crate::run::error_chain(&e);
            let end = BookCheckEnd {
                status: BookCheckStatus::Failed,
                months_compared: 0,
                compared_through: None,
                api_calls,
                error: Some(&text),
                rows: &[],
            };
            if let Err(db) = sink.finish_book_check(id, &end).await {
                tracing::warn!(error = %crate::run::error_chain(&db), "book_check_not_recorded");
            }
            Err(e)
        }
    }
}

async fn check_months(
    client: &QboClient,
    sink: &Sink,
    cfg: &CheckConfig,
    realm: &str,
    method: AccountingMethod,
    months: &[(Date, Date)],
) -> Result<BooksCheck, Error> {
    let params_text = method.params_text();
    let calls_before = client.api_calls();
    let mut books = BookTotals::new();
    let mut fetched: usize = 0;
    let mut stopped = None;
    for &(s, e) in months {
        let spent = client.api_calls() - calls_before;
        stopped = cfg.shutdown.reason().or_else(|| {
            cfg.max_api_calls
                .filter(|max| spent >= *max)
                .map(|_| StopReason::Budget)
        });
        if let Some(reason) = stopped {
            tracing::warn!(
                reason = reason.as_str(),
                compared = fetched,
                months = months.len(),
                "check_books_stopped"
            );
            break;
        }
        let p = [
            ("start_date", s.to_string()),
            ("end_date", e.to_string()),
            ("accounting_method", method.as_str().to_owned()),
        ];
        let before = client.api_calls();
        let report = client.report("TransactionList", &p).await.map_err(|e| {
            if e.is_auth() {
                Error::Auth(e)
            } else {
                Error::Qbo(e)
            }
        })?;
        let request = p
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let key = ReportKey {
            realm_id: realm,
            report_name: "TransactionList",
            params: &params_text,
            period_start: s,
            period_end: e,
        };
        sink.store_report(
            &key,
            &request,
            report.raw.get(),
            client.api_calls() - before,
        )
        .await
        .map_err(Error::Database)?;
        add_transaction_list(report.raw.get(), &mut books).map_err(Error::Usage)?;
        fetched += 1;
    }
    let through = fetched
        .checked_sub(1)
        .and_then(|i| months.get(i))
        .map(|m| m.1);
    let mut out = match through {
        Some(last) => compare(sink, realm, cfg.start, last, &books).await?,
        None => BooksCheck::default(),
    };
    out.months_planned = months.len();
    out.months = fetched;
    out.compared_through = through;
    out.stopped = stopped;
    Ok(out)
}

/// The first day of `YYYY-MM`.
fn month_start(month: &str) -> Result<Date, Error> {
    let bad = || Error::Usage(format!("{month:?} is not a month (YYYY-MM)"));
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let m = time::Month::try_from(m).map_err(|_| bad())?;
    Date::from_calendar_date(y, m, 1).map_err(|_| bad())
}

fn ledger_row(
    month: &str,
    kind: BookCheckKind,
    label: &str,
    types: &[String],
    books: Tally,
    raw: Option<Tally>,
) -> Result<BookCheckRow, Error> {
    Ok(BookCheckRow {
        month: month_start(month)?,
        kind,
        label: label.to_owned(),
        txn_types: types.to_vec(),
        books_rows: books.rows,
        books_amount: money(books.cents),
        raw_rows: raw.map(|r| r.rows),
        raw_amount: raw.map(|r| money(r.cents)),
    })
}

/// Compares TransactionList totals with the raw layer of `realm`.
async fn compare(
    sink: &Sink,
    realm: &str,
    start: Date,
    end: Date,
    books: &BookTotals,
) -> Result<BooksCheck, Error> {
    let mut out = BooksCheck::default();
    // (entity → month → tally) and the types seen per entity.
    let mut by_entity: BTreeMap<&'static str, BTreeMap<String, Tally>> = BTreeMap::new();
    let mut types: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for ((month, ty), t) in books {
        match entity_of_type(ty).and_then(EntityInfo::find) {
            Some(info) => {
                let cell = by_entity
                    .entry(info.name)
                    .or_default()
                    .entry(month.clone())
                    .or_default();
                cell.rows += t.rows;
                cell.cents += t.cents;
                types.entry(info.name).or_default().insert(ty.clone());
            }
            None => {
                *out.unmapped.entry(ty.clone()).or_default() += t.rows;
                out.rows.push(ledger_row(
                    month,
                    BookCheckKind::Unmapped,
                    ty,
                    std::slice::from_ref(ty),
                    *t,
                    None,
                )?);
            }
        }
    }
    // Transaction entities with rows in the raw layer are compared too, even in months (or
    // whole ranges) where the books hold none of them.
    let candidates: BTreeSet<&'static str> = crate::entity::ENTITIES
        .iter()
        .filter(|e| e.transaction)
        .filter(|e| books.is_empty() || by_entity.contains_key(e.name) || mapped_entity(e.name))
        .map(|e| e.name)
        .collect();
    for name in candidates {
        let Some(info) = EntityInfo::find(name) else {
            continue;
        };
        let loaded = sink
            .table_totals(info.table, Some(realm))
            .await
            .map_err(Error::Database)?
            .rows
            > 0;
        let book_months = by_entity.get(name).cloned().unwrap_or_default();
        let type_list: Vec<String> = types
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if !loaded {
            if !book_months.is_empty() {
                let mut per_year = BTreeMap::new();
                for (m, t) in &book_months {
                    *per_year.entry(m[..4].to_owned()).or_default() += t.rows;
                    out.rows.push(ledger_row(
                        m,
                        BookCheckKind::NotLoaded,
                        name,
                        &type_list,
                        *t,
                        None,
                    )?);
                }
                out.not_loaded.push(NotLoaded {
                    entity: name,
                    types: type_list,
                    per_year,
                });
            }
            continue;
        }
        let raw: BTreeMap<String, Tally> = sink
            .books_by_month(info.table, realm, start, end)
            .await
            .map_err(Error::Database)?
            .into_iter()
            .map(|m| {
                let c = cents(&m.total).ok_or_else(|| {
                    Error::Usage(format!("{name} total {:?} is not a number", m.total))
                })?;
                Ok((
                    m.month,
                    Tally {
                        rows: m.rows,
                        cents: c,
                    },
                ))
            })
            .collect::<Result<_, Error>>()?;
        let months: BTreeSet<&String> = book_months.keys().chain(raw.keys()).collect();
        for m in months {
            let b = book_months.get(m).copied().unwrap_or_default();
            let r = raw.get(m).copied().unwrap_or_default();
            let kind = if b == r {
                BookCheckKind::Agrees
            } else {
                BookCheckKind::Differs
            };
            let shown_types = if type_list.is_empty() {
                vec![name.to_owned()]
            } else {
                type_list.clone()
            };
            out.rows
                .push(ledger_row(m, kind, name, &shown_types, b, Some(r))?);
            if b == r {
                out.agreed += 1;
            } else {
                out.differences.push(Difference {
                    month: m.clone(),
                    entity: name,
                    types: if type_list.is_empty() {
                        vec![name.to_owned()]
                    } else {
                        type_list.clone()
                    },
                    books: b,
                    raw: r,
                });
            }
        }
    }
    out.differences
        .sort_by(|a, b| (&a.month, a.entity).cmp(&(&b.month, b.entity)));
    Ok(out)
}

/// Whether some TransactionList type maps onto this entity (so the report would list it).
fn mapped_entity(name: &str) -> bool {
    const TYPES: [&str; 14] = [
        "Invoice",
        "Payment",
        "Bill",
        "Credit Memo",
        "Sales Receipt",
        "Journal Entry",
        "Refund",
        "Check",
        "Bill Payment (Check)",
        "Deposit",
        "Transfer",
        "Vendor Credit",
        "Estimate",
        "Purchase Order",
    ];
    TYPES.iter().any(|t| entity_of_type(t) == Some(name))
        && !matches!(name, "Estimate" | "PurchaseOrder")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn types_map_onto_entities() {
        assert_eq!(entity_of_type("Check"), Some("Purchase"));
        assert_eq!(entity_of_type("Journal Entry"), Some("JournalEntry"));
        assert_eq!(entity_of_type("Payroll Check"), None);
        for t in ["Invoice", "Check", "Bill Payment (Check)", "Vendor Credit"] {
            assert!(
                EntityInfo::find(entity_of_type(t).unwrap()).is_some(),
                "{t}"
            );
        }
    }

    #[test]
    fn the_message_names_the_command() {
        let c = BooksCheck {
            not_loaded: vec![NotLoaded {
                entity: "Purchase",
                types: vec!["Check".into()],
                per_year: [("2024".to_owned(), 41)].into(),
            }],
            ..BooksCheck::default()
        };
        assert!(!c.ok());
        assert_eq!(
            c.lines()[0],
            "the books hold 41 Check transactions in 2024 that the raw layer lacks: \
             run `qb-backfill --entity Purchase`"
        );
    }
}
