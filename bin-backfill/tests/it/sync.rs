//! `sync` and `reconcile` end to end (issue 14): the binary against qbo-sim and PostgreSQL.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use qbo_sim::{Sim, SimHandle};
use raw_sink::Sink;
use raw_sink::testing::TestDb;
use time::macros::datetime;

use crate::common::*;

const RANGE: [&str; 4] = ["--start", "2023-01-01", "--end", "2023-01-11"];

async fn backfill(sim: &SimHandle, url: &str, entity: &str) {
    let mut args = vec!["--entity", entity];
    args.extend(RANGE);
    run_expect(command(sim, url, &args), 0).await;
}

/// id → (payload as JSON, tombstoned) of a raw table.
async fn raw_rows(sink: &Sink, table: &str) -> BTreeMap<String, (serde_json::Value, bool)> {
    let c = sink.pool().get().await.unwrap();
    c.query(
        &format!("SELECT id, payload::text, deleted_at_utc IS NOT NULL FROM {table}"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let text: String = r.get(1);
        (
            r.get::<_, String>(0),
            (serde_json::from_str(&text).unwrap(), r.get(2)),
        )
    })
    .collect()
}

/// The raw table's current rows equal the simulator's truth, payload for payload; its
/// tombstones are exactly `deleted`.
async fn assert_equals_truth(
    sink: &Sink,
    sim: &SimHandle,
    entity: &str,
    table: &str,
    deleted: &[String],
) {
    let rows = raw_rows(sink, table).await;
    let current: BTreeMap<&String, &serde_json::Value> = rows
        .iter()
        .filter(|(_, (_, dead))| !dead)
        .map(|(id, (p, _))| (id, p))
        .collect();
    let truth = sim.truth(entity);
    let want: BTreeMap<String, serde_json::Value> = truth
        .iter()
        .map(|t| (t.id.clone(), serde_json::from_str(&t.json).unwrap()))
        .collect();
    assert_eq!(current.len(), want.len(), "{entity}: current rows");
    for (id, payload) in &want {
        assert_eq!(current.get(id), Some(&payload), "{entity} {id}");
    }
    let mut tombstones: Vec<&String> = rows
        .iter()
        .filter(|(_, (_, dead))| *dead)
        .map(|(id, _)| id)
        .collect();
    tombstones.sort();
    let mut expected: Vec<&String> = deleted.iter().collect();
    expected.sort();
    assert_eq!(tombstones, expected, "{entity}: tombstones");
}

async fn scalar(sink: &Sink, sql: &str) -> i64 {
    let c = sink.pool().get().await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// (id, xmin) of every row: a write of any kind changes a row's xmin.
async fn versions(sink: &Sink, table: &str) -> Vec<(String, String)> {
    let c = sink.pool().get().await.unwrap();
    c.query(
        &format!("SELECT id, xmin::text FROM {table} ORDER BY id"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_makes_the_raw_layer_equal_to_qbo_and_a_second_sync_writes_nothing() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    backfill(&sim, &url, "Customer").await;
    let sink = db.sink().await;

    // After the backfill: new, changed and hard-deleted invoices; changed and inactivated
    // customers (a name list is never hard-deleted).
    let invoices = sim.truth("Invoice");
    for _ in 0..3 {
        sim.create("Invoice", None).unwrap();
    }
    for t in &invoices[10..14] {
        sim.update("Invoice", &t.id).unwrap();
    }
    let deleted: Vec<String> = invoices[20..25].iter().map(|t| t.id.clone()).collect();
    for id in &deleted {
        sim.delete("Invoice", id).unwrap();
    }
    // Changed, then deleted: CDC may list it either way; it must end tombstoned.
    sim.update("Invoice", &invoices[30].id).unwrap();
    sim.delete("Invoice", &invoices[30].id).unwrap();
    let mut deleted = deleted;
    deleted.push(invoices[30].id.clone());
    let customers = sim.truth("Customer");
    sim.update("Customer", &customers[0].id).unwrap();
    sim.delete("Customer", &customers[1].id).unwrap();

    let o = run_expect(command(&sim, &url, &["sync", "--all"]), 0).await;
    let (out, _) = text(&o);
    assert!(out.contains("Invoice sync"), "{out}");
    assert!(out.contains("Customer sync"), "{out}");
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
    assert_equals_truth(&sink, &sim, "Customer", "raw.qb_customers", &[]).await;
    let c = sink.pool().get().await.unwrap();
    let row = c
        .query_one(
            "SELECT inserted, updated, tombstoned, api_calls, status, changes_mark_after IS NOT NULL \
             FROM backfill.syncs WHERE pipeline = 'qb_invoices_backfill'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (3, 4, 6)
    );
    assert!(row.get::<_, i64>(3) >= 3, "calls are counted");
    assert_eq!(row.get::<_, String>(4), "succeeded");
    assert!(row.get::<_, bool>(5));
    // Deleted stubs are kept as CDC sent them.
    let stubs = scalar(
        &sink,
        "SELECT count(*) FROM raw.qb_invoices WHERE deleted_stub->>'status' = 'Deleted'",
    )
    .await;
    assert_eq!(stubs, 6);
    drop(c);

    // A second sync right after writes nothing.
    let inv_before = versions(&sink, "raw.qb_invoices").await;
    let cust_before = versions(&sink, "raw.qb_customers").await;
    run_expect(command(&sim, &url, &["sync", "--all"]), 0).await;
    assert_eq!(versions(&sink, "raw.qb_invoices").await, inv_before);
    assert_eq!(versions(&sink, "raw.qb_customers").await, cust_before);
    let wrote = scalar(
        &sink,
        "SELECT count(*) FROM (SELECT * FROM backfill.syncs ORDER BY id DESC LIMIT 2) s \
         WHERE inserted + updated + tombstoned > 0 OR status <> 'succeeded'",
    )
    .await;
    assert_eq!(wrote, 0);

    // The report: tombstones per table, the latest sync per entity with its lag and calls.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let o = run_expect(command(&sim, &url, &["report", "--out", out_dir]), 0).await;
    let (summary, _) = text(&o);
    assert!(summary.contains("syncs (latest per entity):"), "{summary}");
    assert!(summary.contains("raw.qb_invoices 6"), "{summary}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let inv = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "raw.qb_invoices")
        .unwrap();
    assert_eq!(inv["tombstones"], 6);
    let syncs = json["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), 2);
    let s = syncs
        .iter()
        .find(|s| s["pipeline"] == "qb_invoices_backfill")
        .unwrap();
    assert_eq!(s["status"], "succeeded");
    assert!(s["lag_seconds"].as_i64().unwrap() < 600, "{s}");
    assert!(s["total_api_calls"].as_u64().unwrap() > s["api_calls"].as_u64().unwrap());
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("## Syncs (latest per entity)"), "{md}");

    // A gap longer than CDC's 30 days: refused in one line, nothing written, exit 7.
    sim.advance_clock(Duration::from_secs(31 * 86_400));
    let o = run_expect(command(&sim, &url, &["--entity", "Invoice", "sync"]), 7).await;
    let (_, err) = text(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("reconcile"), "{err}");
    assert_eq!(versions(&sink, "raw.qb_invoices").await, inv_before);
    assert_eq!(
        scalar(
            &sink,
            "SELECT count(*) FROM backfill.syncs WHERE status = 'refused'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_after_a_gap_finds_every_deletion_for_far_fewer_calls_than_a_re_read() {
    let sim = Sim::builder()
        .seed(9)
        .invoices(50_000)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap();
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    // Deletions CDC will no longer report (before a 31-day jump of QBO's clock): two close
    // together, one far away.
    let deleted = delete_some(&sim, "Invoice", &[4_000, 4_003, 41_000]);
    sim.advance_clock(Duration::from_secs(31 * 86_400));
    run_expect(command(&sim, &url, &["--entity", "Invoice", "sync"]), 7).await;

    sim.reset_stats();
    let o = run_expect(
        command(&sim, &url, &["--entity", "Invoice", "reconcile"]),
        0,
    )
    .await;
    let (out, _) = text(&o);
    println!("{out}");
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
    let c = sink.pool().get().await.unwrap();
    let row = c
        .query_one(
            "SELECT tombstoned, api_calls FROM backfill.syncs WHERE kind = 'reconcile'",
            &[],
        )
        .await
        .unwrap();
    let (tombstoned, calls): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(tombstoned, 3);
    let served = sim.stats();
    let counted = served.count_queries;
    let pages = served.queries;
    println!(
        "reconcile: {calls} calls ({counted} COUNTs, {pages} pages and reads); a full re-read: 50 pages"
    );
    assert_eq!(i64::try_from(counted + pages).unwrap(), calls);
    // A full re-read pages 50,000 invoices: at least 50 calls. The cost model: one COUNT,
    // then about log2(50) COUNTs per deletion far from the others, one page per differing
    // range of at most 1,000 rows, one read by Id.
    assert!(out.contains("a full re-read: at least 50"), "{out}");
    assert!(calls <= 25, "reconcile spent {calls} calls");
    drop(c);
    // The marks moved: sync works again, and writes nothing.
    let before = versions(&sink, "raw.qb_invoices").await;
    run_expect(command(&sim, &url, &["--entity", "Invoice", "sync"]), 0).await;
    assert_eq!(versions(&sink, "raw.qb_invoices").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_sync_then_a_re_run_is_exact() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    let truth = sim.truth("Invoice");
    for t in &truth[..400] {
        sim.update("Invoice", &t.id).unwrap();
    }
    let deleted: Vec<String> = truth[450..453].iter().map(|t| t.id.clone()).collect();
    for id in &deleted {
        sim.delete("Invoice", id).unwrap();
    }
    sim.set_latency(Duration::from_millis(40), Duration::ZERO);
    let mut c = command(
        &sim,
        &url,
        &["--entity", "Invoice", "--page-size", "10", "sync"],
    );
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn");
    let mut child = c.spawn().unwrap();
    let started = Instant::now();
    let synced = "SELECT count(*) FROM raw.qb_invoices WHERE ingested_at_utc > \
                  (SELECT max(finished_at) FROM backfill.runs)";
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if scalar(&sink, synced).await >= 30 {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "the sync finished before it could be killed: {:?}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(scalar(&sink, synced).await < 400, "killed too late");
    assert_eq!(
        scalar(&sink, "SELECT count(*) FROM backfill.sync_marks").await,
        0,
        "marks move only with a finished sync"
    );
    sim.set_latency(Duration::ZERO, Duration::ZERO);
    run_expect(command(&sim, &url, &["--entity", "Invoice", "sync"]), 0).await;
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
    assert_eq!(
        scalar(
            &sink,
            "SELECT count(*) FROM backfill.syncs WHERE status = 'interrupted'"
        )
        .await,
        1
    );
}

/// Invoices, payments and bills over the ten days of [`RANGE`].
async fn transactions_sim(invoices: usize) -> SimHandle {
    Sim::builder()
        .seed(12)
        .customers(40)
        .items(20)
        .vendors(20)
        .invoices(invoices)
        .payments(200)
        .bills(150)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap()
}

/// Hard-deletes the records of `entity` at `indexes` (of its truth, in id order); their ids.
fn delete_some(sim: &SimHandle, entity: &str, indexes: &[usize]) -> Vec<String> {
    let truth = sim.truth(entity);
    let ids: Vec<String> = indexes.iter().map(|&i| truth[i].id.clone()).collect();
    for id in &ids {
        sim.delete(entity, id).unwrap();
    }
    ids
}

/// The CDC requests the simulator answered since its stats were reset.
fn cdc_requests(sim: &SimHandle) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.endpoint == "cdc")
        .map(|r| r.query.unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_all_asks_cdc_once_for_every_entity() {
    let sim = transactions_sim(300).await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    for e in ["Invoice", "Payment", "Bill"] {
        backfill(&sim, &url, e).await;
    }
    let sink = db.sink().await;
    let mut deleted = BTreeMap::new();
    for (e, at) in [
        ("Invoice", [3usize, 50, 200]),
        ("Payment", [7, 8, 120]),
        ("Bill", [0, 60, 149]),
    ] {
        deleted.insert(e, delete_some(&sim, e, &at));
        let truth = sim.truth(e);
        sim.update(e, &truth[10].id).unwrap();
    }
    sim.reset_stats();

    let o = run_expect(command(&sim, &url, &["sync", "--all"]), 0).await;
    let (out, _) = text(&o);
    println!("{out}");
    let cdc = cdc_requests(&sim);
    assert_eq!(cdc.len(), 1, "one CDC call for the three entities: {cdc:?}");
    for e in ["Invoice", "Payment", "Bill"] {
        assert!(cdc[0].contains(e), "{cdc:?}");
    }
    // The deletions confirmed by one read by Id per entity.
    let reads = sim
        .requests()
        .into_iter()
        .filter(|r| r.query.as_deref().is_some_and(|q| q.contains(" IN (")))
        .count();
    assert_eq!(reads, 3);
    for (e, table) in [
        ("Invoice", "raw.qb_invoices"),
        ("Payment", "raw.qb_payments"),
        ("Bill", "raw.qb_bills"),
    ] {
        assert_equals_truth(&sink, &sim, e, table, &deleted[e]).await;
    }
    // Every call is on a ledger row: their sum is what the simulator answered.
    let api = sim
        .requests()
        .into_iter()
        .filter(|r| matches!(r.endpoint.as_str(), "query" | "cdc"))
        .count();
    let recorded = scalar(&sink, "SELECT sum(api_calls)::bigint FROM backfill.syncs").await;
    assert_eq!(recorded, i64::try_from(api).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_cdc_answer_over_several_entities_loses_no_deletion() {
    let sim = transactions_sim(1_300).await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    for e in ["Invoice", "Payment", "Bill"] {
        backfill(&sim, &url, e).await;
    }
    let sink = db.sink().await;
    // More changes than one CDC answer holds (1,000 objects for all entities together),
    // spread over a few seconds of QBO's clock.
    let invoices = sim.truth("Invoice");
    for (i, t) in invoices[..1_150].iter().enumerate() {
        if i % 200 == 0 {
            sim.advance_clock(Duration::from_secs(1));
        }
        sim.update("Invoice", &t.id).unwrap();
    }
    let mut deleted = BTreeMap::new();
    deleted.insert("Invoice", delete_some(&sim, "Invoice", &[1_200, 1_201]));
    deleted.insert("Payment", delete_some(&sim, "Payment", &[5, 150]));
    deleted.insert("Bill", delete_some(&sim, "Bill", &[1, 2, 100]));
    sim.reset_stats();

    run_expect(command(&sim, &url, &["sync", "--all"]), 0).await;
    let cdc = cdc_requests(&sim);
    println!("{cdc:#?}");
    assert!(cdc.len() >= 2, "the capped answer is followed up: {cdc:?}");
    for (e, table) in [
        ("Invoice", "raw.qb_invoices"),
        ("Payment", "raw.qb_payments"),
        ("Bill", "raw.qb_bills"),
    ] {
        assert_equals_truth(&sink, &sim, e, table, &deleted[e]).await;
    }
}

/// Sends `kill -SIG` to the process.
fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// Waits until `sql` counts at least `n`, failing if the child ends first.
async fn wait_until(sink: &Sink, sql: &str, n: i64, child: &mut std::process::Child) {
    let started = Instant::now();
    loop {
        if scalar(sink, sql).await >= n {
            return;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("the command finished before it could be signalled");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the signalled child: its exit code and stderr, and how long it took.
fn ended(child: std::process::Child) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        t.elapsed(),
    )
}

/// The `LastUpdatedTime` of a truth record, in Unix seconds.
fn updated_unix(t: &qbo_sim::TruthRecord) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&t.json).unwrap();
    let text = v["MetaData"]["LastUpdatedTime"].as_str().unwrap();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_sync_stops_it_cleanly_then_a_re_run_is_exact() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    let truth = sim.truth("Invoice");
    for (i, t) in truth[..400].iter().enumerate() {
        if i % 50 == 0 {
            sim.advance_clock(Duration::from_secs(1));
        }
        sim.update("Invoice", &t.id).unwrap();
    }
    let deleted = delete_some(&sim, "Invoice", &[450, 451, 452]);
    sim.set_latency(Duration::from_millis(40), Duration::ZERO);
    let mut c = command(
        &sim,
        &url,
        &["--entity", "Invoice", "--page-size", "10", "sync"],
    );
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let synced = "SELECT count(*) FROM raw.qb_invoices WHERE ingested_at_utc > \
                  (SELECT max(finished_at) FROM backfill.runs)";
    wait_until(&sink, synced, 60, &mut child).await;
    signal(&child, "TERM");
    let (code, stderr, took) = ended(child);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(scalar(&sink, synced).await < 400, "signalled too late");

    // The ledger says interrupted; nothing is left running.
    let c = sink.pool().get().await.unwrap();
    let row = c
        .query_one(
            "SELECT status, error, tombstoned, api_calls FROM backfill.syncs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "interrupted");
    assert!(row.get::<_, String>(1).contains("SIGTERM"));
    assert_eq!(row.get::<_, i64>(2), 3, "the CDC pass ran before the stop");
    assert!(row.get::<_, i64>(3) > 3);
    // The marks moved no further than what was applied: every change older than the changes
    // mark is in the raw layer as QBO has it now.
    let mark: i64 = c
        .query_one(
            "SELECT extract(epoch FROM changes_mark)::bigint FROM backfill.sync_marks",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(c);
    let rows = raw_rows(&sink, "raw.qb_invoices").await;
    let now = sim.truth("Invoice");
    let older: Vec<_> = now.iter().filter(|t| updated_unix(t) < mark).collect();
    assert!(older.len() > 100, "the mark moved to what was applied");
    assert!(
        older.len() < now.len(),
        "the mark moved past what was applied"
    );
    for t in older {
        let want: serde_json::Value = serde_json::from_str(&t.json).unwrap();
        assert_eq!(rows.get(&t.id).map(|r| &r.0), Some(&want), "{}", t.id);
    }

    sim.set_latency(Duration::ZERO, Duration::ZERO);
    run_expect(command(&sim, &url, &["--entity", "Invoice", "sync"]), 0).await;
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
    assert_eq!(
        scalar(
            &sink,
            "SELECT count(*) FROM backfill.syncs WHERE status <> 'succeeded'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_reconcile_stops_it_cleanly_then_a_re_run_is_exact() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    let deleted = delete_some(&sim, "Invoice", &[20, 300]);
    sim.advance_clock(Duration::from_secs(31 * 86_400));
    sim.set_latency(Duration::from_millis(1_500), Duration::ZERO);
    let mut c = command(&sim, &url, &["--entity", "Invoice", "reconcile"]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    wait_until(
        &sink,
        "SELECT count(*) FROM backfill.syncs WHERE kind = 'reconcile'",
        1,
        &mut child,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "INT");
    let (code, stderr, took) = ended(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(1),
        "a call in flight is abandoned: {took:?}"
    );
    let c = sink.pool().get().await.unwrap();
    let row = c
        .query_one("SELECT status, error FROM backfill.syncs", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "interrupted");
    assert!(row.get::<_, String>(1).contains("SIGINT"));
    drop(c);

    sim.set_latency(Duration::ZERO, Duration::ZERO);
    run_expect(
        command(&sim, &url, &["--entity", "Invoice", "reconcile"]),
        0,
    )
    .await;
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
}

/// API requests (query and CDC) the simulator answered since its stats were reset.
fn api_requests(sim: &SimHandle) -> i64 {
    let n = sim
        .requests()
        .into_iter()
        .filter(|r| matches!(r.endpoint.as_str(), "query" | "cdc"))
        .count();
    i64::try_from(n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_budgets_stop_a_sync_cleanly_and_re_runs_finish_it_exactly() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    let truth = sim.truth("Invoice");
    for (i, t) in truth[..360].iter().enumerate() {
        if i % 40 == 0 {
            sim.advance_clock(Duration::from_secs(2));
        }
        sim.update("Invoice", &t.id).unwrap();
    }
    let deleted = delete_some(&sim, "Invoice", &[400, 401]);
    let sync = |budget: &[&str]| {
        let mut args = vec!["--entity", "Invoice", "--page-size", "20"];
        args.extend_from_slice(budget);
        args.extend(["sync", "--overlap", "1s"]);
        command(&sim, &url, &args)
    };

    // --max-requests: each run stops cleanly after its calls (exit 1), moving the marks to
    // what it applied; re-runs with the same budget finish the sync.
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 10, "the budgeted syncs make no progress");
        sim.reset_stats();
        let o = output(sync(&["--max-requests", "8"])).await;
        let (_, err) = text(&o);
        let calls = scalar(
            &sink,
            "SELECT api_calls FROM backfill.syncs ORDER BY id DESC LIMIT 1",
        )
        .await;
        assert_eq!(calls, api_requests(&sim), "the ledger counts every call");
        assert!(calls <= 8, "{calls} calls over the budget");
        match o.status.code() {
            Some(0) => break,
            Some(1) => {
                assert!(err.contains("budget"), "{err}");
                assert_eq!(calls, 8);
                let status: String = sink
                    .pool()
                    .get()
                    .await
                    .unwrap()
                    .query_one(
                        "SELECT status FROM backfill.syncs ORDER BY id DESC LIMIT 1",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(status, "interrupted");
            }
            other => panic!("exit {other:?}: {err}"),
        }
    }
    assert!(runs >= 3, "the budget stopped {} runs", runs - 1);
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;

    // --monthly-requests: the app's calls this month are the backfill's and the syncs'; a
    // sync gets only what is left.
    for t in &truth[..100] {
        sim.update("Invoice", &t.id).unwrap();
    }
    let used = scalar(
        &sink,
        "SELECT (SELECT sum(api_calls) FROM backfill.runs)::bigint \
         + (SELECT sum(api_calls) FROM backfill.syncs)::bigint",
    )
    .await;
    let quota = (used + 3).to_string();
    sim.reset_stats();
    let o = run_expect(sync(&["--monthly-requests", &quota]), 1).await;
    assert!(text(&o).1.contains("budget"), "{}", text(&o).1);
    assert_eq!(api_requests(&sim), 3);
    sim.reset_stats();
    run_expect(sync(&["--monthly-requests", &quota]), 1).await;
    assert_eq!(api_requests(&sim), 0, "nothing left this month");
    let now_used = scalar(
        &sink,
        "SELECT (SELECT sum(api_calls) FROM backfill.runs)::bigint \
         + (SELECT sum(api_calls) FROM backfill.syncs)::bigint",
    )
    .await;
    assert_eq!(now_used, used + 3);
    // The report shows the latest sync as stopped, with its lag and every sync's calls.
    let dir = tempfile::tempdir().unwrap();
    run_expect(
        command(
            &sim,
            &url,
            &["report", "--out", dir.path().to_str().unwrap()],
        ),
        0,
    )
    .await;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let s = &json["syncs"][0];
    assert_eq!(s["status"], "interrupted", "{s}");
    assert_eq!(s["api_calls"], 0, "{s}");
    let all_syncs = scalar(&sink, "SELECT sum(api_calls)::bigint FROM backfill.syncs").await;
    assert_eq!(s["total_api_calls"].as_i64(), Some(all_syncs), "{s}");
    assert!(s["lag_seconds"].as_i64().is_some(), "{s}");
    run_expect(sync(&[]), 0).await;
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_budget_stops_a_reconcile_cleanly_and_a_re_run_finishes_it() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    let deleted = delete_some(&sim, "Invoice", &[20, 300]);
    sim.reset_stats();
    let o = run_expect(
        command(
            &sim,
            &url,
            &["--entity", "Invoice", "--max-requests", "2", "reconcile"],
        ),
        1,
    )
    .await;
    assert!(text(&o).1.contains("budget"), "{}", text(&o).1);
    assert_eq!(api_requests(&sim), 2);
    assert_eq!(
        scalar(
            &sink,
            "SELECT count(*) FROM backfill.syncs WHERE status = 'interrupted' AND api_calls = 2"
        )
        .await,
        1
    );
    run_expect(
        command(&sim, &url, &["--entity", "Invoice", "reconcile"]),
        0,
    )
    .await;
    assert_equals_truth(&sink, &sim, "Invoice", "raw.qb_invoices", &deleted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_takes_its_share_of_the_realms_budget_beside_other_workers() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    // Another process of the realm (a backfill, say) holds the realm's whole budget for 4 s.
    let c = sink.pool().get().await.unwrap();
    c.execute(
        "INSERT INTO backfill.workers (id, pipeline, realm_id, per_minute, max_in_flight, \
         lease_expires_at) VALUES ('other-process', 'qb_invoices_backfill', $1, 400, 8, \
         now() + interval '4 seconds')",
        &[&sim.realm_id()],
    )
    .await
    .unwrap();
    let begun = Instant::now();
    sim.reset_stats();
    run_expect(
        command(
            &sim,
            &url,
            &[
                "--entity",
                "Invoice",
                "--requests-per-min",
                "400",
                "--max-in-flight",
                "8",
                "sync",
            ],
        ),
        0,
    )
    .await;
    // It waited for the budget instead of calling QBO beside the other process's full share.
    assert!(
        begun.elapsed() >= Duration::from_secs(3),
        "the sync ran beside a worker holding the realm's whole budget ({:?})",
        begun.elapsed()
    );
    let row = c
        .query_one(
            "SELECT per_minute, max_in_flight, stopped_at IS NOT NULL FROM backfill.workers \
             WHERE pipeline = 'sync'",
            &[],
        )
        .await
        .unwrap();
    let (per_minute, in_flight, stopped): (i32, i32, bool) = (row.get(0), row.get(1), row.get(2));
    assert!(per_minute > 0 && per_minute <= 400, "{per_minute}");
    assert!(in_flight > 0 && in_flight <= 8, "{in_flight}");
    assert!(stopped, "the sync's worker is stopped when it ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_with_the_month_spent_does_not_wait_for_a_share_of_the_realms_budget() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    backfill(&sim, &url, "Invoice").await;
    let sink = db.sink().await;
    // Another process holds the realm's whole budget for 20 s; the backfill's calls already
    // spent a monthly budget of 1.
    let c = sink.pool().get().await.unwrap();
    c.execute(
        "INSERT INTO backfill.workers (id, pipeline, realm_id, per_minute, max_in_flight, \
         lease_expires_at) VALUES ('other-process', 'qb_invoices_backfill', $1, 400, 8, \
         now() + interval '20 seconds')",
        &[&sim.realm_id()],
    )
    .await
    .unwrap();
    let begun = Instant::now();
    sim.reset_stats();
    let args = [
        "--entity",
        "Invoice",
        "--requests-per-min",
        "400",
        "--max-in-flight",
        "8",
        "--monthly-requests",
        "1",
        "sync",
    ];
    run_expect(command(&sim, &url, &args), 1).await;
    assert!(
        begun.elapsed() < Duration::from_secs(15),
        "a sync that may ask nothing waited for a share ({:?})",
        begun.elapsed()
    );
    assert_eq!(api_requests(&sim), 0);
    let workers = scalar(
        &sink,
        "SELECT count(*) FROM backfill.workers WHERE pipeline = 'sync'",
    )
    .await;
    assert_eq!(
        workers, 0,
        "no worker registered for a sync that asks nothing"
    );
}
