//! SIGTERM / SIGINT mid-run: the pages being written are finished, the windows in progress go
//! back to `pending`, leases are released, the run is recorded `interrupted`, the process exits
//! 143 / 130; the next run resumes and requests nothing that was done.

use std::time::Duration;

use qbo_sim::Sim;
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;

const ARGS: &[&str] = &[
    "--start",
    "2023-04-01",
    "--end",
    "2023-04-11",
    "--page-size",
    "10",
    "--concurrency",
    "2",
];

async fn interrupt_then_resume(sig: &str, code: i32) {
    let sim = Sim::builder()
        .seed(81)
        .invoices(500)
        .span(
            datetime!(2023-04-01 00:00 UTC),
            datetime!(2023-04-11 00:00 UTC),
        )
        .latency(Duration::from_millis(20), Duration::ZERO)
        .requests_per_min(0)
        .max_concurrency(0)
        .spawn()
        .await
        .unwrap();
    let initial_refresh = sim.refresh_token();
    let (clean, _) = clean_run(&sim, ARGS).await;
    let (_db, url, sink) = fresh_db().await;
    let mut child = spawn(pipeline(&sim, &url, ARGS));
    wait_for(
        &sink,
        "SELECT count(*) FROM backfill.windows WHERE status = 'done'",
        2,
        &mut child,
        Duration::from_secs(30),
    )
    .await;
    child.signal(sig);
    let signalled = std::time::Instant::now();
    let ended = child.wait().await;
    assert_eq!(ended.code, Some(code), "{}", ended.stderr);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        signalled.elapsed()
    );
    let reason = if sig == "TERM" { "SIGTERM" } else { "SIGINT" };
    assert!(
        ended.stderr.contains("shutdown_requested"),
        "{}",
        ended.stderr
    );

    // The ledger: nothing running or leased, the run interrupted, the trigger pending.
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.windows WHERE status = 'running' OR lease_owner IS NOT NULL"
        )
        .await,
        0
    );
    let interrupted = count(
        &sink,
        &format!(
            "SELECT count(*) FROM backfill.runs WHERE status = 'interrupted' AND error LIKE 'interrupted by {reason}%'"
        ),
    )
    .await;
    assert_eq!(interrupted, 1);
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.triggers WHERE status = 'pending'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.workers WHERE stopped_at IS NULL"
        )
        .await,
        0
    );
    let done: Vec<(OffsetDateTime, OffsetDateTime)> = {
        let c = sink.pool().get().await.unwrap();
        c.query(
            "SELECT window_start, window_end FROM backfill.windows WHERE status = 'done'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    assert!(done.len() >= 2 && done.len() < 10, "{}", done.len());

    // Resume.
    sim.reset_stats();
    let resumed = spawn(pipeline(&sim, &url, ARGS)).wait().await;
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(table_hash(&sink).await, clean);
    assert_ledger_settled(&sink).await;
    assert_not_requested(&sim, &done);
    let secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    assert_no_secrets(&[ended.text(), resumed.text()], &secrets);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_exits_143_and_the_next_run_resumes() {
    interrupt_then_resume("TERM", 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_exits_130_and_the_next_run_resumes() {
    interrupt_then_resume("INT", 130).await;
}
