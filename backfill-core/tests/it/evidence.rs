//! Paths where a run used to lose records or report more than it checked (issue 12): a short
//! page mid-window, one record that cannot be stored, `--no-verify` windows, a window failed by
//! someone else, a range reaching into the future, a dense window that keeps changing, and a
//! report after re-loads with other windows.

use std::collections::BTreeSet;
use std::time::Duration;

use backfill_core::report::{self, ReportScope};
use backfill_core::window::WindowSize;
use backfill_core::{Entity, ExitStatus, Invoice, WindowField};
use qbo_sim::Sim;
use raw_sink::{RunStatus, WindowStatus};
use time::macros::datetime;

use crate::common::*;
use crate::fake_qbo::{FakeQbo, FakeRecord};

fn dense_day(n: u32) -> Vec<FakeRecord> {
    (0..n)
        .map(|i| {
            FakeRecord::invoice(
                i + 1,
                datetime!(2023-05-01 00:00 UTC) + time::Duration::seconds(i64::from(i) * 30),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_page_mid_window_does_not_end_it() {
    let fake = FakeQbo::start(dense_day(2500)).await;
    // QBO answers the first page with 600 rows although 2,500 match.
    fake.short_first_page(600);
    let (_db, sink) = db().await;
    let cfg = config("2023-05-01", "2023-05-02", "short");
    let report = run::<Invoice>(&fake.client(), &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.exit_status(), ExitStatus::Success);
    let rows = table_rows(&sink, Invoice::TABLE, "4620816365").await;
    assert_eq!(rows.len(), 2500);
    let c = sink.pool().get().await.unwrap();
    let r = c
        .query_one(
            "SELECT status, verified, source_count, attempts FROM backfill.windows",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "done");
    assert!(r.get::<_, bool>(1));
    assert_eq!(r.get::<_, Option<i64>>(2), Some(2500));
    assert_eq!(r.get::<_, i32>(3), 1, "loaded in one attempt");
    // The page after the short one starts where it ended (with the overlap), not a page later.
    assert!(
        fake.queries()
            .iter()
            .any(|q| q.contains("STARTPOSITION 598 ")),
        "{:?}",
        fake.queries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_record_is_quarantined_and_its_neighbours_load() {
    // Three days, probed as one segment; day 2 holds a string with \u0000 (jsonb refuses it)
    // and a record without MetaData.
    let mut records = Vec::new();
    for (day, base) in [(1u32, 0u32), (2, 100), (3, 200)] {
        for i in 0..20 {
            let t = datetime!(2023-05-01 00:00 UTC)
                + time::Duration::days(i64::from(day) - 1)
                + time::Duration::minutes(i64::from(i));
            records.push(FakeRecord::invoice(base + i, t));
        }
    }
    let t = datetime!(2023-05-02 12:00 UTC);
    records.push(FakeRecord {
        create_time: t,
        json: r#"{"Id":"bad-nul","CustomerMemo":{"value":"a\u0000b"},"MetaData":{"CreateTime":"2023-05-02T12:00:00Z","LastUpdatedTime":"2023-05-02T12:00:00Z"}}"#.into(),
    });
    records.push(FakeRecord {
        create_time: t,
        json: r#"{"Id":"bad-meta","TotalAmt":1.00}"#.into(),
    });
    records.sort_by_key(|r| r.create_time);
    let fake = FakeQbo::start(records).await;
    let (_db, sink) = db().await;
    let cfg = config("2023-05-01", "2023-05-04", "bad-record");
    let report = run::<Invoice>(&fake.client(), &sink, &cfg).await;
    let realm = "4620816365";

    // Every other record is loaded and every window is done.
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        window_statuses(&sink, Invoice::PIPELINE, realm)
            .await
            .get("done"),
        Some(&3)
    );
    assert_eq!(table_rows(&sink, Invoice::TABLE, realm).await.len(), 60);
    // The two bad records are quarantined with their reasons, and the run says so (exit 1).
    let rejects = sink.ledger().rejects(realm, "Invoice").await.unwrap();
    let ids: BTreeSet<Option<String>> = rejects.iter().map(|r| r.record_id.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([Some("bad-meta".to_owned()), Some("bad-nul".to_owned())])
    );
    assert!(
        rejects
            .iter()
            .all(|r| r.window_start == datetime!(2023-05-02 00:00 UTC))
    );
    assert!(
        rejects
            .iter()
            .any(|r| r.reason.contains("missing field `MetaData`"))
    );
    assert_eq!(report.rejected, 2);
    assert_eq!(report.exit_status(), ExitStatus::WindowsFailed);
    assert_eq!(report.status, RunStatus::Partial);

    // The report counts them: the window is verified against QBO's COUNT (22 = 20 + 2).
    let mut scope = ReportScope::entity::<Invoice>();
    scope.realm_id = Some(realm.into());
    let r = report::build(&sink, &scope).await.unwrap();
    assert!(!r.ok);
    let v = &r.pipelines[0].verification;
    assert_eq!((v.matched, v.quarantined, v.rejected_total), (2, 1, 2));

    // A re-run (forced) finds them again, and only once.
    let mut again = config("2023-05-01", "2023-05-04", "bad-record-2");
    again.force = true;
    run::<Invoice>(&fake.client(), &sink, &again).await;
    assert_eq!(
        sink.ledger().rejects(realm, "Invoice").await.unwrap().len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_verify_windows_read_unverified_until_a_verifying_run_checks_them() {
    let sim = sim(Sim::builder().seed(5).invoices(120).span(
        datetime!(2023-02-01 00:00 UTC),
        datetime!(2023-02-04 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let mut cfg = config("2023-02-01", "2023-02-04", "unverified");
    cfg.verify = false;
    cfg.probe = false;
    let first = run::<Invoice>(&client(&sim), &sink, &cfg).await;
    assert_eq!(first.unverified, 3);
    let c = sink.pool().get().await.unwrap();
    let unverified: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.windows WHERE status = 'done' AND NOT verified \
             AND source_count IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        unverified, 3,
        "a window never counted stores no source count"
    );
    let mut scope = ReportScope::entity::<Invoice>();
    scope.realm_id = Some(sim.realm_id());
    let r = report::build(&sink, &scope).await.unwrap();
    let v = &r.pipelines[0].verification;
    assert_eq!((v.matched, v.unverified), (0, 3));

    // A verifying run of the same range verifies them.
    let mut verify = config("2023-02-01", "2023-02-04", "verified");
    verify.probe = false;
    let second = run::<Invoice>(&client(&sim), &sink, &verify).await;
    assert_eq!((second.windows_done, second.unverified), (3, 0));
    let r = report::build(&sink, &scope).await.unwrap();
    assert_eq!(r.pipelines[0].verification.matched, 3);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_failed_by_someone_else_fails_the_run() {
    let sim = sim(Sim::builder().seed(6).invoices(90).span(
        datetime!(2023-02-01 00:00 UTC),
        datetime!(2023-02-04 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let scope = raw_sink::WindowScope::new(
        Invoice::PIPELINE,
        sim.realm_id(),
        WindowField::CreateTime.as_str(),
    );
    let day2 = raw_sink::WindowSpan::new(
        datetime!(2023-02-02 00:00 UTC),
        datetime!(2023-02-03 00:00 UTC),
    );
    let w = sink.ledger().ensure_windows(&scope, &[day2]).await.unwrap()[0].id;
    // An overlapping run fails that window while ours runs (its failure is newer than our
    // run's start, so ours does not take it up again).
    sink.pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE backfill.windows SET status = 'failed', last_error = 'QBO 500 (peer)', \
             finished_at = now() + interval '1 hour' WHERE id = $1",
            &[&w.get()],
        )
        .await
        .unwrap();
    let report = run::<Invoice>(
        &client(&sim),
        &sink,
        &config("2023-02-01", "2023-02-04", "peer"),
    )
    .await;
    assert_eq!(report.exit_status(), ExitStatus::WindowsFailed);
    assert_eq!(report.status, RunStatus::Partial);
    assert!(!report.trigger_completed);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].status, WindowStatus::Failed);
    assert!(report.problems[0].error.contains("peer"));
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_clipped_to_now_does_not_complete_its_trigger() {
    let sim = sim(Sim::builder().seed(7).invoices(60).span(
        datetime!(2023-02-01 00:00 UTC),
        datetime!(2023-02-05 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    // "now" is 2023-02-03: the plan stops there, the requested end is two days later.
    let mut clipped = config("2023-02-01", "2023-02-03", "future");
    clipped.range_end = datetime!(2023-02-05 00:00 UTC);
    let first = run::<Invoice>(&client(&sim), &sink, &clipped).await;
    assert!(first.problems.is_empty());
    assert!(!first.covers_range && !first.trigger_completed);
    let key = raw_sink::TriggerKey::new(Invoice::PIPELINE, sim.realm_id(), "future");
    let t = sink.ledger().get_trigger(&key).await.unwrap().unwrap();
    assert_eq!(t.status, raw_sink::TriggerStatus::Pending);

    // Later, the same trigger plans to the requested end: it loads the rest and completes.
    let mut later = config("2023-02-01", "2023-02-05", "future");
    later.range_end = datetime!(2023-02-05 00:00 UTC);
    let second = run::<Invoice>(&client(&sim), &sink, &later).await;
    assert!(second.covers_range && second.trigger_completed);
    assert_eq!(second.windows_skipped, 2);
    let truth = sim.truth("Invoice");
    assert_eq!(
        table_rows(&sink, Invoice::TABLE, &sim.realm_id())
            .await
            .len(),
        truth.len()
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_window_that_keeps_changing_is_read_in_one_page_ranges() {
    let sim = sim(Sim::builder()
        .seed(13)
        .invoices(400)
        .latency(Duration::from_millis(10), Duration::ZERO)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-02 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let mut cfg = config("2023-01-01", "2023-01-02", "busy");
    cfg.page_size = 20;
    // A busy day: after each of the first 8 pages served, the earliest invoice is deleted,
    // which shifts every later offset.
    let mutator = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < 8 {
                let served = select_queries(&sim).len();
                if served > seen {
                    seen = served;
                    let first = sim
                        .truth("Invoice")
                        .into_iter()
                        .min_by_key(|t| (t.create_time, t.id.clone()))
                        .unwrap();
                    sim.delete("Invoice", &first.id).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let report = run::<Invoice>(&client(&sim), &sink, &cfg).await;
    mutator.await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Everything still in QBO is loaded (the deleted invoices were loaded before they went).
    let truth: BTreeSet<String> = sim.truth("Invoice").into_iter().map(|t| t.id).collect();
    let rows: BTreeSet<String> = table_rows(&sink, Invoice::TABLE, &sim.realm_id())
        .await
        .into_keys()
        .collect();
    let missing: Vec<_> = truth.difference(&rows).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
    // Narrowed reads are one page each: STARTPOSITION 1 only, after the first attempt.
    let narrowed = select_queries(&sim)
        .iter()
        .skip(2)
        .filter(|q| q.contains("STARTPOSITION 1 "))
        .count();
    assert!(narrowed > 10, "{narrowed} one-page reads");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_with_other_windows_do_not_make_the_report_mismatch() {
    let sim = sim(Sim::builder().seed(8).invoices(300).span(
        datetime!(2023-03-01 00:00 UTC),
        datetime!(2023-03-15 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    run::<Invoice>(
        &client(&sim),
        &sink,
        &config("2023-03-01", "2023-03-15", "daily"),
    )
    .await;
    // The same table again with weekly windows (another trigger), then on LastUpdatedTime:
    // every row now carries a window of a later run.
    let mut weekly = config_sized(
        "2023-03-01",
        "2023-03-15",
        WindowSize::from_duration(time::Duration::days(7)).unwrap(),
        "weekly",
    );
    weekly.force = true;
    run::<Invoice>(&client(&sim), &sink, &weekly).await;
    let mut by_update = config("2023-03-01", "2026-01-01", "by-update");
    by_update.window_field = WindowField::LastUpdatedTime;
    run::<Invoice>(&client(&sim), &sink, &by_update).await;

    let mut scope = ReportScope::entity::<Invoice>();
    scope.realm_id = Some(sim.realm_id());
    let r = report::build(&sink, &scope).await.unwrap();
    let v = &r.pipelines[0].verification;
    assert_eq!(v.mismatch, 0, "{:?}", r.pipelines[0].windows.first());
    assert_eq!(v.not_done, 0);
    assert!(r.ok);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txn_date_run_reads_again_what_changed_while_it_ran() {
    let sim = sim(Sim::builder()
        .seed(9)
        .invoices(80)
        .latency(Duration::from_millis(100), Duration::ZERO)
        .span(
            datetime!(2023-04-01 00:00 UTC),
            datetime!(2023-04-05 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let realm = sim.realm_id();
    let mut cfg = config("2023-03-25", "2023-04-20", "txn");
    cfg.window_field = WindowField::TxnDate;
    // Once the first invoice is stored, it is edited in QBO: its window is done already.
    let first = sim
        .truth("Invoice")
        .into_iter()
        .min_by_key(|t| (t.create_time, t.id.clone()))
        .unwrap();
    let editor = {
        let (sim, sink, id) = (sim.clone(), sink.clone(), first.id.clone());
        tokio::spawn(async move {
            loop {
                let c = sink.pool().get().await.unwrap();
                let stored = c
                    .query_opt("SELECT 1 FROM raw.qb_invoices WHERE id = $1", &[&id])
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if stored {
                    return sim.update("Invoice", &id).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let report = run::<Invoice>(&client(&sim), &sink, &cfg).await;
    let edited = editor.await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.caught_up >= 1, "catch-up read {}", report.caught_up);
    let c = sink.pool().get().await.unwrap();
    let same: bool = c
        .query_one(
            "SELECT payload = $2::text::jsonb FROM raw.qb_invoices WHERE realm_id = $1 AND id = $3",
            &[&realm, &edited.json, &edited.id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same, "the edited invoice keeps its old version");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_qbo_always_rejects_stops_the_run_with_its_own_exit_code() {
    let fake = FakeQbo::start(dense_day(50)).await;
    fake.reject_queries();
    let (_db, sink) = db().await;
    let cfg = config("2023-05-01", "2023-05-11", "rejected");
    let e = backfill_core::run::<Invoice>(&fake.client(), &sink, &cfg)
        .await
        .unwrap_err();
    // Not "some windows failed, run again": no re-run fixes a request QBO refuses.
    assert_eq!(e.exit_status(), ExitStatus::Refused, "{e}");
    // It stopped at the first refusal instead of failing ten windows one by one.
    assert!(fake.queries().len() <= 2, "{:?}", fake.queries());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_page_size_does_not_cost_a_request_per_row() {
    let fake = FakeQbo::start(dense_day(60)).await;
    let (_db, sink) = db().await;
    let mut cfg = config("2023-05-01", "2023-05-02", "small-pages");
    cfg.page_size = 4;
    let report = run::<Invoice>(&fake.client(), &sink, &cfg).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        table_rows(&sink, Invoice::TABLE, "4620816365").await.len(),
        60
    );
    // 60 rows, 4 a page, 1 overlapping (a quarter of the page): ~20 pages, not ~58.
    let pages = fake
        .queries()
        .iter()
        .filter(|q| !q.contains("COUNT(*)"))
        .count();
    assert!(pages <= 22, "{pages} pages for 60 rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_budget_stops_the_run_cleanly_and_the_next_run_resumes() {
    let sim = sim(Sim::builder().seed(10).invoices(3000).span(
        datetime!(2023-06-01 00:00 UTC),
        datetime!(2023-07-01 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let mut cfg = config("2023-06-01", "2023-07-01", "budget");
    cfg.page_size = 100;
    cfg.max_api_calls = Some(6);
    let first = run::<Invoice>(&client, &sink, &cfg).await;
    assert_eq!(first.interrupted, Some(backfill_core::StopReason::Budget));
    assert_eq!(first.exit_status(), ExitStatus::WindowsFailed);
    // At most the budget, plus the requests already in flight when it ran out.
    assert!(
        (6..=6 + cfg.concurrency as u64).contains(&first.api_calls),
        "{}",
        first.api_calls
    );
    assert_eq!(
        first.api_calls,
        sim.stats().total_requests - 1,
        "one token refresh"
    );
    let c = sink.pool().get().await.unwrap();
    let (calls, status): (i64, String) = {
        let r = c
            .query_one("SELECT api_calls, status FROM backfill.runs", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (calls, status.as_str()),
        (first.api_calls as i64, "interrupted")
    );
    let running: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.windows WHERE status = 'running' OR lease_owner IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "windows released");

    // The next run, without a budget, finishes the range.
    cfg.max_api_calls = None;
    cfg.shutdown = backfill_core::Shutdown::new();
    let second = run::<Invoice>(&client, &sink, &cfg).await;
    assert!(second.problems.is_empty() && second.trigger_completed);
    assert_eq!(
        table_rows(&sink, Invoice::TABLE, &sim.realm_id())
            .await
            .len(),
        3000
    );
    sim.shutdown().await.unwrap();
}
