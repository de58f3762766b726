//! Shared helpers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use qbo_client::{
    Credentials, Environment, ExposeSecret, MemoryTokenStore, Page, QboClient, QboClientBuilder,
    QboConfig, RateLimit, RefreshGuard, RetryPolicy, SecretString, TokenStore, TokenStoreError,
};
use qbo_sim::{SimBuilder, SimHandle};

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Millisecond waits so retry tests stay fast.
pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy::default().with_backoff(ms(1), ms(2), ms(20))
}

/// A sim without rate limits (tests that are not about limits).
pub(crate) fn sim_builder() -> SimBuilder {
    qbo_sim::Sim::builder()
        .requests_per_min(0)
        .max_concurrency(0)
}

pub(crate) fn config(sim: &SimHandle) -> QboConfig {
    QboConfig::new(
        Environment::Sandbox,
        sim.realm_id(),
        Credentials::new(sim.client_id(), sim.client_secret(), sim.refresh_token()),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap()
}

/// A client with no limits (the batch budget's neither), fast retries and the given store.
pub(crate) fn builder(sim: &SimHandle, store: Arc<dyn TokenStore>) -> QboClientBuilder {
    QboClient::builder(config(sim))
        .token_store(store)
        .rate_limit(RateLimit::unlimited())
        .batch_rate_limit(0)
        .retry_policy(fast_retry())
}

pub(crate) fn client(sim: &SimHandle) -> QboClient {
    builder(sim, Arc::new(MemoryTokenStore::new()))
        .build()
        .unwrap()
}

pub(crate) async fn all_pages(client: &QboClient, query: qbo_client::Query) -> Vec<Page> {
    client.pages(query).try_collect().await.unwrap()
}

pub(crate) fn ids(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p.records.iter().map(|r| r.id.clone()))
        .collect()
}

pub(crate) fn unique(ids: &[String]) -> HashSet<String> {
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "duplicate ids");
    set
}

/// Token requests the sim answered with `status`.
pub(crate) fn token_requests(sim: &SimHandle, status: u16) -> u64 {
    sim.stats().count("token", status)
}

pub(crate) fn query_requests(sim: &SimHandle) -> u64 {
    sim.stats().endpoint_total("query")
}

/// A store that records every saved token (and can be told to fail, or to serialise
/// refreshes like a store shared by processes).
#[derive(Default)]
pub(crate) struct ProbeStore {
    pub(crate) inner: MemoryTokenStore,
    /// When set, the cross-process refresh lock (`TokenStore::lock_refresh`).
    pub(crate) refresh_lock: Option<Arc<tokio::sync::Mutex<()>>>,
    pub(crate) locks_taken: std::sync::atomic::AtomicU32,
    pub(crate) saved: Mutex<Vec<String>>,
    pub(crate) fail_saves: Mutex<u32>,
    /// Query requests the sim had seen at each save.
    pub(crate) sim: Mutex<Option<SimHandle>>,
    pub(crate) queries_at_save: Mutex<Vec<u64>>,
}

impl ProbeStore {
    pub(crate) fn saved(&self) -> Vec<String> {
        self.saved.lock().unwrap().clone()
    }
}

#[async_trait]
impl TokenStore for ProbeStore {
    async fn load(&self, realm_id: &str) -> Result<Option<SecretString>, TokenStoreError> {
        self.inner.load(realm_id).await
    }

    async fn save(
        &self,
        realm_id: &str,
        refresh_token: &SecretString,
    ) -> Result<(), TokenStoreError> {
        if let Some(sim) = self.sim.lock().unwrap().as_ref() {
            self.queries_at_save
                .lock()
                .unwrap()
                .push(query_requests(sim));
        }
        {
            let mut fail = self.fail_saves.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(TokenStoreError::backend(true, "disk full (simulated)"));
            }
        }
        self.saved
            .lock()
            .unwrap()
            .push(refresh_token.expose_secret().to_owned());
        self.inner.save(realm_id, refresh_token).await
    }

    async fn lock_refresh(
        &self,
        _realm_id: &str,
    ) -> Result<Option<Box<dyn RefreshGuard>>, TokenStoreError> {
        let Some(lock) = &self.refresh_lock else {
            return Ok(None);
        };
        self.locks_taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(Box::new(ProbeGuard(
            Arc::clone(lock).lock_owned().await,
        ))))
    }
}

/// Holds [`ProbeStore`]'s refresh lock until released.
struct ProbeGuard(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

#[async_trait]
impl RefreshGuard for ProbeGuard {
    async fn release(self: Box<Self>) {}
}

/// An error and its sources, `: `-separated (what a binary prints).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
