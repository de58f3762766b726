//! Cooperative workers: window claims and leases, budget shares, advisory locks.

use std::collections::BTreeSet;
use std::time::Duration;

use raw_sink::testing::TestDb;
use raw_sink::{
    BudgetShare, Ledger, NewRun, NewWorker, Reload, RunId, RunStatus, ShareGrant, Sink, TriggerKey,
    TriggerStatus, WindowClaim, WindowId, WindowOutcome, WindowScope, WindowSpan, WindowStatus,
};

use crate::{REALM, day};

const PIPELINE: &str = "qb_invoices_backfill";
const LONG: Duration = Duration::from_secs(60);

fn worker(id: &str) -> NewWorker {
    NewWorker {
        id: id.into(),
        pipeline: PIPELINE.into(),
        realm_id: REALM.into(),
        trigger_name: None,
        host: String::new(),
        pid: Some(1),
        pid_start: None,
        lease_ttl: LONG,
    }
}

async fn setup(n: i64) -> (TestDb, Sink, Ledger, RunId, Vec<WindowId>) {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let ledger = sink.ledger();
    let key = TriggerKey::new(PIPELINE, REALM, "t");
    ledger
        .create_or_get_trigger(&key, day(0), day(n))
        .await
        .unwrap();
    let run = ledger
        .start_run(&NewRun {
            pipeline: PIPELINE.into(),
            realm_id: REALM.into(),
            range_start: day(0),
            range_end: day(n),
            window_field: "MetaData.CreateTime".into(),
            trigger_name: Some("t".into()),
            windows_planned: u32::try_from(n).unwrap(),
        })
        .await
        .unwrap();
    let spans: Vec<WindowSpan> = (0..n)
        .map(|i| WindowSpan::new(day(i), day(i + 1)))
        .collect();
    let windows = ledger
        .ensure_windows(
            &WindowScope::new(PIPELINE, REALM, "MetaData.CreateTime"),
            &spans,
        )
        .await
        .unwrap();
    let ids = windows.iter().map(|w| w.id).collect();
    (db, sink, ledger, run, ids)
}

fn claim<'a>(worker: &'a str, run: RunId, plan: &'a [WindowId], limit: u32) -> WindowClaim<'a> {
    WindowClaim {
        worker,
        run,
        windows: plan,
        held: &[],
        limit,
        reload: Reload::Nothing,
        lease_ttl: LONG,
    }
}

async fn exec(sink: &Sink, sql: &str) {
    sink.pool()
        .get()
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap();
}

fn done(status: WindowStatus) -> WindowOutcome {
    WindowOutcome {
        status,
        source_count: Some(0),
        verified: true,
        duration: Duration::from_millis(5),
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_are_disjoint_and_cover_the_plan() {
    let (_db, _sink, ledger, run, plan) = setup(60).await;
    for w in ["a", "b", "c", "d"] {
        ledger.register_worker(&worker(w)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in ["a", "b", "c", "d"] {
        let ledger = ledger.clone();
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine: Vec<WindowId> = Vec::new();
            loop {
                let got = ledger
                    .claim_windows(&WindowClaim {
                        held: &mine,
                        ..claim(w, run, &plan, 3)
                    })
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                assert!(got.windows(2).all(|p| p[0].span.start < p[1].span.start));
                mine.extend(got.into_iter().map(|x| x.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<WindowId> = all.iter().copied().collect();
    assert_eq!(all.len(), 60, "a window was claimed twice");
    assert_eq!(distinct, plan.iter().copied().collect());
    let status = ledger
        .claim_status("e", run, &plan, Reload::Nothing)
        .await
        .unwrap();
    assert_eq!(status.claimable, 0);
    assert_eq!(status.leased_by_others, 60);
    assert!(status.next_expiry.is_some());
}

#[tokio::test]
async fn leases_expire_and_only_the_owner_works_on_a_window() {
    let (_db, sink, ledger, run, plan) = setup(4).await;
    ledger.register_worker(&worker("a")).await.unwrap();
    ledger.register_worker(&worker("b")).await.unwrap();
    let a = ledger
        .claim_windows(&claim("a", run, &plan, 2))
        .await
        .unwrap();
    assert_eq!(a.len(), 2);
    // Held windows are never returned again; an orphan (claimed, then forgotten) is.
    let held = [a[0].id];
    let again = ledger
        .claim_windows(&WindowClaim {
            held: &held,
            ..claim("a", run, &plan, 10)
        })
        .await
        .unwrap();
    assert_eq!(again.iter().map(|w| w.id).collect::<Vec<_>>(), &plan[1..]);

    // Only the owner starts and finishes.
    assert!(
        ledger
            .start_claimed_attempt(plan[0], run, "b", LONG)
            .await
            .unwrap()
            .is_none()
    );
    let w = ledger
        .start_claimed_attempt(plan[0], run, "a", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w.status, w.attempts), (WindowStatus::Running, 1));

    // "a" dies: its leases expire; "b" takes its running window over.
    exec(
        &sink,
        "UPDATE backfill.windows SET lease_expires_at = now() - interval '1 second' WHERE lease_owner = 'a'",
    )
    .await;
    let b = ledger
        .claim_windows(&claim("b", run, &plan, 10))
        .await
        .unwrap();
    assert_eq!(b.len(), 4);
    ledger
        .start_claimed_attempt(plan[0], run, "b", LONG)
        .await
        .unwrap()
        .unwrap();
    // The old owner's finish is refused without changing anything.
    assert!(
        ledger
            .finish_claimed_window(plan[0], run, "a", &done(WindowStatus::Done))
            .await
            .unwrap()
            .is_none()
    );
    let w = ledger
        .finish_claimed_window(plan[0], run, "b", &done(WindowStatus::Done))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w.status, w.attempts), (WindowStatus::Done, 2));
    // A retried finish whose first answer was lost returns the window again.
    assert!(
        ledger
            .finish_claimed_window(plan[0], run, "b", &done(WindowStatus::Done))
            .await
            .unwrap()
            .is_some()
    );
    // Renewal extends what "b" holds (the three others).
    let r = ledger.renew_worker("b", LONG).await.unwrap();
    assert!(r.worker);
    assert_eq!(r.windows, 3);

    // Empty windows are marked done in one statement, only those held.
    let marked = ledger
        .mark_claimed_windows_done_empty(&plan[1..3], run, "b")
        .await
        .unwrap();
    assert_eq!(marked, plan[1..3].to_vec());
    assert!(
        ledger
            .mark_claimed_windows_done_empty(&plan[1..3], run, "b")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn failed_windows_are_retried_once_per_run_and_done_ones_only_when_forced() {
    let (_db, sink, ledger, run, plan) = setup(3).await;
    ledger.register_worker(&worker("a")).await.unwrap();
    let got = ledger
        .claim_windows(&claim("a", run, &plan, 3))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    for (id, status) in plan.iter().zip([
        WindowStatus::Done,
        WindowStatus::Failed,
        WindowStatus::Mismatch,
    ]) {
        ledger
            .start_claimed_attempt(*id, run, "a", LONG)
            .await
            .unwrap()
            .unwrap();
        ledger
            .finish_claimed_window(*id, run, "a", &done(status))
            .await
            .unwrap()
            .unwrap();
    }
    // Same run: nothing is claimable (a failure is not retried forever by the same run).
    assert!(
        ledger
            .claim_windows(&claim("a", run, &plan, 3))
            .await
            .unwrap()
            .is_empty()
    );
    // A later run retries the failed and mismatched ones; done only when forced.
    exec(&sink, "SELECT pg_sleep(0.01)").await;
    let later = ledger
        .start_run(&NewRun {
            pipeline: PIPELINE.into(),
            realm_id: REALM.into(),
            range_start: day(0),
            range_end: day(3),
            window_field: "MetaData.CreateTime".into(),
            trigger_name: Some("t".into()),
            windows_planned: 3,
        })
        .await
        .unwrap();
    let got = ledger
        .claim_windows(&claim("a", later, &plan, 3))
        .await
        .unwrap();
    assert_eq!(got.iter().map(|w| w.id).collect::<Vec<_>>(), &plan[1..]);
    ledger.release_windows("a", None, "test").await.unwrap();
    let forced = ledger
        .claim_windows(&WindowClaim {
            reload: Reload::All,
            ..claim("a", later, &plan, 3)
        })
        .await
        .unwrap();
    assert_eq!(forced.len(), 3);
}

#[tokio::test]
async fn release_puts_running_windows_back_to_pending_with_the_reason() {
    let (_db, _sink, ledger, run, plan) = setup(3).await;
    ledger.register_worker(&worker("a")).await.unwrap();
    ledger
        .claim_windows(&claim("a", run, &plan, 3))
        .await
        .unwrap();
    ledger
        .start_claimed_attempt(plan[0], run, "a", LONG)
        .await
        .unwrap()
        .unwrap();
    let n = ledger
        .release_windows("a", None, "interrupted by SIGTERM")
        .await
        .unwrap();
    assert_eq!(n, 3);
    let w = ledger.get_window(plan[0]).await.unwrap().unwrap();
    assert_eq!(w.status, WindowStatus::Pending);
    assert_eq!(w.last_error.as_deref(), Some("interrupted by SIGTERM"));
    let w = ledger.get_window(plan[1]).await.unwrap().unwrap();
    assert_eq!((w.status, w.last_error), (WindowStatus::Pending, None));
    // Everything is claimable again, by anyone.
    ledger.register_worker(&worker("b")).await.unwrap();
    assert_eq!(
        ledger
            .claim_windows(&claim("b", run, &plan, 10))
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn budget_shares_never_exceed_the_total_and_free_up_when_workers_stop_or_die() {
    let (_db, sink, ledger, _run, _plan) = setup(1).await;
    let total = BudgetShare {
        per_minute: 500,
        max_in_flight: 10,
    };
    let quarter = BudgetShare {
        per_minute: 125,
        max_in_flight: 2,
    };
    for w in ["a", "b", "c", "d", "e"] {
        ledger.register_worker(&worker(w)).await.unwrap();
    }
    for w in ["a", "b", "c", "d"] {
        assert_eq!(
            ledger
                .take_budget_share(w, REALM, quarter, total)
                .await
                .unwrap(),
            ShareGrant::Granted
        );
    }
    match ledger
        .take_budget_share("e", REALM, quarter, total)
        .await
        .unwrap()
    {
        ShareGrant::Busy { used, holders } => {
            assert_eq!(used.per_minute, 500);
            assert_eq!(holders, vec!["a", "b", "c", "d"]);
        }
        ShareGrant::Granted => panic!("the budget was oversubscribed"),
    }
    // Another realm has its own budget.
    let mut other = worker("x");
    other.realm_id = "other-realm".into();
    ledger.register_worker(&other).await.unwrap();
    assert_eq!(
        ledger
            .take_budget_share("x", "other-realm", total, total)
            .await
            .unwrap(),
        ShareGrant::Granted
    );
    // A worker that stops frees its share; one whose lease expired too.
    ledger.stop_worker("a", "done").await.unwrap();
    assert_eq!(
        ledger
            .take_budget_share("e", REALM, quarter, total)
            .await
            .unwrap(),
        ShareGrant::Granted
    );
    ledger.register_worker(&worker("f")).await.unwrap();
    assert!(matches!(
        ledger
            .take_budget_share("f", REALM, quarter, total)
            .await
            .unwrap(),
        ShareGrant::Busy { .. }
    ));
    exec(
        &sink,
        "UPDATE backfill.workers SET lease_expires_at = now() - interval '1 second' WHERE id = 'b'",
    )
    .await;
    assert_eq!(
        ledger
            .take_budget_share("f", REALM, quarter, total)
            .await
            .unwrap(),
        ShareGrant::Granted
    );
    let live: Vec<String> = ledger
        .live_workers(REALM)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(live, vec!["c", "d", "e", "f"]);
}

#[tokio::test]
async fn a_dead_worker_is_expired_with_its_run_and_the_trigger_waits_for_live_peers() {
    let (_db, _sink, ledger, run, plan) = setup(2).await;
    let key = TriggerKey::new(PIPELINE, REALM, "t");
    ledger.mark_trigger_running(&key, run, false).await.unwrap();
    for w in ["a", "b"] {
        ledger.register_worker(&worker(w)).await.unwrap();
        ledger.attach_worker_run(w, run, "t").await.unwrap();
    }
    ledger
        .claim_windows(&claim("a", run, &plan, 1))
        .await
        .unwrap();
    // "b" ends without completing: "a" still works for the trigger, so it stays running.
    assert_eq!(
        ledger.settle_trigger(&key, run, "b", false).await.unwrap(),
        TriggerStatus::Running
    );
    let freed = ledger.expire_worker("a", "killed").await.unwrap();
    assert_eq!(freed, 1);
    let r = ledger.get_run(run).await.unwrap().unwrap();
    assert_eq!(r.summary.status, RunStatus::Failed);
    assert_eq!(r.summary.error.as_deref(), Some("killed"));
    assert!(
        ledger
            .get_worker("a")
            .await
            .unwrap()
            .unwrap()
            .stopped_at
            .is_some()
    );
    // Its window is claimable at once.
    assert_eq!(
        ledger
            .claim_windows(&claim("b", run, &plan, 5))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ledger.settle_trigger(&key, run, "b", false).await.unwrap(),
        TriggerStatus::Pending
    );
    ledger.mark_trigger_running(&key, run, false).await.unwrap();
    assert_eq!(
        ledger.settle_trigger(&key, run, "b", true).await.unwrap(),
        TriggerStatus::Completed
    );
    // A peer settling after completion leaves it completed.
    assert_eq!(
        ledger.settle_trigger(&key, run, "a", true).await.unwrap(),
        TriggerStatus::Completed
    );
    assert_eq!(
        ledger.settle_trigger(&key, run, "a", false).await.unwrap(),
        TriggerStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_exclude_until_released_or_dropped() {
    let (_db, _sink, ledger, _run, _plan) = setup(1).await;
    let first = ledger.advisory_lock("token realm-1").await.unwrap();
    let l2 = ledger.clone();
    let second = tokio::spawn(async move { l2.advisory_lock("token realm-1").await.unwrap() });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!second.is_finished());
    // Another name is independent.
    ledger
        .advisory_lock("token realm-2")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    first.release().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    let l3 = ledger.clone();
    let third = tokio::spawn(async move { l3.advisory_lock("token realm-1").await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!third.is_finished());
    drop(second); // dropped mid-transaction: the connection is closed, the lock released
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
}
