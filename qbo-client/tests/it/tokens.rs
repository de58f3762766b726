//! Refresh tokens that must never be lost or leaked (issue 12, items 6, 11 and 14): saves that
//! fail are retried and then rescued to a 0600 file the next start uses; the file store locks
//! across processes, refuses a directory, and encrypts with a key.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use qbo_client::{
    ExposeSecret, FileTokenStore, MemoryTokenStore, QboClient, QboError, Query, SecretString,
    TokenCipher, TokenStore, TokenStoreError,
};
use qbo_sim::Rotation;

use crate::common::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn small_query() -> Query {
    Query::select("Customer").max_results(5).build().unwrap()
}

/// A store whose saves fail (`retryable` or not) while `failures` lasts, rescuing into `dir`.
struct FailingStore {
    inner: MemoryTokenStore,
    failures: AtomicU32,
    retryable: bool,
    dir: PathBuf,
    saves: AtomicU32,
}

impl FailingStore {
    fn new(failures: u32, retryable: bool, dir: &std::path::Path) -> Self {
        Self {
            inner: MemoryTokenStore::new(),
            failures: AtomicU32::new(failures),
            retryable,
            dir: dir.to_owned(),
            saves: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl TokenStore for FailingStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        self.inner.load(realm_id).await
    }

    async fn save(&self, realm_id: &str, token: &SecretString) -> Result<(), TokenStoreError> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        if self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(TokenStoreError::backend(
                self.retryable,
                "the database is away (simulated)",
            ));
        }
        self.inner.save(realm_id, token).await
    }

    fn rescue_dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

fn rescue_path(dir: &std::path::Path, realm: &str) -> PathBuf {
    dir.join(format!("qb-backfill-rescued-refresh-token-{realm}.json"))
}

/// Item 6: a save that cannot succeed ends with the rotated token in a 0600 rescue file the
/// error names, no API request made with the new access token; the next start uses it (the
/// pre-rotation token is dead), moves it into the store and removes the file.
#[tokio::test]
async fn an_unsaved_rotation_is_rescued_and_the_next_start_uses_it() {
    let sim = sim_builder()
        .seed(61)
        .rotation(Rotation::EveryRefresh)
        .old_refresh_token_grace(None)
        .spawn()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let realm = sim.realm_id();
    let broken = Arc::new(FailingStore::new(u32::MAX, false, dir.path()));
    let client = builder(&sim, broken.clone()).build().unwrap();
    let err = client.query_page(&small_query()).await.unwrap_err();
    let QboError::TokenStore(store_err) = &err else {
        panic!("{err:?}")
    };
    let path = store_err.rescue_file().expect("rescued").to_owned();
    assert_eq!(path, rescue_path(dir.path(), &realm));
    let text = chain(&err);
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("simulated"),
        "the store's failure is kept: {text}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        broken.saves.load(Ordering::Relaxed),
        1,
        "not retried: cannot heal"
    );
    assert_eq!(
        query_requests(&sim),
        0,
        "no request before the token is durable"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&sim.refresh_token()),
        "the newest token is the one rescued"
    );

    // The next start (a new client, a working store, the original configuration whose token
    // is dead) uses the rescued token, saves it, and removes the rescue file.
    let fixed = Arc::new(FailingStore::new(0, false, dir.path()));
    let next = builder(&sim, fixed.clone()).build().unwrap();
    next.query_page(&small_query()).await.unwrap();
    assert_eq!(
        token_requests(&sim, 400),
        0,
        "the dead token was never sent"
    );
    assert!(
        !path.exists(),
        "the rescue file is removed once the token is stored"
    );
    assert_eq!(
        fixed.load(&realm).await.unwrap().unwrap().expose_secret(),
        sim.refresh_token()
    );
}

/// Item 6: retryable save failures are retried (here 3 of them) and the run goes on; when they
/// last past `token_save_retry_for`, the token is rescued.
#[tokio::test]
async fn retryable_save_failures_are_retried_then_rescued() {
    let sim = sim_builder()
        .seed(62)
        .rotation(Rotation::EveryRefresh)
        .spawn()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flaky = Arc::new(FailingStore::new(3, true, dir.path()));
    let client = builder(&sim, flaky.clone()).build().unwrap();
    client.query_page(&small_query()).await.unwrap();
    assert_eq!(flaky.saves.load(Ordering::Relaxed), 4);
    assert!(!rescue_path(dir.path(), &sim.realm_id()).exists());

    let away = Arc::new(FailingStore::new(u32::MAX, true, dir.path()));
    let client = builder(&sim, away.clone())
        .token_save_retry_for(ms(600))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = client.query_page(&small_query()).await.unwrap_err();
    assert!(started.elapsed() >= ms(500), "{:?}", started.elapsed());
    assert!(away.saves.load(Ordering::Relaxed) >= 3);
    let QboError::TokenStore(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        e.rescue_file(),
        Some(rescue_path(dir.path(), &sim.realm_id()).as_path())
    );
}

/// Item 14: several processes on one token file serialise their refreshes (a lock beside the
/// file), so rotation with the old token dead at once never yields invalid_grant.
#[tokio::test]
async fn processes_sharing_a_token_file_refresh_one_at_a_time() {
    let sim = sim_builder()
        .seed(63)
        .rotation(Rotation::EveryRefresh)
        .old_refresh_token_grace(None)
        .latency(Duration::from_millis(20), Duration::ZERO)
        .spawn()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    // One store per "process": separate file handles, as separate processes have.
    let clients: Vec<QboClient> = (0..3)
        .map(|_| {
            builder(&sim, Arc::new(FileTokenStore::new(&path)))
                .build()
                .unwrap()
        })
        .collect();
    let q = small_query();
    for round in 0..3 {
        let results = futures::future::join_all(clients.iter().map(|c| c.query_page(&q))).await;
        for r in results {
            r.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        sim.expire_access_tokens();
    }
    assert_eq!(token_requests(&sim, 400), 0, "{:?}", sim.stats());
    let stored = FileTokenStore::new(&path)
        .load(&sim.realm_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expose_secret(), sim.refresh_token());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

/// The refresh lock of a token file excludes other holders until released.
#[tokio::test]
async fn the_token_file_lock_excludes_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let a = FileTokenStore::new(&path);
    let b = FileTokenStore::new(&path).with_lock_wait(ms(150));
    let held = a.lock_refresh("1").await.unwrap().expect("a file lock");
    let err = b.lock_refresh("1").await.err().expect("held by a");
    assert!(matches!(err, TokenStoreError::Locked { .. }), "{err}");
    assert!(err.is_retryable());
    held.release().await;
    let again = b.lock_refresh("1").await.unwrap().expect("free now");
    again.release().await;
}

/// Item 14 and 6: a path that is a directory, a directory that does not exist, or a directory
/// that takes no file are found by `check_writable`, before any refresh.
#[tokio::test]
async fn check_writable_finds_stores_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileTokenStore::new(dir.path())
        .check_writable("1")
        .await
        .unwrap_err();
    assert!(matches!(err, TokenStoreError::NotAFile { .. }), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");

    let err = FileTokenStore::new(dir.path().join("missing/tokens.json"))
        .check_writable("1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = std::fs::File::create(ro.join("x"));
    if probe.is_err() {
        // (root ignores directory permissions; the check is meaningful only without it.)
        let err = FileTokenStore::new(ro.join("tokens.json"))
            .check_writable("1")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not writable"), "{err}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();

    let ok = FileTokenStore::new(dir.path().join("tokens.json"));
    ok.check_writable("1").await.unwrap();
    // The check leaves nothing behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["ro".to_owned()]);
}

/// Item 11: with a key the file holds no token in plain text; the wrong key or no key is a
/// clear error naming the fix; a token saved before the key was set is still read.
#[tokio::test]
async fn the_file_store_encrypts_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, r#"{"9":"plain-legacy-token-value"}"#).unwrap();
    let key = TokenCipher::from_base64(KEY).unwrap();
    let store = FileTokenStore::new(&path).with_cipher(key.clone());
    assert_eq!(
        store.load("9").await.unwrap().unwrap().expose_secret(),
        "plain-legacy-token-value"
    );
    store
        .save("1", &SecretString::from("refresh-token-secret-one"))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("refresh-token-secret-one"), "{text}");
    assert!(text.contains("enc:v1:"), "{text}");
    assert_eq!(
        store.load("1").await.unwrap().unwrap().expose_secret(),
        "refresh-token-secret-one"
    );
    store.check_writable("1").await.unwrap();

    let err = FileTokenStore::new(&path).load("1").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("QBO_TOKEN_KEY") && msg.contains("no key"),
        "{msg}"
    );
    assert!(
        FileTokenStore::new(&path)
            .check_writable("1")
            .await
            .is_err()
    );
    let other = TokenCipher::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    let err = FileTokenStore::new(&path)
        .with_cipher(other)
        .load("1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");
    assert!(!err.is_retryable());
}
