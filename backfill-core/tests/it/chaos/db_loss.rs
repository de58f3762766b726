//! Database connections killed mid-run (`pg_terminate_backend`, what a failover or a restart
//! does to a client): statements are retried and the run completes with the exact table.

use std::time::Duration;

use backfill_core::{DbRetry, Entity, Invoice};
use qbo_sim::Sim;
use time::macros::datetime;

use super::{assert_ledger_settled, table_hash};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_mid_run_are_retried() {
    let builder = || {
        Sim::builder()
            .seed(61)
            .invoices(600)
            .span(
                datetime!(2023-09-01 00:00 UTC),
                datetime!(2023-09-13 00:00 UTC),
            )
            .requests_per_min(0)
            .max_concurrency(0)
    };
    let sim = sim(builder().latency(Duration::from_millis(15), Duration::ZERO)).await;
    let (db, sink) = db().await;
    let mut cfg = config("2023-09-01", "2023-09-13", "db-loss");
    cfg.page_size = 15;
    cfg.concurrency = 3;
    cfg.db_retry = DbRetry::for_duration(Duration::from_secs(20));
    let name = db.name().to_owned();
    let admin = sink.clone();
    let killer = tokio::spawn(async move {
        let mut killed = 0i64;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let c = admin.pool().get().await.unwrap();
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()) t",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            killed += n;
        }
        killed
    });
    let report = run::<Invoice>(&client(&sim), &sink, &cfg).await;
    let killed = killer.await.unwrap();
    eprintln!(
        "DBLOSS: {killed} connections terminated; run {:?}, {} windows",
        report.duration, report.windows_done
    );
    assert!(killed > 0, "no connection was terminated");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The test's own pooled connections were terminated too: check on fresh ones.
    sink.close();
    let sink = db.sink().await;
    assert_ledger_settled(&sink).await;
    let truth = sim.truth("Invoice");
    assert_eq!(
        table_hash(&sink, Invoice::TABLE).await.0 as usize,
        truth.len()
    );
    assert_payloads_equal(&sink, Invoice::TABLE, &sim.realm_id(), &truth).await;
    sim.shutdown().await.unwrap();
}
