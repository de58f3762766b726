//! `--batch` (issue 18): the loop's queries packed into batch requests, checked against what
//! each page should hold, against qbo-sim's batch endpoint and a real PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use backfill_core::{Entity, ExitStatus, Invoice, RunConfig, RunReport, StopReason};
use qbo_client::QboClient;
use qbo_sim::{BatchItemFault, BatchObjectCap, Sim, SimBuilder, SimHandle};
use raw_sink::Sink;
use time::macros::datetime;

use crate::common::*;

/// Most a run of these tests may take before it counts as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// 3,000 invoices over three months: with pages of 100, dozens of pages and COUNTs in play.
fn data() -> SimBuilder {
    Sim::builder()
        .seed(18)
        .customers(50)
        .invoices(3000)
        .batch_requests_per_min(0)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-04-01 00:00 UTC),
        )
}

/// A client with no request or batch budget (the simulator's own limits apply).
fn batch_client(sim: &SimHandle) -> QboClient {
    test_builder(
        sim_config(sim, &sim.realm_id()),
        Duration::from_millis(50),
        8,
    )
    .batch_rate_limit(0)
    .request_timeout(Duration::from_secs(10))
    .build()
    .unwrap()
}

fn batch_config(trigger: &str) -> RunConfig {
    let mut cfg = config("2023-01-01", "2023-04-01", trigger);
    cfg.page_size = 100;
    cfg.concurrency = 8;
    cfg.batch = true;
    cfg
}

async fn timed_run(client: &QboClient, sink: &Sink, cfg: &RunConfig) -> RunReport {
    tokio::time::timeout(
        RUN_TIMEOUT,
        backfill_core::run::<Invoice>(client, sink, cfg),
    )
    .await
    .unwrap_or_else(|_| panic!("the run did not end within {RUN_TIMEOUT:?}"))
    .unwrap()
}

/// Every invoice of the range is loaded with the simulator's payload; returns how many.
async fn assert_exact(sim: &SimHandle, sink: &Sink, cfg: &RunConfig) -> usize {
    let truth: Vec<_> = sim
        .truth(Invoice::NAME)
        .into_iter()
        .filter(|t| in_range(t, cfg.range_start, cfg.range_end))
        .collect();
    let rows = table_rows(sink, Invoice::TABLE, &sim.realm_id()).await;
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        {
            let mut ids: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
            ids.sort();
            ids
        },
        "ids differ from the simulator's truth"
    );
    assert_payloads_equal(sink, Invoice::TABLE, &sim.realm_id(), &truth).await
}

fn batch_requests(sim: &SimHandle) -> u64 {
    sim.stats()
        .by_endpoint
        .get("batch")
        .and_then(|s| s.get(&200))
        .copied()
        .unwrap_or(0)
}

/// Queries the simulator executed (pages and COUNTs, single or batch items).
fn executed(sim: &SimHandle) -> u64 {
    let s = sim.stats();
    s.queries + s.count_queries
}

fn assert_done(r: &RunReport) {
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.trigger_completed);
    assert_eq!(r.windows_done + r.windows_skipped, r.windows_planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_backfill_equals_a_single_query_backfill() {
    let sim = sim(data()).await;
    let client = batch_client(&sim);

    let (_single_db, single_sink) = db().await;
    let mut single_cfg = batch_config("single");
    single_cfg.batch = false;
    let single = timed_run(&client, &single_sink, &single_cfg).await;
    assert_done(&single);
    assert_eq!(batch_requests(&sim), 0, "no batch without --batch");
    assert_eq!(single.api_requests, single.api_calls);

    sim.reset_stats();
    let (_batch_db, batch_sink) = db().await;
    let cfg = batch_config("batched");
    let batched = timed_run(&client, &batch_sink, &cfg).await;
    assert_done(&batched);
    let n = assert_exact(&sim, &batch_sink, &cfg).await;
    assert!(n > 2000, "{n}");

    // The same rows, with the same window, page and query, as the single-query run.
    let key = |rows: BTreeMap<String, RawRowOut>| -> Vec<_> {
        rows.into_values()
            .map(|r| {
                (
                    r.id,
                    r.window_start,
                    r.window_end,
                    r.page_number,
                    r.page_size,
                    r.request_payload,
                )
            })
            .collect()
    };
    let realm = sim.realm_id();
    assert_eq!(
        key(table_rows(&batch_sink, Invoice::TABLE, &realm).await),
        key(table_rows(&single_sink, Invoice::TABLE, &realm).await)
    );

    // The simulator saw batch requests carrying items; the run counted both ways.
    let stats = sim.stats();
    assert!(batch_requests(&sim) > 0, "{stats:?}");
    assert!(stats.batch_items > batch_requests(&sim), "{stats:?}");
    assert_eq!(batched.api_batches, batch_requests(&sim));
    assert_eq!(batched.api_batch_items, stats.batch_items);
    assert_eq!(
        batched.api_calls,
        batched.api_requests - batched.api_batches + batched.api_batch_items
    );
    assert_eq!(batched.api_calls, batched.requests, "no retry, no re-read");
    assert_eq!(executed(&sim), batched.requests);
    assert!(batched.api_requests < batched.api_calls);
    assert_eq!(
        (batched.batch_items_cut, batched.batch_items_failed),
        (0, 0)
    );
    assert!(!batched.batch_cap_per_batch);

    // The ledger holds both counts.
    let c = batch_sink.pool().get().await.unwrap();
    let r = c
        .query_one(
            "SELECT api_calls, api_requests, api_batches, api_batch_items FROM backfill.runs",
            &[],
        )
        .await
        .unwrap();
    let got: (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    let want = (
        batched.api_calls,
        batched.api_requests,
        batched.api_batches,
        batched.api_batch_items,
    );
    assert_eq!(
        got,
        (want.0 as i64, want.1 as i64, want.2 as i64, want.3 as i64)
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_capped_at_1000_objects_in_all_is_detected_and_the_run_stays_exact() {
    // Answers that take a second, as QBO's do: once one has come, a segment wants every page
    // it knows of ahead of its writer at once, so batches carry more than 1,000 objects.
    let sim = sim(data()
        .batch_object_cap(BatchObjectCap::PerBatch)
        .latency(Duration::from_secs(1), Duration::ZERO))
    .await;
    let client = batch_client(&sim);
    let (_db, sink) = db().await;
    let mut cfg = batch_config("per-batch");
    // One part at a time: each after the first starts knowing how long answers and writes
    // take, and asks for all its pages at once.
    cfg.concurrency = 1;
    let r = timed_run(&client, &sink, &cfg).await;
    assert_done(&r);
    assert_exact(&sim, &sink, &cfg).await;
    let stats = sim.stats();
    assert!(stats.batch_items_truncated > 0, "{stats:?}");
    assert!(r.batch_cap_per_batch, "the per-batch cap was not detected");
    assert!(r.batch_items_cut > 0);
    // Every cut item was read again alone: the only queries beyond those claimed.
    assert_eq!(r.api_calls, r.requests + r.batch_items_cut);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulted_batch_item_alone_is_sent_again() {
    let sim = sim(data()).await;
    // The first item of the next three batches answers a SystemFault.
    sim.set_batch_item_faults(vec![BatchItemFault::nth(0).times(3)]);
    let client = batch_client(&sim);
    let (_db, sink) = db().await;
    let cfg = batch_config("item-faults");
    let r = timed_run(&client, &sink, &cfg).await;
    assert_done(&r);
    assert_exact(&sim, &sink, &cfg).await;
    let stats = sim.stats();
    assert_eq!(stats.batch_item_faults, 3, "{stats:?}");
    assert_eq!(r.batch_items_failed, 3);
    // Only the three faulted items were sent twice; every query was executed exactly once.
    assert_eq!(r.api_calls, r.requests + 3);
    assert_eq!(executed(&sim), r.requests);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_with_batch_stops_at_exactly_n_queries_and_resumes() {
    let sim = sim(data()).await;
    let client = batch_client(&sim);
    let (_db, sink) = db().await;
    let mut cfg = batch_config("budget");
    cfg.max_api_calls = Some(25);
    let first = timed_run(&client, &sink, &cfg).await;
    assert_eq!(first.interrupted, Some(StopReason::Budget));
    assert_eq!(first.exit_status(), ExitStatus::WindowsFailed);
    assert_eq!(first.api_calls, 25, "items counted as queries");
    assert_eq!(executed(&sim), 25);
    assert!(first.api_batches > 0, "the budget run sent no batch");

    cfg.max_api_calls = None;
    cfg.shutdown = backfill_core::Shutdown::new();
    let second = timed_run(&client, &sink, &cfg).await;
    assert_done(&second);
    assert_exact(&sim, &sink, &cfg).await;
    sim.shutdown().await.unwrap();
}
