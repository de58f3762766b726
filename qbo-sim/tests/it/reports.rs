//! Reports computed from the simulator's records: TransactionList agrees with the records,
//! the books balance, an empty period still has its shape, a deletion changes the report.

use crate::common::{Answer, Api, answer, small};

async fn report(api: &Api, name: &str, params: &[(&str, &str)]) -> Answer {
    let r = api
        .http
        .get(format!(
            "{}/v3/company/{}/reports/{name}",
            api.sim.base_url(),
            api.sim.realm_id()
        ))
        .query(params)
        .query(&[("minorversion", "75")])
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    answer(r).await
}

fn cents(s: &str) -> i64 {
    let x: f64 = s.parse().unwrap();
    (x * 100.0).round() as i64
}

/// Data rows anywhere in a report's Rows (sections walked).
fn data_rows(rows: &serde_json::Value, out: &mut Vec<Vec<String>>) {
    for r in rows["Row"].as_array().into_iter().flatten() {
        if r.get("ColData").is_some() {
            out.push(
                r["ColData"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["value"].as_str().unwrap().to_string())
                    .collect(),
            );
        }
        if r.get("Rows").is_some() {
            data_rows(&r["Rows"], out);
        }
    }
}

fn books() -> qbo_sim::SimBuilder {
    small()
        .payments(200)
        .bills(120)
        .sales_receipts(80)
        .journal_entries(40)
}

const JAN: [(&str, &str); 3] = [
    ("start_date", "2023-01-01"),
    ("end_date", "2023-01-31"),
    ("accounting_method", "Accrual"),
];

#[tokio::test]
async fn transaction_list_is_the_records_of_the_period() {
    let api = Api::start(books()).await;
    let a = report(&api, "TransactionList", &JAN).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["Header"]["ReportName"], "TransactionList");
    assert_eq!(v["Header"]["StartPeriod"], "2023-01-01");
    assert_eq!(v["Columns"]["Column"][1]["ColTitle"], "Transaction Type");
    let mut rows = Vec::new();
    data_rows(&v["Rows"], &mut rows);
    let invoices: Vec<_> = rows.iter().filter(|r| r[1] == "Invoice").collect();
    let truth: Vec<serde_json::Value> = api
        .sim
        .truth("Invoice")
        .iter()
        .map(|t| serde_json::from_str(&t.json).unwrap())
        .filter(|j: &serde_json::Value| j["TxnDate"].as_str().unwrap().starts_with("2023-01"))
        .collect();
    assert!(!truth.is_empty());
    assert_eq!(invoices.len(), truth.len());
    let report_total: i64 = invoices.iter().map(|r| cents(&r[5])).sum();
    let truth_total: i64 = truth
        .iter()
        .map(|j| cents(&j["TotalAmt"].to_string()))
        .sum();
    assert_eq!(report_total, truth_total);
    for ty in ["Payment", "Bill", "Sales Receipt", "Journal Entry"] {
        assert!(rows.iter().any(|r| r[1] == ty), "no {ty}");
    }
    assert!(!rows.iter().any(|r| r[1] == "Estimate"));

    // A deleted invoice leaves the report.
    let victim = truth[0]["Id"].as_str().unwrap().to_string();
    api.sim.delete("Invoice", &victim).unwrap();
    let mut after = Vec::new();
    data_rows(
        &report(&api, "TransactionList", &JAN).await.json()["Rows"],
        &mut after,
    );
    assert_eq!(after.len(), rows.len() - 1);
}

#[tokio::test]
async fn the_books_balance_and_empty_periods_keep_their_shape() {
    let api = Api::start(books()).await;
    for method in ["Accrual", "Cash"] {
        let p = [
            ("start_date", "2023-02-01"),
            ("end_date", "2023-02-28"),
            ("accounting_method", method),
        ];
        let bs = report(&api, "BalanceSheet", &p).await.json();
        let top = bs["Rows"]["Row"].as_array().unwrap();
        let total = |i: usize| cents(top[i]["Summary"]["ColData"][1]["value"].as_str().unwrap());
        assert_eq!(
            total(0),
            total(1),
            "{method}: assets = liabilities + equity"
        );
        assert_ne!(total(0), 0);
        let tb = report(&api, "TrialBalance", &p).await.json();
        let last = tb["Rows"]["Row"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        let sum = &last["Summary"]["ColData"];
        assert_eq!(
            sum[1]["value"], sum[2]["value"],
            "{method}: debits = credits"
        );
        let pl = report(&api, "ProfitAndLoss", &p).await.json();
        assert_eq!(pl["Header"]["ReportBasis"], method);
        let net = pl["Rows"]["Row"][3]["Summary"]["ColData"][1]["value"].clone();
        let equity =
            &bs["Rows"]["Row"][1]["Rows"]["Row"][1]["Rows"]["Row"][1]["ColData"][1]["value"];
        assert_eq!(
            &net, equity,
            "{method}: the P&L's net income is the balance sheet's"
        );
    }
    for name in ["GeneralLedger", "AgedReceivables", "AgedPayables"] {
        let a = report(&api, name, &JAN).await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        assert_eq!(a.json()["Header"]["ReportName"], name);
    }
    let ar = report(&api, "AgedReceivables", &JAN).await.json();
    assert!(ar["Rows"]["Row"].as_array().unwrap().len() > 1);

    let empty = [("start_date", "2030-01-01"), ("end_date", "2030-01-31")];
    let tl = report(&api, "TransactionList", &empty).await.json();
    assert_eq!(tl["Rows"], serde_json::json!({}));
    assert_eq!(tl["Header"]["Option"][1]["Value"], "true");
    let pl = report(&api, "ProfitAndLoss", &empty).await.json();
    assert_eq!(
        pl["Rows"]["Row"][3]["Summary"]["ColData"][1]["value"],
        "0.00"
    );

    let bad = report(&api, "NoSuchReport", &JAN).await;
    assert_eq!(bad.status, 400);
    let bad = report(&api, "ProfitAndLoss", &[("start_date", "2023-02-30")]).await;
    assert_eq!(bad.status, 400);
}
