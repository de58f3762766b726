//! A transaction-scoped advisory lock on a connection of its own ([`Ledger::advisory_lock`]),
//! which processes use to serialise rare critical sections (refreshing a realm's OAuth token).
//!
//! Invariant: the lock is released only by committing ([`AdvisoryLock::release`]) or by
//! closing the connection (drop): a connection still in its transaction never returns to the
//! pool.

use std::fmt;

use deadpool_postgres::Object;

use super::Ledger;
use crate::error::SinkError;

impl Ledger {
    /// Takes a transaction-scoped advisory lock named `name` on a connection of its own and
    /// holds it until [`AdvisoryLock::release`] (or drop). Processes use it to serialise rare
    /// critical sections, e.g. refreshing a realm's OAuth token.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn advisory_lock(&self, name: &str) -> Result<AdvisoryLock, SinkError> {
        let client = self.client().await?;
        let mut lock = AdvisoryLock {
            client: Some(client),
            name: name.to_owned(),
        };
        let ctx = || format!("taking lock {name:?}");
        let c = lock.client.as_mut().ok_or(SinkError::NotFound {
            entity: "lock",
            key: String::new(),
        })?;
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&name],
        )
        .await
        .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(lock)
    }
}

/// An advisory lock held by an open transaction ([`Ledger::advisory_lock`]).
pub struct AdvisoryLock {
    /// `None` once released.
    client: Option<Object>,
    name: String,
}

impl fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("name", &self.name)
            .field("held", &self.client.is_some())
            .finish()
    }
}

impl AdvisoryLock {
    /// Commits, releasing the lock and returning the connection to the pool.
    ///
    /// # Errors
    /// [`SinkError::Query`]; the connection is then closed, which releases the lock too.
    pub async fn release(mut self) -> Result<(), SinkError> {
        if let Some(client) = self.client.as_ref() {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| SinkError::query(format!("releasing lock {:?}", self.name), e))?;
        }
        self.client = None;
        Ok(())
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Still in the transaction (error or early drop): close the connection rather than
            // return it to the pool; the server rolls back and releases the lock.
            drop(Object::take(client));
        }
    }
}
