//! Paging, windows, inactive records, changing data (pitfalls 2, 3, 4, 5, 7).

use std::collections::HashSet;

use futures::StreamExt;
use qbo_client::{Op, Order, Query};
use time::macros::{datetime, offset};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::common::*;

fn by_create_time(entity: &str, size: u32) -> Query {
    Query::select(entity)
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(size)
        .build()
        .unwrap()
}

/// Pitfall 2: paging must not stop at 100 or at the first 1000.
#[tokio::test]
async fn pages_through_2500_invoices_exactly_once() {
    let sim = sim_builder().seed(11).invoices(2500).spawn().await.unwrap();
    let client = client(&sim);
    let query = by_create_time("Invoice", 1000);
    let pages = all_pages(&client, query.clone()).await;

    let sizes: Vec<usize> = pages.iter().map(|p| p.len()).collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
    assert_eq!(
        pages.iter().map(|p| p.page_number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        pages.iter().map(|p| p.start_position).collect::<Vec<_>>(),
        vec![1, 1001, 2001]
    );
    assert!(
        pages
            .iter()
            .all(|p| p.max_results == 1000 && p.intuit_tid.is_some())
    );

    let truth = sim.truth("Invoice");
    assert_eq!(truth.len(), 2500);
    let got = unique(&ids(&pages));
    let want: HashSet<String> = truth.iter().map(|t| t.id.clone()).collect();
    assert_eq!(got, want);

    // Raw JSON is byte-identical to what the sim served; times are the same instants.
    let by_id: std::collections::HashMap<&str, &qbo_sim::TruthRecord> =
        truth.iter().map(|t| (t.id.as_str(), t)).collect();
    for r in pages.iter().flat_map(|p| &p.records) {
        let t = by_id[r.id.as_str()];
        assert_eq!(r.raw.get(), t.json);
        assert_eq!(r.create_time, t.create_time);
        assert_eq!(r.last_updated_time, t.last_updated_time);
        assert_eq!(r.create_time.offset(), time::UtcOffset::UTC);
        assert!(r.txn_date.is_some());
    }

    // The exact queries sent, in order, are the ones the pages report.
    let sent: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .filter_map(|r| r.query)
        .collect();
    assert_eq!(
        sent,
        pages.iter().map(|p| p.query.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        sent[1],
        "SELECT * FROM Invoice ORDERBY MetaData.CreateTime ASC STARTPOSITION 1001 MAXRESULTS 1000"
    );
    assert_eq!(client.count(&query).await.unwrap(), 2500);
}

/// Pitfall 2 again: QBO's default page is 100 rows; a page of 100 is not the end.
#[tokio::test]
async fn default_page_size_is_not_the_end() {
    let sim = sim_builder().seed(12).invoices(250).spawn().await.unwrap();
    let client = client(&sim);
    let first = client
        .query_page(&Query::select("Invoice").build().unwrap())
        .await
        .unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!(first.max_results, 100);
    assert!(!first.is_last());

    // pages() without MAXRESULTS uses 1000.
    let pages = all_pages(&client, Query::select("Invoice").build().unwrap()).await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].len(), 250);
    assert!(pages[0].query.ends_with("STARTPOSITION 1 MAXRESULTS 1000"));

    // Small pages: 3 pages of 100, 100, 50.
    let pages = all_pages(&client, by_create_time("Invoice", 100)).await;
    assert_eq!(
        pages.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![100, 100, 50]
    );
    assert_eq!(unique(&ids(&pages)).len(), 250);
}

/// An exact multiple of the page size ends with QBO's empty page `{"QueryResponse":{}}`.
#[tokio::test]
async fn exact_multiple_ends_with_an_empty_page() {
    let sim = sim_builder().seed(13).invoices(2000).spawn().await.unwrap();
    let client = client(&sim);
    let pages = all_pages(&client, by_create_time("Invoice", 1000)).await;
    assert_eq!(
        pages.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![1000, 1000, 0]
    );
    assert_eq!(pages[2].page_number, 3);
    assert_eq!(unique(&ids(&pages)).len(), 2000);
}

/// The stream is lazy: one request per poll.
#[tokio::test]
async fn pages_are_requested_only_when_polled() {
    let sim = sim_builder().seed(14).invoices(350).spawn().await.unwrap();
    let client = client(&sim);
    let mut stream = Box::pin(client.pages(by_create_time("Invoice", 100)));
    assert_eq!(query_requests(&sim), 0);
    stream.next().await.unwrap().unwrap();
    assert_eq!(query_requests(&sim), 1);
    tokio::time::sleep(ms(50)).await;
    assert_eq!(query_requests(&sim), 1, "no prefetch");
    stream.next().await.unwrap().unwrap();
    assert_eq!(query_requests(&sim), 2);
    let rest: Vec<_> = stream.collect().await;
    assert_eq!(rest.len(), 2);
    assert_eq!(query_requests(&sim), 4);
}

/// Pitfall 3: inactive customers and items come only with `Active IN (true, false)`.
#[tokio::test]
async fn inactive_records_only_with_the_active_filter() {
    let sim = sim_builder()
        .seed(15)
        .customers(300)
        .items(150)
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    for entity in ["Customer", "Item"] {
        let truth = sim.truth(entity);
        let all: HashSet<String> = truth.iter().map(|t| t.id.clone()).collect();
        let active: HashSet<String> = truth
            .iter()
            .filter(|t| t.active == Some(true))
            .map(|t| t.id.clone())
            .collect();
        assert!(
            active.len() < all.len(),
            "{entity}: the sim should have inactive records"
        );

        let plain = all_pages(&client, by_create_time(entity, 1000)).await;
        assert_eq!(unique(&ids(&plain)), active, "{entity} without the filter");

        let q = Query::select(entity)
            .include_inactive()
            .order_by("MetaData.CreateTime", Order::Asc)
            .max_results(100)
            .build()
            .unwrap();
        let with = all_pages(&client, q.clone()).await;
        assert_eq!(unique(&ids(&with)), all, "{entity} with the filter");
        assert!(with[0].query.contains("WHERE Active IN (true, false)"));
        assert_eq!(client.count(&q).await.unwrap(), all.len() as u64);
        assert_eq!(
            client
                .count(&Query::count(entity).build().unwrap())
                .await
                .unwrap(),
            active.len() as u64
        );
    }
}

fn window(entity: &str, start: OffsetDateTime, end: OffsetDateTime, size: u32) -> Query {
    Query::select(entity)
        .filter("MetaData.CreateTime", Op::Ge, start)
        .filter("MetaData.CreateTime", Op::Lt, end)
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(size)
        .build()
        .unwrap()
}

/// Pitfall 5: windows are instants, whatever the offsets of the payloads or the bounds.
#[tokio::test]
async fn day_windows_partition_records_by_instant() {
    let start = datetime!(2023-03-09 00:00 UTC);
    let sim = sim_builder()
        .seed(16)
        .invoices(900)
        .span(start, start + TimeDuration::days(6))
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    let truth = sim.truth("Invoice");
    // Payloads carry Pacific offsets (DST starts 2023-03-12), never UTC.
    assert!(truth.iter().any(|t| t.json.contains("-08:00")));
    assert!(truth.iter().any(|t| t.json.contains("-07:00")));

    let mut seen = Vec::new();
    for day in 0..6 {
        // Bounds given in Guayaquil time (UTC-5): rendered as the same UTC instants.
        let lo = (start + TimeDuration::days(day)).to_offset(offset!(-5));
        let hi = (start + TimeDuration::days(day + 1)).to_offset(offset!(-5));
        let q = window("Invoice", lo, hi, 50);
        let pages = all_pages(&client, q.clone()).await;
        let got = ids(&pages);
        let want: HashSet<String> = truth
            .iter()
            .filter(|t| t.create_time >= lo && t.create_time < hi)
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(unique(&got), want, "day {day}");
        for r in pages.iter().flat_map(|p| &p.records) {
            assert!(r.create_time >= lo && r.create_time < hi);
        }
        assert!(pages[0].query.contains(&format!(
            "MetaData.CreateTime >= '2023-03-{:02}T00:00:00Z'",
            9 + day
        )));
        assert_eq!(client.count(&q).await.unwrap(), want.len() as u64);
        seen.extend(got);
    }
    // Every record in exactly one window.
    assert_eq!(unique(&seen).len(), truth.len());
}

/// Pitfall 4: records updated or created while a window is paged are neither skipped nor
/// duplicated when the window is by CreateTime (immutable) and ordered by it.
#[tokio::test]
async fn records_changing_during_paging_are_seen_once() {
    let start = datetime!(2023-06-01 00:00 UTC);
    let end = datetime!(2023-06-11 00:00 UTC);
    let sim = sim_builder()
        .seed(17)
        .invoices(600)
        .span(start, end)
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    let truth = sim.truth("Invoice");
    let q = window("Invoice", start, end, 100);
    let mut stream = Box::pin(client.pages(q));
    let mut got = Vec::new();
    let mut n = 0;
    while let Some(page) = stream.next().await {
        let page = page.unwrap();
        got.extend(page.records.iter().map(|r| r.id.clone()));
        // Between pages: update records behind and ahead of the cursor, and add new ones
        // (created now, outside the window).
        for t in truth.iter().skip(n * 37 % 600).step_by(97).take(4) {
            sim.update("Invoice", &t.id).unwrap();
        }
        sim.create("Invoice", None).unwrap();
        n += 1;
    }
    let want: HashSet<String> = truth.iter().map(|t| t.id.clone()).collect();
    assert_eq!(unique(&got), want);
    assert_eq!(n, 7, "six full pages and the empty one");
}

/// Pitfall 7: ids are per company; each client talks to its own realm.
#[tokio::test]
async fn ids_collide_across_realms_but_clients_stay_in_their_realm() {
    let sim = sim_builder()
        .seed(18)
        .customers(50)
        .extra_realm("4620816365162543710", 99)
        .spawn()
        .await
        .unwrap();
    let other = sim.realm("4620816365162543710").unwrap();
    let a = client(&sim);
    let mut cfg = config(&sim);
    cfg.realm_id = other.realm_id().to_owned();
    cfg.credentials.refresh_token = qbo_client::SecretString::from(other.refresh_token());
    let b = qbo_client::QboClient::builder(cfg)
        .rate_limit(qbo_client::RateLimit::unlimited())
        .build()
        .unwrap();
    assert_eq!(b.realm_id(), "4620816365162543710");
    let q = Query::select("Customer")
        .include_inactive()
        .max_results(1000)
        .build()
        .unwrap();
    let pa = all_pages(&a, q.clone()).await;
    let pb = all_pages(&b, q).await;
    let ia = unique(&ids(&pa));
    let ib = unique(&ids(&pb));
    assert!(!ia.is_disjoint(&ib), "the same ids exist in both companies");
    let raw_a: std::collections::HashMap<_, _> = pa
        .iter()
        .flat_map(|p| &p.records)
        .map(|r| (r.id.clone(), r.raw.get().to_owned()))
        .collect();
    let differing = pb
        .iter()
        .flat_map(|p| &p.records)
        .filter(|r| raw_a.get(&r.id).is_some_and(|ra| *ra != r.raw.get()))
        .count();
    assert!(differing > 0, "same id, different record");
    for r in sim.requests().iter().filter(|r| r.endpoint == "query") {
        assert!(r.path.contains(r.realm.as_deref().unwrap()));
    }
    let realms: HashSet<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .filter_map(|r| r.realm)
        .collect();
    assert_eq!(realms.len(), 2);
}

/// Long queries (big IN lists) are POSTed as `application/text`.
#[tokio::test]
async fn long_queries_are_posted() {
    let sim = sim_builder().seed(19).invoices(400).spawn().await.unwrap();
    let client = client(&sim);
    let truth = sim.truth("Invoice");
    let wanted: Vec<String> = truth.iter().take(300).map(|t| t.id.clone()).collect();
    let q = Query::select("Invoice")
        .filter("Id", Op::In, wanted.clone())
        .max_results(1000)
        .build()
        .unwrap();
    assert!(q.render().len() > 1500);
    let page = client.query_page(&q).await.unwrap();
    let got: HashSet<String> = page.records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got, wanted.into_iter().collect());
    let reqs: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].query.as_deref(), Some(q.render().as_str()));
    // Short ones use GET.
    client
        .count(&Query::count("Invoice").build().unwrap())
        .await
        .unwrap();
    assert_eq!(sim.requests().last().unwrap().method, "GET");
}

/// Escaped literals reach the server intact.
#[tokio::test]
async fn quoted_literals_round_trip_through_the_server() {
    let sim = sim_builder().seed(20).customers(200).spawn().await.unwrap();
    let client = client(&sim);
    let truth = sim.truth("Customer");
    // Names with apostrophes or backslashes, if the generator made any; else any name.
    let pick = truth
        .iter()
        .find(|t| t.json.contains("\\\\") || t.json.contains('\''))
        .unwrap_or(&truth[0]);
    let v: serde_json::Value = serde_json::from_str(&pick.json).unwrap();
    let name = v["DisplayName"].as_str().unwrap().to_owned();
    let q = Query::select("Customer")
        .filter("DisplayName", Op::Eq, name.clone())
        .include_inactive()
        .build()
        .unwrap();
    let page = client.query_page(&q).await.unwrap();
    assert!(page.records.iter().any(|r| r.id == pick.id), "{name}");
    assert_eq!(
        sim.requests().last().unwrap().query.as_deref(),
        Some(q.render().as_str())
    );
}
