//! The per-realm limiter against the sim's budget and concurrency cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qbo_client::{MemoryTokenStore, QboClient, Query, RateLimit, RetryPolicy};

use crate::common::*;

/// A 2,000-request burst stays under the budget and at most 10 in flight. Scaled so the test
/// is short: the sim allows 500 requests per 1-second window (QBO: 500 per minute) and the
/// client is configured for 80% of that (24,000/min = 400/s, leaving room for scheduling stalls); the 500/min arithmetic itself
/// is checked by the limiter's unit tests. No retries: a single 429 would fail the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2000_request_burst_stays_under_budget_and_concurrency() {
    let sim = qbo_sim::Sim::builder()
        .seed(50)
        .customers(20)
        .requests_per_min(500)
        .rate_window(Duration::from_secs(1))
        .max_concurrency(10)
        .latency(ms(3), ms(2))
        .spawn()
        .await
        .unwrap();
    let client = QboClient::builder(config(&sim))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .rate_limit(RateLimit {
            per_minute: 24_000,
            per_second: 0,
            max_concurrency: 10,
        })
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .unwrap();
    client
        .ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    let started = Instant::now();
    count_burst(&client, 2000).await;
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.count("query", 429), 0);
    assert_eq!(stats.count("query", 200), 2000);
    assert!(stats.peak_concurrency <= 10, "{stats:?}");
    assert!(
        stats.peak_concurrency >= 2,
        "the burst did run concurrently: {stats:?}"
    );
    // Paced, not bunched: 2,000 at 400/s take at least ~5 s.
    assert!(elapsed >= Duration::from_millis(4900), "{elapsed:?}");

    // From the sim's own request log: no 1-second window holds more than the budget.
    let mut at: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .map(|r| r.at)
        .collect();
    at.sort();
    let mut lo = 0;
    let mut worst = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= time::Duration::seconds(1) {
            lo += 1;
        }
        worst = worst.max(hi - lo + 1);
    }
    assert!(worst <= 500, "{worst} requests in one second");
}

/// Two clients of one realm share one limiter: together they stay within one cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_one_realm_share_the_limiter() {
    let sim = qbo_sim::Sim::builder()
        .seed(51)
        .customers(20)
        .requests_per_min(0)
        .max_concurrency(3)
        .latency(ms(15), ms(5))
        .spawn()
        .await
        .unwrap();
    let limit = RateLimit {
        per_minute: 0,
        per_second: 0,
        max_concurrency: 3,
    };
    // One store for both, as two services of one company would share one.
    let store = Arc::new(MemoryTokenStore::new());
    let a = QboClient::builder(config(&sim))
        .token_store(store.clone())
        .rate_limit(limit)
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .unwrap();
    let b = QboClient::builder(config(&sim))
        .token_store(store)
        .rate_limit(limit)
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .unwrap();
    a.ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    let q = Query::count("Customer").build().unwrap();
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let q = q.clone();
            tokio::spawn(async move { c.count(&q).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.peak_concurrency, 3, "{stats:?}");
    // b refreshed from a's saved token; a, whose token b's rotation killed, would recover the
    // same way (store first).
    assert_eq!(stats.token_failures, 0);
}

/// QBO's own budget on both sides: the client goes at QBO's per-second pace while the minute's
/// budget lasts (faster than 500 a minute spread evenly), and the simulator, enforcing 500 a
/// minute, 10 a second and 10 in flight, throttles none of it. No retries: a single 429 would
/// fail the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qbo_pace_is_never_throttled_by_qbo_limits() {
    let sim = qbo_sim::Sim::builder()
        .seed(52)
        .customers(20)
        .qbo_limits()
        .latency(ms(20), ms(30))
        .spawn()
        .await
        .unwrap();
    let client = QboClient::builder(config(&sim))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .rate_limit(RateLimit::QBO)
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .unwrap();
    client
        .ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    count_burst(&client, 60).await;
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.count("query", 200), 60);
    // The simulator's arrivals: never 10 within a second (its per-second limit counts them so).
    let mut at: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .map(|r| r.at)
        .collect();
    at.sort();
    let worst = at
        .windows(11)
        .map(|w| w[10] - w[0])
        .min()
        .unwrap_or(time::Duration::MAX);
    assert!(
        worst >= time::Duration::seconds(1),
        "11 requests arrived within {worst}"
    );
}

/// `n` COUNT queries from `client`, all at once; every one must succeed.
async fn count_burst(client: &QboClient, n: usize) {
    let q = Query::count("Customer").build().unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let c = client.clone();
            let q = q.clone();
            tokio::spawn(async move { c.count(&q).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
