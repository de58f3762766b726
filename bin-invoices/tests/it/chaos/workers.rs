//! Cooperative processes: four workers on one range share the windows through the ledger and
//! the realm's QBO budget through their shares; one is killed, the others take its windows
//! over. The simulator enforces QBO-like limits (a per-second budget and a concurrency cap):
//! not a single request may be throttled.

use std::collections::BTreeMap;
use std::time::Duration;

use qbo_sim::{Sim, SimHandle};
use time::macros::datetime;

use super::*;

/// The simulator's budget per realm: 40 requests per 1-second window, 4 in flight.
const SIM_PER_SECOND: u32 = 40;
const SIM_IN_FLIGHT: u32 = 4;

async fn limited_sim(seed: u64, invoices: usize, days: i64) -> SimHandle {
    let start = datetime!(2023-08-01 00:00 UTC);
    Sim::builder()
        .seed(seed)
        .invoices(invoices)
        .span(start, start + time::Duration::days(days))
        .latency(Duration::from_millis(10), Duration::from_millis(5))
        .requests_per_min(SIM_PER_SECOND)
        .rate_window(Duration::from_secs(1))
        .max_concurrency(SIM_IN_FLIGHT)
        .old_refresh_token_grace(Some(Duration::from_secs(3600)))
        .spawn()
        .await
        .unwrap()
}

/// The realm budget given to the pipelines: 36 requests/s (90% of the simulator's) and 4 in
/// flight, as `--requests-per-min` / `--max-in-flight`.
fn budget_args() -> Vec<String> {
    let per_minute = SIM_PER_SECOND * 60 * 9 / 10;
    vec![
        "--requests-per-min".into(),
        per_minute.to_string(),
        "--max-in-flight".into(),
        SIM_IN_FLIGHT.to_string(),
    ]
}

fn worker_command(sim: &SimHandle, url: &str, range: (&str, &str), extra: &[&str]) -> Command {
    let mut c = command(sim, url);
    c.args(["--log-format", "json", "--start", range.0, "--end", range.1])
        .args([
            "--page-size",
            "30",
            "--concurrency",
            "2",
            "--lease-ttl",
            "3s",
        ])
        .args(budget_args())
        .args(extra);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_one_killed_exact_table_each_window_once_budget_held() {
    let sim = limited_sim(101, 1500, 16).await;
    let initial_refresh = sim.refresh_token();
    let range = ("2023-08-01", "2023-08-17");
    let args = ["--trigger", "coop", "--workers", "4"];
    // The reference: one worker alone with the whole budget.
    let (clean, _) = {
        let (_db, url, sink) = fresh_db().await;
        let ended = spawn(worker_command(&sim, &url, range, &["--trigger", "coop"]))
            .wait()
            .await;
        assert_eq!(ended.code, Some(0), "{}", ended.stderr);
        let (table, truth) = payload_hashes(&sink, &sim).await;
        assert_eq!(table, truth);
        (table_hash(&sink).await, ())
    };
    sim.reset_stats();

    let (_db, url, sink) = fresh_db().await;
    let mut workers: Vec<Spawned> = (0..4)
        .map(|_| spawn(worker_command(&sim, &url, range, &args)))
        .collect();
    let pids: Vec<i32> = workers
        .iter()
        .map(|w| i32::try_from(w.pid()).unwrap())
        .collect();
    // Kill a worker while it holds a running window, after some windows are done: the first
    // one seen doing so (the four race for the first claims).
    let started = std::time::Instant::now();
    let (victim, held): (usize, Vec<i64>) = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        assert!(
            workers.iter_mut().all(Spawned::is_running),
            "a worker ended before one could be killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        if !has_table(&sink, "backfill.workers").await {
            continue;
        }
        let c = sink.pool().get().await.unwrap();
        let done: i64 = c
            .query_one(
                "SELECT count(*) FROM backfill.windows WHERE status = 'done'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let running: Vec<(i32, i64)> = c
            .query(
                "SELECT k.pid, w.id FROM backfill.windows w \
                 JOIN backfill.workers k ON w.lease_owner = k.id \
                 WHERE k.pid = ANY($1) AND w.status = 'running' ORDER BY k.pid, w.id",
                &[&pids],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if done >= 2
            && let Some((pid, _)) = running.first()
        {
            let held = running
                .iter()
                .filter(|(p, _)| p == pid)
                .map(|(_, w)| *w)
                .collect();
            break (pids.iter().position(|p| p == pid).unwrap(), held);
        }
    };
    workers[victim].kill();
    let victim_pid = pids[victim];
    let mut outputs = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        let e = w.wait().await;
        if i != victim {
            assert_eq!(e.code, Some(0), "worker {i}: {}", e.stderr);
        }
        outputs.push(e.text());
    }

    // Exactly the clean table; the ledger settled.
    assert_eq!(table_hash(&sink).await, clean);
    assert_ledger_settled(&sink).await;

    // Each window was loaded by one worker: one attempt, except the windows the killed worker
    // was loading, which a survivor loaded again (two attempts).
    let c = sink.pool().get().await.unwrap();
    let windows: BTreeMap<i64, (i32, i64)> = c
        .query("SELECT id, attempts, run_id FROM backfill.windows", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(windows.len(), 16);
    let victim_run: i64 = c
        .query_one(
            "SELECT run_id FROM backfill.workers WHERE pid = $1",
            &[&victim_pid],
        )
        .await
        .unwrap()
        .get(0);
    for (id, (attempts, run)) in &windows {
        let expected = if held.contains(id) { 2 } else { 1 };
        assert_eq!(
            *attempts, expected,
            "window {id}: {windows:?}, held {held:?}"
        );
        if held.contains(id) {
            assert_ne!(*run, victim_run, "window {id} was not taken over");
        }
    }
    let runs: Vec<i64> = windows.values().map(|(_, r)| *r).collect();
    let distinct: std::collections::BTreeSet<i64> = runs.iter().copied().collect();
    assert!(distinct.len() >= 3, "the work was not shared: {distinct:?}");
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.runs WHERE status = 'failed' AND error LIKE '%killed or crashed%'"
        )
        .await,
        1
    );

    // The budget held across the processes: nothing throttled, never more than the cap in
    // flight.
    let stats = sim.stats();
    eprintln!(
        "WORKERS: {} query requests, throttled {}, peak concurrency {}, windows {windows:?}, taken over {held:?}",
        stats.endpoint_total("query"),
        stats.throttled,
        stats.peak_concurrency
    );
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(stats.peak_concurrency <= SIM_IN_FLIGHT, "{stats:?}");
    let shares: Vec<(i32, i32)> = c
        .query(
            "SELECT per_minute, max_in_flight FROM backfill.workers ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(shares.len(), 4);
    assert!(shares.iter().all(|s| *s == (540, 1)), "{shares:?}");

    let secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    assert_no_secrets(&outputs, &secrets);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_share_left_a_process_waits_for_the_budget() {
    let sim = limited_sim(102, 400, 8).await;
    sim.set_latency(Duration::from_millis(40), Duration::ZERO);
    let (_db, url, sink) = fresh_db().await;
    // Two processes of the same realm, each claiming the whole budget (--workers 1): the second
    // waits until the first is done instead of doubling the request rate.
    let mut first = spawn(worker_command(
        &sim,
        &url,
        ("2023-08-01", "2023-08-05"),
        &[],
    ));
    wait_for(
        &sink,
        "SELECT count(*) FROM backfill.workers WHERE per_minute IS NOT NULL",
        1,
        &mut first,
        Duration::from_secs(30),
    )
    .await;
    let second = spawn(worker_command(
        &sim,
        &url,
        ("2023-08-05", "2023-08-09"),
        &[],
    ));
    let (a, b) = (first.wait().await, second.wait().await);
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    assert!(b.stderr.contains("budget_wait"), "{}", b.stderr);
    // The second started its work only once the first had released its share.
    let c = sink.pool().get().await.unwrap();
    let (first_end, second_start): (time::OffsetDateTime, time::OffsetDateTime) = {
        let r = c
            .query_one(
                "SELECT (SELECT finished_at FROM backfill.runs ORDER BY id LIMIT 1),                         (SELECT started_at FROM backfill.runs ORDER BY id DESC LIMIT 1)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(second_start >= first_end, "{first_end} > {second_start}");
    assert_eq!(sim.stats().throttled, 0);
    let (table, truth) = payload_hashes(&sink, &sim).await;
    assert_eq!(table, truth);
    assert_ledger_settled(&sink).await;
    sim.shutdown().await.unwrap();
}
