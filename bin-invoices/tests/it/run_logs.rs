use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use raw_sink::testing::TestDb;
use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_events_carry_context_and_no_secret_is_logged() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens.json");
    let initial_refresh = sim.refresh_token();
    let mut c = command(&sim, &db_url(&db));
    c.args([
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--page-size",
        "20",
    ])
    .arg(format!("--token-store=file:{}", token_file.display()))
    .env("RUST_LOG", "debug");
    let o = output(c).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");

    // Not a terminal: JSON lines.
    let events: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &events {
        let name = e["message"].as_str().unwrap_or_default().to_owned();
        if [
            "pipeline_started",
            "window_started",
            "page_loaded",
            "window_finished",
            "pipeline_finished",
        ]
        .contains(&name.as_str())
        {
            assert_eq!(e["pipeline"], "qb_invoices_backfill", "{e}");
            assert_eq!(e["realm"], sim.realm_id().as_str(), "{e}");
            assert!(e["run_id"].as_i64().is_some(), "{e}");
            *seen.entry(name).or_default() += 1;
        }
    }
    for name in [
        "pipeline_started",
        "window_started",
        "page_loaded",
        "window_finished",
        "pipeline_finished",
    ] {
        assert!(
            seen.get(name).copied().unwrap_or(0) > 0,
            "no {name} event: {seen:?}"
        );
    }
    let finished = events
        .iter()
        .find(|e| e["message"] == "pipeline_finished")
        .unwrap();
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["rows"], 300);
    let page = events
        .iter()
        .find(|e| e["message"] == "page_loaded")
        .unwrap();
    assert!(
        page["intuit_tid"].as_str().is_some_and(|t| !t.is_empty()),
        "{page}"
    );

    // Secrets: the client secret and every refresh token seen, in no output.
    let newest_refresh = sim.refresh_token();
    for secret in [sim.client_secret(), initial_refresh, newest_refresh.clone()] {
        assert!(
            !out.contains(&secret) && !err.contains(&secret),
            "a secret was printed"
        );
    }
    // The file store holds the newest token, privately.
    let meta = std::fs::metadata(&token_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&token_file)
            .unwrap()
            .contains(&newest_refresh)
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_token_store_keeps_the_rotated_token() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let mut c = command(&sim, &url);
    c.args(["--start", "2023-01-01", "--end", "2023-01-03"]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let sink = db.sink().await;
    let pg = sink.pool().get().await.unwrap();
    let stored: String = pg
        .query_one(
            "SELECT refresh_token FROM backfill.oauth_tokens WHERE realm_id = $1",
            &[&sim.realm_id()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, sim.refresh_token());
    // The environment's (now superseded) token is ignored in favour of the stored one.
    let mut c = command(&sim, &url);
    c.args(["--start", "2023-01-03", "--end", "2023-01-05"])
        .env("QBO_REFRESH_TOKEN", "AB11-stale");
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    sim.shutdown().await.unwrap();
}
