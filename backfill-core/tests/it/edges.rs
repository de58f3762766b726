use std::collections::BTreeSet;

use backfill_core::window::{self, PlanRequest, WindowSize};
use backfill_core::{Entity, Invoice, RunConfig, WindowField};
use qbo_sim::Sim;
use time::Time;
use time::macros::datetime;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacific_offsets_and_utc_midnight_edges() {
    // Around the 2023 US spring-forward (12 March): -08:00 before, -07:00 after.
    let sim = sim(Sim::builder().seed(17).invoices(1200).span(
        datetime!(2023-03-08 00:00 UTC),
        datetime!(2023-03-16 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let start = window::parse_instant("2023-03-10T00:00:00-08:00").unwrap();
    let end = window::parse_instant("2023-03-14T00:00:00-07:00").unwrap();
    let plan = window::plan(&PlanRequest {
        start,
        end,
        size: WindowSize::DAY,
        now: NOW,
        whole_days: false,
    })
    .unwrap();
    assert_eq!(plan.windows[0].start, datetime!(2023-03-10 08:00 UTC));
    assert_eq!(
        plan.windows.last().unwrap().end,
        datetime!(2023-03-14 07:00 UTC)
    );
    let cfg = RunConfig::new(plan.windows, WindowField::CreateTime, "pacific");
    let report = run::<Invoice>(&client(&sim), &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let truth: Vec<_> = sim
        .truth("Invoice")
        .into_iter()
        .filter(|t| in_range(t, start, end))
        .collect();
    let rows = table_rows(&sink, Invoice::TABLE, &sim.realm_id()).await;
    assert_eq!(
        rows.keys().cloned().collect::<BTreeSet<_>>(),
        truth.iter().map(|t| t.id.clone()).collect::<BTreeSet<_>>()
    );
    // The simulator puts records exactly on UTC midnights and one second before: each lands in
    // the window that starts (resp. ends) there.
    let on_midnight: Vec<_> = truth
        .iter()
        .filter(|t| t.create_time.time() == Time::MIDNIGHT)
        .collect();
    let before_midnight: Vec<_> = truth
        .iter()
        .filter(|t| t.create_time.time() == Time::from_hms(23, 59, 59).unwrap())
        .collect();
    assert!(
        !on_midnight.is_empty() && !before_midnight.is_empty(),
        "no edge records generated"
    );
    for t in on_midnight {
        assert_eq!(rows[&t.id].window_start, t.create_time);
    }
    for t in before_midnight {
        assert_eq!(
            rows[&t.id].window_end,
            t.create_time + time::Duration::SECOND
        );
    }
    // Payloads keep their Pacific offsets byte for byte (as JSON).
    assert!(
        truth.iter().any(|t| t.json.contains("-07:00"))
            && truth.iter().any(|t| t.json.contains("-08:00"))
    );
    assert_payloads_equal(&sink, Invoice::TABLE, &sim.realm_id(), &truth).await;
    sim.shutdown().await.unwrap();
}
