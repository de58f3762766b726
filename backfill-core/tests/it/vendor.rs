//! An entity defined outside backfill-core in a few lines (here vendors under a pipeline name of
//! its own, into the `raw.qb_vendors` table that migration V2 creates).
use backfill_core::Entity;
use qbo_sim::Sim;
use raw_sink::RawTable;
use time::macros::datetime;

use crate::common::*;

struct Vendor;

impl Entity for Vendor {
    const NAME: &'static str = "Vendor";
    const PIPELINE: &'static str = "my_vendors_backfill";
    const TABLE: RawTable = RawTable::new("qb_vendors");
    const NAME_LIST: bool = true;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_pipeline_in_a_few_lines() {
    let sim = sim(Sim::builder().seed(31).vendors(120).span(
        datetime!(2023-01-01 00:00 UTC),
        datetime!(2023-03-01 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let report = run::<Vendor>(
        &client(&sim),
        &sink,
        &config("2023-01-01", "2023-03-01", "vendors"),
    )
    .await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let truth = sim.truth("Vendor");
    assert_eq!(truth.len(), 120);
    assert_eq!(
        table_rows(&sink, Vendor::TABLE, &sim.realm_id())
            .await
            .len(),
        120
    );
    assert_payloads_equal(&sink, Vendor::TABLE, &sim.realm_id(), &truth).await;
    sim.shutdown().await.unwrap();
}
