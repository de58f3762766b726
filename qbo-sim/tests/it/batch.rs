//! Batch: the two readings of the 1,000-object cap, per-item faults, and how a batch is
//! counted toward the budgets and in the statistics.

use qbo_sim::{BatchItemFault, BatchItemFaultKind, BatchObjectCap, Sim};
use serde_json::{Value, json};
use time::macros::datetime;

use crate::common::{Api, answer};

/// 2,500 invoices: more than two full pages.
fn invoices() -> qbo_sim::SimBuilder {
    Sim::builder()
        .seed(12)
        .customers(20)
        .items(10)
        .invoices(2500)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-03-01 00:00 UTC),
        )
        .requests_per_min(0)
        .max_concurrency(0)
}

/// POSTs a batch of `(bId, query)` items; returns the status and the body.
async fn post(api: &Api, items: &[(&str, &str)]) -> (u16, Value) {
    let body: Vec<Value> = items
        .iter()
        .map(|(b, q)| json!({"bId": b, "Query": q}))
        .collect();
    let r = api
        .http
        .post(format!(
            "{}/v3/company/{}/batch?minorversion=75",
            api.sim.base_url(),
            api.sim.realm_id()
        ))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .json(&json!({ "BatchItemRequest": body }))
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    let v = if a.status == 200 {
        a.json()
    } else {
        Value::Null
    };
    (a.status, v)
}

fn rows(item: &Value) -> usize {
    item["QueryResponse"]["Invoice"]
        .as_array()
        .map_or(0, Vec::len)
}

async fn put(api: &Api, path: &str, body: Value) {
    let r = api
        .http
        .put(format!("{}/__sim/{path}", api.sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{path}");
}

const PAGE_1: &str = "SELECT * FROM Invoice ORDERBY Id STARTPOSITION 1 MAXRESULTS 600";
const PAGE_2: &str = "SELECT * FROM Invoice ORDERBY Id STARTPOSITION 601 MAXRESULTS 600";
const PAGE_3: &str = "SELECT * FROM Invoice ORDERBY Id STARTPOSITION 1201 MAXRESULTS 600";
const COUNT: &str = "SELECT COUNT(*) FROM Invoice";

#[tokio::test]
async fn the_object_cap_per_item_or_per_batch_switched_over_http() {
    let api = Api::start(invoices()).await;
    let items = [("p1", PAGE_1), ("n", COUNT), ("p2", PAGE_2), ("p3", PAGE_3)];

    // Default, per item: every page whole.
    let (status, v) = post(&api, &items).await;
    assert_eq!(status, 200);
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(
        answers.iter().map(rows).collect::<Vec<_>>(),
        [600, 0, 600, 600]
    );
    assert_eq!(answers[1]["QueryResponse"]["totalCount"], 2500);
    assert_eq!(api.sim.stats().batch_items_truncated, 0);

    // Per batch: 1,000 objects in all; the second page is cut to 400 (and says maxResults
    // 400, nothing more), the third is empty; the COUNT is not an object and answers in full.
    put(&api, "limits", json!({"batch_object_cap": "per_batch"})).await;
    let (status, v) = post(&api, &items).await;
    assert_eq!(status, 200);
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(
        answers.iter().map(rows).collect::<Vec<_>>(),
        [600, 0, 400, 0]
    );
    assert_eq!(answers[1]["QueryResponse"]["totalCount"], 2500);
    assert_eq!(answers[2]["QueryResponse"]["maxResults"], 400);
    assert_eq!(answers[2]["QueryResponse"]["startPosition"], 601);
    assert_eq!(answers[3]["QueryResponse"], json!({}));
    assert_eq!(answers[3]["bId"], "p3");
    // The rows served are the rows answered: 600 + 400.
    let st = api.sim.stats();
    assert_eq!(st.batch_items_truncated, 2);
    assert_eq!(st.rows_served, 1800 + 1000);
    // The cut rows are the first ones of the page, in order: the same Ids as a single query.
    let single = api.rows(PAGE_2, "Invoice").await;
    let cut = answers[2]["QueryResponse"]["Invoice"].as_array().unwrap();
    assert_eq!(&single[..400], &cut[..]);

    // Off (and back to the kebab-case spelling the binary's flag uses): whole pages again.
    put(&api, "limits", json!({"batch_object_cap": "off"})).await;
    let (_, v) = post(&api, &items).await;
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(
        answers.iter().map(rows).collect::<Vec<_>>(),
        [600, 0, 600, 600]
    );
    put(&api, "limits", json!({"batch_object_cap": "per-batch"})).await;
    let (_, v) = post(&api, &[("a", PAGE_3), ("b", PAGE_1)]).await;
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(answers.iter().map(rows).collect::<Vec<_>>(), [600, 400]);
    // The handle sets the same switch.
    api.sim.set_batch_object_cap(BatchObjectCap::PerItem);
    let (_, v) = post(&api, &[("a", PAGE_3), ("b", PAGE_1)]).await;
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(answers.iter().map(rows).collect::<Vec<_>>(), [600, 600]);
}

#[tokio::test]
async fn the_builder_sets_the_per_batch_cap() {
    let api = Api::start(invoices().batch_object_cap(BatchObjectCap::PerBatch)).await;
    let (_, v) = post(&api, &[("a", PAGE_1), ("b", PAGE_2)]).await;
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(answers.iter().map(rows).collect::<Vec<_>>(), [600, 400]);
}

#[tokio::test]
async fn a_per_item_fault_fails_only_its_item_and_is_used_up() {
    let api = Api::start(invoices()).await;
    put(&api, "faults/batch-items", json!([{"item": 1}])).await;
    let items = [("p1", PAGE_1), ("p2", PAGE_2), ("n", COUNT)];
    let (status, v) = post(&api, &items).await;
    assert_eq!(status, 200, "a per-item fault leaves the batch a 200");
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[1]["bId"], "p2");
    assert!(answers[1].get("QueryResponse").is_none());
    assert_eq!(answers[1]["Fault"]["type"], "SystemFault");
    assert_eq!(answers[1]["Fault"]["Error"][0]["code"], "10000");
    assert_eq!(rows(&answers[0]), 600);
    assert_eq!(answers[2]["QueryResponse"]["totalCount"], 2500);
    let st = api.sim.stats();
    assert_eq!((st.batch_items, st.batch_item_faults), (3, 1));
    // Only the two items that ran were executed as queries.
    assert_eq!((st.queries, st.count_queries), (1, 1));
    let last = api.sim.requests().into_iter().next_back().unwrap();
    assert_eq!(last.fault.as_deref(), Some("batch_item_fault"));
    // The fault was for one item: the retry of that item alone succeeds.
    let (_, v) = post(&api, &[("p2", PAGE_2)]).await;
    assert_eq!(rows(&v["BatchItemResponse"][0]), 600);
    assert!(api.sim.batch_item_faults().is_empty());

    // By query text, of the validation kind, twice; the GET shows what is left.
    put(
        &api,
        "faults/batch-items",
        json!([{"query_contains": "COUNT(*)", "kind": "validation", "times": 2}]),
    )
    .await;
    let (_, v) = post(&api, &[("n1", COUNT), ("p", PAGE_1), ("n2", COUNT)]).await;
    let answers = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(answers[0]["Fault"]["type"], "ValidationFault");
    assert_eq!(answers[0]["Fault"]["Error"][0]["code"], "4000");
    assert_eq!(rows(&answers[1]), 600);
    assert_eq!(answers[2]["Fault"]["type"], "ValidationFault");
    let left: Value = api
        .http
        .get(format!("{}/__sim/faults/batch-items", api.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left, json!([]));

    // Through the handle: `times(0)` faults every matching item until cleared; position and
    // text must both match.
    api.sim.set_batch_item_faults(vec![
        BatchItemFault::query_containing("STARTPOSITION 601")
            .kind(BatchItemFaultKind::Validation)
            .times(0),
        BatchItemFault::nth(5),
    ]);
    for _ in 0..2 {
        let (_, v) = post(&api, &[("p1", PAGE_1), ("p2", PAGE_2)]).await;
        assert_eq!(rows(&v["BatchItemResponse"][0]), 600);
        assert_eq!(
            v["BatchItemResponse"][1]["Fault"]["type"],
            "ValidationFault"
        );
    }
    assert_eq!(
        api.sim.batch_item_faults().len(),
        2,
        "nth(5) matched nothing"
    );
    api.sim.set_batch_item_faults(vec![BatchItemFault {
        item: Some(0),
        query_contains: Some("Customer".into()),
        ..BatchItemFault::default()
    }]);
    let (_, v) = post(&api, &[("p1", PAGE_1)]).await;
    assert_eq!(
        rows(&v["BatchItemResponse"][0]),
        600,
        "the text did not match"
    );
}

#[tokio::test]
async fn a_batch_counts_once_toward_each_budget_and_its_items_in_the_stats() {
    // 3 requests and 2 batches a window (a long one, so nothing frees up during the test).
    let api = Api::start(
        invoices()
            .requests_per_min(3)
            .rate_window(std::time::Duration::from_secs(600))
            .batch_requests_per_min(2),
    )
    .await;
    let thirty: Vec<(String, &str)> = (0..30).map(|i| (format!("c{i}"), COUNT)).collect();
    let thirty: Vec<(&str, &str)> = thirty.iter().map(|(b, q)| (b.as_str(), *q)).collect();
    assert_eq!(post(&api, &thirty).await.0, 200);
    assert_eq!(post(&api, &thirty).await.0, 200);
    let st = api.sim.stats();
    assert_eq!(st.count("batch", 200), 2, "60 items, two requests");
    assert_eq!((st.batch_items, st.count_queries), (60, 60));
    // The third batch passes the per-window budget (its third request) and is refused by the
    // batch budget; then the per-window budget is spent: a single query is throttled too.
    assert_eq!(post(&api, &thirty).await.0, 429);
    let st = api.sim.stats();
    assert_eq!((st.throttled_batch, st.throttled_rate), (1, 0));
    assert_eq!(st.batch_items, 60, "a refused batch answers no item");
    assert_eq!(api.get(COUNT).await.status, 429);
    assert_eq!(api.sim.stats().throttled_rate, 1);
}
