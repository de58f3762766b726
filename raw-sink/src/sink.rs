//! The connection pool and the migrations runner.

use std::fmt;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;

use crate::config::PgConfig;
use crate::error::SinkError;
use crate::ledger::Ledger;
use crate::tls;

/// Key of the session-level advisory lock serialising migration runs across processes.
const MIGRATION_LOCK_KEY: i64 = 0x7162_5f6d_6967_7261; // "qb_migra"
/// Where refinery records applied migrations.
pub(crate) const MIGRATION_TABLE: &str = "backfill.refinery_schema_history";

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// A PostgreSQL connection pool with the raw-layer and ledger operations.
///
/// Cheap to clone (the pool is reference-counted).
#[derive(Clone)]
pub struct Sink {
    pool: Pool,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Sink")
            .field("pool_size", &status.size)
            .field("pool_max_size", &status.max_size)
            .field("pool_available", &status.available)
            .finish()
    }
}

impl Sink {
    /// Builds the pool and opens one connection to check that the database is reachable,
    /// failing within [`PgConfig::connect_timeout`].
    ///
    /// # Errors
    /// [`SinkError::Connect`] (retryable when the server is down or unreachable, not when
    /// authentication fails), [`SinkError::Tls`] or [`SinkError::TlsRoots`] for TLS set-up.
    pub async fn connect(cfg: &PgConfig) -> Result<Sink, SinkError> {
        let pg = cfg.to_tokio_postgres();
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls::connector(cfg)? {
            None => Manager::from_config(pg, NoTls, manager_config),
            Some(rustls) => Manager::from_config(pg, rustls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size())
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(cfg.connect_timeout()))
            .recycle_timeout(Some(cfg.connect_timeout()))
            .wait_timeout(Some(cfg.connect_timeout() * 6))
            .build()
            .map_err(|_| SinkError::Pool(PoolError::NoRuntimeSpecified))?;
        let first = pool.get().await.map_err(|source| SinkError::Connect {
            target: cfg.target(),
            dbname: cfg.dbname().unwrap_or_default().to_owned(),
            user: cfg.user().unwrap_or_default().to_owned(),
            source,
        })?;
        drop(first);
        tracing::debug!(target = %cfg.target(), ssl_mode = %cfg.ssl_mode(), "postgres_connected");
        Ok(Sink { pool })
    }

    /// Wraps an existing pool (embedding in a service that already has one).
    #[must_use]
    pub fn from_pool(pool: Pool) -> Sink {
        Sink { pool }
    }

    /// The underlying pool.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The run ledger and token store on this pool.
    #[must_use]
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.pool.clone())
    }

    /// Closes the pool: checked-out connections finish, no new ones are handed out.
    pub fn close(&self) {
        self.pool.close();
    }

    pub(crate) async fn client(&self) -> Result<Object, SinkError> {
        get_client(&self.pool).await
    }

    /// Applies the embedded migrations (`migrations/V<n>__<name>.sql`) that are not applied yet.
    ///
    /// Safe when several processes start at once: they queue on a PostgreSQL advisory lock and
    /// the later ones find nothing left to do. A no-op when the schema is current. Refinery's
    /// history lives in `backfill.refinery_schema_history`.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`] when the database cannot be used,
    /// [`SinkError::Migration`] when a migration fails or an applied one was edited.
    pub async fn migrate(&self) -> Result<(), SinkError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(|e| SinkError::query("waiting for the migration lock", e))?;

        let outcome = run_migrations(&mut client).await;

        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await;
        if unlocked.is_err() || outcome.is_err() {
            // Never hand a connection that may still hold the lock (or sit in a failed
            // transaction) back to the pool: closing it releases everything server-side.
            drop(Object::take(client));
        }
        let applied = outcome?;
        unlocked.map_err(|e| SinkError::query("releasing the migration lock", e))?;
        if applied.is_empty() {
            tracing::debug!("migrations_current");
        } else {
            tracing::info!(applied = ?applied, "migrations_applied");
        }
        Ok(())
    }
}

/// Runs refinery on `client` (already holding the advisory lock); returns the applied names.
async fn run_migrations(client: &mut Object) -> Result<Vec<String>, SinkError> {
    // Refinery creates its history table before the first migration, so its schema must exist
    // first. Checked before creating so that a role without CREATE on the database can still
    // run migrate() once an administrator has created the schema.
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = 'backfill'", &[])
        .await
        .map_err(|e| SinkError::query("looking up schema backfill", e))?
        .is_some();
    if !exists {
        client
            .batch_execute("CREATE SCHEMA IF NOT EXISTS backfill")
            .await
            .map_err(|e| SinkError::query("creating schema backfill", e))?;
    }
    let pg: &mut tokio_postgres::Client = client;
    let report = embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(pg)
        .await
        .map_err(SinkError::Migration)?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect())
}

pub(crate) async fn get_client(pool: &Pool) -> Result<Object, SinkError> {
    pool.get().await.map_err(SinkError::Pool)
}

/// Names (`V<n>__<name>`) of the migrations embedded in this build, in order.
#[must_use]
pub fn embedded_migrations() -> Vec<String> {
    let mut all: Vec<_> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.to_string()))
        .collect();
    // By version number: the runner's list is in name order, where V10 sorts before V2.
    all.sort_by_key(|(v, _)| *v);
    all.into_iter().map(|(_, name)| name).collect()
}
