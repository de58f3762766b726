//! Chaos tests of the loop as a library (group `chaos`): fault storms from the simulator,
//! cooperative workers in one process, stop requests and database connections killed mid-run.
//! Every scenario ends with the raw table compared, as an ordered hash, with a clean run's and
//! with the simulator's truth. Process-level chaos (SIGKILL, signals, PostgreSQL restarts,
//! several processes) lives in bin-invoices' `chaos` tests.

mod db_loss;
mod shutdown;
mod storms;
mod workers;

use std::time::Duration;

use qbo_client::{Credentials, Environment, QboClient, QboConfig, RateLimit, RetryPolicy};
use qbo_sim::SimHandle;
use raw_sink::{RawTable, Sink};

/// A client with millisecond backoffs, generous attempts and a 300 ms request timeout.
pub fn impatient_client(sim: &SimHandle) -> QboClient {
    let cfg = QboConfig::new(
        Environment::Sandbox,
        sim.realm_id(),
        Credentials::new(sim.client_id(), sim.client_secret(), sim.refresh_token()),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap();
    QboClient::builder(cfg)
        .rate_limit(RateLimit::unlimited())
        .retry_policy(
            RetryPolicy::default()
                .with_backoff(
                    Duration::from_millis(5),
                    Duration::from_millis(5),
                    Duration::from_millis(40),
                )
                .with_max_attempts(12)
                .with_max_internal_error_retries(3),
        )
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// `(rows, md5)` of a raw table: realm, id, window and payload of every row, ordered by key.
pub async fn table_hash(sink: &Sink, table: RawTable) -> (i64, String) {
    let c = sink.pool().get().await.unwrap();
    let sql = format!(
        "SELECT count(*), coalesce(md5(string_agg(realm_id || '|' || id || '|' || \
         extract_window_start_utc::text || '|' || payload::text, E'\\n' ORDER BY realm_id, id)), '') \
         FROM {}",
        table.quoted()
    );
    let row = c.query_one(&sql, &[]).await.unwrap();
    (row.get(0), row.get(1))
}

/// `(lost, extra)`: truth ids missing from the table, table ids not in the truth.
pub async fn lost_and_extra(
    sink: &Sink,
    table: RawTable,
    realm: &str,
    truth: &[qbo_sim::TruthRecord],
) -> (i64, i64) {
    let c = sink.pool().get().await.unwrap();
    let ids: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
    let q = table.quoted();
    let lost: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM unnest($2::text[]) t(id) \
                 WHERE NOT EXISTS (SELECT 1 FROM {q} r WHERE r.realm_id = $1 AND r.id = t.id)"
            ),
            &[&realm, &ids],
        )
        .await
        .unwrap()
        .get(0);
    let extra: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {q} WHERE realm_id = $1 AND NOT (id = ANY($2::text[]))"),
            &[&realm, &ids],
        )
        .await
        .unwrap()
        .get(0);
    (lost, extra)
}

/// The ledger after a finished backfill: every window done, none running or leased, no run
/// left running, the trigger completed.
pub async fn assert_ledger_settled(sink: &Sink) {
    let c = sink.pool().get().await.unwrap();
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.windows WHERE status <> 'done' OR lease_owner IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "windows not done or still leased");
    let running: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.runs WHERE status = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "a run is left running");
    let open: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.triggers WHERE status <> 'completed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "a trigger is not completed");
}

/// Counts events by message (`retry`, `window_retry`, `db_retry`, …) of the futures it is
/// attached to.
#[derive(Clone, Default)]
pub struct EventCounter {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl EventCounter {
    pub fn get(&self, message: &str) -> u64 {
        self.counts
            .lock()
            .unwrap()
            .get(message)
            .copied()
            .unwrap_or(0)
    }

    /// A dispatcher that feeds this counter.
    pub fn dispatch(&self) -> tracing::Dispatch {
        use tracing_subscriber::layer::SubscriberExt;
        tracing::Dispatch::new(tracing_subscriber::registry().with(self.clone()))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventCounter {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_owned());
                }
            }
        }
        let mut m = Message(None);
        event.record(&mut m);
        if let Some(msg) = m.0 {
            *self.counts.lock().unwrap().entry(msg).or_default() += 1;
        }
    }
}
