//! Where the newest refresh token of each realm is kept.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

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

    /// Whether trying again may help.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Corrupt { .. } => false,
            Self::Backend { retryable, .. } => *retryable,
        }
    }
}

/// An in-process store (tokens are lost when the process ends; for tests and short jobs).
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<HashMap<String, SecretString>>,
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
}

/// A JSON file (`{"<realm>": "<refresh token>", …}`) with mode 0600, replaced atomically on
/// every save: temp file in the same directory, write, fsync, rename, fsync the directory.
#[derive(Debug)]
pub struct FileTokenStore {
    path: PathBuf,
    write_lock: tokio::sync::Mutex<()>,
}

impl FileTokenStore {
    /// A store at `path` (created on the first save; its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TokenStoreError + '_ {
    move |source| TokenStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_map(path: &Path) -> Result<HashMap<String, String>, TokenStoreError> {
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

fn write_map(path: &Path, map: &HashMap<String, String>) -> Result<(), TokenStoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
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
    let body = serde_json::to_vec_pretty(map).map_err(|_| TokenStoreError::Corrupt {
        path: path.to_owned(),
    })?;
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(&body).map_err(io_err(&tmp))?;
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

#[async_trait]
impl TokenStore for FileTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        let path = self.path.clone();
        let realm = realm_id.to_owned();
        let map = tokio::task::spawn_blocking(move || read_map(&path))
            .await
            .map_err(|e| TokenStoreError::backend(false, e))??;
        Ok(map.get(&realm).map(|t| SecretString::from(t.clone())))
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        let _guard = self.write_lock.lock().await;
        let path = self.path.clone();
        let realm = realm_id.to_owned();
        let token = refresh_token.expose_secret().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut map = read_map(&path)?;
            map.insert(realm, token);
            write_map(&path, &map)
        })
        .await
        .map_err(|e| TokenStoreError::backend(false, e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
