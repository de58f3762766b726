use std::collections::BTreeSet;
use std::time::Duration;

use backfill_core::{Entity, Invoice};
use qbo_sim::{Sim, SimHandle};
use time::macros::datetime;

use crate::common::*;

/// Waits until the simulator has served the first SELECT page, then runs `mutate`.
fn after_first_page(
    sim: &SimHandle,
    mutate: impl FnOnce(&SimHandle) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let sim = sim.clone();
    tokio::spawn(async move {
        loop {
            if !select_queries(&sim).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        mutate(&sim);
    })
}

async fn scenario(delete: bool) {
    let sim = sim(Sim::builder()
        .seed(13)
        .invoices(400)
        .latency(Duration::from_millis(25), Duration::ZERO)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-03 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let mut cfg = config("2023-01-01", "2023-01-02", "change");
    cfg.page_size = 20;
    let start = cfg.range_start;
    let end = cfg.range_end;
    let first = sim
        .truth("Invoice")
        .into_iter()
        .filter(|t| in_range(t, start, end))
        .min_by_key(|t| (t.create_time, t.id.clone()))
        .unwrap();
    let first_id = first.id.clone();
    let first_time = first.create_time;
    let mutator = after_first_page(&sim, move |sim| {
        if delete {
            sim.delete("Invoice", &first_id).unwrap();
        } else {
            sim.create("Invoice", Some(first_time)).unwrap();
        }
    });
    let report = run::<Invoice>(&client, &sink, &cfg).await;
    mutator.await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let truth: BTreeSet<String> = sim
        .truth("Invoice")
        .into_iter()
        .filter(|t| in_range(t, start, end))
        .map(|t| t.id)
        .collect();
    let rows: BTreeSet<String> = table_rows(&sink, Invoice::TABLE, &sim.realm_id())
        .await
        .into_keys()
        .collect();
    if delete {
        // The deleted invoice was loaded before it vanished; everything still in QBO is there.
        let missing: Vec<_> = truth.difference(&rows).collect();
        assert!(missing.is_empty(), "records skipped by paging: {missing:?}");
        let extra: Vec<_> = rows.difference(&truth).cloned().collect();
        assert_eq!(extra, vec![first.id.clone()]);
    } else {
        assert_eq!(rows, truth, "inserted record missed or stray rows");
    }
    // The window was paged again after the change was seen.
    let c = sink.pool().get().await.unwrap();
    let (attempts, source): (i32, Option<i64>) = {
        let r = c
            .query_one(
                "SELECT attempts, source_count FROM backfill.windows WHERE status = 'done'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(attempts >= 2, "change not detected (attempts {attempts})");
    assert_eq!(source, Some(i64::try_from(truth.len()).unwrap()));
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_deleted_while_paging_is_not_skipping_others() {
    scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_inserted_while_paging_is_loaded() {
    scenario(false).await;
}
