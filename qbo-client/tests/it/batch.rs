//! Batch queries against the simulator: equal to single queries, truncation detected under a
//! per-batch object cap, per-item faults, both budgets held, items checked before sending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qbo_client::{
    BatchError, BatchItem, BatchValue, ExpectedRows, MemoryTokenStore, Op, Order, QboClient,
    QboError, Query, RateLimit, RetryPolicy,
};
use qbo_sim::{BatchItemFault, BatchItemFaultKind, BatchObjectCap, ScriptedFault};
use time::macros::datetime;

use crate::common::*;

/// 2,500 invoices and 200 customers, no limits but the batch budget's 40 a minute.
fn many_invoices() -> qbo_sim::SimBuilder {
    sim_builder().seed(60).invoices(2500).customers(200)
}

fn invoice_page(start: u32, max: u32) -> Query {
    Query::select("Invoice")
        .order_by("Id", Order::Asc)
        .start_position(start)
        .max_results(max)
        .build()
        .unwrap()
}

fn raws(p: &qbo_client::Page) -> Vec<String> {
    p.records.iter().map(|r| r.raw.get().to_owned()).collect()
}

#[tokio::test]
async fn a_batch_of_pages_and_counts_equals_the_same_single_queries() {
    let sim = many_invoices().spawn().await.unwrap();
    let client = client(&sim);
    let in_january = Query::select("Invoice")
        .filter(
            "MetaData.CreateTime",
            Op::Ge,
            datetime!(2023-01-01 00:00 UTC),
        )
        .filter(
            "MetaData.CreateTime",
            Op::Lt,
            datetime!(2023-02-01 00:00 UTC),
        )
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(1000)
        .build()
        .unwrap();
    let queries = vec![
        invoice_page(1, 500),
        invoice_page(501, 500),
        Query::count("Invoice").build().unwrap(),
        Query::select("Customer").max_results(1000).build().unwrap(),
        Query::count("Customer").build().unwrap(),
        in_january.clone(),
        in_january.to_count(),
        // Past the end: an empty page.
        invoice_page(5001, 1000),
    ];
    let items = BatchItem::numbered(queries.clone());
    let answer = client.batch(&items).await.unwrap();
    assert_eq!(client.api_calls(), 1, "a batch is one request");
    assert_eq!(client.api_batches(), 1);
    assert_eq!(client.api_batch_items(), 8);
    assert_eq!(sim.stats().count("batch", 200), 1);
    assert_eq!(answer.items.len(), 8);
    assert!(answer.intuit_tid.is_some());

    for (item, q) in answer.items.iter().zip(&queries) {
        assert_eq!(&item.query, q);
        match item.result.as_ref().unwrap() {
            BatchValue::Count(n) => assert_eq!(*n, client.count(q).await.unwrap(), "{q}"),
            BatchValue::Page(p) => {
                let single = client.query_page(q).await.unwrap();
                assert_eq!(raws(p), raws(&single), "{q}");
                assert_eq!(p.query, single.query);
                assert_eq!(
                    (p.start_position, p.max_results, p.page_number),
                    (
                        single.start_position,
                        single.max_results,
                        single.page_number
                    )
                );
                assert!(p.rejects.is_empty());
            }
        }
    }
    assert_eq!(answer.get("3").and_then(|i| i.count()), Some(2500));
    assert_eq!(
        answer.get("8").and_then(|i| i.page()).map(|p| p.len()),
        Some(0)
    );
    assert!(answer.get("6").unwrap().page().unwrap().len() > 100);
    // 500 + 500 invoices + the active customers (their COUNT) + January's invoices.
    let customers = answer.get("5").and_then(|i| i.count()).unwrap();
    assert!(customers > 100 && customers < 200, "{customers}");
    assert_eq!(
        answer.objects() as u64,
        1000 + customers + answer.get("6").unwrap().page().unwrap().len() as u64
    );
}

#[tokio::test]
async fn a_per_batch_object_cap_is_detected_and_single_queries_recover_the_rows() {
    let sim = many_invoices()
        .batch_object_cap(BatchObjectCap::PerBatch)
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    let items = vec![
        BatchItem::new("n", Query::count("Invoice").build().unwrap()),
        BatchItem::new("a", invoice_page(1, 700)),
        BatchItem::new("b", invoice_page(701, 700)),
        BatchItem::new("c", invoice_page(1401, 700)),
    ];
    let answer = client.batch(&items).await.unwrap();
    let count = answer.get("n").unwrap().count().unwrap();
    assert_eq!(count, 2500);
    assert_eq!(
        answer.objects(),
        1000,
        "the simulator cut the batch at 1,000 objects"
    );

    let mut loaded: Vec<String> = Vec::new();
    let mut fell_back = Vec::new();
    for item in &answer.items[1..] {
        let page = item.page().unwrap();
        // Both kinds of expectation see it: the COUNT's and a full page's.
        let by_count = ExpectedRows::Count(count).check(page);
        let by_size = ExpectedRows::MaxResults { window_ends: false }.check(page);
        assert_eq!(by_count.is_some(), by_size.is_some(), "{}", item.bid);
        match by_count {
            None => loaded.extend(page.records.iter().map(|r| r.id.clone())),
            Some(reason) => {
                assert!(
                    reason.to_string().contains("its COUNT promises"),
                    "{reason}"
                );
                fell_back.push((item.bid.clone(), reason.got));
                let single = client.query_page(&item.query).await.unwrap();
                assert_eq!(ExpectedRows::Count(count).check(&single), None);
                loaded.extend(single.records.iter().map(|r| r.id.clone()));
            }
        }
    }
    assert_eq!(fell_back, [("b".to_owned(), 300), ("c".to_owned(), 0)]);
    // Exactly the rows of the same pages read one by one.
    let mut expected = Vec::new();
    for start in [1, 701, 1401] {
        let p = client.query_page(&invoice_page(start, 700)).await.unwrap();
        expected.extend(p.records.iter().map(|r| r.id.clone()));
    }
    assert_eq!(loaded, expected);
    assert_eq!(loaded.len(), 2100);

    // Read per item, the same batch is whole: nothing is flagged.
    sim.set_batch_object_cap(BatchObjectCap::PerItem);
    let answer = client.batch(&items).await.unwrap();
    for item in &answer.items[1..] {
        assert_eq!(ExpectedRows::Count(count).check(item.page().unwrap()), None);
    }
}

#[tokio::test]
async fn a_per_item_fault_fails_only_its_item_and_its_retry_alone_succeeds() {
    let sim = many_invoices().spawn().await.unwrap();
    let client = client(&sim);
    sim.set_batch_item_faults(vec![BatchItemFault::nth(1)]);
    let items = BatchItem::numbered([
        invoice_page(1, 300),
        invoice_page(301, 300),
        Query::count("Invoice").build().unwrap(),
    ]);
    let answer = client.batch(&items).await.unwrap();
    assert_eq!(
        client.api_calls(),
        1,
        "an item's fault does not retry the batch"
    );
    assert_eq!(answer.items[0].page().unwrap().len(), 300);
    assert_eq!(answer.items[2].count(), Some(2500));
    let err = answer.items[1].result.as_ref().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.fault().and_then(|f| f.code()), Some("10000"));
    assert!(err.fault().unwrap().is_system());
    assert_eq!(err.intuit_tid(), answer.intuit_tid.as_deref());

    // The failed item alone, again: it succeeds and equals the single query.
    let retry = client.batch(&items[1..2]).await.unwrap();
    let page = retry.items[0].page().unwrap();
    assert_eq!(retry.items[0].bid, "2");
    let single = client.query_page(&invoice_page(301, 300)).await.unwrap();
    assert_eq!(raws(page), raws(&single));
    assert_eq!(client.api_batch_items(), 4);
    assert_eq!(sim.stats().batch_item_faults, 1);

    // A validation fault is an item's refusal: not worth a retry.
    sim.set_batch_item_faults(vec![
        BatchItemFault::query_containing("COUNT").kind(BatchItemFaultKind::Validation),
    ]);
    let answer = client.batch(&items).await.unwrap();
    let err = answer.items[2].result.as_ref().unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(answer.items[0].result.is_ok() && answer.items[1].result.is_ok());
}

#[tokio::test]
async fn the_whole_batch_goes_through_the_request_loop_throttle_and_expired_token() {
    let sim = many_invoices().spawn().await.unwrap();
    let client = client(&sim);
    let items = BatchItem::numbered([
        invoice_page(1, 10),
        Query::count("Customer").build().unwrap(),
    ]);
    client.batch(&items).await.unwrap();
    // A 429 for the whole batch is retried like any request; each attempt is metered.
    sim.script(vec![ScriptedFault::Throttle, ScriptedFault::Status(503)]);
    let answer = client.batch(&items).await.unwrap();
    assert!(answer.items[1].count().is_some());
    assert_eq!(client.api_calls(), 4);
    assert_eq!(client.api_batches(), 4);
    assert_eq!(client.api_batch_items(), 8);
    // An expired access token: one refresh, then the batch.
    let refreshes = sim.stats().token_refreshes;
    sim.expire_access_tokens();
    let answer = client.batch(&items).await.unwrap();
    assert_eq!(answer.items[0].page().unwrap().len(), 10);
    assert_eq!(sim.stats().token_refreshes, refreshes + 1);
    assert_eq!(sim.stats().count("batch", 401), 1);
}

#[tokio::test]
async fn a_batch_over_30_items_is_refused_before_sending() {
    let sim = many_invoices().spawn().await.unwrap();
    let client = client(&sim);
    let q = Query::count("Item").build().unwrap();
    let items = BatchItem::numbered(std::iter::repeat_n(q.clone(), 31));
    let err = client.batch(&items).await.unwrap_err();
    assert!(
        matches!(
            err,
            QboError::Batch(BatchError::TooManyItems { items: 31, max: 30 })
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(chain(&err).contains("at most 30 items"), "{}", chain(&err));
    let dup = [
        BatchItem::new("x", q.clone()),
        BatchItem::new("x", q.clone()),
    ];
    assert!(matches!(
        client.batch(&dup).await,
        Err(QboError::Batch(BatchError::DuplicateBid { .. }))
    ));
    assert!(matches!(
        client.batch(&[]).await,
        Err(QboError::Batch(BatchError::Empty))
    ));
    assert_eq!(client.api_calls(), 0);
    assert_eq!(sim.stats().endpoint_total("batch"), 0, "nothing was sent");
    // Thirty is fine.
    let thirty = BatchItem::numbered(std::iter::repeat_n(q, 30));
    let answer = client.batch(&thirty).await.unwrap();
    assert!(answer.items.iter().all(|i| i.count().is_some()));
}

/// Budgets of one scaled test: the simulator's window is 1 s (QBO: a minute).
struct Budgets {
    sim_requests: u32,
    sim_batches: u32,
    client_requests_per_min: u32,
    client_batches_per_min: u32,
    batches: usize,
    singles: usize,
}

/// Runs `batches` batches and `singles` single COUNTs at once under `b`, with no retries (a
/// single 429 fails); returns the wall time, after checking from the simulator's own log that
/// no 1-second window held more than either budget (`0`: unlimited).
async fn hold(b: Budgets) -> Duration {
    let sim = qbo_sim::Sim::builder()
        .seed(61)
        .customers(20)
        .invoices(100)
        .rate_window(Duration::from_secs(1))
        .requests_per_min(b.sim_requests)
        .batch_requests_per_min(b.sim_batches)
        .max_concurrency(10)
        .latency(ms(2), ms(2))
        .spawn()
        .await
        .unwrap();
    let client = QboClient::builder(config(&sim))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .rate_limit(RateLimit {
            per_minute: b.client_requests_per_min,
            per_second: 0,
            max_concurrency: 10,
        })
        .batch_rate_limit(b.client_batches_per_min)
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .unwrap();
    client
        .ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    let items = BatchItem::numbered([
        Query::count("Invoice").build().unwrap(),
        Query::count("Customer").build().unwrap(),
    ]);
    let count = Query::count("Invoice").build().unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..b.batches.max(b.singles) {
        if i < b.batches {
            let c = client.clone();
            let items = items.clone();
            tasks.push(tokio::spawn(async move {
                c.batch(&items).await.map(|a| a.items.len())
            }));
        }
        if i < b.singles {
            let c = client.clone();
            let q = count.clone();
            tasks.push(tokio::spawn(async move { c.count(&q).await.map(|_| 1) }));
        }
    }
    let mut failed = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failed.push(e.to_string());
        }
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert!(failed.is_empty(), "{failed:?} {stats:?}");
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.count("batch", 200), b.batches as u64);
    assert_eq!(stats.count("query", 200), b.singles as u64);
    assert_eq!(stats.batch_items, 2 * b.batches as u64);
    assert_eq!(client.api_calls(), (b.batches + b.singles) as u64);
    assert_eq!(client.api_batch_items(), 2 * b.batches as u64);

    let worst = |endpoints: &[&str]| {
        let mut at: Vec<_> = sim
            .requests()
            .into_iter()
            .filter(|r| endpoints.contains(&r.endpoint.as_str()))
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
        worst as u32
    };
    let batches = worst(&["batch"]);
    assert!(
        b.sim_batches == 0 || batches <= b.sim_batches,
        "{batches} batches in one window"
    );
    let requests = worst(&["batch", "query"]);
    assert!(
        requests <= b.sim_requests,
        "{requests} requests in one window"
    );
    elapsed
}

/// The batch budget binds: 40 batches and 100 requests a window, the client at 70% of each
/// (1,680 batches and 4,200 requests a minute, leaving room for scheduling stalls on a busy
/// machine). Without the batch limiter the 50 batches would go out at the request rate, over
/// 40 in a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_limiter_holds_40_a_window() {
    let elapsed = hold(Budgets {
        sim_requests: 100,
        sim_batches: 40,
        client_requests_per_min: 4200,
        client_batches_per_min: 1680,
        batches: 50,
        singles: 20,
    })
    .await;
    // Paced, not bunched: 50 batches at 28 a second take at least ~1.7 s.
    assert!(elapsed >= Duration::from_millis(1700), "{elapsed:?}");
}

/// A batch also takes a slot of the request budget: with the batch budget off in the client,
/// batches and single queries together stay within 60 requests a window (the client at 70%:
/// 2,520 a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_a_slot_of_the_request_budget_too() {
    let elapsed = hold(Budgets {
        sim_requests: 60,
        sim_batches: 0,
        client_requests_per_min: 2520,
        client_batches_per_min: 0,
        batches: 40,
        singles: 40,
    })
    .await;
    // 80 requests at 42 a second take at least ~1.8 s.
    assert!(elapsed >= Duration::from_millis(1800), "{elapsed:?}");
}
