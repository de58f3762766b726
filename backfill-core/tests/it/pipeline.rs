//! The fetch pipeline at latency: pages of a counted segment fetched in parallel up to the
//! realm's cap, within the memory budget, with the overlap check intact.

use std::collections::BTreeSet;
use std::time::Duration;

use backfill_core::{Entity, Invoice};
use qbo_client::{QboClient, RateLimit, RetryPolicy};
use qbo_sim::{Sim, SimHandle};
use time::macros::datetime;

use crate::common::*;

/// A client held to `in_flight` requests at once (no per-minute limit).
fn capped_client(sim: &SimHandle, in_flight: u32) -> QboClient {
    QboClient::builder(sim_config(sim, &sim.realm_id()))
        .rate_limit(RateLimit {
            per_minute: 0,
            per_second: 0,
            max_concurrency: in_flight,
        })
        .retry_policy(RetryPolicy::default().with_backoff(
            Duration::from_millis(5),
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Invoices of `start..end` in the simulator.
fn truth_ids(
    sim: &SimHandle,
    start: time::OffsetDateTime,
    end: time::OffsetDateTime,
) -> BTreeSet<String> {
    sim.truth("Invoice")
        .into_iter()
        .filter(|t| in_range(t, start, end))
        .map(|t| t.id)
        .collect()
}

async fn loaded_ids(sink: &raw_sink::Sink, sim: &SimHandle) -> BTreeSet<String> {
    table_rows(sink, Invoice::TABLE, &sim.realm_id())
        .await
        .into_keys()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_segment_keeps_the_realms_cap_in_flight_whatever_the_concurrency() {
    // 3,000 invoices over two days, pages of 100: one probed segment of ~30 pages, each page
    // answered in ~400 ms + 0.5 ms a row behind a cap of 8 in flight: far longer than a write
    // of 100 rows, so that the writer can use more pages ahead of it than the cap allows
    // (answers of 90 ms against writes of 30 ms ask for three pages ahead, and no more).
    let sim = sim(Sim::builder()
        .seed(21)
        .invoices(3000)
        .latency(Duration::from_millis(400), Duration::ZERO)
        .latency_per_row(Duration::from_micros(500))
        .max_concurrency(8)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-03 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = capped_client(&sim, 8);
    let mut cfg = config("2023-01-01", "2023-01-03", "parallel");
    cfg.page_size = 100;
    cfg.concurrency = 1;
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let stats = sim.stats();
    // Pages in memory used to be capped at concurrency + 1 = 2.
    assert!(
        stats.peak_concurrency > 2 + 1,
        "peak in flight {} with --concurrency 1",
        stats.peak_concurrency
    );
    assert!(stats.peak_concurrency <= 8, "{}", stats.peak_concurrency);
    assert_eq!(stats.throttled, 0);
    let (start, end) = (cfg.range_start, cfg.range_end);
    assert_eq!(loaded_ids(&sink, &sim).await, truth_ids(&sim, start, end));
    // A COUNT for the segment and ~30 pages: no page asked twice.
    let pages = select_queries(&sim).len();
    assert!(pages <= 32, "{pages} pages for 3,000 rows");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_budget_smaller_than_one_page_loads_exactly_one_page_at_a_time() {
    let sim = sim(Sim::builder()
        .seed(22)
        .invoices(600)
        .latency(Duration::from_millis(5), Duration::ZERO)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-04 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = capped_client(&sim, 10);
    let mut cfg = config("2023-01-01", "2023-01-04", "tiny-budget");
    cfg.page_size = 50;
    cfg.concurrency = 1;
    cfg.memory_budget = 1024;
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let (start, end) = (cfg.range_start, cfg.range_end);
    assert_eq!(loaded_ids(&sink, &sim).await, truth_ids(&sim, start, end));
    assert_eq!(report.windows_done, 3);
    // Each page waits for the one before it to be written: never two requests at once.
    assert_eq!(sim.stats().peak_concurrency, 1);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_buffers_kept_for_reuse_stay_within_their_part_of_the_memory_budget() {
    // Pages of 500 invoices (~1 MB) fetched several at a time within a 4 MB budget: the
    // buffers the client keeps once they are written stay within a quarter of it (the client
    // alone would keep up to 48 MB of them).
    let sim = sim(Sim::builder()
        .seed(24)
        .invoices(4000)
        .latency(Duration::from_millis(5), Duration::ZERO)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-03 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = capped_client(&sim, 10);
    let mut cfg = config("2023-01-01", "2023-01-03", "reused-buffers");
    cfg.page_size = 500;
    cfg.memory_budget = 4 << 20;
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let (start, end) = (cfg.range_start, cfg.range_end);
    assert_eq!(loaded_ids(&sink, &sim).await, truth_ids(&sim, start, end));
    let kept = client.reused_body_bytes();
    assert!(
        kept <= 1 << 20,
        "{kept} bytes of buffers kept for a 4 MB budget"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_come_faster_than_they_are_written_are_not_requested_ahead_of_the_writer() {
    // One segment of ~20 pages of 500 invoices from a server that answers at once, with a
    // budget that would fit them all: a page is written in about the time a few arrive, so
    // the run keeps a few pages ahead of its writer instead of requesting all it knows of
    // (before the limit on pages ahead: every page in memory at once).
    let sim = sim(Sim::builder()
        .seed(25)
        .invoices(10_000)
        .latency(Duration::ZERO, Duration::ZERO)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-03 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = capped_client(&sim, 0);
    let mut cfg = config("2023-01-01", "2023-01-03", "pages-ahead");
    cfg.page_size = 500;
    cfg.concurrency = 1;
    cfg.memory_budget = 512 << 20;
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let (start, end) = (cfg.range_start, cfg.range_end);
    let truth = truth_ids(&sim, start, end);
    assert_eq!(loaded_ids(&sink, &sim).await, truth);
    // The largest page, as its stored records' text (PostgreSQL's text of a jsonb is longer
    // than the JSON it came from, so this is more than the page held).
    let db = sink.pool().get().await.unwrap();
    let largest: i64 = db
        .query_one(
            "SELECT max(bytes)::int8 FROM (SELECT sum(octet_length(payload::text)) AS bytes \
             FROM raw.qb_invoices GROUP BY page_number) p",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pages = truth.len().div_ceil(500);
    assert!(pages >= 18, "{pages} pages");
    let held = report.peak_page_bytes;
    assert!(
        held <= 8 * u64::try_from(largest).unwrap(),
        "{held} bytes of pages held at once; the largest page is {largest} bytes, {pages} pages"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_inserted_while_a_segment_is_paged_in_parallel_is_detected_and_loaded() {
    // Two days (one probed segment) of ~400 invoices in pages of 20: 20 pages requested at
    // once, 3 at a time. After the first pages are served, an invoice is created at the
    // earliest instant, shifting every later position by one.
    let sim = sim(Sim::builder()
        .seed(23)
        .invoices(600)
        .latency(Duration::from_millis(30), Duration::ZERO)
        .max_concurrency(3)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-04 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = capped_client(&sim, 3);
    let mut cfg = config("2023-01-01", "2023-01-03", "parallel-change");
    cfg.page_size = 20;
    cfg.concurrency = 1;
    let (start, end) = (cfg.range_start, cfg.range_end);
    let first = sim
        .truth("Invoice")
        .into_iter()
        .filter(|t| in_range(t, start, end))
        .min_by_key(|t| (t.create_time, t.id.clone()))
        .unwrap();
    let watcher = sim.clone();
    let mutator = tokio::spawn(async move {
        while select_queries(&watcher).len() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        watcher.create("Invoice", Some(first.create_time)).unwrap();
    });
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    mutator.await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let truth = truth_ids(&sim, start, end);
    assert_eq!(
        loaded_ids(&sink, &sim).await,
        truth,
        "inserted record missed"
    );
    // The change was seen while paging: the windows were read again, one by one.
    let c = sink.pool().get().await.unwrap();
    let attempts: i64 = c
        .query_one(
            "SELECT sum(attempts)::bigint FROM backfill.windows WHERE status = 'done'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(attempts >= 3, "change not detected (attempts {attempts})");
    sim.shutdown().await.unwrap();
}
