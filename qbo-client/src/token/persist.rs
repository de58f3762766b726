//! Saving a rotated refresh token: retried while the store may heal, then rescued to a file.

use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

use super::{TokenProvider, TokenStoreError, rescue};
use crate::error::QboError;

impl TokenProvider {
    /// The newest rescued token of this realm, if a rescue file holds one.
    pub(super) async fn find_rescued(&self) -> Result<Option<rescue::Rescued>, QboError> {
        let places = self.rescue.clone();
        let realm = self.s.realm_id.clone();
        tokio::task::spawn_blocking(move || places.find(&realm))
            .await
            .map_err(|e| QboError::TokenStore(TokenStoreError::backend(false, e)))?
            .map_err(QboError::TokenStore)
    }

    /// Saves a rotated token: retryable store failures are retried (under the refresh lock)
    /// for `save_retry_for`; then, or at once for a failure that cannot heal, the token goes
    /// to a rescue file and the error names it. If not even a rescue file can be written the
    /// token is the only copy: this keeps trying both rather than return and lose it.
    pub(super) async fn persist(&self, token: &SecretString) -> Result<(), QboError> {
        let realm = self.s.realm_id.as_str();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let err = match self.s.store.save(realm, token).await {
                Ok(()) => {
                    if self.rescue.any(realm) {
                        let places = self.rescue.clone();
                        let r = realm.to_owned();
                        let _ = tokio::task::spawn_blocking(move || places.remove(&r)).await;
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let left = self.s.save_retry_for.saturating_sub(started.elapsed());
            if err.is_retryable() && !left.is_zero() {
                let wait = backoff.min(left);
                tracing::warn!(
                    realm,
                    attempt,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error = %crate::error::chain(&err),
                    "token_save_retry"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
            let places = self.rescue.clone();
            let r = realm.to_owned();
            let t = token.clone();
            let written = tokio::task::spawn_blocking(move || places.write(&r, &t))
                .await
                .unwrap_or_else(|e| Err(vec![TokenStoreError::backend(false, e)]));
            match written {
                Ok(path) => {
                    tracing::error!(
                        realm,
                        path = %path.display(),
                        error = %crate::error::chain(&err),
                        "token_rescued"
                    );
                    return Err(QboError::TokenStore(TokenStoreError::Rescued {
                        path,
                        source: Box::new(err),
                    }));
                }
                Err(failures) => {
                    let places: Vec<String> =
                        failures.iter().map(|f| crate::error::chain(f)).collect();
                    tracing::error!(
                        realm,
                        error = %crate::error::chain(&err),
                        rescue_failures = %places.join(" | "),
                        "the rotated refresh token is held only in memory: neither the token store nor a rescue \
                         file can be written; retrying every 30 s until one works (make the store or the working \
                         directory writable)"
                    );
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            }
        }
    }
}
