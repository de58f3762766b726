//! Where the newest refresh token of each realm is kept.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::cipher::{self, TokenCipher};
use super::meta::{self, TokenMetadata, TokenNote};

/// Durable storage of the newest refresh token per realm. `save` must be durable when it
/// returns: the client uses a new access token only after the rotated refresh token is saved.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The stored refresh token of `realm_id`, if any.
    ///
    /// # Errors
    /// The store cannot be read.
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError>;

    /// Stores `refresh_token` as the newest for `realm_id`, durably.
    ///
    /// # Errors
    /// The store cannot be written.
    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError>;

    /// Serialises the refreshes of `realm_id` across every process that shares this store
    /// (QBO: two refreshes racing for one realm can break the rotation chain). The client holds
    /// the returned guard from before it reads the stored token until the rotated one is saved,
    /// and adopts a token another process saved meanwhile. The default, `None`, suits a store
    /// private to one process: refreshes are always single-flight within a process.
    ///
    /// # Errors
    /// The lock cannot be taken.
    async fn lock_refresh(
        &self,
        realm_id: &str,
    ) -> Result<Option<Box<dyn RefreshGuard>>, TokenStoreError> {
        let _ = realm_id;
        Ok(None)
    }

    /// Checks, before the first refresh, that a rotated token of `realm_id` could be saved
    /// here and that the stored one can be read (and decrypted), so that a store that cannot
    /// work is found before Intuit rotates the token. The default does nothing.
    ///
    /// # Errors
    /// The store cannot be read or written; the message says what to fix.
    async fn check_writable(&self, realm_id: &str) -> Result<(), TokenStoreError> {
        let _ = realm_id;
        Ok(())
    }

    /// Where the client writes a rotated refresh token this store failed to save, as a last
    /// resort (see [`crate::QboClientBuilder::token_save_retry_for`]); the client also tries the
    /// working directory and the temporary directory. The default: none of its own.
    fn rescue_dir(&self) -> Option<PathBuf> {
        None
    }

    /// The key this store encrypts tokens with, which the client also uses for a rescue file.
    /// The default: none (the rescue file holds the token in plain text, mode 0600).
    fn cipher(&self) -> Option<TokenCipher> {
        None
    }

    /// Records what was learnt about `realm_id`'s grant (expiries, app, company, success)
    /// beside its token. The client calls it after each refresh and treats a failure as a
    /// warning. The default keeps nothing.
    ///
    /// # Errors
    /// The store cannot be written.
    async fn note(&self, realm_id: &str, note: &TokenNote) -> Result<(), TokenStoreError> {
        let _ = (realm_id, note);
        Ok(())
    }

    /// The non-secret facts of one realm, or of every stored realm with `None` (ordered by
    /// realm id); never a token. The default knows none.
    ///
    /// # Errors
    /// The store cannot be read.
    async fn metadata(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<TokenMetadata>, TokenStoreError> {
        let _ = realm_id;
        Ok(Vec::new())
    }

    /// Removes `realm_id`'s token and facts; whether there was a token. The default cannot.
    ///
    /// # Errors
    /// The store cannot be written, or cannot remove tokens.
    async fn remove(&self, realm_id: &str) -> Result<bool, TokenStoreError> {
        let _ = realm_id;
        Err(TokenStoreError::backend(
            false,
            "this token store cannot remove tokens",
        ))
    }
}

/// A cross-process refresh lock taken with [`TokenStore::lock_refresh`].
#[async_trait]
pub trait RefreshGuard: Send {
    /// Releases the lock (a failure to release is the implementation's to log: the refresh it
    /// guarded already succeeded or failed).
    async fn release(self: Box<Self>);
}

/// A token store failure. Messages name paths, never tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenStoreError {
    /// File I/O failed.
    #[error("token file `{}`", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is not valid JSON of the expected shape.
    #[error("token file `{}` is corrupt (expected a JSON object of realm id to token)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
    /// The token store path is a directory.
    #[error("token store `{}` is a directory; give the path of a file in it, e.g. file:{}/tokens.json", path.display(), path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// A rotated token could not be saved here (found by [`TokenStore::check_writable`]).
    #[error("token store {location} is not writable: {reason}")]
    NotWritable {
        /// The file, directory or table.
        location: String,
        /// What failed and how to fix it.
        reason: String,
    },
    /// The stored token is encrypted and no key, or another key, is set.
    #[error(
        "the refresh token of realm {realm_id} in {location} {}",
        if *key_missing {
            "is encrypted and no key is set: set QBO_TOKEN_KEY (or QBO_TOKEN_KEY_FILE) to the key it was stored with"
        } else {
            "does not decrypt with the key given: set QBO_TOKEN_KEY (or QBO_TOKEN_KEY_FILE) to the key it was stored with, \
             or, if that key is lost, delete the stored token and set a new QBO_REFRESH_TOKEN (runbook: rotating a refresh token)"
        }
    )]
    Unreadable {
        /// The realm.
        realm_id: String,
        /// Where the value is (file path or table).
        location: String,
        /// Whether no key is set at all (else the key is not the one it was stored with).
        key_missing: bool,
    },
    /// Another process held the token file's lock for too long.
    #[error("timed out after {}s waiting for the lock `{}` (another process holds it)", waited.as_secs(), path.display())]
    Locked {
        /// The lock file (or directory).
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// The rotated token could not be saved; it was written to a rescue file instead.
    #[error(
        "the rotated refresh token could not be saved to the token store, so it was written to `{}` (mode 0600): \
         fix the token store, then run again; the next start uses that file and moves the token into the store \
         (runbook: a rescued refresh token)",
        path.display()
    )]
    Rescued {
        /// The rescue file.
        path: PathBuf,
        /// Why the store failed.
        #[source]
        source: Box<TokenStoreError>,
    },
    /// Another backend (e.g. PostgreSQL) failed.
    #[error("token store backend")]
    Backend {
        /// Whether trying again may help.
        retryable: bool,
        /// The backend error (must not contain the token).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TokenStoreError {
    /// Wraps another backend's error.
    pub fn backend(
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            retryable,
            source: source.into(),
        }
    }

    /// Whether trying again may help: a busy or timed-out file system, a full disk, a lock
    /// held by another process, a backend that says so. A missing directory, a permission
    /// problem, corruption or a missing key never heal by themselves.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Self::Io { source, .. } => matches!(
                source.kind(),
                K::Interrupted
                    | K::WouldBlock
                    | K::TimedOut
                    | K::StorageFull
                    | K::ResourceBusy
                    | K::QuotaExceeded
            ),
            Self::Locked { .. } => true,
            Self::Backend { retryable, .. } => *retryable,
            Self::Corrupt { .. }
            | Self::NotAFile { .. }
            | Self::NotWritable { .. }
            | Self::Unreadable { .. }
            | Self::Rescued { .. } => false,
        }
    }

    /// The rescue file holding the rotated token, when the save failed and the token was
    /// written there instead.
    #[must_use]
    pub fn rescue_file(&self) -> Option<&Path> {
        match self {
            Self::Rescued { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// An in-process store (tokens are lost when the process ends; for tests and short jobs).
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<HashMap<String, SecretString>>,
    meta: Mutex<HashMap<String, TokenMetadata>>,
}

impl MemoryTokenStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `token` for `realm_id`.
    #[must_use]
    pub fn with_token(realm_id: impl Into<String>, token: impl Into<String>) -> Self {
        let store = Self::new();
        store
            .lock()
            .insert(realm_id.into(), SecretString::from(token.into()));
        store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SecretString>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTokenStore")
            .field("realms", &self.lock().len())
            .finish()
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        Ok(self.lock().get(realm_id).cloned())
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        self.lock()
            .insert(realm_id.to_owned(), refresh_token.clone());
        Ok(())
    }

    async fn note(&self, realm_id: &str, note: &TokenNote) -> Result<(), TokenStoreError> {
        let mut meta = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.entry(realm_id.to_owned())
            .or_insert_with(|| TokenMetadata::new(realm_id))
            .apply(note, time::OffsetDateTime::now_utc());
        Ok(())
    }

    async fn metadata(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<TokenMetadata>, TokenStoreError> {
        let tokens: HashMap<String, String> = self
            .lock()
            .keys()
            .map(|k| (k.clone(), String::new()))
            .collect();
        let meta: std::collections::BTreeMap<String, TokenMetadata> = self
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(meta::listed(&tokens, &meta, realm_id))
    }

    async fn remove(&self, realm_id: &str) -> Result<bool, TokenStoreError> {
        self.meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(realm_id);
        Ok(self.lock().remove(realm_id).is_some())
    }
}

/// A JSON file (`{"<realm>": "<refresh token>", …}`) with mode 0600, replaced atomically on
/// every save: temp file in the same directory, write, fsync, rename, fsync the directory.
///
/// With a [`TokenCipher`] ([`FileTokenStore::with_cipher`]) every saved token is encrypted
/// (`enc:v1:…`); tokens saved earlier in plain text are still read. Processes sharing the file
/// serialise their refreshes with an advisory lock on `.<name>.lock` beside it (so several
/// workers on one machine never race a rotation), and every save's read-modify-write holds an
/// advisory lock on the directory, so saves of different realms never lose each other.
#[derive(Debug)]
pub struct FileTokenStore {
    path: PathBuf,
    cipher: Option<TokenCipher>,
    rescue_dir: Option<PathBuf>,
    lock_wait: Duration,
    write_lock: tokio::sync::Mutex<()>,
}

/// How long a process waits for another one's token file lock (a refresh takes seconds).
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);

impl FileTokenStore {
    /// A store at `path` (created on the first save; its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cipher: None,
            rescue_dir: None,
            lock_wait: DEFAULT_LOCK_WAIT,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Encrypts saved tokens with `cipher` (and decrypts stored ones).
    #[must_use]
    pub fn with_cipher(mut self, cipher: TokenCipher) -> Self {
        self.cipher = Some(cipher);
        self
    }

    /// Where a token this store fails to save is rescued (default: the file's directory).
    #[must_use]
    pub fn with_rescue_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.rescue_dir = Some(dir.into());
        self
    }

    /// How long to wait for another process's lock before failing (retryably); default 60 s.
    #[must_use]
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> PathBuf {
        dir_of(&self.path)
    }

    fn lock_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tokens".into());
        self.dir().join(format!(".{name}.lock"))
    }

    fn open_stored(&self, realm_id: &str, stored: &str) -> Result<SecretString, TokenStoreError> {
        cipher::open(self.cipher.as_ref(), realm_id, stored).map_err(|why| {
            cipher::unreadable_error(why, realm_id, format!("`{}`", self.path.display()))
        })
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TokenStoreError + '_ {
    move |source| TokenStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_map(path: &Path) -> Result<HashMap<String, String>, TokenStoreError> {
    if path.is_dir() {
        return Err(TokenStoreError::NotAFile {
            path: path.to_owned(),
        });
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "token file is readable by others; it will be rewritten with mode 0600 on the next save");
        }
    }
    if text.trim().is_empty() {
        return Ok(HashMap::new());
    }
    serde_json::from_str(&text).map_err(|_| TokenStoreError::Corrupt {
        path: path.to_owned(),
    })
}

/// Writes `body` to `path` atomically with mode 0600: a temp file beside it, fsync, rename,
/// fsync the directory.
pub(crate) fn write_private(path: &Path, body: &[u8]) -> Result<(), TokenStoreError> {
    if path.is_dir() {
        return Err(TokenStoreError::NotAFile {
            path: path.to_owned(),
        });
    }
    let dir = dir_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokens".into());
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(body).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        let dir_handle = std::fs::File::open(&dir).map_err(io_err(&dir))?;
        dir_handle.sync_all().map_err(io_err(&dir))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_map(path: &Path, map: &HashMap<String, String>) -> Result<(), TokenStoreError> {
    let body = serde_json::to_vec_pretty(map).map_err(|_| TokenStoreError::Corrupt {
        path: path.to_owned(),
    })?;
    write_private(path, &body)
}

/// Takes an exclusive advisory lock (`flock`) on `file`, polling until `wait` has passed.
fn lock_waiting(file: &std::fs::File, path: &Path, wait: Duration) -> Result<(), TokenStoreError> {
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                if started.elapsed() >= wait {
                    return Err(TokenStoreError::Locked {
                        path: path.to_owned(),
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
        }
    }
}

/// Opens (creating it 0600 if needed) and locks the refresh lock file.
fn lock_file(path: &Path, wait: Duration) -> Result<std::fs::File, TokenStoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    lock_waiting(&file, path, wait)?;
    Ok(file)
}

/// Checks that `dir` takes a new private file (creates and removes a probe).
fn probe_dir(dir: &Path) -> Result<(), TokenStoreError> {
    let meta = std::fs::metadata(dir).map_err(|e| TokenStoreError::NotWritable {
        location: format!("`{}`", dir.display()),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "the directory does not exist: create it (or choose another --token-store file:PATH)"
                .to_owned()
        } else {
            format!("the directory cannot be read ({e})")
        },
    })?;
    if !meta.is_dir() {
        return Err(TokenStoreError::NotWritable {
            location: format!("`{}`", dir.display()),
            reason: "it is not a directory".to_owned(),
        });
    }
    let probe = dir.join(format!(".qb-backfill-write-probe.{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe").and_then(|()| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    created.map_err(|e| TokenStoreError::NotWritable {
        location: format!("`{}`", dir.display()),
        reason: format!(
            "a file cannot be created in it ({e}): give this process write access to the directory"
        ),
    })
}

/// The refresh lock of a [`FileTokenStore`]: held while the file is open and locked.
struct FileRefreshGuard(std::fs::File);

#[async_trait]
impl RefreshGuard for FileRefreshGuard {
    async fn release(self: Box<Self>) {
        if let Err(e) = self.0.unlock() {
            // Closing the file (dropping it here) releases the lock in any case.
            tracing::debug!(error = %e, "token_file_unlock_failed");
        }
    }
}

#[async_trait]
impl TokenStore for FileTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        let path = self.path.clone();
        let map = tokio::task::spawn_blocking(move || read_map(&path))
            .await
            .map_err(|e| TokenStoreError::backend(false, e))??;
        map.get(realm_id)
            .map(|stored| self.open_stored(realm_id, stored))
            .transpose()
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        let _guard = self.write_lock.lock().await;
        let path = self.path.clone();
        let realm = realm_id.to_owned();
        let stored = cipher::seal(self.cipher.as_ref(), realm_id, refresh_token)?
            .expose_secret()
            .to_owned();
        let wait = self.lock_wait;
        tokio::task::spawn_blocking(move || {
            // Other processes' saves (of other realms too) read-modify-write the same file.
            let dir = dir_of(&path);
            let dir_handle = std::fs::File::open(&dir).map_err(io_err(&dir))?;
            lock_waiting(&dir_handle, &dir, wait)?;
            let mut map = read_map(&path)?;
            map.insert(realm, stored);
            write_map(&path, &map)
        })
        .await
        .map_err(|e| TokenStoreError::backend(false, e))?
    }

    async fn lock_refresh(
        &self,
        _realm_id: &str,
    ) -> Result<Option<Box<dyn RefreshGuard>>, TokenStoreError> {
        let path = self.lock_path();
        let wait = self.lock_wait;
        let file = tokio::task::spawn_blocking(move || lock_file(&path, wait))
            .await
            .map_err(|e| TokenStoreError::backend(false, e))??;
        Ok(Some(Box::new(FileRefreshGuard(file))))
    }

    async fn check_writable(&self, realm_id: &str) -> Result<(), TokenStoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if path.is_dir() {
                return Err(TokenStoreError::NotAFile { path });
            }
            probe_dir(&dir_of(&path))?;
            read_map(&path).map(|_| ())
        })
        .await
        .map_err(|e| TokenStoreError::backend(false, e))??;
        // The stored token must decrypt.
        self.load(realm_id).await.map(|_| ())
    }

    fn rescue_dir(&self) -> Option<PathBuf> {
        Some(self.rescue_dir.clone().unwrap_or_else(|| self.dir()))
    }

    async fn note(&self, realm_id: &str, note: &TokenNote) -> Result<(), TokenStoreError> {
        let _guard = self.write_lock.lock().await;
        let path = self.path.clone();
        let realm = realm_id.to_owned();
        let note = note.clone();
        let wait = self.lock_wait;
        tokio::task::spawn_blocking(move || {
            let dir = dir_of(&path);
            let dir_handle = std::fs::File::open(&dir).map_err(io_err(&dir))?;
            lock_waiting(&dir_handle, &dir, wait)?;
            let mut map = meta::read_meta(&path)?;
            map.entry(realm.clone())
                .or_insert_with(|| TokenMetadata::new(&realm))
                .apply(&note, time::OffsetDateTime::now_utc());
            meta::write_meta(&path, &map)
        })
        .await
        .map_err(|e| TokenStoreError::backend(false, e))?
    }

    async fn metadata(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<TokenMetadata>, TokenStoreError> {
        let path = self.path.clone();
        let (tokens, meta) = tokio::task::spawn_blocking(move || {
            Ok::<_, TokenStoreError>((read_map(&path)?, meta::read_meta(&path)?))
        })
        .await
        .map_err(|e| TokenStoreError::backend(false, e))??;
        Ok(meta::listed(&tokens, &meta, realm_id))
    }

    async fn remove(&self, realm_id: &str) -> Result<bool, TokenStoreError> {
        let _guard = self.write_lock.lock().await;
        let path = self.path.clone();
        let realm = realm_id.to_owned();
        let wait = self.lock_wait;
        tokio::task::spawn_blocking(move || {
            let dir = dir_of(&path);
            let dir_handle = std::fs::File::open(&dir).map_err(io_err(&dir))?;
            lock_waiting(&dir_handle, &dir, wait)?;
            let mut map = read_map(&path)?;
            let had = map.remove(&realm).is_some();
            if had {
                write_map(&path, &map)?;
            }
            let mut m = meta::read_meta(&path)?;
            if m.remove(&realm).is_some() {
                meta::write_meta(&path, &m)?;
            }
            Ok(had)
        })
        .await
        .map_err(|e| TokenStoreError::backend(false, e))?
    }

    fn cipher(&self) -> Option<TokenCipher> {
        self.cipher.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_keeps_facts_in_a_private_sidecar_and_removes_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let s = FileTokenStore::new(&path);
        s.save("r1", &SecretString::from("tok-r1-secret".to_owned()))
            .await
            .unwrap();
        s.note(
            "r1",
            &TokenNote::Connected {
                company_name: Some("Acme".into()),
                client_id: "app1".into(),
                refresh_expires_in: Some(60),
                hard_expires_in: None,
            },
        )
        .await
        .unwrap();
        let side = meta::sidecar(&path);
        let text = std::fs::read_to_string(&side).unwrap();
        assert!(!text.contains("tok-r1-secret"));
        assert_eq!(
            std::fs::metadata(&side).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let m = s.metadata(None).await.unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].has_token);
        assert_eq!(m[0].company_name.as_deref(), Some("Acme"));
        assert!(s.remove("r1").await.unwrap());
        assert!(s.load("r1").await.unwrap().is_none());
        assert!(s.metadata(None).await.unwrap().is_empty());
        assert!(!s.remove("r1").await.unwrap());
    }

    #[tokio::test]
    async fn memory_store_round_trip() {
        let s = MemoryTokenStore::with_token("r1", "t1");
        assert_eq!(s.load("r1").await.unwrap().unwrap().expose_secret(), "t1");
        assert!(s.load("r2").await.unwrap().is_none());
        s.save("r2", &SecretString::from("t2")).await.unwrap();
        assert_eq!(s.load("r2").await.unwrap().unwrap().expose_secret(), "t2");
        assert!(!format!("{s:?}").contains("t1"));
    }

    #[tokio::test]
    async fn file_store_is_private_atomic_and_keyed_by_realm() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let s = FileTokenStore::new(&path);
        assert!(s.load("r1").await.unwrap().is_none());
        s.save("r1", &SecretString::from("token-one"))
            .await
            .unwrap();
        s.save("r2", &SecretString::from("token-two"))
            .await
            .unwrap();
        s.save("r1", &SecretString::from("token-one-rotated"))
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A fresh store (another process) reads the newest tokens.
        let again = FileTokenStore::new(&path);
        assert_eq!(
            again.load("r1").await.unwrap().unwrap().expose_secret(),
            "token-one-rotated"
        );
        assert_eq!(
            again.load("r2").await.unwrap().unwrap().expose_secret(),
            "token-two"
        );
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["tokens.json".to_owned()]);
    }

    #[tokio::test]
    async fn file_store_repairs_loose_permissions_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, r#"{"r1":"old"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = FileTokenStore::new(&path);
        assert_eq!(s.load("r1").await.unwrap().unwrap().expose_secret(), "old");
        s.save("r1", &SecretString::from("new")).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        std::fs::write(&path, "{not json secret-ish").unwrap();
        let err = s.load("r1").await.unwrap_err();
        assert!(matches!(err, TokenStoreError::Corrupt { .. }));
        assert!(!err.to_string().contains("secret-ish"));
        // A save over a corrupt file fails rather than silently dropping other realms.
        assert!(s.save("r1", &SecretString::from("x")).await.is_err());

        let missing_dir = FileTokenStore::new(dir.path().join("nope/tokens.json"));
        let err = missing_dir
            .save("r1", &SecretString::from("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, TokenStoreError::Io { .. }), "{err}");
        assert!(!err.is_retryable());
    }
}
