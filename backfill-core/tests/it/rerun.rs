use backfill_core::{Customer, Entity, Error, ExitStatus, Invoice};
use qbo_sim::Sim;
use time::macros::datetime;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_trigger_is_refused_and_forced_rerun_writes_nothing() {
    let sim = sim(Sim::builder().seed(3).customers(200).invoices(400).span(
        datetime!(2023-01-01 00:00 UTC),
        datetime!(2023-02-01 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let mut cfg = config("2023-01-01", "2023-02-01", "once");
    let first = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(first.problems.is_empty() && first.trigger_completed);
    assert_eq!(first.counts.inserted, 400);
    let realm = sim.realm_id();
    let before = table_rows(&sink, Invoice::TABLE, &realm).await;

    // Same trigger again: refused before any QBO call.
    sim.reset_stats();
    let err = backfill_core::run::<Invoice>(&client, &sink, &cfg)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TriggerCompleted { .. }), "{err:?}");
    assert_eq!(err.exit_status(), ExitStatus::TriggerCompleted);
    assert_eq!(err.exit_status().code(), 4);
    assert_eq!(query_requests(&sim), 0);

    // A different trigger over the same range skips the windows already done: no request.
    cfg.trigger = "again".into();
    let skip = run::<Invoice>(&client, &sink, &cfg).await;
    assert_eq!(skip.windows_skipped, skip.windows_planned);
    assert_eq!(query_requests(&sim), 0);

    // Forced: everything re-read, nothing written.
    cfg.trigger = "once".into();
    cfg.force = true;
    let forced = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(forced.problems.is_empty());
    assert_eq!(forced.windows_skipped, 0);
    assert_eq!((forced.counts.inserted, forced.counts.updated), (0, 0));
    assert_eq!(forced.counts.unchanged, 400);
    let after = table_rows(&sink, Invoice::TABLE, &realm).await;
    assert_eq!(
        before, after,
        "a forced re-run changed rows (ingested_at_utc included)"
    );
    assert!(query_requests(&sim) > 0);

    // Runs are recorded: 3 finished runs for this pipeline.
    let c = sink.pool().get().await.unwrap();
    let runs: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.runs WHERE pipeline = $1 AND status = 'succeeded'",
            &[&Invoice::PIPELINE],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 3);
    // Customers are a different pipeline: the same trigger name is free there.
    let c_report =
        run::<Customer>(&client, &sink, &config("2023-01-01", "2023-02-01", "once")).await;
    assert!(c_report.problems.is_empty());
    sim.shutdown().await.unwrap();
}
