//! Run a backfill from inside your own tokio service, on your own connection pool, with your
//! own token store.
//!
//! ```text
//! # QBO_* and DATABASE_URL in the environment:
//! cargo run -p examples --example embed_service -- 2024-01-01 2024-03-01
//! ```
//!
//! The service owns the pool (here a plain `deadpool-postgres` pool, as a service would already
//! have) and keeps QBO's rotating refresh token in a table of its own schema. The backfill runs
//! as one task beside the service's other work and can be cancelled with Ctrl-C: windows in
//! flight stay `running` in the ledger and the next run resumes them.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backfill_core::window::{self, PlanRequest, WindowSize};
use backfill_core::{Invoice, RunConfig, WindowField};
use qbo_client::{QboClient, QboConfig, TokenStore, TokenStoreError};
use raw_sink::Sink;
use raw_sink::deadpool_postgres::tokio_postgres::{self, NoTls};
use raw_sink::deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};

/// The service's own token store: one row per company in the service's schema, written in one
/// statement that commits before `save` returns (the client relies on that durability).
struct ServiceTokenStore {
    pool: Pool,
}

impl ServiceTokenStore {
    /// The service's own migration would normally create this table.
    async fn new(pool: Pool) -> Result<Self, Box<dyn Error>> {
        pool.get()
            .await?
            .batch_execute(
                "CREATE SCHEMA IF NOT EXISTS my_service;
                 CREATE TABLE IF NOT EXISTS my_service.qbo_tokens (
                     realm_id      TEXT PRIMARY KEY,
                     refresh_token TEXT NOT NULL,
                     updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
                 );",
            )
            .await?;
        Ok(Self { pool })
    }
}

fn backend(e: impl Error + Send + Sync + 'static) -> TokenStoreError {
    TokenStoreError::backend(true, e)
}

#[async_trait]
impl TokenStore for ServiceTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        let client = self.pool.get().await.map_err(backend)?;
        let row = client
            .query_opt(
                "SELECT refresh_token FROM my_service.qbo_tokens WHERE realm_id = $1",
                &[&realm_id],
            )
            .await
            .map_err(backend)?;
        Ok(row.map(|r| SecretString::from(r.get::<_, String>(0))))
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        let client = self.pool.get().await.map_err(backend)?;
        client
            .execute(
                "INSERT INTO my_service.qbo_tokens (realm_id, refresh_token) VALUES ($1, $2)
                 ON CONFLICT (realm_id) DO UPDATE
                 SET refresh_token = EXCLUDED.refresh_token, updated_at = now()",
                &[&realm_id, &refresh_token.expose_secret()],
            )
            .await
            .map_err(backend)?;
        tracing::info!(realm_id, "refresh token saved in my_service.qbo_tokens");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,embed_service=info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(start), Some(end)) = (args.next(), args.next()) else {
        return Err("usage: embed_service START END (RFC 3339 with offset, or YYYY-MM-DD)".into());
    };

    // 1. The service's own pool (a real service builds it once and shares it).
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let pg: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(8).build()?;

    // 2. qb-backfill on that pool: the raw layer and the ledger live beside the service's data.
    let sink = Sink::from_pool(pool.clone());
    sink.migrate().await?;
    let store: Arc<dyn TokenStore> = Arc::new(ServiceTokenStore::new(pool.clone()).await?);
    let client = QboClient::builder(QboConfig::from_env()?)
        .token_store(store)
        .build()?;

    // 3. Plan daily windows and configure the run (the CLI's defaults, adjusted in code).
    let plan = window::plan(&PlanRequest {
        start: window::parse_instant(&start)?,
        end: window::parse_instant(&end)?,
        size: WindowSize::DAY,
        now: time::OffsetDateTime::now_utc(),
        whole_days: false,
    })?;
    let mut cfg = RunConfig::new(
        plan.windows,
        WindowField::CreateTime,
        format!("service {start}..{end}"),
    );
    cfg.concurrency = 2;

    // 4. The backfill is one task among the service's others.
    let backfill =
        tokio::spawn(async move { backfill_core::run::<Invoice>(&client, &sink, &cfg).await });
    let heartbeat = tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            tracing::info!("service still answering requests while the backfill runs");
        }
    });

    let outcome = tokio::select! {
        joined = backfill => joined?,
        _ = tokio::signal::ctrl_c() => {
            heartbeat.abort();
            println!("cancelled: windows in flight stay `running`; the next run resumes them");
            return Ok(());
        }
    };
    heartbeat.abort();
    let report = outcome?;
    println!(
        "run {}: {} · {} windows done, {} skipped, {} with problems · {} rows ({} inserted, {} updated, {} unchanged)",
        report.run_id,
        report.status,
        report.windows_done,
        report.windows_skipped,
        report.problems.len(),
        report.rows,
        report.counts.inserted,
        report.counts.updated,
        report.counts.unchanged
    );
    let saved: i64 = pool
        .get()
        .await?
        .query_one("SELECT count(*) FROM my_service.qbo_tokens", &[])
        .await?
        .get(0);
    println!("refresh tokens kept by the service's own store: {saved}");
    Ok(())
}
