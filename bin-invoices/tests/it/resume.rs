use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use qbo_sim::Sim;
use raw_sink::testing::TestDb;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use crate::common::*;

/// The `[from, to)` of a query's CreateTime filter.
fn query_range(q: &str) -> (OffsetDateTime, OffsetDateTime) {
    let lit = |marker: &str| {
        let rest = q.split(marker).nth(1).unwrap();
        let s = rest.trim_start().trim_start_matches('\'');
        OffsetDateTime::parse(s.split('\'').next().unwrap(), &Rfc3339).unwrap()
    };
    (lit("MetaData.CreateTime >="), lit("MetaData.CreateTime <"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_resume_skips_done_windows() {
    let sim = sim_with(
        Sim::builder()
            .seed(6)
            .invoices(1200)
            .latency(Duration::from_millis(15), Duration::ZERO)
            .span(
                datetime!(2023-01-01 00:00 UTC),
                datetime!(2023-01-21 00:00 UTC),
            ),
    )
    .await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let sink = db.sink().await;
    let args = [
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-21",
        "--concurrency",
        "1",
        "--page-size",
        "10",
        "--log-format",
        "json",
    ];
    let mut c = command(&sim, &url);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The last migration's table: the ledger is complete once it exists.
        let schema_ready = has_table(&sink, "backfill.workers").await;
        if schema_ready
            && count(
                &sink,
                "SELECT count(*) FROM backfill.windows WHERE status = 'done'",
            )
            .await
                >= 3
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
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
    let total: i64 = count(&sink, "SELECT count(*) FROM backfill.windows").await;
    assert!(
        done.len() < usize::try_from(total).unwrap(),
        "killed too late"
    );
    let interrupted_rows = count(&sink, "SELECT count(*) FROM raw.qb_invoices").await;
    assert!(interrupted_rows > 0);

    sim.reset_stats();
    let mut c = command(&sim, &url);
    c.args(args);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // Same final table as the truth.
    let truth: BTreeSet<String> = sim.truth("Invoice").into_iter().map(|t| t.id).collect();
    let c = sink.pool().get().await.unwrap();
    let rows: BTreeSet<String> = c
        .query("SELECT id FROM raw.qb_invoices", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, truth);
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.windows WHERE status <> 'done'"
        )
        .await,
        0
    );
    // No request of the second run touched a window done before the kill.
    let queries: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .filter_map(|r| r.query)
        .collect();
    assert!(!queries.is_empty());
    for q in &queries {
        let (from, to) = query_range(q);
        for (s, e) in &done {
            assert!(
                to <= *s || from >= *e,
                "{q} re-requested done window [{s}, {e})"
            );
        }
    }
    // The killed run is visible in the ledger: the second run found its process gone and
    // closed it as failed (no run is left `running`); the trigger was completed by the second.
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.runs WHERE status = 'running'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.runs WHERE status = 'failed' AND error LIKE '%killed or crashed%'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &sink,
            "SELECT count(*) FROM backfill.triggers WHERE status = 'completed'"
        )
        .await,
        1
    );
    sim.shutdown().await.unwrap();
}
