//! The default refresh-token store: `backfill.oauth_tokens` in PostgreSQL, per realm.

use async_trait::async_trait;
use qbo_client::{RefreshGuard, TokenStore, TokenStoreError};
use raw_sink::{AdvisoryLock, Ledger, Sink};
use secrecy::SecretString;

/// A [`TokenStore`] on the ledger's `backfill.oauth_tokens` table (one row per realm; each
/// save is one durable upsert that commits before it returns). Refreshes of a realm are
/// serialised across processes by a PostgreSQL advisory lock.
#[derive(Debug, Clone)]
pub struct PgTokenStore {
    ledger: Ledger,
}

impl PgTokenStore {
    /// A store on `sink`'s database.
    #[must_use]
    pub fn new(sink: &Sink) -> PgTokenStore {
        PgTokenStore {
            ledger: sink.ledger(),
        }
    }
}

#[async_trait]
impl TokenStore for PgTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        self.ledger
            .token_get(realm_id)
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        self.ledger
            .token_put(realm_id, refresh_token)
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))
    }

    async fn lock_refresh(
        &self,
        realm_id: &str,
    ) -> Result<Option<Box<dyn RefreshGuard>>, TokenStoreError> {
        let lock = self
            .ledger
            .advisory_lock(&format!("qb-backfill token refresh {realm_id}"))
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))?;
        Ok(Some(Box::new(PgRefreshGuard(lock))))
    }
}

/// The advisory lock of one realm's refresh.
struct PgRefreshGuard(AdvisoryLock);

#[async_trait]
impl RefreshGuard for PgRefreshGuard {
    async fn release(self: Box<Self>) {
        if let Err(e) = self.0.release().await {
            // The lock is transaction-scoped: it ends with the connection at the latest.
            tracing::warn!(error = %e, "token_lock_release_failed");
        }
    }
}
