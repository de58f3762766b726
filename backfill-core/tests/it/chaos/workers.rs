//! Cooperative workers in one process: three runs of the same range and trigger share the
//! windows through the ledger; every window is loaded exactly once.

use std::time::Duration;

use std::sync::Arc;

use backfill_core::{Entity, Invoice, PgTokenStore};
use qbo_client::{Credentials, Environment, QboClient, QboConfig, RateLimit};
use qbo_sim::Sim;
use time::macros::datetime;

use super::{assert_ledger_settled, table_hash};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_range_and_load_each_window_once() {
    let builder = || {
        Sim::builder()
            .seed(41)
            .invoices(900)
            .span(
                datetime!(2023-05-01 00:00 UTC),
                datetime!(2023-05-19 00:00 UTC),
            )
            .requests_per_min(0)
            .max_concurrency(0)
    };
    let sim = sim(builder().latency(Duration::from_millis(5), Duration::from_millis(5))).await;
    let clean = sim_clean(builder()).await;
    let (_db, sink) = db().await;
    let (_db2, clean_sink) = db().await;
    let mut cfg = config("2023-05-01", "2023-05-19", "shared");
    cfg.page_size = 40;
    cfg.concurrency = 2;
    cfg.workers = 3;
    // Like separate processes: three clients sharing the database token store (the refresh
    // token rotates; refreshes are serialised through the ledger).
    let shared = || {
        let token = sim.refresh_token();
        let cfg = QboConfig::new(
            Environment::Sandbox,
            sim.realm_id(),
            Credentials::new(sim.client_id(), sim.client_secret(), token),
        )
        .with_base_url(&sim.base_url())
        .unwrap()
        .with_token_url(&sim.token_url())
        .unwrap();
        QboClient::builder(cfg)
            .token_store(Arc::new(PgTokenStore::new(&sink)))
            .rate_limit(RateLimit::unlimited())
            .build()
            .unwrap()
    };
    let (c1, c2, c3) = (shared(), shared(), shared());
    let (a, b, c) = tokio::join!(
        backfill_core::run::<Invoice>(&c1, &sink, &cfg),
        backfill_core::run::<Invoice>(&c2, &sink, &cfg),
        backfill_core::run::<Invoice>(&c3, &sink, &cfg),
    );
    let reports = [a.unwrap(), b.unwrap(), c.unwrap()];
    for r in &reports {
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.interrupted, None);
    }
    let done: u64 = reports.iter().map(|r| r.windows_done).sum();
    assert_eq!(done, 18, "every window done by exactly one worker");
    assert!(
        reports.iter().filter(|r| r.windows_done > 0).count() >= 2,
        "the work was not shared: {:?}",
        reports.iter().map(|r| r.windows_done).collect::<Vec<_>>()
    );
    // Each window was attempted once, by one of the three runs.
    let c = sink.pool().get().await.unwrap();
    let attempts: Vec<i32> = c
        .query("SELECT attempts FROM backfill.windows", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts.len(), 18);
    assert!(attempts.iter().all(|a| *a == 1), "{attempts:?}");
    let runs: Vec<i64> = reports.iter().map(|r| r.run_id).collect();
    let foreign: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.windows WHERE NOT (run_id = ANY($1))",
            &[&runs],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0);
    assert_ledger_settled(&sink).await;
    // Exactly a single clean run's table.
    let clean_report = run::<Invoice>(&client(&clean), &clean_sink, &{
        let mut c = cfg.clone();
        c.workers = 1;
        c
    })
    .await;
    assert!(clean_report.problems.is_empty());
    assert_eq!(
        table_hash(&sink, Invoice::TABLE).await,
        table_hash(&clean_sink, Invoice::TABLE).await
    );
    assert_eq!(
        table_hash(&sink, Invoice::TABLE).await.0 as usize,
        sim.truth("Invoice").len()
    );
    sim.shutdown().await.unwrap();
    clean.shutdown().await.unwrap();
}

async fn sim_clean(b: qbo_sim::SimBuilder) -> qbo_sim::SimHandle {
    b.spawn().await.unwrap()
}
