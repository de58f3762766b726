//! Test support (feature `test-support`): a fresh database per test.

use crate::config::PgConfig;
use crate::sink::Sink;

/// A database with a random name, created on the server named by `DATABASE_URL` and dropped
/// (with `FORCE`) when this value is dropped.
///
/// Panics, so that tests fail instead of skipping, when `DATABASE_URL` is missing, invalid or
/// unreachable.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    admin: PgConfig,
    config: PgConfig,
}

impl TestDb {
    /// Creates the database.
    ///
    /// # Panics
    /// When `DATABASE_URL` is unset, invalid or unreachable, or the database cannot be created.
    pub async fn new() -> TestDb {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "DATABASE_URL is not set: database tests need a PostgreSQL server \
                 (start one with `cargo xtask pg start` and export DATABASE_URL=$(cargo xtask pg url))"
            )
        });
        let admin = PgConfig::from_url(&url)
            .unwrap_or_else(|e| panic!("DATABASE_URL is not usable: {e}"))
            .with_pool_size(1);
        let name = format!("rawsink_t_{}", uuid::Uuid::new_v4().simple());
        let sink = Sink::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        let client = sink
            .client()
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        drop(client);
        sink.close();
        let config = admin.clone().with_database(&name).with_pool_size(8);
        TestDb {
            name,
            admin,
            config,
        }
    }

    /// The database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Settings for the database (pool of 8).
    #[must_use]
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// A connected sink, migrations not applied.
    ///
    /// # Panics
    /// When the database cannot be reached.
    pub async fn sink(&self) -> Sink {
        Sink::connect(&self.config)
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)))
    }

    /// A connected sink with every migration applied.
    ///
    /// # Panics
    /// When the database cannot be reached or a migration fails.
    pub async fn migrated_sink(&self) -> Sink {
        let sink = self.sink().await;
        sink.migrate()
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        sink
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; use another thread.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(sink) = Sink::connect(&admin).await else {
                    return;
                };
                if let Ok(client) = sink.client().await
                    && let Err(e) = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await
                {
                    tracing::warn!(database = %name, error = %e, "test_database_not_dropped");
                }
                sink.close();
            });
        });
        let _ = dropper.join();
    }
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
