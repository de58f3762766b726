//! QBO's TransactionList report read into counts and totals per month and transaction type
//! (sections walked, amounts as exact cents).

use std::collections::BTreeMap;

use serde_json::Value;

use super::cents;

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
}
