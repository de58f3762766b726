//! `serve`'s access rule, `--metrics-textfile` and `--metrics-push` at the process level.
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

/// What the Pushgateway stand-in received: method, path, content type, basic auth, body.
type Pushed = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, String, String)>>>;

/// A tiny Pushgateway: records every request and answers 200.
async fn pushgateway() -> (std::net::SocketAddr, Pushed) {
    use axum::extract::{Request, State};
    let pushed: Pushed = Pushed::default();
    let app = axum::Router::new()
        .fallback(|State(p): State<Pushed>, req: Request| async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            p.lock().unwrap().push((
                parts.method.to_string(),
                parts.uri.path().to_owned(),
                header("content-type"),
                header("authorization"),
                String::from_utf8(body.to_vec()).unwrap(),
            ));
            "ok"
        })
        .with_state(pushed.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, pushed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_push_puts_the_textfiles_figures_to_the_pushgateway() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let (addr, pushed) = pushgateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qb_items.prom");
    let push = format!("http://gw:s3cret@{addr}/base");
    let args = [
        "--entity",
        "Item",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-06",
        "--metrics-textfile",
        path.to_str().unwrap(),
        "--metrics-push",
        &push,
    ];
    let o = run_expect(command(&sim, &url, &args), 0).await;
    let (_, err) = text(&o);
    assert!(err.contains("metrics_pushed"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the push password was logged: {err}"
    );
    let got = pushed.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (method, p, ctype, auth, body) = &got[0];
    assert_eq!(method, "PUT");
    let realm = sim.realm_id();
    assert_eq!(
        p,
        &format!("/base/metrics/job/qb_backfill/pipeline/qb_items_backfill/realm/{realm}")
    );
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    // gw:s3cret as basic auth.
    assert_eq!(auth, "Basic Z3c6czNjcmV0");
    // The very figures of the textfile.
    assert_eq!(body, &std::fs::read_to_string(&path).unwrap());
    assert!(body.contains(&format!(
        "qb_backfill_run_exit_code{{pipeline=\"qb_items_backfill\",realm=\"{realm}\"}} 0.0"
    )));

    // A Pushgateway that is away is logged and leaves the run's outcome alone. (Another
    // range is its own trigger: exit 0.)
    let away = "http://127.0.0.1:1/";
    let args = [
        "--entity",
        "Item",
        "--start",
        "2023-01-06",
        "--end",
        "2023-01-08",
        "--metrics-push",
        away,
    ];
    let o = run_expect(command(&sim, &url, &args), 0).await;
    let (_, err) = text(&o);
    assert!(err.contains("metrics_push_failed"), "{err}");
    sim.shutdown().await.unwrap();
}
