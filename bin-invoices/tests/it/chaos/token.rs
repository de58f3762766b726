//! The refresh token revoked mid-run: exit 3 with the runbook, completed windows kept; after
//! the operator rotates the token (a new one from the app's connect flow), the next run
//! finishes the rest without requesting the completed windows again.

use std::time::Duration;

use qbo_sim::{Sim, SimBuilder};
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;

const ARGS: &[&str] = &[
    "--start",
    "2023-06-01",
    "--end",
    "2023-06-11",
    "--page-size",
    "10",
    "--concurrency",
    "2",
];

fn company() -> SimBuilder {
    Sim::builder()
        .seed(91)
        .invoices(500)
        .span(
            datetime!(2023-06-01 00:00 UTC),
            datetime!(2023-06-11 00:00 UTC),
        )
        .latency(Duration::from_millis(20), Duration::ZERO)
        .requests_per_min(0)
        .max_concurrency(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_exits_3_keeps_done_windows_and_resumes_after_rotation() {
    let sim = company().spawn().await.unwrap();
    let initial_refresh = sim.refresh_token();
    let (clean, _) = clean_run(&sim, ARGS).await;
    let (_db, url, sink) = fresh_db().await;
    let mut child = spawn(pipeline(&sim, &url, ARGS));
    wait_for(
        &sink,
        "SELECT count(*) FROM backfill.windows WHERE status = 'done'",
        3,
        &mut child,
        Duration::from_secs(30),
    )
    .await;
    // The company disconnects the app: every refresh token is revoked, access tokens die.
    sim.revoke_refresh_tokens();
    sim.expire_access_tokens();
    let ended = child.wait().await;
    assert_eq!(ended.code, Some(3), "{}", ended.stderr);
    assert!(ended.stderr.contains("runbook"), "{}", ended.stderr);

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
    assert!(done.len() >= 3 && done.len() < 10, "{}", done.len());
    let rows_kept = count(&sink, "SELECT count(*) FROM raw.qb_invoices").await;
    assert!(rows_kept > 0);
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.windows WHERE status = 'running' OR lease_owner IS NOT NULL"
        )
        .await,
        0,
        "windows in progress are released"
    );
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.runs WHERE status = 'failed' AND error LIKE '%authentication%'"
        )
        .await,
        1
    );
    // The stored token is the revoked one: running again without a rotation fails the same way.
    let again = spawn(pipeline(&sim, &url, ARGS)).wait().await;
    assert_eq!(again.code, Some(3), "{}", again.stderr);

    // The operator reconnects the app (the same company's data, a new refresh token) and sets
    // QBO_REFRESH_TOKEN: the stored token is refused once, the new one is used and stored.
    let rotated = "AB11-operator-rotated-refresh-token-0001".to_owned();
    let reconnected = company()
        .refresh_token(rotated.clone())
        .spawn()
        .await
        .unwrap();
    let resumed = spawn(pipeline(&reconnected, &url, ARGS)).wait().await;
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(table_hash(&sink).await, clean);
    assert_ledger_settled(&sink).await;
    assert_not_requested(&reconnected, &done);
    let stored: String = {
        let c = sink.pool().get().await.unwrap();
        c.query_one("SELECT refresh_token FROM backfill.oauth_tokens", &[])
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(
        stored,
        reconnected.refresh_token(),
        "the newest token is stored"
    );

    let mut secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    secrets.push(rotated);
    secrets.push(reconnected.refresh_token());
    assert_no_secrets(&[ended.text(), again.text(), resumed.text()], &secrets);
    sim.shutdown().await.unwrap();
    reconnected.shutdown().await.unwrap();
}
