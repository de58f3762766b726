use std::collections::BTreeSet;

use backfill_core::{Customer, Entity};
use qbo_sim::Sim;
use time::macros::datetime;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_realms_side_by_side() {
    let sim = sim(Sim::builder()
        .seed(1)
        .realm_id("9130000000000001")
        .extra_realm("9130000000000002", 2)
        .customers(150)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-02-01 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let cfg = config("2023-01-01", "2023-02-01", "initial-load");
    let realms = sim.realm_ids();
    assert_eq!(realms.len(), 2);
    // Both realms at once, same trigger name, same tables.
    let (ca, cb) = (client_for(&sim, &realms[0]), client_for(&sim, &realms[1]));
    let (a, b) = tokio::join!(
        backfill_core::run::<Customer>(&ca, &sink, &cfg),
        backfill_core::run::<Customer>(&cb, &sink, &cfg),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.problems.is_empty() && b.problems.is_empty());
    assert!(a.trigger_completed && b.trigger_completed);
    let mut id_sets = Vec::new();
    for realm in &realms {
        let truth = sim.realm(realm).unwrap().truth("Customer").unwrap();
        let rows = table_rows(&sink, Customer::TABLE, realm).await;
        assert_eq!(rows.len(), truth.len(), "{realm}");
        assert_payloads_equal(&sink, Customer::TABLE, realm, &truth).await;
        id_sets.push(rows.into_keys().collect::<BTreeSet<_>>());
    }
    // Ids collide across companies, and both copies are kept.
    assert!(!id_sets[0].is_disjoint(&id_sets[1]));
    let c = sink.pool().get().await.unwrap();
    let total: i64 = c
        .query_one("SELECT count(*) FROM raw.qb_customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        usize::try_from(total).unwrap(),
        id_sets[0].len() + id_sets[1].len()
    );
    let triggers: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.triggers WHERE status = 'completed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 2);
    sim.shutdown().await.unwrap();
}
