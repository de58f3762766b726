//! The report bodies: Header, Columns and Rows (Data rows, Sections with Header, Rows and
//! Summary), as QBO's Reports API writes them.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::Date;

use super::{Method, Params, ReportName, Txn, TxnKind, beginning, money, transactions};
use crate::realm::Realm;

/// The accounts of the simulator's ledger, in chart order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Account {
    Checking,
    UndepositedFunds,
    Receivable,
    Payable,
    RetainedEarnings,
    Sales,
    Expenses,
}

impl Account {
    fn name(self) -> &'static str {
        match self {
            Account::Checking => "Checking",
            Account::UndepositedFunds => "Undeposited Funds",
            Account::Receivable => "Accounts Receivable (A/R)",
            Account::Payable => "Accounts Payable (A/P)",
            Account::RetainedEarnings => "Retained Earnings",
            Account::Sales => "Sales",
            Account::Expenses => "Expenses",
        }
    }

    fn id(self) -> u8 {
        self as u8 + 1
    }

    fn is_pl(self) -> bool {
        matches!(self, Account::Sales | Account::Expenses)
    }
}

/// The two postings of a transaction (debit positive), per accounting method.
fn postings(t: &Txn, method: Method) -> Vec<(Account, i64)> {
    use Account as A;
    let a = t.amount;
    let pair = |dr: Account, cr: Account| vec![(dr, a), (cr, -a)];
    match (t.kind, method) {
        (TxnKind::Invoice, Method::Accrual) => pair(A::Receivable, A::Sales),
        (TxnKind::Invoice, Method::Cash) | (TxnKind::JournalEntry, _) => Vec::new(),
        (TxnKind::Payment, Method::Accrual) => pair(A::UndepositedFunds, A::Receivable),
        (TxnKind::Payment, Method::Cash) | (TxnKind::SalesReceipt, _) => {
            pair(A::UndepositedFunds, A::Sales)
        }
        (TxnKind::Bill, Method::Accrual) => pair(A::Expenses, A::Payable),
        (TxnKind::Bill, Method::Cash) => pair(A::Expenses, A::Checking),
    }
}

fn col(key: &str, title: &str, ty: &str) -> Value {
    json!({"ColTitle": title, "ColType": ty, "MetaData": [{"Name": "ColKey", "Value": key}]})
}

fn cells(values: &[&str]) -> Value {
    Value::Array(values.iter().map(|v| json!({"value": v})).collect())
}

fn section(title: &str, group: &str, rows: Vec<Value>, summary: Value) -> Value {
    let inner = if rows.is_empty() {
        json!({})
    } else {
        json!({"Row": rows})
    };
    json!({"Header": {"ColData": [{"value": title}, {"value": ""}]}, "Rows": inner,
           "Summary": {"ColData": summary}, "type": "Section", "group": group})
}

fn header(name: ReportName, p: &Params, now: &str, empty: bool) -> Value {
    let mut h = json!({
        "Time": now,
        "ReportName": name.as_str(),
        "ReportBasis": p.method.as_str(),
        "StartPeriod": p.start.to_string(),
        "EndPeriod": p.end.to_string(),
        "SummarizeColumnsBy": "Total",
        "Currency": "USD",
        "Option": [
            {"Name": "AccountingStandard", "Value": "GAAP"},
            {"Name": "NoReportData", "Value": if empty { "true" } else { "false" }}
        ]
    });
    if let Some(m) = &p.date_macro {
        h["DateMacro"] = json!(m.to_ascii_lowercase());
    }
    h
}

/// A report's whole JSON body.
pub(crate) fn render(name: ReportName, p: &Params, realm: &Realm, now: &str) -> Value {
    let period = transactions(realm, p.start, p.end);
    match name {
        ReportName::TransactionList => transaction_list(p, now, &period),
        ReportName::ProfitAndLoss => profit_and_loss(p, now, &period),
        ReportName::GeneralLedger => general_ledger(p, now, &period),
        ReportName::BalanceSheet | ReportName::TrialBalance => {
            let before = match p.start.previous_day() {
                Some(d) => transactions(realm, beginning(), d),
                None => Vec::new(),
            };
            if name == ReportName::BalanceSheet {
                balance_sheet(p, now, &before, &period)
            } else {
                trial_balance(p, now, &before, &period)
            }
        }
        ReportName::AgedReceivables | ReportName::AgedPayables => {
            let all = transactions(realm, beginning(), p.end);
            aged(name, p, now, &all)
        }
    }
}

fn transaction_list(p: &Params, now: &str, txns: &[Txn]) -> Value {
    let rows: Vec<Value> = txns
        .iter()
        .map(|t| {
            json!({"ColData": [
                {"value": t.date.to_string()},
                {"value": t.kind.label(), "id": t.id},
                {"value": t.doc},
                {"value": "Yes"},
                {"value": t.name},
                {"value": money(t.amount)}
            ], "type": "Data"})
        })
        .collect();
    json!({
        "Header": header(ReportName::TransactionList, p, now, rows.is_empty()),
        "Columns": {"Column": [
            col("tx_date", "Date", "Date"),
            col("txn_type", "Transaction Type", "String"),
            col("doc_num", "Num", "String"),
            col("is_no_post", "Posting", "String"),
            col("name", "Name", "String"),
            col("subt_nat_home_amount", "Amount", "Money")
        ]},
        "Rows": if rows.is_empty() { json!({}) } else { json!({"Row": rows}) }
    })
}

/// Each account's signed total (debit positive) over some transactions.
fn balances(txns: &[Txn], method: Method) -> BTreeMap<Account, i64> {
    let mut out = BTreeMap::new();
    for t in txns {
        for (a, v) in postings(t, method) {
            *out.entry(a).or_insert(0) += v;
        }
    }
    out
}

fn two_cols(p: &Params, name: ReportName, now: &str, empty: bool) -> (Value, Value) {
    (
        header(name, p, now, empty),
        json!({"Column": [col("account", "", "Account"), col("total", "Total", "Money")]}),
    )
}

fn account_row(a: Account, cents: i64) -> Value {
    json!({"ColData": [{"value": a.name(), "id": a.id().to_string()}, {"value": money(cents)}],
           "type": "Data"})
}

fn profit_and_loss(p: &Params, now: &str, txns: &[Txn]) -> Value {
    let b = balances(txns, p.method);
    let income = -b.get(&Account::Sales).copied().unwrap_or(0);
    let expenses = b.get(&Account::Expenses).copied().unwrap_or(0);
    let (h, c) = two_cols(p, ReportName::ProfitAndLoss, now, b.is_empty());
    let inc = section(
        "Income",
        "Income",
        vec![account_row(Account::Sales, income)],
        cells(&["Total Income", &money(income)]),
    );
    let gp = json!({"Summary": {"ColData": cells(&["Gross Profit", &money(income)])},
                    "type": "Section", "group": "GrossProfit"});
    let exp = section(
        "Expenses",
        "Expenses",
        vec![account_row(Account::Expenses, expenses)],
        cells(&["Total Expenses", &money(expenses)]),
    );
    let net = json!({"Summary": {"ColData": cells(&["Net Income", &money(income - expenses)])},
                     "type": "Section", "group": "NetIncome"});
    json!({"Header": h, "Columns": c, "Rows": {"Row": [inc, gp, exp, net]}})
}

fn balance_sheet(p: &Params, now: &str, before: &[Txn], period: &[Txn]) -> Value {
    let prior = balances(before, p.method);
    let now_b = balances(period, p.method);
    let get = |m: &BTreeMap<Account, i64>, a| m.get(&a).copied().unwrap_or(0);
    let total = |a| get(&prior, a) + get(&now_b, a);
    let pl = |m: &BTreeMap<Account, i64>| -(get(m, Account::Sales) + get(m, Account::Expenses));
    let assets_accounts = [
        Account::Checking,
        Account::UndepositedFunds,
        Account::Receivable,
    ];
    let assets: i64 = assets_accounts.iter().map(|a| total(*a)).sum();
    let payable = -total(Account::Payable);
    let retained = pl(&prior);
    let net = pl(&now_b);
    let empty = prior.is_empty() && now_b.is_empty();
    let (h, c) = two_cols(p, ReportName::BalanceSheet, now, empty);
    let asset_sec = section(
        "ASSETS",
        "TotalAssets",
        assets_accounts
            .iter()
            .map(|a| account_row(*a, total(*a)))
            .collect(),
        cells(&["TOTAL ASSETS", &money(assets)]),
    );
    let liab = section(
        "Liabilities",
        "Liabilities",
        vec![account_row(Account::Payable, payable)],
        cells(&["Total Liabilities", &money(payable)]),
    );
    let equity = section(
        "Equity",
        "Equity",
        vec![
            account_row(Account::RetainedEarnings, retained),
            json!({"ColData": cells(&["Net Income", &money(net)]), "type": "Data"}),
        ],
        cells(&["Total Equity", &money(retained + net)]),
    );
    let le = json!({
        "Header": {"ColData": cells(&["LIABILITIES AND EQUITY", ""])},
        "Rows": {"Row": [liab, equity]},
        "Summary": {"ColData": cells(&["TOTAL LIABILITIES AND EQUITY", &money(payable + retained + net)])},
        "type": "Section", "group": "TotalLiabilitiesAndEquity"
    });
    json!({"Header": h, "Columns": c, "Rows": {"Row": [asset_sec, le]}})
}

fn trial_balance(p: &Params, now: &str, before: &[Txn], period: &[Txn]) -> Value {
    let prior = balances(before, p.method);
    let mut b = balances(period, p.method);
    for (a, v) in &prior {
        let target = if a.is_pl() {
            Account::RetainedEarnings
        } else {
            *a
        };
        *b.entry(target).or_insert(0) += v;
    }
    let (mut debit, mut credit) = (0i64, 0i64);
    let mut rows = Vec::new();
    for (a, v) in &b {
        let (d, c) = if *v >= 0 {
            debit += v;
            (money(*v), String::new())
        } else {
            credit -= v;
            (String::new(), money(-v))
        };
        rows.push(
            json!({"ColData": [{"value": a.name(), "id": a.id().to_string()},
                                     {"value": d}, {"value": c}], "type": "Data"}),
        );
    }
    let empty = rows.is_empty();
    rows.push(
        json!({"Summary": {"ColData": cells(&["TOTAL", &money(debit), &money(credit)])},
                     "type": "Section", "group": "GrandTotal"}),
    );
    json!({
        "Header": header(ReportName::TrialBalance, p, now, empty),
        "Columns": {"Column": [col("account", "", "Account"), col("debit", "Debit", "Money"),
                               col("credit", "Credit", "Money")]},
        "Rows": {"Row": rows}
    })
}

fn general_ledger(p: &Params, now: &str, txns: &[Txn]) -> Value {
    let mut by_account: BTreeMap<Account, Vec<(&Txn, i64)>> = BTreeMap::new();
    for t in txns {
        for (a, v) in postings(t, p.method) {
            by_account.entry(a).or_default().push((t, v));
        }
    }
    let rows: Vec<Value> = by_account
        .iter()
        .map(|(a, lines)| {
            let total: i64 = lines.iter().map(|(_, v)| v).sum();
            let data = lines
                .iter()
                .map(|(t, v)| {
                    json!({"ColData": [
                        {"value": t.date.to_string()},
                        {"value": t.kind.label(), "id": t.id},
                        {"value": t.doc},
                        {"value": t.name},
                        {"value": money(*v)}
                    ], "type": "Data"})
                })
                .collect();
            section(
                a.name(),
                "",
                data,
                cells(&[
                    &format!("Total for {}", a.name()),
                    "",
                    "",
                    "",
                    &money(total),
                ]),
            )
        })
        .collect();
    json!({
        "Header": header(ReportName::GeneralLedger, p, now, rows.is_empty()),
        "Columns": {"Column": [col("tx_date", "Date", "Date"), col("txn_type", "Transaction Type", "String"),
                               col("doc_num", "Num", "String"), col("name", "Name", "String"),
                               col("subt_nat_amount", "Amount", "Money")]},
        "Rows": if rows.is_empty() { json!({}) } else { json!({"Row": rows}) }
    })
}

/// Days past due at `at` → bucket 0 (current) … 4 (91 and over).
fn bucket(due: Option<Date>, dated: Date, at: Date) -> usize {
    let late = (at - due.unwrap_or(dated)).whole_days();
    match late {
        i64::MIN..=0 => 0,
        1..=30 => 1,
        31..=60 => 2,
        61..=90 => 3,
        _ => 4,
    }
}

fn aged(name: ReportName, p: &Params, now: &str, txns: &[Txn]) -> Value {
    let kind = if name == ReportName::AgedReceivables {
        TxnKind::Invoice
    } else {
        TxnKind::Bill
    };
    let mut per: BTreeMap<&str, [i64; 5]> = BTreeMap::new();
    for t in txns.iter().filter(|t| t.kind == kind && t.balance != 0) {
        per.entry(t.name.as_str()).or_default()[bucket(t.due, t.date, p.end)] += t.balance;
    }
    let mut totals = [0i64; 5];
    let mut rows: Vec<Value> = per
        .iter()
        .map(|(who, b)| {
            let mut v = vec![json!({"value": who})];
            for (i, x) in b.iter().enumerate() {
                totals[i] += x;
                v.push(json!({"value": money(*x)}));
            }
            v.push(json!({"value": money(b.iter().sum())}));
            json!({"ColData": v, "type": "Data"})
        })
        .collect();
    let empty = rows.is_empty();
    let mut sum = vec![json!({"value": "TOTAL"})];
    sum.extend(totals.iter().map(|x| json!({"value": money(*x)})));
    sum.push(json!({"value": money(totals.iter().sum())}));
    rows.push(json!({"Summary": {"ColData": sum}, "type": "Section", "group": "GrandTotal"}));
    let who = if kind == TxnKind::Invoice {
        "Customer"
    } else {
        "Vendor"
    };
    json!({
        "Header": header(name, p, now, empty),
        "Columns": {"Column": [
            col(&who.to_ascii_lowercase(), "", who), col("current", "Current", "Money"),
            col("0", "1 - 30", "Money"), col("1", "31 - 60", "Money"), col("2", "61 - 90", "Money"),
            col("3", "91 and over", "Money"), col("total", "Total", "Money")
        ]},
        "Rows": {"Row": rows}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(kind: TxnKind, amount: i64) -> Txn {
        Txn {
            kind,
            id: "1".into(),
            date: beginning(),
            doc: String::new(),
            name: "A".into(),
            amount,
            balance: 0,
            due: None,
        }
    }

    #[test]
    fn the_ledger_balances_under_both_methods() {
        let txns = [
            txn(TxnKind::Invoice, 1000),
            txn(TxnKind::Payment, 400),
            txn(TxnKind::SalesReceipt, 250),
            txn(TxnKind::Bill, 700),
            txn(TxnKind::JournalEntry, 90),
        ];
        for m in [Method::Accrual, Method::Cash] {
            assert_eq!(balances(&txns, m).values().sum::<i64>(), 0, "{m:?}");
        }
        let acc = balances(&txns, Method::Accrual);
        assert_eq!(acc[&Account::Sales], -1250);
        assert_eq!(acc[&Account::Receivable], 600);
        let cash = balances(&txns, Method::Cash);
        assert_eq!(cash[&Account::Sales], -650);
    }

    #[test]
    fn ageing_buckets() {
        let d = |n: i32| Date::from_julian_day(2_460_000 + n).unwrap();
        assert_eq!(bucket(Some(d(10)), d(0), d(10)), 0);
        assert_eq!(bucket(Some(d(10)), d(0), d(11)), 1);
        assert_eq!(bucket(None, d(0), d(61)), 3);
        assert_eq!(bucket(None, d(0), d(200)), 4);
    }
}
