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
        .invoices(20_000)
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
    // Deletions CDC will no longer report: before a 31-day jump of QBO's clock.
    let truth = sim.truth("Invoice");
    let deleted: Vec<String> = [4_000, 4_001, 4_003, 15_000]
        .iter()
        .map(|&i| truth[i].id.clone())
        .collect();
    for id in &deleted {
        sim.delete("Invoice", id).unwrap();
    }
    sim.advance_clock(Duration::from_secs(31 * 86_400));
    run_expect(command(&sim, &url, &["--entity", "Invoice", "sync"]), 7).await;

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
    assert_eq!(tombstoned, 4);
    // A full re-read pages 20,000 invoices: at least 20 calls.
    assert!(out.contains("a full re-read: at least 20"), "{out}");
    assert!(calls < 20, "reconcile spent {calls} calls");
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
