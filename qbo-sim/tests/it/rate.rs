//! Rate limits: the per-realm request budget over a (scaled) window and the concurrency cap.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::{Instant, MissedTickBehavior};

use crate::common::{Api, small};

async fn fire(api: &Arc<Api>, n: usize) -> Vec<u16> {
    let futs = (0..n).map(|_| {
        let api = Arc::clone(api);
        async move { api.get("SELECT COUNT(*) FROM Item").await.status }
    });
    join_all(futs).await
}

#[tokio::test]
async fn burst_above_budget_is_throttled_exactly() {
    // 50 per 5 s window, no concurrency cap.
    let api = Arc::new(
        Api::start(
            small()
                .requests_per_min(50)
                .rate_window(Duration::from_secs(5))
                .max_concurrency(0),
        )
        .await,
    );
    let statuses = fire(&api, 60).await;
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50);
    let st = api.sim.stats();
    assert_eq!(st.throttled_rate, 10);
    assert_eq!(st.throttled, 10);
    let throttled = api
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .collect::<Vec<_>>();
    assert!(
        throttled
            .iter()
            .all(|r| r.fault.as_deref() == Some("rate_limit"))
    );
}

#[tokio::test]
async fn below_budget_is_never_throttled() {
    let api = Arc::new(
        Api::start(
            small()
                .requests_per_min(50)
                .rate_window(Duration::from_secs(5))
                .max_concurrency(0),
        )
        .await,
    );
    let statuses = fire(&api, 45).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(api.sim.stats().throttled, 0);
}

/// 600 vs 450 requests a minute against 500/min, scaled 20x: a 3 s window with a budget of
/// 25; the clients send 30 (600/min) or 22 (450/min) requests evenly over one window.
#[tokio::test]
async fn paced_600_per_minute_is_throttled_450_is_not() {
    async fn paced(n: u32, window: Duration) -> usize {
        let budget = (500.0 * window.as_secs_f64() / 60.0).round() as u32;
        let api = Arc::new(
            Api::start(
                small()
                    .requests_per_min(budget)
                    .rate_window(window)
                    .max_concurrency(0),
            )
            .await,
        );
        let mut tick = tokio::time::interval(window / n);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut handles = Vec::new();
        let started = Instant::now();
        for _ in 0..n {
            tick.tick().await;
            let api = Arc::clone(&api);
            handles.push(tokio::spawn(async move {
                api.get("SELECT COUNT(*) FROM Item").await.status
            }));
        }
        let statuses = join_all(handles)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        assert!(started.elapsed() < window * 2);
        statuses.iter().filter(|s| **s == 429).count()
    }
    let window = Duration::from_secs(3);
    let (fast, slow) = tokio::join!(paced(30, window), paced(22, window));
    assert!(fast >= 1, "600 per minute must see throttling");
    assert_eq!(slow, 0, "450 per minute must not");
}

#[tokio::test]
async fn budget_refills_after_the_window() {
    let api = Api::start(
        small()
            .requests_per_min(5)
            .rate_window(Duration::from_millis(800)),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 200);
    }
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 429);
    tokio::time::sleep(Duration::from_millis(850)).await;
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 200);
}

#[tokio::test]
async fn more_than_ten_concurrent_requests_are_throttled() {
    let api = Arc::new(
        Api::start(
            small()
                .requests_per_min(0)
                .max_concurrency(10)
                .latency(Duration::from_millis(400), Duration::ZERO),
        )
        .await,
    );
    let statuses = fire(&api, 15).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    let st = api.sim.stats();
    assert_eq!(st.peak_concurrency, 10);
    assert_eq!(st.throttled_concurrency, 5);
    // Unlimited.
    api.sim.set_limits(0, 0);
    let statuses = fire(&api, 15).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(api.sim.stats().peak_concurrency, 15);
}

/// Sends `n` requests, one every `every` at the least (a late tick delays the next ones, as a
/// pacing client does), each in its own task; returns the statuses.
async fn paced_requests(api: &Arc<Api>, n: u32, every: Duration) -> Vec<u16> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut handles = Vec::new();
    for _ in 0..n {
        tick.tick().await;
        let api = Arc::clone(api);
        handles.push(tokio::spawn(async move {
            api.get("SELECT COUNT(*) FROM Item").await.status
        }));
    }
    join_all(handles)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn more_than_ten_requests_in_a_second_are_throttled() {
    let api = Arc::new(
        Api::start(
            small()
                .requests_per_min(0)
                .max_concurrency(0)
                .requests_per_sec(10),
        )
        .await,
    );
    let statuses = fire(&api, 15).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    let st = api.sim.stats();
    assert_eq!(st.throttled_per_second, 5);
    assert_eq!(st.throttled, 5);
    assert!(
        api.sim
            .requests()
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| r.fault.as_deref() == Some("rate_limit_per_second"))
    );
    // The window slides: a second later there is room again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert!(fire(&api, 10).await.iter().all(|s| *s == 200));
    // Switchable at run time.
    api.sim.set_requests_per_sec(0);
    assert!(fire(&api, 30).await.iter().all(|s| *s == 200));
}

/// A client pacing itself at QBO's 500 a minute (one request every 120 ms) is never told off by
/// the per-second limit, even when the simulator's latency jitters by more than the slack;
/// one sending 15 a second is.
#[tokio::test]
async fn paced_500_per_minute_passes_qbo_limits_15_per_second_does_not() {
    let start = |jitter_ms| async move {
        Arc::new(
            Api::start(
                small()
                    .qbo_limits()
                    .latency(Duration::from_millis(20), Duration::from_millis(jitter_ms)),
            )
            .await,
        )
    };
    let (calm, eager) = tokio::join!(start(150), start(0));
    let (calm_statuses, eager_statuses) = tokio::join!(
        paced_requests(&calm, 25, Duration::from_millis(120)),
        paced_requests(&eager, 25, Duration::from_millis(66)),
    );
    assert!(calm_statuses.iter().all(|s| *s == 200), "{calm_statuses:?}");
    assert_eq!(calm.sim.stats().throttled, 0);
    assert!(eager_statuses.contains(&429), "{eager_statuses:?}");
    assert!(eager.sim.stats().throttled_per_second > 0);
}

async fn post_batch(api: &Api, items: usize) -> u16 {
    let body: Vec<_> = (0..items)
        .map(|i| serde_json::json!({"bId": i.to_string(), "Query": "SELECT COUNT(*) FROM Item"}))
        .collect();
    api.http
        .post(format!(
            "{}/v3/company/{}/batch",
            api.sim.base_url(),
            api.sim.realm_id()
        ))
        .bearer_auth(&api.token)
        .header("Accept", "application/json")
        .json(&serde_json::json!({ "BatchItemRequest": body }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn batch_limits_items_and_requests_per_window_switchably() {
    // 40 a minute scaled to 4 per 2 s, so the test is short.
    let api = Api::start(
        small()
            .requests_per_min(0)
            .rate_window(Duration::from_secs(2))
            .batch_requests_per_min(4),
    )
    .await;
    assert_eq!(post_batch(&api, 30).await, 200);
    assert_eq!(post_batch(&api, 31).await, 400);
    assert_eq!(post_batch(&api, 1).await, 200);
    assert_eq!(post_batch(&api, 1).await, 200);
    // The fifth batch in the window is throttled; plain queries are not.
    assert_eq!(post_batch(&api, 1).await, 429);
    assert_eq!(api.get("SELECT COUNT(*) FROM Item").await.status, 200);
    let st = api.sim.stats();
    assert_eq!(st.throttled_batch, 1);
    assert_eq!(st.count("batch", 429), 1);
    let last = api
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.endpoint == "batch")
        .unwrap();
    assert_eq!(last.fault.as_deref(), Some("batch_rate_limit"));
    // Both limits can be lifted.
    api.sim.set_batch_limits(0, 0);
    assert_eq!(post_batch(&api, 31).await, 200);
    assert_eq!(post_batch(&api, 100).await, 200);
}

/// The binary models QBO's limits by default: 10 a second comes with the 500-a-minute budget,
/// and goes when the budget is lifted (as the demo and the unlimited benchmarks do).
#[tokio::test]
async fn the_binary_enforces_ten_a_second_with_the_qbo_budget_only() {
    async fn burst(extra: &[&str]) -> usize {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qbo-sim"))
            .args([
                "--customers",
                "5",
                "--items",
                "5",
                "--invoices",
                "5",
                "--vendors",
                "2",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let vars: std::collections::HashMap<String, String> =
            tokio::task::spawn_blocking(move || {
                std::io::BufReader::new(stdout)
                    .lines()
                    .take(7)
                    .map(|l| {
                        let l = l.unwrap();
                        let (k, v) = l.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let token: serde_json::Value = http
            .post(&vars["QBO_TOKEN_URL"])
            .basic_auth(&vars["QBO_CLIENT_ID"], Some(&vars["QBO_CLIENT_SECRET"]))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", vars["QBO_REFRESH_TOKEN"].as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = token["access_token"].as_str().unwrap().to_string();
        let url = format!(
            "{}/v3/company/{}/query",
            vars["QBO_BASE_URL"], vars["QBO_REALM_ID"]
        );
        let mut throttled = 0;
        for _ in 0..14 {
            let status = http
                .get(&url)
                .query(&[("query", "SELECT COUNT(*) FROM Item")])
                .bearer_auth(&access)
                .header("Accept", "application/json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            throttled += usize::from(status == 429);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        throttled
    }
    assert!(burst(&[]).await >= 4, "QBO's 10 a second by default");
    assert_eq!(burst(&["--requests-per-min", "0"]).await, 0);
    assert_eq!(burst(&["--requests-per-sec", "0"]).await, 0);
}

/// The latency model: a COUNT and an empty page answer in the base latency, a page's answer
/// grows with its rows (base + rows × per-row cost), and the per-row part can be changed while
/// the simulator runs. Elapsed times are measured by the simulator itself (`elapsed_us`).
#[tokio::test]
async fn latency_grows_with_the_rows_of_an_answer_and_a_count_stays_fast() {
    let api = Api::start(
        small()
            .latency(Duration::from_millis(30), Duration::ZERO)
            .latency_per_row(Duration::from_millis(2)),
    )
    .await;
    let ms = |q: &'static str| {
        let api = &api;
        async move {
            let a = api.get(q).await;
            assert_eq!(a.status, 200, "{}", a.body);
            let log = api.sim.requests();
            let rec = log.last().unwrap();
            assert_eq!(rec.query.as_deref(), Some(q));
            rec.elapsed_us / 1000
        }
    };
    let count = ms("SELECT COUNT(*) FROM Invoice").await;
    let empty = ms("SELECT * FROM Invoice WHERE TxnDate > '2030-01-01'").await;
    let page = ms("SELECT * FROM Invoice MAXRESULTS 100").await;
    assert!((30..200).contains(&count), "COUNT took {count} ms");
    assert!((30..200).contains(&empty), "empty page took {empty} ms");
    // 30 ms + 100 rows × 2 ms.
    assert!(page >= 230, "a page of 100 took {page} ms");
    api.sim.set_latency_per_row(Duration::ZERO);
    let fast = ms("SELECT * FROM Invoice MAXRESULTS 100").await;
    assert!(fast < 200, "without the per-row cost a page took {fast} ms");
}
