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

async fn one(c: &raw_sink::deadpool_postgres::Object, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn first_text(c: &raw_sink::deadpool_postgres::Object, sql: &str) -> String {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_books_is_evidence_in_the_ledger_the_report_and_never_more_than_it_compared() {
    let sim = books_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    for entity in ["Invoice", "Payment", "SalesReceipt", "JournalEntry", "Bill"] {
        backfill(&sim, &url, entity).await;
    }
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    let removed = c
        .execute(
            "DELETE FROM raw.qb_invoices WHERE id = (SELECT id FROM raw.qb_invoices \
             WHERE payload->>'TxnDate' LIKE '2023-02-%' ORDER BY id LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);

    // Stopped by the request budget after January: only January is compared and recorded.
    let mut args = vec!["check-books"];
    args.extend(RANGE);
    let mut stopped = args.clone();
    stopped.extend(["--max-requests", "1"]);
    let before = report_requests(&sim);
    let out = text(&run_expect(command(&sim, &url, &stopped), 1).await).0;
    assert!(out.contains("stopped by"), "{out}");
    assert!(out.contains("after 1 of 3 months"), "{out}");
    assert_eq!(report_requests(&sim) - before, 1);
    assert_eq!(
        first_text(
            &c,
            "SELECT status || ' ' || months_compared || ' ' || compared_through::text || ' ' \
             || api_calls FROM backfill.book_checks ORDER BY id DESC LIMIT 1"
        )
        .await,
        "stopped 1 2023-01-31 1"
    );
    assert_eq!(
        one(
            &c,
            "SELECT count(*) FROM backfill.book_check_rows WHERE month <> '2023-01-01'"
        )
        .await,
        0
    );
    assert!(
        one(
            &c,
            "SELECT count(*) FROM backfill.book_check_rows WHERE kind = 'agrees'"
        )
        .await
            > 0
    );
    assert_eq!(
        one(
            &c,
            "SELECT count(*) FROM backfill.book_check_rows WHERE kind <> 'agrees'"
        )
        .await,
        0
    );
    let summary = text(&run_expect(command(&sim, &url, &["report"]), 0).await).0;
    assert!(
        summary.contains(
            "stopped before the end of its range · 1 of 3 months compared \
             (2023-01-01..2023-01-31); 2023-02-01..2023-03-31 not compared"
        ),
        "{summary}"
    );

    // The whole range: February's missing invoice, recorded, reported in md and json.
    let before = report_requests(&sim);
    run_expect(command(&sim, &url, &args), 1).await;
    let calls = report_requests(&sim) - before;
    assert_eq!(calls, 3);
    assert_eq!(
        first_text(
            &c,
            "SELECT status || ' ' || months_compared || ' ' || compared_through::text || ' ' \
             || api_calls FROM backfill.book_checks ORDER BY id DESC LIMIT 1"
        )
        .await,
        format!("differs 3 2023-03-31 {calls}")
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let summary = text(&run_expect(command(&sim, &url, &["report", "--out", out_dir]), 0).await).0;
    assert!(
        summary.contains("the raw layer differs from the books"),
        "{summary}"
    );
    assert!(!summary.contains("not compared"), "{summary}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let checks = json["books_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{json}");
    let check = &checks[0];
    assert_eq!(check["status"], "differs");
    assert_eq!(check["months_compared"], 3);
    assert_eq!(check["not_compared"], serde_json::Value::Null);
    assert_eq!(check["stale"], false);
    let diffs = check["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{check}");
    assert_eq!(diffs[0]["month"], "2023-02");
    assert_eq!(diffs[0]["entity"], "Invoice");
    let raw_feb = one(
        &c,
        "SELECT count(*) FROM raw.qb_invoices WHERE payload->>'TxnDate' LIKE '2023-02-%' \
         AND deleted_at_utc IS NULL",
    )
    .await;
    assert_eq!(diffs[0]["raw_rows"], raw_feb);
    assert_eq!(diffs[0]["books_rows"], raw_feb + 1);
    let agreed = one(
        &c,
        "SELECT count(*) FROM backfill.book_check_rows r JOIN backfill.book_checks k \
         ON k.id = r.check_id WHERE r.kind = 'agrees' AND k.id = (SELECT max(id) FROM backfill.book_checks)",
    )
    .await;
    assert_eq!(check["agreed"], agreed);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("## Books check"), "{md}");
    assert!(
        md.contains(&format!(
            "| 2023-02 | Invoice | Invoice | {} | ",
            raw_feb + 1
        )),
        "{md}"
    );

    // A forced re-load brings the invoice back: the check is now older than a load, stale.
    run_expect(
        command(
            &sim,
            &url,
            &[
                "--entity",
                "Invoice",
                "--start",
                "2000-01-01",
                "--end",
                "2026-01-01",
                "--window",
                "366d",
                "--force",
            ],
        ),
        0,
    )
    .await;
    let summary = text(&run_expect(command(&sim, &url, &["report"]), 0).await).0;
    assert!(summary.contains("STALE: a load ended at"), "{summary}");
    // Checked again: agrees, not stale.
    let out = text(&run_expect(command(&sim, &url, &args), 0).await).0;
    assert!(
        out.contains("agree with QuickBooks' TransactionList"),
        "{out}"
    );
    let summary = text(&run_expect(command(&sim, &url, &["report"]), 0).await).0;
    assert!(
        summary.contains("every month compared agrees with QuickBooks' TransactionList"),
        "{summary}"
    );
    assert!(!summary.contains("STALE"), "{summary}");
}

/// `qb-backfill ARGS` with the refresh token kept in `file` instead of the database.
fn with_file_store(
    sim: &SimHandle,
    url: &str,
    file: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let store = format!("file:{}", file.display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--token-store", &store]);
    command(sim, url, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_check_books_use_the_pipelines_token_store_budget_share_and_ledger() {
    let sim = books_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.json");
    let mut args = vec!["reports"];
    args.extend(RANGE);
    args.extend(["--report", "ProfitAndLoss", "--workers", "2"]);

    // The token lives in the file; this process took half of the realm's budget.
    run_expect(with_file_store(&sim, &url, &file, &args), 0).await;
    assert!(file.exists());
    assert_eq!(
        one(&c, "SELECT count(*) FROM backfill.oauth_tokens").await,
        0
    );
    assert_eq!(
        first_text(
            &c,
            "SELECT per_minute || '/' || max_in_flight || ' ' || (stopped_at IS NOT NULL) \
             FROM backfill.workers WHERE pipeline = 'reports'"
        )
        .await,
        "250/5 true"
    );
    // Every request is in the ledger.
    let calls = report_requests(&sim);
    assert_eq!(calls, 3);
    assert_eq!(
        first_text(
            &c,
            "SELECT status || ' ' || api_calls || ' ' || periods_loaded FROM backfill.report_runs"
        )
        .await,
        "succeeded 3 3"
    );

    // The monthly budget counts those calls: nothing left, nothing asked.
    let mut again = args.clone();
    again.extend(["--reload", "--monthly-requests", "3"]);
    let out = text(&run_expect(with_file_store(&sim, &url, &file, &again), 1).await).0;
    assert!(out.contains("--monthly-requests"), "{out}");
    assert_eq!(report_requests(&sim), calls);
    // One call left: check-books compares January only, and its call is counted too.
    let mut check = vec!["check-books"];
    check.extend(RANGE);
    check.extend(["--monthly-requests", "4"]);
    let out = text(&run_expect(with_file_store(&sim, &url, &file, &check), 1).await).0;
    assert!(out.contains("after 1 of 3 months"), "{out}");
    assert_eq!(report_requests(&sim), calls + 1);
    let out = text(&run_expect(with_file_store(&sim, &url, &file, &check), 1).await).0;
    assert!(out.contains("--monthly-requests"), "{out}");
    assert_eq!(report_requests(&sim), calls + 1);

    // Another process holds the realm's whole budget: reports waits for it, then loads.
    c.execute(
        "INSERT INTO backfill.workers (id, pipeline, realm_id, per_minute, max_in_flight, \
         lease_expires_at) VALUES ('other-host:1', 'qb_invoices_backfill', $1, 500, 10, \
         now() + interval '1 hour')",
        &[&sim.realm_id()],
    )
    .await
    .unwrap();
    let mut reload = args.clone();
    reload.push("--reload");
    let mut cmd = with_file_store(&sim, &url, &file, &reload);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        report_requests(&sim),
        calls + 1,
        "asked while the budget was held"
    );
    c.execute(
        "UPDATE backfill.workers SET stopped_at = now() WHERE id = 'other-host:1'",
        &[],
    )
    .await
    .unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(err.contains("budget_wait"), "{err}");
    assert_eq!(report_requests(&sim), calls + 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_reports_resume_with_the_periods_still_owed() {
    let sim = books_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let sink = db.sink().await;
    sink.migrate().await.unwrap();
    let c = sink.pool().get().await.unwrap();
    sim.set_latency(
        std::time::Duration::from_millis(400),
        std::time::Duration::ZERO,
    );
    let mut args = vec!["reports"];
    args.extend(RANGE);
    args.extend(["--report", "ProfitAndLoss", "--report", "BalanceSheet"]);
    let mut cmd = command(&sim, &url, &args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while one(
        &c,
        "SELECT count(*) FROM backfill.report_periods WHERE status = 'done'",
    )
    .await
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "no period loaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(143), "{out}\n{err}");
    assert!(out.contains("stopped by"), "{out}");
    let done = one(
        &c,
        "SELECT count(*) FROM backfill.report_periods WHERE status = 'done'",
    )
    .await;
    assert!((2..6).contains(&done), "{done} done");
    assert_eq!(
        first_text(&c, "SELECT status FROM backfill.report_runs").await,
        "stopped"
    );
    sim.set_latency(std::time::Duration::ZERO, std::time::Duration::ZERO);
    let o = run_expect(command(&sim, &url, &args), 0).await;
    assert!(
        text(&o).0.contains(&format!(
            "{} inserted, 0 updated, 0 unchanged, {done} already done",
            6 - done
        )),
        "{}",
        text(&o).0
    );
    assert_eq!(report_requests(&sim), 6);
}
