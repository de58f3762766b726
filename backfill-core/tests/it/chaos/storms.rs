//! Fault storms from the simulator: whatever QBO throws, the table ends exactly as a clean
//! run's, with nothing lost and nothing extra.

use std::collections::BTreeMap;
use std::time::Duration;

use backfill_core::{Entity, Invoice};
use qbo_sim::{FaultPlan, Quirks, ScriptedFault, Sim, SimBuilder, ThrottleBody};
use time::macros::datetime;

use tracing::instrument::WithSubscriber;

use super::{EventCounter, assert_ledger_settled, impatient_client, lost_and_extra, table_hash};
use crate::common::*;

fn builder() -> SimBuilder {
    Sim::builder()
        .seed(31)
        .invoices(1500)
        .span(
            datetime!(2023-03-01 00:00 UTC),
            datetime!(2023-03-13 00:00 UTC),
        )
        .requests_per_min(0)
        .max_concurrency(0)
}

/// Runs the storm and a clean run of the same data; asserts equal tables; prints the figures.
async fn storm(name: &str, faults: FaultPlan, quirks: Quirks, script: Vec<ScriptedFault>) {
    let noisy = sim(builder()
        .faults(faults)
        .quirks(quirks)
        .access_token_ttl(Duration::from_secs(3)))
    .await;
    noisy.script(script);
    let clean = sim(builder()).await;
    let (_db1, sink_noisy) = db().await;
    let (_db2, sink_clean) = db().await;
    let mut cfg = config("2023-03-01", "2023-03-13", "storm");
    cfg.page_size = 20;
    cfg.concurrency = 4;
    cfg.max_window_attempts = 10;
    let events = EventCounter::default();
    let report = run::<Invoice>(&impatient_client(&noisy), &sink_noisy, &cfg)
        .with_subscriber(events.dispatch())
        .await;
    let clean_report = run::<Invoice>(&client(&clean), &sink_clean, &cfg).await;
    assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
    assert!(clean_report.problems.is_empty());

    let noisy_hash = table_hash(&sink_noisy, Invoice::TABLE).await;
    let clean_hash = table_hash(&sink_clean, Invoice::TABLE).await;
    assert_eq!(
        noisy_hash, clean_hash,
        "{name}: the table differs from a clean run's"
    );
    let truth = noisy.truth("Invoice");
    assert_eq!(noisy_hash.0 as usize, truth.len());
    let (lost, extra) =
        lost_and_extra(&sink_noisy, Invoice::TABLE, &noisy.realm_id(), &truth).await;
    assert_eq!((lost, extra), (0, 0), "{name}");
    assert_payloads_equal(&sink_noisy, Invoice::TABLE, &noisy.realm_id(), &truth).await;
    assert_ledger_settled(&sink_noisy).await;

    let stats = noisy.stats();
    let mut by_fault: BTreeMap<String, u64> = BTreeMap::new();
    for r in noisy.requests() {
        if let Some(f) = r.fault {
            *by_fault.entry(f).or_default() += 1;
        }
    }
    let query_requests = stats.endpoint_total("query");
    // The client's `retry` events (faults, timeouts, 401s) and the loop's window retries.
    let retries = events.get("retry");
    let window_retries = events.get("window_retry") + events.get("probe_retry");
    eprintln!(
        "STORM {name}: records={} requests={} loop_requests={} retries={} window_retries={window_retries} faults_injected={} by_fault={by_fault:?} throttled={} token_refreshes={} lost={lost} duplicates={extra} duration_ms={}",
        truth.len(),
        query_requests,
        report.requests,
        retries,
        stats.faults_injected,
        stats.throttled,
        stats.token_refreshes,
        report.duration.as_millis()
    );
    assert!(stats.faults_injected > 0, "{name}: no fault was injected");
    assert!(
        retries >= stats.faults_injected,
        "{name}: {retries} retries for {} faults",
        stats.faults_injected
    );
    noisy.shutdown().await.unwrap();
    clean.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_on_30_percent_of_requests() {
    let mut f = FaultPlan::none();
    f.server_error = 0.075;
    f.bad_gateway = 0.075;
    f.service_unavailable = 0.075;
    f.gateway_timeout = 0.075;
    f.seed = 1;
    storm("5xx-30%", f, Quirks::default(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_bursts_with_retry_after() {
    let mut f = FaultPlan::none();
    f.throttle = 0.15;
    f.seed = 2;
    let quirks = Quirks {
        retry_after: Some(Duration::from_secs(1)),
        ..Quirks::default()
    };
    storm(
        "429-bursts-retry-after",
        f,
        quirks,
        vec![ScriptedFault::Throttle; 10],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_bursts_without_retry_after_json_and_xml() {
    let mut f = FaultPlan::none();
    f.throttle = 0.15;
    f.seed = 3;
    let quirks = Quirks {
        retry_after: None,
        throttle_body: ThrottleBody::Json,
        ..Quirks::default()
    };
    storm(
        "429-bursts-no-retry-after-json",
        f.clone(),
        quirks,
        vec![ScriptedFault::Throttle; 10],
    )
    .await;
    storm(
        "429-bursts-no-retry-after-xml",
        f,
        Quirks::default(),
        vec![ScriptedFault::Throttle; 10],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_the_client_timeout() {
    let mut f = FaultPlan::none();
    f.slow = 0.2;
    f.slow_delay = Duration::from_millis(700);
    f.seed = 4;
    storm("slow-beyond-timeout", f, Quirks::default(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_malformed_pages() {
    let mut f = FaultPlan::none();
    f.drop_connection = 0.15;
    f.malformed_json = 0.15;
    f.fault_with_200 = 0.05;
    f.seed = 5;
    storm("dropped+malformed", f, Quirks::default(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_at_once_with_expiring_tokens() {
    let mut f = FaultPlan::none();
    f.throttle = 0.06;
    f.server_error = 0.04;
    f.bad_gateway = 0.03;
    f.service_unavailable = 0.04;
    f.gateway_timeout = 0.03;
    f.slow = 0.04;
    f.slow_delay = Duration::from_millis(700);
    f.drop_connection = 0.05;
    f.malformed_json = 0.05;
    f.fault_with_200 = 0.03;
    f.expired_token = 0.03;
    f.seed = 6;
    let quirks = Quirks {
        retry_after: Some(Duration::from_secs(2)),
        ..Quirks::default()
    };
    storm(
        "everything",
        f,
        quirks,
        vec![
            ScriptedFault::Throttle,
            ScriptedFault::Throttle,
            ScriptedFault::Throttle,
            ScriptedFault::Status(503),
            ScriptedFault::DropConnection,
            ScriptedFault::MalformedJson,
            ScriptedFault::ExpiredToken,
        ],
    )
    .await;
}
