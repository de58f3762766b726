//! OAuth refresh-token store (`backfill.oauth_tokens`), one row per realm.

use std::fmt;

use deadpool_postgres::Object;
use secrecy::{ExposeSecret, SecretString};

use super::{Ledger, col};
use crate::error::SinkError;

/// How long [`Ledger::token_lock`] waits for another holder before failing (retryably).
const TOKEN_LOCK_TIMEOUT: &str = "60s";

const PUT_SQL: &str = "INSERT INTO backfill.oauth_tokens AS t (realm_id, refresh_token, rotated_at) \
     VALUES ($1, $2, now()) \
     ON CONFLICT (realm_id) DO UPDATE SET \
         refresh_token = EXCLUDED.refresh_token, \
         updated_at = now(), \
         rotated_at = CASE WHEN t.refresh_token IS DISTINCT FROM EXCLUDED.refresh_token \
                           THEN now() ELSE t.rotated_at END, \
         rotated_count = t.rotated_count + \
             CASE WHEN t.refresh_token IS NOT NULL \
                   AND t.refresh_token IS DISTINCT FROM EXCLUDED.refresh_token \
                  THEN 1 ELSE 0 END";

impl Ledger {
    /// The stored refresh token of `realm_id`, if any.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn token_get(&self, realm_id: &str) -> Result<Option<SecretString>, SinkError> {
        let client = self.client().await?;
        let ctx = || format!("reading the stored token of realm {realm_id}");
        let stmt = client
            .prepare_cached("SELECT refresh_token FROM backfill.oauth_tokens WHERE realm_id = $1")
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_opt(&stmt, &[&realm_id])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        match row {
            None => Ok(None),
            Some(row) => Ok(col::<Option<String>>(&row, "refresh_token")?.map(SecretString::from)),
        }
    }

    /// Stores `token` as the newest refresh token of `realm_id` (durable when this returns).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`] (e.g. an empty token).
    pub async fn token_put(&self, realm_id: &str, token: &SecretString) -> Result<(), SinkError> {
        let client = self.client().await?;
        let ctx = || format!("storing the token of realm {realm_id}");
        let stmt = client
            .prepare_cached(PUT_SQL)
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .execute(&stmt, &[&realm_id, &token.expose_secret()])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(())
    }

    /// Locks the token row of `realm_id` (creating it empty if missing) in a transaction held
    /// by the returned [`TokenLock`], so that only one process at a time refreshes the token:
    /// the holder reads [`TokenLock::current`], refreshes, then [`TokenLock::replace`]s (or
    /// [`TokenLock::release`]s); a second caller waits here and then reads the new token.
    ///
    /// The wait is bounded (60 s, then a retryable `lock_not_available` error). Dropping the
    /// lock without `replace`/`release` rolls back and discards its connection.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn token_lock(&self, realm_id: &str) -> Result<TokenLock, SinkError> {
        let client = self.client().await?;
        let mut lock = TokenLock {
            client: Some(client),
            realm_id: realm_id.to_owned(),
            current: None,
        };
        lock.acquire().await?;
        Ok(lock)
    }
}

/// A transaction holding `SELECT ... FOR UPDATE` on one realm's token row.
pub struct TokenLock {
    /// `None` once committed (or discarded).
    client: Option<Object>,
    realm_id: String,
    current: Option<SecretString>,
}

impl fmt::Debug for TokenLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenLock")
            .field("realm_id", &self.realm_id)
            .field("current", &self.current.as_ref().map(|_| "[REDACTED]"))
            .field("held", &self.client.is_some())
            .finish()
    }
}

impl TokenLock {
    async fn acquire(&mut self) -> Result<(), SinkError> {
        let realm = self.realm_id.clone();
        let ctx = || format!("locking the token of realm {realm}");
        let client = self.client_mut()?;
        // Outside the transaction so the row exists (and is visible) before anyone locks it.
        client
            .execute(
                "INSERT INTO backfill.oauth_tokens (realm_id) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&realm],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '{TOKEN_LOCK_TIMEOUT}'"
            ))
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        let row = client
            .query_one(
                "SELECT refresh_token FROM backfill.oauth_tokens WHERE realm_id = $1 FOR UPDATE",
                &[&realm],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        self.current = col::<Option<String>>(&row, "refresh_token")?.map(SecretString::from);
        Ok(())
    }

    fn client_mut(&mut self) -> Result<&mut Object, SinkError> {
        // Always Some between acquire and replace/release, which consume self.
        self.client.as_mut().ok_or(SinkError::NotFound {
            entity: "token lock",
            key: String::new(),
        })
    }

    /// The realm whose token is locked.
    #[must_use]
    pub fn realm_id(&self) -> &str {
        &self.realm_id
    }

    /// The token stored when the lock was taken (`None` if the realm has none yet).
    #[must_use]
    pub fn current(&self) -> Option<&SecretString> {
        self.current.as_ref()
    }

    /// Stores `token` and commits, releasing the lock.
    ///
    /// # Errors
    /// [`SinkError::Query`]; the transaction is then rolled back and nothing is stored.
    pub async fn replace(mut self, token: &SecretString) -> Result<(), SinkError> {
        let realm = self.realm_id.clone();
        let ctx = || format!("storing the token of realm {realm}");
        let client = self.client_mut()?;
        client
            .execute(PUT_SQL, &[&realm, &token.expose_secret()])
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        self.current = Some(token.clone());
        self.client = None; // committed: back to the pool, clean
        Ok(())
    }

    /// Commits without changing the token, releasing the lock.
    ///
    /// # Errors
    /// [`SinkError::Query`].
    pub async fn release(mut self) -> Result<(), SinkError> {
        let realm = self.realm_id.clone();
        let client = self.client_mut()?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| SinkError::query(format!("unlocking the token of realm {realm}"), e))?;
        self.client = None;
        Ok(())
    }
}

impl Drop for TokenLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Mid-transaction (error or early drop): close the connection instead of returning
            // it to the pool; the server rolls back and releases the row lock.
            drop(Object::take(client));
        }
    }
}
