use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use backfill_core::window::{self, PlanRequest, WindowSize};
use backfill_core::{Entity, RunConfig, RunReport, WindowField};
use qbo_client::{
    Credentials, Environment, QboClient, QboClientBuilder, QboConfig, RateLimit, RetryPolicy,
};
use qbo_sim::{SimBuilder, SimHandle};
use raw_sink::testing::TestDb;
use raw_sink::{RawTable, Sink};
use time::OffsetDateTime;
use time::macros::datetime;

pub const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// A simulator with no latency and small data unless the caller says otherwise.
pub async fn sim(b: SimBuilder) -> SimHandle {
    b.spawn().await.unwrap()
}

/// The configuration of a client of `realm` in the simulator, with its current refresh token.
pub fn sim_config(sim: &SimHandle, realm: &str) -> QboConfig {
    let token = sim.refresh_token_for(realm).unwrap();
    QboConfig::new(
        Environment::Sandbox,
        realm,
        Credentials::new(sim.client_id(), sim.client_secret(), token),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap()
}

pub fn client_for(sim: &SimHandle, realm: &str) -> QboClient {
    test_client(sim_config(sim, realm), Duration::from_millis(50), 8)
}

/// A client for tests: no rate limit, millisecond backoffs up to `max_backoff`, `attempts`
/// attempts per request, a 5 s timeout.
pub fn test_client(cfg: QboConfig, max_backoff: Duration, attempts: u32) -> QboClient {
    test_builder(cfg, max_backoff, attempts).build().unwrap()
}

/// [`test_client`]'s builder, for tests that change more.
pub fn test_builder(cfg: QboConfig, max_backoff: Duration, attempts: u32) -> QboClientBuilder {
    QboClient::builder(cfg)
        .rate_limit(RateLimit::unlimited())
        .retry_policy(
            RetryPolicy::default()
                .with_backoff(
                    Duration::from_millis(5),
                    Duration::from_millis(5),
                    max_backoff,
                )
                .with_max_attempts(attempts),
        )
        .request_timeout(Duration::from_secs(5))
}

pub fn client(sim: &SimHandle) -> QboClient {
    client_for(sim, &sim.realm_id())
}

pub fn config(start: &str, end: &str, trigger: &str) -> RunConfig {
    config_sized(start, end, WindowSize::DAY, trigger)
}

pub fn config_sized(start: &str, end: &str, size: WindowSize, trigger: &str) -> RunConfig {
    let plan = window::plan(&PlanRequest {
        start: window::parse_instant(start).unwrap(),
        end: window::parse_instant(end).unwrap(),
        size,
        now: NOW,
        whole_days: false,
    })
    .unwrap();
    let mut cfg = RunConfig::new(plan.windows, WindowField::CreateTime, trigger);
    cfg.page_size = 1000;
    cfg
}

pub async fn run<E: Entity>(client: &QboClient, sink: &Sink, cfg: &RunConfig) -> RunReport {
    backfill_core::run::<E>(client, sink, cfg).await.unwrap()
}

/// A row of a raw table.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRowOut {
    pub id: String,
    pub ingested: OffsetDateTime,
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
    pub page_number: i32,
    pub page_size: i32,
    pub request_payload: String,
}

pub async fn table_rows(sink: &Sink, table: RawTable, realm: &str) -> BTreeMap<String, RawRowOut> {
    let client = sink.pool().get().await.unwrap();
    let sql = format!(
        "SELECT id, ingested_at_utc, extract_window_start_utc, extract_window_end_utc, page_number, page_size, request_payload \
         FROM {} WHERE realm_id = $1",
        table.quoted()
    );
    client
        .query(&sql, &[&realm])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            (
                id.clone(),
                RawRowOut {
                    id,
                    ingested: r.get(1),
                    window_start: r.get(2),
                    window_end: r.get(3),
                    page_number: r.get(4),
                    page_size: r.get(5),
                    request_payload: r.get(6),
                },
            )
        })
        .collect()
}

/// Asserts that every truth record in `[start, end)` by CreateTime is in the table with a
/// payload equal as JSON (numbers compared exactly by PostgreSQL's numeric), and returns how
/// many were compared.
pub async fn assert_payloads_equal(
    sink: &Sink,
    table: RawTable,
    realm: &str,
    truth: &[qbo_sim::TruthRecord],
) -> usize {
    let client = sink.pool().get().await.unwrap();
    let ids: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
    let jsons: Vec<String> = truth.iter().map(|t| t.json.clone()).collect();
    let sql = format!(
        "SELECT t.id, r.id IS NOT NULL AS present, (r.payload = t.json::jsonb) AS same \
         FROM unnest($2::text[], $3::text[]) AS t(id, json) \
         LEFT JOIN {} r ON r.realm_id = $1 AND r.id = t.id",
        table.quoted()
    );
    let rows = client.query(&sql, &[&realm, &ids, &jsons]).await.unwrap();
    for r in &rows {
        let id: String = r.get(0);
        let present: bool = r.get(1);
        let same: Option<bool> = r.get(2);
        assert!(present, "record {id} missing from {table}");
        assert_eq!(same, Some(true), "payload of {id} differs in {table}");
    }
    // Also compare the numbers' text: jsonb keeps numeric scale, so 362.10 stays 362.10.
    let sql = format!(
        "SELECT count(*) FROM unnest($2::text[], $3::text[]) AS t(id, json) \
         JOIN {} r ON r.realm_id = $1 AND r.id = t.id WHERE r.payload::text <> t.json::jsonb::text",
        table.quoted()
    );
    let differing: i64 = client
        .query_one(&sql, &[&realm, &ids, &jsons])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        differing, 0,
        "payload text differs after jsonb normalisation"
    );
    rows.len()
}

pub fn in_range(t: &qbo_sim::TruthRecord, start: OffsetDateTime, end: OffsetDateTime) -> bool {
    start <= t.create_time && t.create_time < end
}

/// Statuses of the ledger windows of a pipeline/realm.
pub async fn window_statuses(sink: &Sink, pipeline: &str, realm: &str) -> HashMap<String, i64> {
    let client = sink.pool().get().await.unwrap();
    client
        .query(
            "SELECT status, count(*) FROM backfill.windows WHERE pipeline = $1 AND realm_id = $2 GROUP BY status",
            &[&pipeline, &realm],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect()
}

pub async fn db() -> (TestDb, Sink) {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    (db, sink)
}

/// Query texts the simulator received on the query endpoint (SELECT pages only).
pub fn select_queries(sim: &SimHandle) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.endpoint == "query" && r.status == 200)
        .filter_map(|r| r.query)
        .filter(|q| !q.to_ascii_uppercase().contains("COUNT(*)"))
        .collect()
}

pub fn query_requests(sim: &SimHandle) -> usize {
    sim.requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .count()
}
