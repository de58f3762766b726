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
