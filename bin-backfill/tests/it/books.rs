//! `reports` and `check-books` through the binary, against qbo-sim and PostgreSQL: reports
//! load, re-load without writes and resume after a stop; check-books agrees after a complete
//! backfill and names the month and type of a removed row, a changed amount and an entity
//! never loaded.

use qbo_sim::{Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

use crate::common::*;

async fn books_sim() -> SimHandle {
    Sim::builder()
        .seed(17)
        .customers(40)
        .items(20)
        .vendors(15)
        .invoices(120)
        .payments(60)
        .bills(50)
        .sales_receipts(30)
        .journal_entries(20)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-03-01 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap()
}

fn report_requests(sim: &SimHandle) -> u64 {
    sim.stats()
        .by_endpoint
        .get("report")
        .map_or(0, |m| m.values().sum())
}

async fn snapshot(c: &raw_sink::deadpool_postgres::Object) -> Vec<Vec<String>> {
    c.query(
        "SELECT report_name, period_start::text, period_end::text, xmin::text, \
                fetched_at_utc::text, payload->'Header'->>'ReportName' \
         FROM raw.qb_reports ORDER BY 1, 2",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (0..6).map(|i| r.get::<_, String>(i)).collect())
    .collect()
}

const RANGE: [&str; 4] = ["--start", "2023-01-01", "--end", "2023-03-31"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_load_resume_and_reload_without_writes() {
    let sim = books_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let two = ["--report", "ProfitAndLoss", "--report", "TransactionList"];
    // Stopped by the request budget after 3 of the 6 report-periods: exit 1, resumable.
    let mut args = vec!["reports"];
    args.extend(RANGE);
    args.extend(two);
    let mut stopped = args.clone();
    stopped.extend(["--max-requests", "3"]);
    let o = run_expect(command(&sim, &url, &stopped), 1).await;
    assert!(text(&o).0.contains("3 left"), "{}", text(&o).0);
    assert_eq!(report_requests(&sim), 3);
    // The next run asks only for the periods still owed.
    let o = run_expect(command(&sim, &url, &args), 0).await;
    assert!(
        text(&o)
            .0
            .contains("3 inserted, 0 updated, 0 unchanged, 3 already done"),
        "{}",
        text(&o).0
    );
    assert_eq!(report_requests(&sim), 6);

    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    let before = snapshot(&client).await;
    assert_eq!(before.len(), 6);
    assert_eq!(before[0][0], "ProfitAndLoss");
    assert_eq!(before[0][5], "ProfitAndLoss");
    assert_eq!(
        (&*before[2][1], &*before[2][2]),
        ("2023-03-01", "2023-03-31")
    );
    let done: i64 = client
        .query_one(
            "SELECT count(*) FROM backfill.report_periods WHERE status = 'done'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 6);

    // Asked again: the same answers, nothing written.
    let mut reload = args.clone();
    reload.push("--reload");
    let o = run_expect(command(&sim, &url, &reload), 0).await;
    assert!(
        text(&o).0.contains("0 inserted, 0 updated, 6 unchanged"),
        "{}",
        text(&o).0
    );
    assert_eq!(report_requests(&sim), 12);
    assert_eq!(snapshot(&client).await, before);

    // Every default report for one quarter.
    let o = run_expect(
        command(
            &sim,
            &url,
            &[
                "reports",
                "--start",
                "2023-01-01",
                "--end",
                "2023-03-31",
                "--period",
                "quarter",
            ],
        ),
        0,
    )
    .await;
    assert!(text(&o).0.contains("7 inserted"), "{}", text(&o).0);
}

async fn backfill(sim: &SimHandle, url: &str, entity: &str) {
    run_expect(
        command(
            sim,
            url,
            &[
                "--entity",
                entity,
                "--start",
                "2000-01-01",
                "--end",
                "2026-01-01",
                "--window",
                "366d",
            ],
        ),
        0,
    )
    .await;
}

async fn check(sim: &SimHandle, url: &str, code: i32) -> String {
    let mut args = vec!["check-books"];
    args.extend(RANGE);
    text(&run_expect(command(sim, url, &args), code).await).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_books_names_what_the_raw_layer_lacks_or_gets_wrong() {
    let sim = books_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    for entity in ["Invoice", "Payment", "SalesReceipt", "JournalEntry"] {
        backfill(&sim, &url, entity).await;
    }
    // Bills were never loaded: the books hold them, the raw layer does not.
    let bills = sim
        .truth("Bill")
        .iter()
        .filter(|t| {
            let v: serde_json::Value = serde_json::from_str(&t.json).unwrap();
            v["TxnDate"].as_str().unwrap().starts_with("2023-")
        })
        .count();
    let out = check(&sim, &url, 1).await;
    assert!(
        out.contains(&format!(
            "the books hold {bills} Bill transactions in 2023 that the raw layer lacks: \
             run `qb-backfill --entity Bill`"
        )),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");

    backfill(&sim, &url, "Bill").await;
    let out = check(&sim, &url, 0).await;
    assert!(
        out.contains("agree with QuickBooks' TransactionList"),
        "{out}"
    );

    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    // One February invoice removed from the raw table.
    let removed = client
        .execute(
            "DELETE FROM raw.qb_invoices WHERE id = (SELECT id FROM raw.qb_invoices \
             WHERE payload->>'TxnDate' LIKE '2023-02-%' ORDER BY id LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let out = check(&sim, &url, 1).await;
    let diffs: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("the raw layer"))
        .collect();
    assert_eq!(diffs.len(), 1, "{out}");
    assert!(
        diffs[0].starts_with("2023-01") || diffs[0].starts_with("2023-02"),
        "{out}"
    );
    assert!(diffs[0].starts_with("2023-02 Invoice (Invoice)"), "{out}");

    // One January payment's amount edited in its raw payload.
    let changed = client
        .execute(
            "UPDATE raw.qb_payments SET payload = jsonb_set(payload, '{TotalAmt}', \
             to_jsonb((payload->>'TotalAmt')::numeric + 1)) \
             WHERE id = (SELECT id FROM raw.qb_payments \
                         WHERE payload->>'TxnDate' LIKE '2023-01-%' ORDER BY id LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let out = check(&sim, &url, 1).await;
    let diffs: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("the raw layer"))
        .collect();
    assert_eq!(diffs.len(), 2, "{out}");
    assert!(diffs[0].starts_with("2023-01 Payment (Payment)"), "{out}");
    assert!(diffs[1].starts_with("2023-02 Invoice (Invoice)"), "{out}");
}
