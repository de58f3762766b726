use std::collections::{BTreeSet, HashSet};

use backfill_core::{Customer, Entity, Invoice, Item, WindowSize};
use qbo_sim::Sim;
use time::macros::datetime;

use crate::common::*;

async fn check_entity<E: Entity>(page_size: u32, size: WindowSize) {
    let sim = sim(Sim::builder()
        .seed(11)
        .customers(300)
        .items(150)
        .invoices(600)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-03-01 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let (start, end) = ("2023-01-10T00:00:00Z", "2023-02-10T00:00:00Z");
    let mut cfg = config_sized(start, end, size, "eq");
    cfg.page_size = page_size;
    let report = run::<E>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.trigger_completed);
    assert_eq!(report.windows_done, report.windows_planned);

    let (s, e) = (cfg.range_start, cfg.range_end);
    let truth: Vec<_> = sim
        .truth(E::NAME)
        .into_iter()
        .filter(|t| in_range(t, s, e))
        .collect();
    assert!(
        truth.len() > 50,
        "too little data for a meaningful test: {}",
        truth.len()
    );
    let realm = sim.realm_id();
    let rows = table_rows(&sink, E::TABLE, &realm).await;
    let truth_ids: BTreeSet<&str> = truth.iter().map(|t| t.id.as_str()).collect();
    let row_ids: BTreeSet<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(row_ids, truth_ids, "ids differ from the simulator's truth");
    assert_eq!(
        assert_payloads_equal(&sink, E::TABLE, &realm, &truth).await,
        truth.len()
    );
    if E::NAME_LIST {
        assert!(
            truth.iter().any(|t| t.active == Some(false)),
            "the range holds no inactive record"
        );
    }

    // Window metadata, page size and the exact query sent.
    let sent: HashSet<String> = select_queries(&sim).into_iter().collect();
    for t in &truth {
        let r = &rows[&t.id];
        assert!(
            r.window_start <= t.create_time && t.create_time < r.window_end,
            "{t:?} outside {r:?}"
        );
        assert!(r.window_end - r.window_start <= size.as_duration());
        assert_eq!(r.page_size, i32::try_from(page_size).unwrap());
        assert!(r.page_number >= 1);
        assert!(
            sent.contains(&r.request_payload),
            "request_payload not a query sent: {}",
            r.request_payload
        );
        assert!(r.request_payload.contains(&format!("FROM {}", E::NAME)));
        assert_eq!(
            r.request_payload.contains("Active IN (true, false)"),
            E::NAME_LIST,
            "{}",
            r.request_payload
        );
    }
    // Within a window, page numbers follow the record order (ORDERBY CreateTime).
    let mut by_window: std::collections::BTreeMap<_, Vec<_>> = Default::default();
    for t in &truth {
        let r = &rows[&t.id];
        by_window
            .entry(r.window_start)
            .or_default()
            .push((t.create_time, r.page_number));
    }
    for (_, mut v) in by_window {
        v.sort();
        assert!(
            v.windows(2).all(|p| p[0].1 <= p[1].1),
            "page numbers out of order: {v:?}"
        );
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_equal_truth() {
    check_entity::<Invoice>(1000, WindowSize::DAY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_equal_truth_with_inactive() {
    check_entity::<Customer>(1000, WindowSize::DAY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_equal_truth_with_inactive_six_hour_windows() {
    check_entity::<Item>(1000, "6h".parse().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_many_pages_per_window() {
    // ~300 invoices a day, 40 per page: every window takes several overlapping pages.
    let sim = sim(Sim::builder().seed(5).invoices(1500).span(
        datetime!(2023-01-01 00:00 UTC),
        datetime!(2023-01-06 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let mut cfg = config("2023-01-01", "2023-01-06", "pages");
    cfg.page_size = 40;
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let truth = sim.truth("Invoice");
    let rows = table_rows(&sink, Invoice::TABLE, &sim.realm_id()).await;
    assert_eq!(rows.len(), truth.len());
    assert_payloads_equal(&sink, Invoice::TABLE, &sim.realm_id(), &truth).await;
    let max_page = rows.values().map(|r| r.page_number).max().unwrap();
    assert!(max_page >= 7, "expected many pages, max page {max_page}");
    // The pages of a window start 1, 38, 75, ... (40 rows, 3 overlapping).
    let positions: BTreeSet<u32> = select_queries(&sim)
        .iter()
        .filter_map(|q| q.split("STARTPOSITION ").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(positions.iter().all(|p| (p - 1) % 37 == 0), "{positions:?}");
    // Every window's ledger row counts exactly its records.
    let ledger = sink.pool().get().await.unwrap();
    let bad: i64 = ledger
        .query_one(
            "SELECT count(*) FROM backfill.windows w WHERE w.status <> 'done' OR w.source_count <> \
             (SELECT count(*) FROM raw.qb_invoices r WHERE r.extract_window_start_utc = w.window_start)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    sim.shutdown().await.unwrap();
}
