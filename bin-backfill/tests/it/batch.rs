//! `--batch` across cooperating workers (issue 18): two processes of one pipeline and realm
//! split the realm's batch budget as they split its request budget, so together they stay
//! within it (the simulator refuses any batch beyond it, counted in `throttled_batch`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qbo_sim::{RequestRecord, Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

use crate::common::*;

/// Most either process may take before the test counts it as hung.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

/// The simulator's batch budget: 4 batch requests per sliding second (240 a minute).
const SIM_BATCHES: u32 = 4;
const SIM_WINDOW: Duration = Duration::from_secs(1);

/// A running process whose output goes to files (a pipe nobody reads while it runs would
/// fill up and block the process on its next log line: a hang).
struct Running {
    child: Child,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

fn spawn(mut c: Command) -> Running {
    let stdout = tempfile::NamedTempFile::new().unwrap();
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let child = c
        .stdout(Stdio::from(stdout.reopen().unwrap()))
        .stderr(Stdio::from(stderr.reopen().unwrap()))
        .spawn()
        .unwrap();
    Running {
        child,
        stdout,
        stderr,
    }
}

/// Waits for the process to exit, killing it (and failing with its output) after
/// [`PROCESS_TIMEOUT`]; returns its exit code and output.
async fn wait(mut r: Running, name: &str) -> (i32, String, String) {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        if let Some(status) = r.child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = r.child.kill();
            let _ = r.child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = std::fs::read_to_string(r.stdout.path()).unwrap_or_default();
    let err = std::fs::read_to_string(r.stderr.path()).unwrap_or_default();
    match status {
        Some(s) => (s.code().unwrap_or(-1), out, err),
        None => {
            panic!("{name} did not end within {PROCESS_TIMEOUT:?}\nstdout:\n{out}\nstderr:\n{err}")
        }
    }
}

/// Most batch requests the simulator received in any window of `window`.
fn peak_batches(requests: &[RequestRecord], window: Duration) -> usize {
    let mut at: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint == "batch")
        .map(|r| r.at)
        .collect();
    at.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

async fn sim_for_workers() -> SimHandle {
    Sim::builder()
        .seed(18)
        .customers(20)
        .invoices(6000)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-03-01 00:00 UTC),
        )
        .requests_per_min(0)
        .max_concurrency(0)
        .batch_requests_per_min(SIM_BATCHES)
        .rate_window(SIM_WINDOW)
        .latency(Duration::from_millis(5), Duration::ZERO)
        .spawn()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cooperating_workers_stay_within_the_realms_batch_budget() {
    let sim = sim_for_workers().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    // The realm's budgets as every worker is told them: 180 batch requests a minute (3 a
    // second, under the simulator's 4) and 240 requests a minute, split in two. Unsplit, each
    // process alone would send 3 batches a second: 6 together.
    let args = [
        "--entity",
        "invoice",
        "--start",
        "2023-01-01",
        "--end",
        "2023-03-01",
        "--batch",
        "--workers",
        "2",
        "--batch-requests-per-min",
        "180",
        "--requests-per-min",
        "240",
        "--page-size",
        "20",
        "--concurrency",
        "8",
        "--trigger",
        "two-workers",
    ];
    let a = spawn(command(&sim, &url, &args));
    let b = spawn(command(&sim, &url, &args));
    let (a, b) = tokio::join!(wait(a, "worker a"), wait(b, "worker b"));
    for (name, (code, out, err)) in [("a", &a), ("b", &b)] {
        assert_eq!(*code, 0, "worker {name}\nstdout:\n{out}\nstderr:\n{err}");
    }

    let stats = sim.stats();
    let requests = sim.requests();
    let batches = requests.iter().filter(|r| r.endpoint == "batch").count();
    assert!(
        batches >= 6,
        "too few batch requests to test the budget: {stats:?}"
    );
    assert_eq!(stats.throttled_batch, 0, "{stats:?}");
    let peak = peak_batches(&requests, SIM_WINDOW);
    assert!(
        peak <= SIM_BATCHES as usize,
        "{peak} batch requests within {SIM_WINDOW:?}"
    );

    // Both workers took part, and together loaded every invoice once.
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM raw.qb_invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 6000);
    let runs = c
        .query(
            "SELECT api_batches FROM backfill.runs WHERE pipeline = 'qb_invoices_backfill'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|r| r.get::<_, i64>(0) > 0),
        "a worker sent no batch"
    );
    sim.shutdown().await.unwrap();
}
