//! `serve`'s access rule and `--metrics-textfile` at the process level.
use std::collections::BTreeMap;

use raw_sink::testing::TestDb;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_public_address_without_a_token_before_touching_anything() {
    let sim = sim().await;
    // The database is unreachable: the refusal must come first (2, not 5).
    let c = command(
        &sim,
        "postgres://nobody@127.0.0.1:1/none",
        &["serve", "--listen", "0.0.0.0:0"],
    );
    let o = run_expect(c, 2).await;
    let (_, err) = text(&o);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--auth-token-file"),
        "{err}"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_textfile_holds_the_runs_figures() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qb_customers.prom");
    let p = path.to_str().unwrap();
    let args = [
        "--entity",
        "Customer",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--metrics-textfile",
        p,
    ];
    run_expect(command(&sim, &url, &args), 0).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let samples: BTreeMap<String, f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    let realm = sim.realm_id();
    let labels = format!("{{pipeline=\"qb_customers_backfill\",realm=\"{realm}\"}}");
    let get = |name: &str| {
        *samples
            .get(&format!("{name}{labels}"))
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    let sink = db.sink().await;
    let row = sink
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT rows, extract(epoch FROM finished_at)::float8 FROM backfill.runs \
             WHERE pipeline = 'qb_customers_backfill' AND status = 'succeeded'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(get("qb_backfill_run_exit_code"), 0.0);
    assert_eq!(get("qb_backfill_run_rows"), row.get::<_, i64>(0) as f64);
    assert_eq!(get("qb_backfill_run_rows"), 120.0);
    // No fault was injected: every query the loop issued reached the simulator once.
    let queries = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == "query")
        .count();
    assert!(queries > 0);
    assert_eq!(get("qb_backfill_run_qbo_requests"), queries as f64);
    assert!(get("qb_backfill_run_duration_seconds") > 0.0);
    assert!(
        (get("qb_backfill_last_success_timestamp_seconds") - row.get::<_, f64>(1)).abs() < 1e-3
    );
    let done = format!(
        "qb_backfill_run_windows{{pipeline=\"qb_customers_backfill\",realm=\"{realm}\",state=\"done\"}}"
    );
    assert_eq!(samples[&done], 10.0, "{text}");
    // Nothing but the file is left in the directory (the temporary one was renamed).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    sim.shutdown().await.unwrap();
}
