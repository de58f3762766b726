//! Faults and retries (pitfall 6 and the rest of QBO's failure modes).

use std::collections::HashSet;
use std::time::Duration;

use qbo_client::{FailureClass, Order, QboError, Query, RetryPolicy};
use qbo_sim::{FaultPlan, Quirks, ScriptedFault, ThrottleBody};

use crate::common::*;

fn page_query() -> Query {
    Query::select("Invoice")
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(50)
        .build()
        .unwrap()
}

/// Pitfall 6: a storm of 429s with XML bodies (and JSON ones) is waited out, not fatal.
#[tokio::test]
async fn throttle_storm_in_xml_and_json_recovers() {
    for body in [ThrottleBody::Xml, ThrottleBody::Json] {
        let sim = sim_builder()
            .seed(40)
            .invoices(120)
            .quirks(Quirks {
                throttle_body: body,
                ..Quirks::default()
            })
            .spawn()
            .await
            .unwrap();
        let client = client(&sim);
        sim.script(vec![ScriptedFault::Throttle; 6]);
        let pages = all_pages(&client, page_query()).await;
        assert_eq!(unique(&ids(&pages)).len(), 120);
        let stats = sim.stats();
        assert_eq!(stats.throttled, 6, "{body:?}");
        assert_eq!(stats.count("query", 429), 6);
        assert_eq!(stats.count("query", 200), 3);
    }

    // A sustained probabilistic storm (half of all requests throttled) over a whole backfill.
    let sim = sim_builder().seed(41).invoices(2500).spawn().await.unwrap();
    sim.set_faults(FaultPlan {
        throttle: 0.5,
        seed: 7,
        ..FaultPlan::default()
    });
    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .retry_policy(fast_retry().with_max_attempts(30))
    .build()
    .unwrap();
    let q = Query::select("Invoice")
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(100)
        .build()
        .unwrap();
    let pages = all_pages(&client, q).await;
    assert_eq!(unique(&ids(&pages)).len(), 2500);
    assert!(sim.stats().throttled > 10);
}

/// `Retry-After` is honoured (virtual time: the wait is the header's, not the backoff's).
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let sim = sim_builder()
        .seed(42)
        .invoices(10)
        .quirks(Quirks {
            retry_after: Some(Duration::from_secs(7)),
            ..Quirks::default()
        })
        .spawn()
        .await
        .unwrap();
    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .retry_policy(
        RetryPolicy::default()
            .with_backoff(ms(1), ms(1), Duration::from_secs(60))
            .with_jitter(false),
    )
    .build()
    .unwrap();
    client.query_page(&page_query()).await.unwrap();
    sim.script(vec![ScriptedFault::Throttle, ScriptedFault::Throttle]);
    let started = tokio::time::Instant::now();
    client.query_page(&page_query()).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(14), "{waited:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");

    // Without the header: exponential from the throttle start (2 s, 4 s, 8 s…).
    sim.set_quirks(Quirks::default());
    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .retry_policy(RetryPolicy::default().with_jitter(false))
    .build()
    .unwrap();
    client.query_page(&page_query()).await.unwrap();
    sim.script(vec![ScriptedFault::Throttle; 3]);
    let started = tokio::time::Instant::now();
    client.query_page(&page_query()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(14) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// 5xx, dropped connections, truncated and malformed bodies are retried; a 500 only once.
#[tokio::test]
async fn server_and_body_failures_are_retried() {
    let sim = sim_builder().seed(43).invoices(60).spawn().await.unwrap();
    let client = client(&sim);
    sim.script(vec![
        ScriptedFault::Status(500),
        ScriptedFault::Status(502),
        ScriptedFault::Status(503),
        ScriptedFault::Status(504),
        ScriptedFault::DropConnection,
        ScriptedFault::MalformedJson,
    ]);
    let page = client.query_page(&page_query()).await.unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(query_requests(&sim), 7);

    // A SystemFault inside HTTP 200 is resubmitted like a 500.
    sim.reset_stats();
    sim.script(vec![ScriptedFault::FaultWith200]);
    assert_eq!(client.query_page(&page_query()).await.unwrap().len(), 50);
    assert_eq!(sim.stats().count("query", 200), 2);

    // Two 500s in one request: Intuit says resubmit once, so the second is final.
    sim.reset_stats();
    sim.script(vec![ScriptedFault::Status(500), ScriptedFault::Status(500)]);
    let err = client.query_page(&page_query()).await.unwrap_err();
    assert_eq!(query_requests(&sim), 2);
    assert!(
        matches!(err, QboError::GaveUp { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.is_retryable(),
        "the caller may try the window again later"
    );
    assert_eq!(err.status(), Some(500));
    let fault = err.fault().unwrap();
    assert_eq!(fault.fault_type.as_deref(), Some("SystemFault"));
    assert!(fault.intuit_tid.is_some());

    // Retries run out.
    sim.reset_stats();
    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .retry_policy(fast_retry().with_max_attempts(3))
    .build()
    .unwrap();
    sim.script(vec![ScriptedFault::Status(503); 5]);
    let err = client.query_page(&page_query()).await.unwrap_err();
    assert!(
        matches!(err, QboError::GaveUp { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.failure_class(),
        Some(FailureClass::ServerError {
            status: 503,
            retry_after: None
        })
    );
    assert_eq!(query_requests(&sim), 3);
}

/// Validation faults are never retried, and keep QBO's fault with its intuit_tid.
#[tokio::test]
async fn validation_faults_are_not_retried() {
    let sim = sim_builder().seed(44).spawn().await.unwrap();
    let client = client(&sim);
    let q = Query::select("Invoice")
        .filter("NoSuchField", qbo_client::Op::Eq, "x")
        .build()
        .unwrap();
    let err = client.query_page(&q).await.unwrap_err();
    assert_eq!(query_requests(&sim), 1);
    assert!(!err.is_retryable() && !err.is_auth());
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.failure_class(), Some(FailureClass::Validation));
    let fault = err.fault().unwrap();
    assert_eq!(fault.fault_type.as_deref(), Some("ValidationFault"));
    assert!(fault.code().is_some() && fault.message().is_some() && fault.detail().is_some());
    let tid = sim
        .requests()
        .into_iter()
        .rfind(|r| r.endpoint == "query")
        .unwrap()
        .intuit_tid;
    assert_eq!(err.intuit_tid(), Some(tid.as_str()));
    assert!(err.to_string().contains(&tid));
}

/// A request that outlives the timeout is retried.
#[tokio::test]
async fn timeouts_are_retried() {
    let sim = sim_builder().seed(45).invoices(20).spawn().await.unwrap();
    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .request_timeout(ms(400))
    .build()
    .unwrap();
    client.query_page(&page_query()).await.unwrap();
    sim.script(vec![ScriptedFault::Slow(Duration::from_secs(2))]);
    let page = client.query_page(&page_query()).await.unwrap();
    assert_eq!(page.len(), 20);
    assert!(page.latency < ms(400));

    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .request_timeout(ms(300))
    .retry_policy(fast_retry().with_max_attempts(2))
    .build()
    .unwrap();
    sim.script(vec![ScriptedFault::Slow(Duration::from_secs(2)); 2]);
    let err = client.query_page(&page_query()).await.unwrap_err();
    assert_eq!(err.failure_class(), Some(FailureClass::Timeout));
    assert!(err.is_retryable());
}

/// A random mix of every transient fault over a whole backfill loses nothing.
#[tokio::test]
async fn a_hostile_server_loses_no_record() {
    let sim = sim_builder().seed(46).invoices(1500).spawn().await.unwrap();
    sim.set_faults(FaultPlan {
        throttle: 0.1,
        server_error: 0.03,
        bad_gateway: 0.05,
        service_unavailable: 0.05,
        gateway_timeout: 0.05,
        drop_connection: 0.05,
        malformed_json: 0.05,
        expired_token: 0.02,
        seed: 3,
        ..FaultPlan::default()
    });
    let client = builder(
        &sim,
        std::sync::Arc::new(qbo_client::MemoryTokenStore::new()),
    )
    .retry_policy(
        fast_retry()
            .with_max_attempts(25)
            .with_max_internal_error_retries(3),
    )
    .build()
    .unwrap();
    let q = Query::select("Invoice")
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(50)
        .build()
        .unwrap();
    let pages = all_pages(&client, q.clone()).await;
    let got: HashSet<String> = unique(&ids(&pages));
    assert_eq!(got.len(), 1500);
    assert!(sim.stats().faults_injected > 5);
    sim.set_faults(FaultPlan::default());
    assert_eq!(client.count(&q).await.unwrap(), 1500);
}
