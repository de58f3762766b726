//! Run ledger: triggers, runs, windows and their legal transitions.

use std::time::Duration;

use raw_sink::testing::TestDb;
use raw_sink::{
    Ledger, NewRun, RunId, RunStatus, RunSummary, SinkError, TriggerKey, TriggerStatus,
    WindowOutcome, WindowScope, WindowSpan, WindowStatus,
};

use crate::{REALM, day};

const FIELD: &str = "MetaData.CreateTime";

fn new_run(pipeline: &str, trigger: Option<&str>) -> NewRun {
    NewRun {
        pipeline: pipeline.into(),
        realm_id: REALM.into(),
        range_start: day(0),
        range_end: day(3),
        window_field: FIELD.into(),
        trigger_name: trigger.map(Into::into),
        windows_planned: 3,
    }
}

fn assert_transition(e: SinkError, from: &str, to: &str) {
    match &e {
        SinkError::InvalidTransition { from: f, to: t, .. } => {
            assert_eq!((f.as_str(), t.as_str()), (from, to), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
}

async fn start(ledger: &Ledger, pipeline: &str, trigger: Option<&str>) -> RunId {
    ledger.start_run(&new_run(pipeline, trigger)).await.unwrap()
}

#[tokio::test]
async fn trigger_lifecycle() {
    let db = TestDb::new().await;
    let ledger = db.migrated_sink().await.ledger();
    let key = TriggerKey::new("invoices", REALM, "initial-load");

    assert!(ledger.get_trigger(&key).await.unwrap().is_none());
    let t = ledger
        .create_or_get_trigger(&key, day(0), day(3))
        .await
        .unwrap();
    assert_eq!(t.status, TriggerStatus::Pending);
    assert_eq!(t.key, key);
    let again = ledger
        .create_or_get_trigger(&key, day(0), day(3))
        .await
        .unwrap();
    assert_eq!(again, t);

    // Same name, other range: refused with both ranges in the message.
    let e = ledger
        .create_or_get_trigger(&key, day(0), day(4))
        .await
        .unwrap_err();
    assert!(matches!(e, SinkError::TriggerConflict { .. }), "{e:?}");
    assert!(e.to_string().contains("2024-01-04"), "{e}");

    // The same name for another pipeline is another trigger.
    let items_key = TriggerKey::new("items", REALM, "initial-load");
    ledger
        .create_or_get_trigger(&items_key, day(0), day(3))
        .await
        .unwrap();

    let run = start(&ledger, "invoices", Some("initial-load")).await;
    let t = ledger.mark_trigger_running(&key, run, false).await.unwrap();
    assert_eq!(
        (t.status, t.last_run_id),
        (TriggerStatus::Running, Some(run))
    );
    // A crashed run's trigger is taken over by the next run.
    let run2 = start(&ledger, "invoices", Some("initial-load")).await;
    let t = ledger
        .mark_trigger_running(&key, run2, false)
        .await
        .unwrap();
    assert_eq!(t.last_run_id, Some(run2));

    let t = ledger.mark_trigger_completed(&key, run2).await.unwrap();
    assert_eq!(t.status, TriggerStatus::Completed);
    assert!(t.completed_at.is_some());

    // Completed: refused unless forced.
    let run3 = start(&ledger, "invoices", Some("initial-load")).await;
    let e = ledger
        .mark_trigger_running(&key, run3, false)
        .await
        .unwrap_err();
    assert_transition(e, "completed", "running");
    let e = ledger.mark_trigger_completed(&key, run3).await.unwrap_err();
    assert_transition(e, "completed", "completed");
    let t = ledger.mark_trigger_running(&key, run3, true).await.unwrap();
    assert_eq!(t.status, TriggerStatus::Running);
    assert!(t.completed_at.is_none());

    // An unfinished run releases it back to pending.
    let t = ledger.release_trigger(&key).await.unwrap();
    assert_eq!(t.status, TriggerStatus::Pending);
    let e = ledger.release_trigger(&key).await.unwrap_err();
    assert_transition(e, "pending", "pending");

    // Disabled: refused even with force, until enabled again.
    assert_eq!(
        ledger.disable_trigger(&key).await.unwrap().status,
        TriggerStatus::Disabled
    );
    assert_eq!(
        ledger.disable_trigger(&key).await.unwrap().status,
        TriggerStatus::Disabled
    );
    let e = ledger
        .mark_trigger_running(&key, run3, true)
        .await
        .unwrap_err();
    assert_transition(e, "disabled", "running");
    assert_eq!(
        ledger.enable_trigger(&key).await.unwrap().status,
        TriggerStatus::Pending
    );

    let all = ledger.list_triggers(None, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let invoices = ledger
        .list_triggers(Some("invoices"), Some(REALM))
        .await
        .unwrap();
    assert_eq!(invoices.len(), 1);
    assert!(
        ledger
            .list_triggers(None, Some("other"))
            .await
            .unwrap()
            .is_empty()
    );

    let missing = TriggerKey::new("invoices", REALM, "nope");
    let e = ledger.disable_trigger(&missing).await.unwrap_err();
    assert!(
        matches!(
            e,
            SinkError::NotFound {
                entity: "trigger",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn run_lifecycle() {
    let db = TestDb::new().await;
    let ledger = db.migrated_sink().await.ledger();

    // A run must name an existing trigger (foreign key): a constraint error, not retryable.
    let e = ledger
        .start_run(&new_run("customers", Some("ghost")))
        .await
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("23503"), "{e:?}");
    assert!(!e.is_retryable());

    let first = start(&ledger, "customers", None).await;
    let second = start(&ledger, "customers", None).await;
    let r = ledger.get_run(first).await.unwrap().unwrap();
    assert_eq!(r.summary.status, RunStatus::Running);
    assert!(r.finished_at.is_none());
    assert_eq!((r.windows_planned, r.window_field.as_str()), (3, FIELD));

    let summary = RunSummary {
        windows_done: 2,
        windows_skipped: 0,
        windows_failed: 1,
        rows: 1234,
        inserted: 1200,
        updated: 30,
        unchanged: 4,
        api_calls: 57,
        // 37 single queries and 3 batch requests of 20 items in all: 57 queries.
        api_requests: 40,
        api_batches: 3,
        api_batch_items: 20,
        error: None,
        ..RunSummary::new(RunStatus::Partial)
    };
    let r = ledger.finish_run(first, &summary).await.unwrap();
    assert_eq!(r.summary, summary);
    assert!(r.finished_at.is_some());

    let e = ledger
        .finish_run(first, &RunSummary::new(RunStatus::Succeeded))
        .await
        .unwrap_err();
    assert_transition(e, "partial", "succeeded");
    let e = ledger
        .finish_run(second, &RunSummary::new(RunStatus::Running))
        .await
        .unwrap_err();
    assert_transition(e, "running", "running");
    let e = ledger
        .finish_run(RunId::new(424_242), &RunSummary::new(RunStatus::Failed))
        .await
        .unwrap_err();
    assert!(matches!(e, SinkError::NotFound { entity: "run", .. }));

    let interrupted = RunSummary {
        error: Some("interrupted by SIGINT".into()),
        ..RunSummary::new(RunStatus::Interrupted)
    };
    ledger.finish_run(second, &interrupted).await.unwrap();
    let listed = ledger
        .list_runs(Some("customers"), Some(REALM), 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second, first]
    );
    assert_eq!(ledger.list_runs(None, None, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn window_lifecycle() {
    let db = TestDb::new().await;
    let ledger = db.migrated_sink().await.ledger();
    let scope = WindowScope::new("invoices", REALM, FIELD);
    let run = start(&ledger, "invoices", None).await;
    let spans: Vec<WindowSpan> = (0..3)
        .map(|d| WindowSpan::new(day(d), day(d + 1)))
        .collect();

    // Planned twice in one call: stored once.
    let mut doubled = spans.clone();
    doubled.push(spans[1]);
    let windows = ledger.ensure_windows(&scope, &doubled).await.unwrap();
    assert_eq!(windows.len(), 3);
    assert!(
        windows
            .iter()
            .all(|w| w.status == WindowStatus::Pending && w.attempts == 0)
    );
    assert_eq!(windows.iter().map(|w| w.span).collect::<Vec<_>>(), spans);
    let (w0, w1, w2) = (windows[0].id, windows[1].id, windows[2].id);

    let w = ledger.start_window_attempt(w0, run, false).await.unwrap();
    assert_eq!(
        (w.status, w.attempts, w.run_id),
        (WindowStatus::Running, 1, Some(run))
    );
    assert!(w.started_at.is_some());
    let done = WindowOutcome {
        status: WindowStatus::Done,
        source_count: Some(17),
        verified: true,
        duration: Duration::from_millis(1500),
        error: None,
    };
    let w = ledger.finish_window(w0, run, &done).await.unwrap();
    assert_eq!(w.status, WindowStatus::Done);
    assert_eq!(w.source_count, Some(17));
    assert_eq!(w.duration, Some(Duration::from_millis(1500)));

    // Done: not restarted unless forced; not finished twice.
    let e = ledger
        .start_window_attempt(w0, run, false)
        .await
        .unwrap_err();
    assert_transition(e, "done", "running");
    let e = ledger.finish_window(w0, run, &done).await.unwrap_err();
    assert_transition(e, "done", "done");

    // Failed keeps its error and is retried; another run takes it over.
    ledger.start_window_attempt(w1, run, false).await.unwrap();
    let failed = WindowOutcome {
        status: WindowStatus::Failed,
        source_count: None,
        verified: false,
        duration: Duration::from_secs(3),
        error: Some("QBO 503 after 5 attempts".into()),
    };
    let w = ledger.finish_window(w1, run, &failed).await.unwrap();
    assert_eq!(w.last_error.as_deref(), Some("QBO 503 after 5 attempts"));
    let run2 = start(&ledger, "invoices", None).await;
    let w = ledger.start_window_attempt(w1, run2, false).await.unwrap();
    assert_eq!((w.attempts, w.run_id), (2, Some(run2)));
    // The old run can no longer finish it.
    let e = ledger.finish_window(w1, run, &done).await.unwrap_err();
    assert_transition(e, &format!("running (run {run2})"), "done");
    // A non-terminal outcome is refused.
    let e = ledger
        .finish_window(
            w1,
            run2,
            &WindowOutcome {
                status: WindowStatus::Pending,
                ..done.clone()
            },
        )
        .await
        .unwrap_err();
    assert_transition(e, "running", "pending");
    let mismatch = WindowOutcome {
        status: WindowStatus::Mismatch,
        source_count: Some(10),
        verified: true,
        duration: Duration::from_secs(1),
        error: Some("count 10, loaded 9 distinct ids".into()),
    };
    ledger.finish_window(w1, run2, &mismatch).await.unwrap();

    // Forced re-run of a done window.
    let w = ledger.start_window_attempt(w0, run2, true).await.unwrap();
    assert_eq!(
        (w.status, w.attempts, w.source_count),
        (WindowStatus::Running, 2, None)
    );

    // Empty windows in one statement; done ones are left alone.
    let n = ledger
        .mark_windows_done_empty(&[w2, w0], run2)
        .await
        .unwrap();
    assert_eq!(n, 2); // w0 is running (forced attempt), w2 pending
    let n = ledger.mark_windows_done_empty(&[w2], run2).await.unwrap();
    assert_eq!(n, 0);
    let w = ledger.get_window(w2).await.unwrap().unwrap();
    assert_eq!(
        (w.status, w.source_count, w.pages, w.attempts),
        (WindowStatus::Done, Some(0), 0, 1)
    );

    // Re-planning with one more window keeps existing statuses.
    let mut more = spans.clone();
    more.push(WindowSpan::new(day(3), day(4)));
    let windows = ledger.ensure_windows(&scope, &more).await.unwrap();
    assert_eq!(
        windows.iter().map(|w| w.status).collect::<Vec<_>>(),
        [
            WindowStatus::Done,
            WindowStatus::Mismatch,
            WindowStatus::Done,
            WindowStatus::Pending
        ]
    );
    assert_eq!(ledger.list_windows(&scope).await.unwrap(), windows);

    // Another window field is another set of windows.
    let other = WindowScope::new("invoices", REALM, "MetaData.LastUpdatedTime");
    assert!(ledger.list_windows(&other).await.unwrap().is_empty());

    // An empty span violates the CHECK constraint.
    let e = ledger
        .ensure_windows(&scope, &[WindowSpan::new(day(5), day(5))])
        .await
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("23514"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_planning_sees_every_window_once() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let scope = WindowScope::new("items", REALM, FIELD);
    let spans: Vec<WindowSpan> = (0..200)
        .map(|d| WindowSpan::new(day(d), day(d + 1)))
        .collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let ledger = sink.ledger();
            let scope = scope.clone();
            let spans = spans.clone();
            tokio::spawn(async move { ledger.ensure_windows(&scope, &spans).await.unwrap() })
        })
        .collect();
    let mut ids = None;
    for t in tasks {
        let got: Vec<_> = t.await.unwrap().iter().map(|w| w.id).collect();
        assert_eq!(got.len(), 200);
        match &ids {
            None => ids = Some(got),
            Some(first) => assert_eq!(&got, first),
        }
    }
    assert_eq!(sink.ledger().list_windows(&scope).await.unwrap().len(), 200);
}
