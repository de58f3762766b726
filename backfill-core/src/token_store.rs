//! The refresh-token stores of a pipeline: `backfill.oauth_tokens` in PostgreSQL (the default)
//! or a 0600 file, encrypted at rest when `QBO_TOKEN_KEY` / `QBO_TOKEN_KEY_FILE` is set, and
//! checked at start ([`open_token_store`]) so that a store that cannot work is found before
//! Intuit rotates the token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use qbo_client::{
    ExposeSecret, FileTokenStore, RefreshGuard, TokenCipher, TokenMetadata, TokenNote, TokenStore,
    TokenStoreError, is_encrypted, stored_form, token_from_stored,
};
use raw_sink::{AdvisoryLock, Ledger, Sink, TokenGrantNote, TokenMetaRow};
use secrecy::SecretString;

use crate::Error;

/// Where a rotated token is rescued when the store cannot save it (default: the store's own
/// directory for a file store; then the working directory, then the temporary directory).
pub const TOKEN_RESCUE_DIR_ENV: &str = "QBO_TOKEN_RESCUE_DIR";

/// The table, as named in messages.
const TABLE: &str = "backfill.oauth_tokens";

/// Whether this session may write the token table (and is not read-only).
const WRITABLE_SQL: &str = "SELECT has_table_privilege('backfill.oauth_tokens', 'INSERT') \
     AND has_table_privilege('backfill.oauth_tokens', 'UPDATE') \
     AND current_setting('transaction_read_only') = 'off'";

/// A [`TokenStore`] on the ledger's `backfill.oauth_tokens` table (one row per realm; each
/// save is one durable upsert that commits before it returns). Refreshes of a realm are
/// serialised across processes by a PostgreSQL advisory lock. With a [`TokenCipher`] the
/// column holds `enc:v1:…` (XChaCha20-Poly1305), never the token.
#[derive(Clone)]
pub struct PgTokenStore {
    ledger: Ledger,
    sink: Sink,
    cipher: Option<TokenCipher>,
    rescue_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PgTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokenStore")
            .field("encrypted", &self.cipher.is_some())
            .field("rescue_dir", &self.rescue_dir)
            .finish_non_exhaustive()
    }
}

impl PgTokenStore {
    /// A store on `sink`'s database (tokens in plain text; see [`PgTokenStore::with_cipher`]).
    #[must_use]
    pub fn new(sink: &Sink) -> PgTokenStore {
        PgTokenStore {
            ledger: sink.ledger(),
            sink: sink.clone(),
            cipher: None,
            rescue_dir: None,
        }
    }

    /// Encrypts saved tokens with `cipher` (and decrypts stored ones; plain ones still read).
    #[must_use]
    pub fn with_cipher(mut self, cipher: TokenCipher) -> PgTokenStore {
        self.cipher = Some(cipher);
        self
    }

    /// The first directory a token this store fails to save is rescued to.
    #[must_use]
    pub fn with_rescue_dir(mut self, dir: impl Into<PathBuf>) -> PgTokenStore {
        self.rescue_dir = Some(dir.into());
        self
    }

    /// The stored value of `realm_id` as it is in the table (encrypted or not).
    async fn raw(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        self.ledger
            .token_get(realm_id)
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))
    }
}

#[async_trait]
impl TokenStore for PgTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        match self.raw(realm_id).await? {
            None => Ok(None),
            Some(stored) => token_from_stored(
                self.cipher.as_ref(),
                realm_id,
                stored.expose_secret(),
                TABLE,
            )
            .map(Some),
        }
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        let stored = stored_form(self.cipher.as_ref(), realm_id, refresh_token)?;
        self.ledger
            .token_put(realm_id, &stored)
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

    async fn check_writable(&self, realm_id: &str) -> Result<(), TokenStoreError> {
        let client = self
            .sink
            .pool()
            .get()
            .await
            .map_err(|e| TokenStoreError::backend(true, e))?;
        let row = client
            .query_one(WRITABLE_SQL, &[])
            .await
            .map_err(|e| TokenStoreError::backend(true, e))?;
        let writable: Option<bool> = row.get(0);
        if writable != Some(true) {
            return Err(TokenStoreError::NotWritable {
                location: TABLE.to_owned(),
                reason: "this database user may not insert and update it, or the session is \
                         read-only: grant INSERT, UPDATE on backfill.oauth_tokens, connect to the \
                         primary, or use --token-store file:PATH"
                    .to_owned(),
            });
        }
        // The stored token must decrypt with the key given (or need none).
        self.load(realm_id).await.map(|_| ())
    }

    fn rescue_dir(&self) -> Option<PathBuf> {
        self.rescue_dir.clone()
    }

    fn cipher(&self) -> Option<TokenCipher> {
        self.cipher.clone()
    }

    async fn note(&self, realm_id: &str, note: &TokenNote) -> Result<(), TokenStoreError> {
        let secs = |s: &Option<u64>| s.and_then(|s| i64::try_from(s).ok());
        let result = match note {
            TokenNote::Refreshed {
                refresh_expires_in,
                hard_expires_in,
                client_id,
                ..
            } => {
                // rotated_at is set by the save itself when the token changed.
                let n = TokenGrantNote {
                    refresh_expires_in: secs(refresh_expires_in),
                    hard_expires_in: secs(hard_expires_in),
                    client_id: Some(client_id.clone()),
                    ..TokenGrantNote::default()
                };
                self.ledger.token_note_grant(realm_id, &n).await
            }
            TokenNote::Connected {
                company_name,
                client_id,
                refresh_expires_in,
                hard_expires_in,
            } => {
                let n = TokenGrantNote {
                    refresh_expires_in: secs(refresh_expires_in),
                    hard_expires_in: secs(hard_expires_in),
                    client_id: Some(client_id.clone()),
                    company_name: company_name.clone(),
                    connected: true,
                };
                self.ledger.token_note_grant(realm_id, &n).await
            }
            TokenNote::Succeeded => self.ledger.token_note_success(realm_id).await,
            _ => Ok(()),
        };
        result.map_err(|e| TokenStoreError::backend(e.is_retryable(), e))
    }

    async fn metadata(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<TokenMetadata>, TokenStoreError> {
        let rows = self
            .ledger
            .token_meta(realm_id)
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))?;
        Ok(rows.into_iter().map(metadata_of).collect())
    }

    async fn remove(&self, realm_id: &str) -> Result<bool, TokenStoreError> {
        self.ledger
            .token_delete(realm_id)
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))
    }
}

/// A ledger row as the client's metadata type.
fn metadata_of(r: TokenMetaRow) -> TokenMetadata {
    let mut m = TokenMetadata::new(r.realm_id);
    m.has_token = r.has_token;
    m.company_name = r.company_name;
    m.client_id = r.client_id;
    m.connected_at = r.connected_at;
    m.rotated_at = r.rotated_at;
    m.refresh_expires_at = r.refresh_expires_at;
    m.hard_expires_at = r.hard_expires_at;
    m.last_success_at = r.last_success_at;
    m
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

/// Where a pipeline keeps its refresh token.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum TokenStoreLocation<'a> {
    /// `backfill.oauth_tokens` on this database.
    Database(&'a Sink),
    /// A 0600 JSON file.
    File(&'a Path),
}

/// The token key from `QBO_TOKEN_KEY` or `QBO_TOKEN_KEY_FILE` (`None` when neither is set).
/// Read it with the rest of the configuration, before anything is written.
///
/// # Errors
/// [`Error::QboConfig`] (exit 2) when both are set, the file cannot be read, or the key is not
/// base64 of 32 bytes.
pub fn token_key_from_env() -> Result<Option<TokenCipher>, Error> {
    TokenCipher::from_env().map_err(Error::QboConfig)
}

/// Builds the token store at `location` for `realm_id` and checks it before the first
/// refresh: it must be writable (a file path that is not a directory, in a directory that
/// exists and takes files; a table this user may write) and the stored token must decrypt
/// with `key` (or need none). With `key`, a token stored in plain text earlier is re-saved
/// encrypted (under the refresh lock, so no other process's rotation is overwritten); without
/// one, a warning says once that tokens are stored unencrypted. `QBO_TOKEN_RESCUE_DIR`, when
/// set, is the first place a token the store fails to save is rescued to.
///
/// # Errors
/// [`Error::TokenStore`] (exit 2) for a store that cannot work, with the fix in the message.
pub async fn open_token_store(
    location: TokenStoreLocation<'_>,
    realm_id: &str,
    key: Option<TokenCipher>,
) -> Result<Arc<dyn TokenStore>, Error> {
    let rescue_dir = std::env::var_os(TOKEN_RESCUE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (store, what): (Arc<dyn TokenStore>, String) = match location {
        TokenStoreLocation::Database(sink) => {
            let mut s = PgTokenStore::new(sink);
            if let Some(k) = key.clone() {
                s = s.with_cipher(k);
            }
            if let Some(d) = rescue_dir {
                s = s.with_rescue_dir(d);
            }
            (Arc::new(s), TABLE.to_owned())
        }
        TokenStoreLocation::File(path) => {
            let mut s = FileTokenStore::new(path);
            if let Some(k) = key.clone() {
                s = s.with_cipher(k);
            }
            if let Some(d) = rescue_dir {
                s = s.with_rescue_dir(d);
            }
            (Arc::new(s), path.display().to_string())
        }
    };
    store
        .check_writable(realm_id)
        .await
        .map_err(Error::TokenStore)?;
    if key.is_some() {
        encrypt_plain_token(store.as_ref(), location, realm_id)
            .await
            .map_err(Error::TokenStore)?;
    } else {
        tracing::warn!(
            realm = realm_id,
            store = %what,
            "token_store_unencrypted: refresh tokens are stored in plain text; set QBO_TOKEN_KEY \
             or QBO_TOKEN_KEY_FILE (base64 of 32 random bytes, e.g. `openssl rand -base64 32`) to \
             encrypt them"
        );
    }
    Ok(store)
}

/// Re-saves (encrypted) a token of `realm_id` that is stored in plain text.
async fn encrypt_plain_token(
    store: &dyn TokenStore,
    location: TokenStoreLocation<'_>,
    realm_id: &str,
) -> Result<(), TokenStoreError> {
    let guard = store.lock_refresh(realm_id).await?;
    let result = async {
        if !stored_in_plain_text(location, realm_id).await? {
            return Ok(());
        }
        if let Some(token) = store.load(realm_id).await? {
            store.save(realm_id, &token).await?;
            tracing::info!(realm = realm_id, "token_store_encrypted_plain_token");
        }
        Ok(())
    }
    .await;
    if let Some(g) = guard {
        g.release().await;
    }
    result
}

/// Whether the stored value of `realm_id` exists and is not encrypted.
async fn stored_in_plain_text(
    location: TokenStoreLocation<'_>,
    realm_id: &str,
) -> Result<bool, TokenStoreError> {
    let raw: Option<String> = match location {
        TokenStoreLocation::Database(sink) => sink
            .ledger()
            .token_get(realm_id)
            .await
            .map_err(|e| TokenStoreError::backend(e.is_retryable(), e))?
            .map(|s| s.expose_secret().to_owned()),
        TokenStoreLocation::File(path) => match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                serde_json::from_str::<std::collections::HashMap<String, String>>(&text)
                    .map_err(|_| TokenStoreError::Corrupt {
                        path: path.to_owned(),
                    })?
                    .remove(realm_id)
            }
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(TokenStoreError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        },
    };
    Ok(raw.is_some_and(|r| !is_encrypted(&r)))
}
