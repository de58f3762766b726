//! `check-books`: the raw layer against QBO's own TransactionList, month by month.
//!
//! For each month of the range QBO's TransactionList (stored in `raw.qb_reports` like any
//! report) gives, per transaction type, a count and a total in home currency; the types are
//! mapped onto our entities ([`entity_of_type`]) and compared with the entity's live raw rows
//! of that month ([`raw_sink::volumetry::BOOKS_BY_MONTH_SQL`]). An entity the books hold but
//! whose raw table holds no row of the company is reported as never loaded, with the command
//! that loads it. Nothing here decides what QBO's numbers are: they come from QBO's report.

use std::collections::{BTreeMap, BTreeSet};

use qbo_client::QboClient;
use raw_sink::{ReportKey, Sink};
use serde_json::Value;
use time::Date;

use super::{AccountingMethod, Period, cents, money, periods};
use crate::entity::EntityInfo;
use crate::{Error, ExitStatus};

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

/// A count and a total in cents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Transactions.
    pub rows: u64,
    /// Their total, in cents of home currency.
    pub cents: i128,
}

/// TransactionList rows per (`YYYY-MM`, transaction type).
pub type BookTotals = BTreeMap<(String, String), Tally>;

fn col_index(report: &Value, keys: &[&str]) -> Option<usize> {
    report["Columns"]["Column"]
        .as_array()?
        .iter()
        .position(|c| {
            c["MetaData"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|kv| kv["Name"] == "ColKey" && keys.iter().any(|k| kv["Value"] == *k))
            })
        })
}

fn walk(rows: &Value, f: &mut dyn FnMut(&Value)) {
    for r in rows["Row"].as_array().into_iter().flatten() {
        if r.get("ColData").is_some() {
            f(r);
        }
        if r.get("Rows").is_some() {
            walk(&r["Rows"], f);
        }
    }
}

/// Adds a TransactionList report's Data rows (sections walked) to `out`.
///
/// # Errors
/// A description when the report is not JSON, lacks the date, type or amount column, or a
/// row's date or amount cannot be read.
pub fn add_transaction_list(json: &str, out: &mut BookTotals) -> Result<(), String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("TransactionList: {e}"))?;
    let date = col_index(&v, &["tx_date"]).ok_or("TransactionList has no tx_date column")?;
    let ty = col_index(&v, &["txn_type"]).ok_or("TransactionList has no txn_type column")?;
    let amount = col_index(&v, &["subt_nat_home_amount", "subt_nat_amount"])
        .ok_or("TransactionList has no amount column")?;
    let mut bad = None;
    walk(&v["Rows"], &mut |r| {
        let cell = |i: usize| r["ColData"][i]["value"].as_str().unwrap_or("");
        let (d, t, a) = (cell(date), cell(ty), cell(amount));
        if d.len() < 7 || t.is_empty() {
            return;
        }
        let Some(c) = cents(if a.is_empty() { "0" } else { a }) else {
            bad = Some(format!("TransactionList amount {a:?} is not a number"));
            return;
        };
        let e = out.entry((d[..7].to_owned(), t.to_owned())).or_default();
        e.rows += 1;
        e.cents += c;
    });
    bad.map_or(Ok(()), Err)
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

/// The outcome of `check-books`.
#[derive(Debug, Clone, Default)]
pub struct BooksCheck {
    /// Months compared.
    pub months: usize,
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
        self.differences.is_empty() && self.not_loaded.is_empty() && self.unmapped.is_empty()
    }

    /// 0 when everything agrees, 1 otherwise.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        if self.ok() {
            ExitStatus::Success
        } else {
            ExitStatus::WindowsFailed
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

/// Fetches TransactionList month by month over `start..=end` (stored in `raw.qb_reports`)
/// and compares it with the raw layer.
///
/// # Errors
/// [`Error::Database`]; [`Error::Auth`] / [`Error::Qbo`] when QBO does not answer;
/// [`Error::Usage`] for an unreadable report.
pub async fn check(
    client: &QboClient,
    sink: &Sink,
    start: Date,
    end: Date,
) -> Result<BooksCheck, Error> {
    let realm = client.realm_id().to_owned();
    let method = AccountingMethod::Accrual;
    let params_text = method.params_text();
    let months = periods(start, end, Period::Month)?;
    let calls_before = client.api_calls();
    let mut books = BookTotals::new();
    for &(s, e) in &months {
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
            realm_id: &realm,
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
    }
    let mut out = compare(sink, &realm, start, end, &books).await?;
    out.months = months.len();
    out.api_calls = client.api_calls() - calls_before;
    Ok(out)
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
            None => *out.unmapped.entry(ty.clone()).or_default() += t.rows,
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
    fn transaction_list_rows_are_tallied_by_month_and_type() {
        let json = r#"{"Header":{},"Columns":{"Column":[
            {"ColTitle":"Date","MetaData":[{"Name":"ColKey","Value":"tx_date"}]},
            {"ColTitle":"Transaction Type","MetaData":[{"Name":"ColKey","Value":"txn_type"}]},
            {"ColTitle":"Amount","MetaData":[{"Name":"ColKey","Value":"subt_nat_amount"}]}]},
            "Rows":{"Row":[
              {"ColData":[{"value":"2024-01-03"},{"value":"Check"},{"value":"10.50"}],"type":"Data"},
              {"Header":{},"Rows":{"Row":[
                {"ColData":[{"value":"2024-01-31"},{"value":"Check"},{"value":"0.25"}],"type":"Data"}]},
               "Summary":{"ColData":[{"value":"Total"},{"value":""},{"value":"10.75"}]}},
              {"ColData":[{"value":"2024-02-01"},{"value":"Invoice"},{"value":"-3"}],"type":"Data"}]}}"#;
        let mut t = BookTotals::new();
        add_transaction_list(json, &mut t).unwrap();
        assert_eq!(
            t[&("2024-01".to_owned(), "Check".to_owned())],
            Tally {
                rows: 2,
                cents: 1075
            }
        );
        assert_eq!(t[&("2024-02".to_owned(), "Invoice".to_owned())].cents, -300);
        assert_eq!(t.len(), 2);
        assert!(add_transaction_list(r#"{"Columns":{}}"#, &mut t).is_err());
    }

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
