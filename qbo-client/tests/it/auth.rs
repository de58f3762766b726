//! OAuth: single-flight refresh, rotation persisted before use, store vs configuration,
//! typed failures (pitfalls 1 and 8).

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use qbo_client::{
    AuthError, ExposeSecret, FileTokenStore, MemoryTokenStore, Op, Order, QboClient, QboError,
    Query, RateLimit, SecretString, TokenStore,
};
use qbo_sim::{Quirks, Rotation, ScriptedFault};

use crate::common::*;

fn small_query() -> Query {
    Query::select("Customer").max_results(5).build().unwrap()
}

/// Pitfall 1 over a long run: rotation on every refresh, the old token dead at once, the
/// access token living 60 s; 20 minutes of (virtual) paging never hits invalid_grant and the
/// store always ends with the sim's newest token.
#[tokio::test(start_paused = true)]
async fn twenty_minutes_of_rotation_never_hit_invalid_grant() {
    let sim = sim_builder()
        .seed(21)
        .customers(60)
        .access_token_ttl(Duration::from_secs(60))
        .rotation(Rotation::EveryRefresh)
        .old_refresh_token_grace(None)
        .latency(Duration::from_secs(2), Duration::ZERO)
        .spawn()
        .await
        .unwrap();
    let store = Arc::new(ProbeStore::default());
    let client = builder(&sim, store.clone()).build().unwrap();
    let started = tokio::time::Instant::now();
    let q = Query::select("Customer")
        .include_inactive()
        .order_by("Id", Order::Asc)
        .max_results(10)
        .build()
        .unwrap();
    let mut pages = 0;
    let mut runs = 0;
    while started.elapsed() < Duration::from_secs(20 * 60) {
        let got: Vec<_> = client.pages(q.clone()).try_collect().await.unwrap();
        pages += got.len();
        runs += 1;
        if runs % 7 == 0 {
            // Now and then the server drops every access token early: a 401 path refresh.
            sim.expire_access_tokens();
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.token_failures, 0, "{stats:?}");
    assert_eq!(token_requests(&sim, 400), 0);
    assert!(stats.token_refreshes >= 20, "{stats:?}");
    assert_eq!(stats.token_rotations, stats.token_refreshes);
    let saved = store.saved();
    assert_eq!(
        saved.len() as u64,
        stats.token_refreshes,
        "every rotated token saved"
    );
    assert_eq!(saved.last().unwrap(), &sim.refresh_token());
    assert!(pages > 500, "{pages}");
}

/// 50 callers at once share one refresh.
#[tokio::test]
async fn fifty_concurrent_callers_cause_exactly_one_refresh() {
    let sim = sim_builder()
        .seed(22)
        .latency(ms(30), Duration::ZERO)
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.query_page(&small_query()).await.map(|p| p.len()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 5);
    }
    assert_eq!(sim.stats().token_refreshes, 1);
    assert_eq!(token_requests(&sim, 200), 1);
    assert_eq!(query_requests(&sim), 50);

    // Every access token revoked: 50 callers see 401 and still only one refresh happens.
    sim.expire_access_tokens();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.query_page(&small_query()).await.map(|p| p.len()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 5);
    }
    assert_eq!(sim.stats().token_refreshes, 2);
    assert_eq!(sim.stats().count("query", 401), 50);
    assert_eq!(sim.stats().count("query", 200), 100);
}

/// Access tokens living 1 s expire many times during one stream; no page fails.
#[tokio::test]
async fn token_expiry_mid_stream_fails_no_page() {
    let sim = sim_builder()
        .seed(23)
        .invoices(2500)
        .access_token_ttl(Duration::from_secs(1))
        .latency(ms(120), Duration::ZERO)
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    let q = Query::select("Invoice")
        .order_by("MetaData.CreateTime", Order::Asc)
        .max_results(100)
        .build()
        .unwrap();
    let pages = all_pages(&client, q).await;
    assert_eq!(pages.len(), 26, "25 full pages and the empty one");
    assert_eq!(unique(&ids(&pages)).len(), 2500);
    let stats = sim.stats();
    assert!(stats.token_refreshes >= 3, "{stats:?}");
    assert_eq!(stats.token_failures, 0);
}

/// Pitfall 1: the rotated token survives the process (file store), and the store's token
/// wins over the (now dead) configured one.
#[tokio::test]
async fn file_store_carries_rotation_across_processes() {
    let sim = sim_builder()
        .seed(24)
        .rotation(Rotation::EveryRefresh)
        .spawn()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let configured = sim.refresh_token();
    for run in 0..3 {
        let client = builder(&sim, Arc::new(FileTokenStore::new(&path)))
            .build()
            .unwrap();
        client.query_page(&small_query()).await.unwrap();
        assert_ne!(sim.refresh_token(), configured, "run {run}: rotated");
        let stored = FileTokenStore::new(&path)
            .load(&sim.realm_id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.expose_secret(), sim.refresh_token());
    }
    assert_eq!(
        token_requests(&sim, 400),
        0,
        "the dead configured token was never sent"
    );
    assert_eq!(token_requests(&sim, 200), 3);
}

/// SPEC §3: the store's token wins; if it is rejected and the configured one differs, that one
/// is tried once and then persisted.
#[tokio::test]
async fn store_token_wins_and_configured_token_is_the_fallback() {
    let sim = sim_builder().seed(25).spawn().await.unwrap();
    let realm = sim.realm_id();

    // Store holds the valid token, configuration a dead one.
    let store = Arc::new(MemoryTokenStore::with_token(&realm, sim.refresh_token()));
    let mut cfg = config(&sim);
    cfg.credentials.refresh_token = SecretString::from("AB11dead0configured0token");
    let client = QboClient::builder(cfg)
        .token_store(store.clone())
        .rate_limit(RateLimit::unlimited())
        .build()
        .unwrap();
    client.query_page(&small_query()).await.unwrap();
    assert_eq!(token_requests(&sim, 400), 0);
    assert_eq!(
        store.load(&realm).await.unwrap().unwrap().expose_secret(),
        sim.refresh_token()
    );

    // Store holds a stale token, configuration the valid one (an operator rotated it).
    sim.reset_stats();
    let store = Arc::new(MemoryTokenStore::with_token(
        &realm,
        "AB11stale0stored0token",
    ));
    let client = builder(&sim, store.clone()).build().unwrap();
    client.query_page(&small_query()).await.unwrap();
    assert_eq!(token_requests(&sim, 400), 1);
    assert_eq!(token_requests(&sim, 200), 1);
    assert_eq!(
        store.load(&realm).await.unwrap().unwrap().expose_secret(),
        sim.refresh_token()
    );

    // Both dead: each tried once, then a typed error; later calls do not hammer the endpoint.
    sim.reset_stats();
    let store = Arc::new(MemoryTokenStore::with_token(
        &realm,
        "AB11stale0stored0token",
    ));
    let mut cfg = config(&sim);
    cfg.credentials.refresh_token = SecretString::from("AB11dead0configured0token");
    let client = QboClient::builder(cfg)
        .token_store(store)
        .rate_limit(RateLimit::unlimited())
        .build()
        .unwrap();
    for _ in 0..3 {
        let err = client.query_page(&small_query()).await.unwrap_err();
        assert!(
            matches!(err, QboError::Auth(AuthError::InvalidGrant { .. })),
            "{err:?}"
        );
    }
    assert_eq!(token_requests(&sim, 400), 2);
    assert_eq!(query_requests(&sim), 0);
}

/// invalid_grant surfaces typed, with the runbook, after exactly one token request.
#[tokio::test]
async fn invalid_grant_is_a_typed_auth_error_without_retry_loops() {
    let sim = sim_builder().seed(26).spawn().await.unwrap();
    sim.revoke_refresh_tokens();
    let client = client(&sim);
    let err = client.query_page(&small_query()).await.unwrap_err();
    assert!(err.is_auth());
    assert!(!err.is_retryable());
    assert!(
        matches!(
            &err,
            QboError::Auth(AuthError::InvalidGrant {
                description: Some(_),
                intuit_tid: Some(_)
            })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    for needle in [
        "invalid_grant",
        "runbook",
        "QBO_REFRESH_TOKEN",
        "OAuth 2.0 Playground",
        "token store",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(
        client
            .ensure_token_valid_for(Duration::from_secs(1))
            .await
            .unwrap_err()
            .is_auth()
    );
    assert_eq!(sim.stats().endpoint_total("token"), 1);
    assert_eq!(query_requests(&sim), 0);

    // The same through a stream: one error item, then the end.
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(client.pages(small_query())).await;
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().unwrap_err().is_auth());
    assert_eq!(sim.stats().endpoint_total("token"), 1);

    // A 200 whose body says `error` is a failure too.
    let sim = sim_builder().seed(26).spawn().await.unwrap();
    sim.script_token(vec![ScriptedFault::FaultWith200]);
    let err = client_for(&sim)
        .query_page(&small_query())
        .await
        .unwrap_err();
    assert!(
        matches!(err, QboError::Auth(AuthError::InvalidGrant { .. })),
        "{err:?}"
    );
    assert_eq!(query_requests(&sim), 0);
}

fn client_for(sim: &qbo_sim::SimHandle) -> QboClient {
    client(sim)
}

/// Pitfall 8 / invalid_client, whichever status Intuit uses (400 or 401): typed, not retried,
/// with the sandbox/production hint.
#[tokio::test]
async fn invalid_client_is_typed_for_400_and_401() {
    for status in [400u16, 401] {
        let sim = sim_builder()
            .seed(27)
            .quirks(Quirks {
                invalid_client_status: status,
                ..Quirks::default()
            })
            .spawn()
            .await
            .unwrap();
        let mut cfg = config(&sim);
        cfg.credentials.client_secret = SecretString::from("wrong-secret-value");
        let client = QboClient::builder(cfg)
            .rate_limit(RateLimit::unlimited())
            .retry_policy(fast_retry())
            .build()
            .unwrap();
        let err = client.query_page(&small_query()).await.unwrap_err();
        match &err {
            QboError::Auth(AuthError::InvalidClient { status: s, .. }) => assert_eq!(*s, status),
            other => panic!("{other:?}"),
        }
        assert!(err.is_auth() && !err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("QBO_CLIENT_SECRET") && text.contains("sandbox and production"),
            "{text}"
        );
        assert_eq!(sim.stats().endpoint_total("token"), 1);
    }
}

/// Transient token-endpoint failures are retried; the chain is not broken. (A 200 whose body
/// is cut short may already have rotated the token: like Intuit, the sim keeps the old token
/// alive for a grace period here.)
#[tokio::test]
async fn transient_token_failures_are_retried() {
    let sim = sim_builder()
        .seed(28)
        .old_refresh_token_grace(Some(Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    sim.script_token(vec![
        ScriptedFault::Status(503),
        ScriptedFault::Throttle,
        ScriptedFault::Status(500),
        ScriptedFault::MalformedJson,
    ]);
    let client = client(&sim);
    client.query_page(&small_query()).await.unwrap();
    assert_eq!(sim.stats().endpoint_total("token"), 5);
    assert_eq!(
        token_requests(&sim, 200),
        2,
        "the malformed 200 and the good one"
    );
    assert_eq!(token_requests(&sim, 400), 0);
    assert_eq!(sim.stats().token_refreshes, 2);
}

/// The rotated refresh token is saved before the new access token is used: a save that fails
/// retryably is tried again (issue 12 item 6: it used to end the call with the only copy of
/// the token in memory) and no API request goes out before it succeeds.
#[tokio::test]
async fn rotated_token_is_saved_before_the_access_token_is_used() {
    let sim = sim_builder()
        .seed(29)
        .rotation(Rotation::EveryRefresh)
        .spawn()
        .await
        .unwrap();
    let store = Arc::new(ProbeStore::default());
    *store.sim.lock().unwrap() = Some(sim.clone());
    *store.fail_saves.lock().unwrap() = 1;
    let client = builder(&sim, store.clone()).build().unwrap();

    client.query_page(&small_query()).await.unwrap();
    assert_eq!(
        store.queries_at_save.lock().unwrap().clone(),
        vec![0, 0],
        "the failed save was retried before the access token was used"
    );
    assert_eq!(token_requests(&sim, 400), 0);
    assert_eq!(store.saved(), vec![sim.refresh_token()]);

    // Each later refresh saves before any request with the new access token.
    for _ in 0..3 {
        sim.expire_access_tokens();
        client.query_page(&small_query()).await.unwrap();
    }
    let at_save = store.queries_at_save.lock().unwrap().clone();
    // Saves happened after 0, 0 (first failed, then ok), 2 (1 ok + one 401), 4, 6 query requests.
    assert_eq!(at_save, vec![0, 0, 2, 4, 6]);
    assert_eq!(store.saved().len(), 4);
    assert_eq!(store.saved().last().unwrap(), &sim.refresh_token());
}

/// A 401 forces one refresh and exactly one retry; a second 401 is final, typed, and hints at
/// mixed-up keys (pitfall 8).
#[tokio::test]
async fn unauthorized_gets_one_refresh_and_one_retry() {
    let sim = sim_builder().seed(30).spawn().await.unwrap();
    let client = client(&sim);
    client.query_page(&small_query()).await.unwrap();
    sim.script(vec![ScriptedFault::ExpiredToken]);
    client.query_page(&small_query()).await.unwrap();
    assert_eq!(sim.stats().token_refreshes, 2);
    assert_eq!(sim.stats().count("query", 401), 1);

    sim.reset_stats();
    sim.script(vec![
        ScriptedFault::ExpiredToken,
        ScriptedFault::ExpiredToken,
    ]);
    let err = client.query_page(&small_query()).await.unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(err.status(), Some(401));
    let fault = err.fault().unwrap();
    assert_eq!(fault.code(), Some("3200"));
    assert_eq!(fault.fault_type.as_deref(), Some("AUTHENTICATION"));
    assert!(fault.intuit_tid.is_some());
    assert!(err.to_string().contains("QBO_ENV"), "{err}");
    assert_eq!(sim.stats().count("query", 401), 2);
    assert_eq!(sim.stats().token_refreshes, 1);
}

/// Pitfall 8: a company the keys cannot reach (sandbox keys on production and vice versa give
/// 3100) — one refresh, then a typed error saying so.
#[tokio::test]
async fn unknown_realm_says_keys_may_be_mixed_up() {
    let sim = sim_builder().seed(31).spawn().await.unwrap();
    let mut cfg = config(&sim);
    cfg.realm_id = "123145678901234".into();
    let client = QboClient::builder(cfg)
        .rate_limit(RateLimit::unlimited())
        .retry_policy(fast_retry())
        .build()
        .unwrap();
    let err = client.query_page(&small_query()).await.unwrap_err();
    assert!(err.is_auth());
    let fault = err.fault().unwrap();
    assert!(matches!(fault.code(), Some("3100" | "100")), "{fault:?}");
    let text = err.to_string();
    assert!(
        text.contains("sandbox") && text.contains("production"),
        "{text}"
    );

    // The 404 variant is not an auth error and is not retried.
    let sim = sim_builder()
        .seed(31)
        .quirks(Quirks {
            unknown_realm_status: 404,
            ..Quirks::default()
        })
        .spawn()
        .await
        .unwrap();
    let mut cfg = config(&sim);
    cfg.realm_id = "123145678901234".into();
    let client = QboClient::builder(cfg)
        .rate_limit(RateLimit::unlimited())
        .retry_policy(fast_retry())
        .build()
        .unwrap();
    let err = client.query_page(&small_query()).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_auth() && !err.is_retryable());
    assert_eq!(query_requests(&sim), 1);
}

/// `ensure_token_valid_for` refreshes only when the token would expire within the duration.
#[tokio::test(start_paused = true)]
async fn ensure_token_valid_for_refreshes_only_when_needed() {
    let sim = sim_builder()
        .seed(32)
        .access_token_ttl(Duration::from_secs(600))
        .spawn()
        .await
        .unwrap();
    let client = client(&sim);
    client
        .ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(sim.stats().token_refreshes, 1);
    client
        .ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(400)).await;
    // 200 s left: enough for 60 s, not for 250 s.
    client
        .ensure_token_valid_for(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(sim.stats().token_refreshes, 1);
    client
        .ensure_token_valid_for(Duration::from_secs(250))
        .await
        .unwrap();
    assert_eq!(sim.stats().token_refreshes, 2);
    // Asking for more than the lifetime is capped at half of it: no refresh storm.
    client
        .ensure_token_valid_for(Duration::from_secs(3600))
        .await
        .unwrap();
    client
        .ensure_token_valid_for(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(sim.stats().token_refreshes, 2);
    // The proactive buffer (min(120 s, ttl/4) = 120 s) refreshes before expiry on its own:
    // 100 s left is inside it.
    tokio::time::advance(Duration::from_secs(500)).await;
    client
        .query_page(
            &Query::select("Customer")
                .filter("Id", Op::Eq, "1")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(sim.stats().token_refreshes, 3);
    assert_eq!(sim.stats().count("query", 401), 0);
}

/// QBO: two refreshes racing for one realm can break the rotation chain. Three clients (three
/// processes) share a store that has a refresh lock; the old refresh token dies at once. Every
/// refresh, the ones a 401 forces included, uses the newest token: never an invalid_grant,
/// each refresh rotates once, and the store ends with the sim's newest token.
#[tokio::test]
async fn processes_sharing_a_locked_store_refresh_one_at_a_time_with_the_newest_token() {
    let sim = sim_builder()
        .seed(31)
        .rotation(Rotation::EveryRefresh)
        .old_refresh_token_grace(None)
        .latency(Duration::from_millis(20), Duration::ZERO)
        .spawn()
        .await
        .unwrap();
    let store = Arc::new(ProbeStore {
        refresh_lock: Some(Arc::default()),
        ..ProbeStore::default()
    });
    let clients: Vec<QboClient> = (0..3)
        .map(|_| builder(&sim, store.clone()).build().unwrap())
        .collect();
    let q = small_query();
    for round in 0..4 {
        // Every client at once; from the second round on, each holds an access token the
        // server has just dropped, so each is a 401-forced refresh.
        let results = futures::future::join_all(clients.iter().map(|c| c.query_page(&q))).await;
        for r in results {
            r.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        sim.expire_access_tokens();
    }
    let stats = sim.stats();
    assert_eq!(token_requests(&sim, 400), 0, "{stats:?}");
    assert_eq!(stats.token_refreshes, 12, "{stats:?}");
    assert_eq!(stats.token_rotations, stats.token_refreshes);
    assert!(store.locks_taken.load(std::sync::atomic::Ordering::Relaxed) >= 12);
    assert_eq!(
        store
            .load(&sim.realm_id())
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        sim.refresh_token()
    );
}
