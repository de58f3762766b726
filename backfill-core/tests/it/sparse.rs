use backfill_core::{Entity, Invoice};
use qbo_sim::Sim;
use time::macros::datetime;

use crate::common::*;

async fn sparse(invoices: usize) -> (u64, usize, u64) {
    // Three years planned, data only in March and April 2024.
    let sim = sim(Sim::builder().seed(21).invoices(invoices).span(
        datetime!(2024-03-01 00:00 UTC),
        datetime!(2024-05-01 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let cfg = config("2022-01-01", "2025-01-01", "sparse");
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.windows_planned, 1096);
    assert_eq!(report.windows_done, 1096);
    let truth = sim.truth("Invoice");
    assert_eq!(
        table_rows(&sink, Invoice::TABLE, &sim.realm_id())
            .await
            .len(),
        invoices
    );
    assert_payloads_equal(&sink, Invoice::TABLE, &sim.realm_id(), &truth).await;
    let statuses = window_statuses(&sink, Invoice::PIPELINE, &sim.realm_id()).await;
    assert_eq!(statuses.get("done"), Some(&1096));
    let requests = query_requests(&sim);
    eprintln!(
        "sparse history, {invoices} invoices: {requests} query requests at the simulator, {} issued by the loop, {} empty windows",
        report.requests, report.windows_empty
    );
    sim.shutdown().await.unwrap();
    (report.requests, requests, report.windows_empty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_years_with_two_months_of_data_cost_few_requests() {
    let (loop_requests, sim_requests, empty) = sparse(500).await;
    assert!(sim_requests < 100, "{sim_requests} requests");
    assert_eq!(loop_requests as usize, sim_requests);
    assert!(empty > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_years_with_dense_months_cost_few_requests() {
    // ~100 invoices a day for two months: more than a page per month.
    let (_, sim_requests, _) = sparse(6000).await;
    assert!(sim_requests < 100, "{sim_requests} requests");
}
