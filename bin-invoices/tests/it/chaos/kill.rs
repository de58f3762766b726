//! SIGKILL at random moments of a run (12 seeds, 3 tests run in parallel): the re-run ends with
//! exactly a clean run's table and a settled ledger.

use std::time::Duration;

use qbo_sim::{Sim, SimHandle};
use time::macros::datetime;

use super::*;

const ARGS: &[&str] = &[
    "--start",
    "2023-02-01",
    "--end",
    "2023-02-09",
    "--page-size",
    "15",
    "--concurrency",
    "2",
];

async fn slow_sim() -> SimHandle {
    Sim::builder()
        .seed(71)
        .invoices(400)
        .span(
            datetime!(2023-02-01 00:00 UTC),
            datetime!(2023-02-09 00:00 UTC),
        )
        .latency(Duration::from_millis(20), Duration::from_millis(10))
        // As QBO: a superseded refresh token keeps working for a while (a process killed
        // between a rotation and its save must not lock the realm out).
        .old_refresh_token_grace(Some(Duration::from_secs(3600)))
        .requests_per_min(0)
        .max_concurrency(0)
        .spawn()
        .await
        .unwrap()
}

async fn kill_and_resume(seeds: &[u64]) {
    let sim = slow_sim().await;
    let initial_refresh = sim.refresh_token();
    let (clean, clean_time) = clean_run(&sim, ARGS).await;
    let mut outputs = Vec::new();
    for &seed in seeds {
        let mut rng = Rng(seed);
        let (_db, url, sink) = fresh_db().await;
        // Kill anywhere from start-up to a little past the clean run's duration; odd seeds
        // kill the first re-run too.
        let kills = 1 + seed % 2;
        let mut moments = Vec::new();
        for _ in 0..kills {
            let at = Duration::from_millis(
                rng.below(u64::try_from(clean_time.as_millis()).unwrap() * 11 / 10 + 1),
            );
            let mut child = spawn(pipeline(&sim, &url, ARGS));
            tokio::time::sleep(at).await;
            child.kill();
            let ended = child.wait().await;
            moments.push((at, ended.code));
            outputs.push(ended.text());
        }
        // A kill that landed after the trigger completed (the process exited 0, or died between
        // completing the trigger and closing its run) leaves nothing to resume: a plain re-run is
        // refused with exit 4, so finish with --force, which must also settle the ledger.
        let completed = count(
            &sink,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'backfill' AND tablename = 'triggers'",
        )
        .await
            > 0
            && count(
                &sink,
                "SELECT count(*) FROM backfill.triggers WHERE status = 'completed'",
            )
            .await
                > 0;
        let mut args = ARGS.to_vec();
        if completed {
            let refused = spawn(pipeline(&sim, &url, ARGS)).wait().await;
            outputs.push(refused.text());
            assert_eq!(refused.code, Some(4), "seed {seed}: {}", refused.stderr);
            args.push("--force");
        }
        let resumed = spawn(pipeline(&sim, &url, &args)).wait().await;
        outputs.push(resumed.text());
        assert_eq!(
            resumed.code,
            Some(0),
            "seed {seed} (killed at {moments:?}, trigger completed: {completed}): {}",
            resumed.stderr
        );
        assert_eq!(
            table_hash(&sink).await,
            clean,
            "seed {seed} (killed at {moments:?}): the table differs from a clean run's"
        );
        assert_ledger_settled(&sink).await;
        // Every run of the range is accounted for: the killed ones were closed as failed by
        // the run that found their process gone (or never got to open a run).
        let runs = count(&sink, "SELECT count(*) FROM backfill.runs").await;
        let failed = count(
            &sink,
            "SELECT count(*) FROM backfill.runs WHERE status = 'failed' AND error LIKE '%killed or crashed%'",
        )
        .await;
        let succeeded = count(
            &sink,
            "SELECT count(*) FROM backfill.runs WHERE status = 'succeeded'",
        )
        .await;
        assert!(succeeded >= 1 && runs == failed + succeeded, "seed {seed}");
        eprintln!(
            "KILL seed {seed}: killed at {moments:?}, resumed in {:?}, {runs} runs",
            resumed.elapsed
        );
        let secrets = secrets_of(&sim, &sink, &initial_refresh).await;
        assert_no_secrets(&outputs, &secrets);
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_seeds_1_to_4() {
    kill_and_resume(&[1, 2, 3, 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_seeds_5_to_8() {
    kill_and_resume(&[5, 6, 7, 8]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_seeds_9_to_12() {
    kill_and_resume(&[9, 10, 11, 12]).await;
}
