use std::collections::BTreeSet;
use std::time::Duration;

use backfill_core::{Customer, Entity, Invoice};
use qbo_client::{Credentials, Environment, QboClient, QboConfig, RateLimit, RetryPolicy};
use qbo_sim::{FaultPlan, ScriptedFault, Sim, SimHandle};
use time::macros::datetime;

use crate::common::*;

fn impatient_client(sim: &SimHandle) -> QboClient {
    let cfg = QboConfig::new(
        Environment::Sandbox,
        sim.realm_id(),
        Credentials::new(sim.client_id(), sim.client_secret(), sim.refresh_token()),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap();
    QboClient::builder(cfg)
        .rate_limit(RateLimit::unlimited())
        .retry_policy(
            RetryPolicy::default()
                .with_backoff(
                    Duration::from_millis(5),
                    Duration::from_millis(5),
                    Duration::from_millis(40),
                )
                .with_max_attempts(10)
                .with_max_internal_error_retries(3),
        )
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_and_token_expiry_end_in_the_clean_table() {
    let builder = || {
        Sim::builder().seed(8).customers(400).invoices(800).span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-21 00:00 UTC),
        )
    };
    let mut faults = FaultPlan::none();
    faults.throttle = 0.08;
    faults.server_error = 0.04;
    faults.bad_gateway = 0.02;
    faults.service_unavailable = 0.04;
    faults.gateway_timeout = 0.02;
    faults.drop_connection = 0.03;
    faults.malformed_json = 0.03;
    faults.fault_with_200 = 0.02;
    faults.expired_token = 0.03;
    faults.slow = 0.03;
    faults.slow_delay = Duration::from_millis(800);
    faults.seed = 99;
    let noisy = sim(builder()
        .faults(faults)
        .access_token_ttl(Duration::from_secs(2)))
    .await;
    let clean = sim(builder()).await;
    let (_db1, sink_noisy) = db().await;
    let (_db2, sink_clean) = db().await;
    let mut cfg = config("2023-01-01", "2023-01-21", "faults");
    cfg.page_size = 25;
    cfg.concurrency = 4;
    let noisy_client = impatient_client(&noisy);
    // A burst of scripted faults at the start on top of the random ones.
    noisy.script(vec![
        ScriptedFault::Throttle,
        ScriptedFault::Throttle,
        ScriptedFault::Status(503),
        ScriptedFault::ExpiredToken,
        ScriptedFault::DropConnection,
    ]);
    for entity in ["Invoice", "Customer"] {
        let (r_noisy, r_clean) = if entity == "Invoice" {
            (
                run::<Invoice>(&noisy_client, &sink_noisy, &cfg).await,
                run::<Invoice>(&client(&clean), &sink_clean, &cfg).await,
            )
        } else {
            (
                run::<Customer>(&noisy_client, &sink_noisy, &cfg).await,
                run::<Customer>(&client(&clean), &sink_clean, &cfg).await,
            )
        };
        assert!(
            r_noisy.problems.is_empty(),
            "{entity}: {:?}",
            r_noisy.problems
        );
        assert!(r_clean.problems.is_empty());
        let table = if entity == "Invoice" {
            Invoice::TABLE
        } else {
            Customer::TABLE
        };
        let a = table_rows(&sink_noisy, table, &noisy.realm_id()).await;
        let b = table_rows(&sink_clean, table, &clean.realm_id()).await;
        assert_eq!(
            a.keys().collect::<BTreeSet<_>>(),
            b.keys().collect::<BTreeSet<_>>(),
            "{entity}"
        );
        let truth = noisy.truth(entity);
        assert_eq!(a.len(), truth.len());
        assert_payloads_equal(&sink_noisy, table, &noisy.realm_id(), &truth).await;
    }
    let stats = noisy.stats();
    eprintln!("fault run: {stats:?}");
    assert!(stats.throttled > 0);
    noisy.shutdown().await.unwrap();
    clean.shutdown().await.unwrap();
}
