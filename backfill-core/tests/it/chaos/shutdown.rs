//! A stop request mid-run: no new request, windows released, run `interrupted`, exit status
//! 143/130; the next run resumes without re-requesting what was done.

use std::time::Duration;

use backfill_core::{Entity, ExitStatus, Invoice, Shutdown, StopReason};
use qbo_sim::{ScriptedFault, Sim};
use raw_sink::RunStatus;
use time::macros::datetime;

use super::{assert_ledger_settled, table_hash};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_releases_everything_and_the_next_run_resumes() {
    let builder = || {
        Sim::builder()
            .seed(51)
            .invoices(500)
            .span(
                datetime!(2023-07-01 00:00 UTC),
                datetime!(2023-07-11 00:00 UTC),
            )
            .requests_per_min(0)
            .max_concurrency(0)
    };
    let sim = sim(builder().latency(Duration::from_millis(25), Duration::ZERO)).await;
    let (_db, sink) = db().await;
    let mut cfg = config("2023-07-01", "2023-07-11", "stop");
    cfg.page_size = 10;
    cfg.concurrency = 2;
    // One page in memory at a time: a window's pages are requested one after the other, so a
    // window is still mid-paging when the requests start hanging (with the default budget
    // every page of a window is requested at once and it finishes before the stop).
    cfg.memory_budget = 1;
    let shutdown = Shutdown::new();
    cfg.shutdown = shutdown.clone();
    let watcher = {
        let sink = sink.clone();
        let shutdown = shutdown.clone();
        let sim = sim.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let c = sink.pool().get().await.unwrap();
                let (done, running): (i64, i64) = {
                    let r = c
                        .query_one(
                            "SELECT count(*) FILTER (WHERE status = 'done'), \
                                    count(*) FILTER (WHERE status = 'running') \
                             FROM backfill.windows",
                            &[],
                        )
                        .await
                        .unwrap();
                    (r.get(0), r.get(1))
                };
                if done >= 2 && running >= 1 {
                    // The next requests hang for 5 s: the stop must abandon them, not wait.
                    sim.script(vec![ScriptedFault::Slow(Duration::from_secs(5)); 8]);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    shutdown.request(StopReason::Terminate);
                    return std::time::Instant::now();
                }
            }
        })
    };
    let client = client(&sim);
    let report = backfill_core::run::<Invoice>(&client, &sink, &cfg)
        .await
        .unwrap();
    let stopped_at = watcher.await.unwrap();
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "the stop waited for the hanging requests: {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(report.interrupted, Some(StopReason::Terminate));
    assert_eq!(report.status, RunStatus::Interrupted);
    assert_eq!(report.exit_status(), ExitStatus::Terminated);
    assert_eq!(report.exit_status().code(), 143);
    assert!(!report.trigger_completed);

    let c = sink.pool().get().await.unwrap();
    let row = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        row("SELECT count(*) FROM backfill.windows WHERE status = 'running' OR lease_owner IS NOT NULL").await,
        0
    );
    assert_eq!(
        row("SELECT count(*) FROM backfill.runs WHERE status = 'interrupted' AND error LIKE 'interrupted by SIGTERM%'").await,
        1
    );
    assert_eq!(
        row("SELECT count(*) FROM backfill.triggers WHERE status = 'pending'").await,
        1
    );
    assert_eq!(
        row("SELECT count(*) FROM backfill.workers WHERE stopped_at IS NULL").await,
        0
    );
    let done_before = row("SELECT count(*) FROM backfill.windows WHERE status = 'done'").await;
    assert!((2..10).contains(&done_before), "{done_before}");
    // The window(s) in progress went back to pending, marked.
    let states: Vec<(String, Option<String>, i32)> = c
        .query(
            "SELECT status, last_error, attempts FROM backfill.windows ORDER BY window_start",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        row("SELECT count(*) FROM backfill.windows WHERE status = 'pending' AND last_error LIKE 'interrupted by SIGTERM%'").await
            >= 1,
        "{states:?}"
    );

    // Resume: only the remaining windows are requested.
    sim.script(Vec::new());
    sim.reset_stats();
    let mut again = cfg.clone();
    again.shutdown = Shutdown::new();
    let resumed = run::<Invoice>(&client, &sink, &again).await;
    assert!(resumed.problems.is_empty());
    assert_eq!(resumed.interrupted, None);
    assert_eq!(resumed.windows_skipped, done_before as u64);
    assert!(resumed.trigger_completed);
    assert_ledger_settled(&sink).await;
    let truth = sim.truth("Invoice");
    assert_eq!(
        table_hash(&sink, Invoice::TABLE).await.0 as usize,
        truth.len()
    );
    assert_payloads_equal(&sink, Invoice::TABLE, &sim.realm_id(), &truth).await;
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_requested_before_the_start_changes_nothing() {
    let sim = sim(Sim::builder().seed(52).invoices(50).span(
        datetime!(2023-07-01 00:00 UTC),
        datetime!(2023-07-03 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let cfg = config("2023-07-01", "2023-07-03", "early");
    cfg.shutdown.request(StopReason::Interrupt);
    let err = backfill_core::run::<Invoice>(&client(&sim), &sink, &cfg)
        .await
        .unwrap_err();
    assert_eq!(err.exit_status().code(), 130);
    assert_eq!(query_requests(&sim), 0);
    sim.shutdown().await.unwrap();
}
