//! The default refresh-token store: `backfill.oauth_tokens` in PostgreSQL, per realm.

use async_trait::async_trait;
use qbo_client::{TokenStore, TokenStoreError};
use raw_sink::{Ledger, Sink};
use secrecy::SecretString;

/// A [`TokenStore`] on the ledger's `backfill.oauth_tokens` table (one row per realm; each
/// save is one durable upsert that commits before it returns).
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
}
