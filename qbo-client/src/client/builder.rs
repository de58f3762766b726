//! Building a client: its settings and their defaults, the HTTP client, the token provider and
//! the realm's shared limiter.

use std::sync::Arc;
use std::time::Duration;

use super::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MINOR_VERSION, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TOKEN_EXPIRY_BUFFER, DEFAULT_TOKEN_SAVE_RETRY_FOR, Inner, QboClient,
};
use crate::config::{QboConfig, validate_realm};
use crate::error::QboError;
use crate::limit::{self, RateLimit};
use crate::retry::{Outage, RetryPolicy};
use crate::token::{MemoryTokenStore, TokenProvider, TokenSettings, TokenStore};

/// Builds a [`QboClient`]; every setting has a QBO-appropriate default.
#[must_use]
pub struct QboClientBuilder {
    config: QboConfig,
    store: Option<Arc<dyn TokenStore>>,
    rate_limit: RateLimit,
    batch_per_minute: u32,
    retry: RetryPolicy,
    request_timeout: Duration,
    connect_timeout: Duration,
    minor_version: u32,
    user_agent: String,
    token_expiry_buffer: Duration,
    token_save_retry_for: Duration,
}

impl std::fmt::Debug for QboClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboClientBuilder")
            .field("config", &self.config)
            .field("token_store", &self.store.as_ref().map(|_| "custom"))
            .field("rate_limit", &self.rate_limit)
            .field("batch_per_minute", &self.batch_per_minute)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("minor_version", &self.minor_version)
            .field("user_agent", &self.user_agent)
            .field("token_expiry_buffer", &self.token_expiry_buffer)
            .field("token_save_retry_for", &self.token_save_retry_for)
            .finish()
    }
}

impl QboClientBuilder {
    /// Where rotated refresh tokens are persisted (default: in memory only, with a warning).
    pub fn token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Per-realm limits (default 500/min, 10 in flight; `0` = unlimited).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Batch requests per minute per realm ([`QboClient::batch`]; default QBO's 40, `0` =
    /// unlimited), shared by every client of the realm in the process like [`Self::rate_limit`].
    /// A batch also takes one slot of the request budget.
    pub fn batch_rate_limit(mut self, per_minute: u32) -> Self {
        self.batch_per_minute = per_minute;
        self
    }

    /// Retry policy (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whole-request timeout (default 125 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// `minorversion` sent on every query (default 75).
    pub fn minor_version(mut self, version: u32) -> Self {
        self.minor_version = version;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// Refresh this long before the access token expires (default 120 s, never more than a
    /// quarter of the token's lifetime).
    pub fn token_expiry_buffer(mut self, buffer: Duration) -> Self {
        self.token_expiry_buffer = buffer;
        self
    }

    /// How long retryable failures to save a rotated refresh token (a database that is away, a
    /// busy disk) are retried, under the store's refresh lock, before the token is written to
    /// a 0600 rescue file instead (default 3 min). A failure that cannot heal (a missing
    /// directory, no permission) goes to the rescue file at once. The error names the file;
    /// the next start uses it first and moves it into the store.
    pub fn token_save_retry_for(mut self, d: Duration) -> Self {
        self.token_save_retry_for = d;
        self
    }

    /// Builds the client. No request is made until the first query.
    ///
    /// # Errors
    /// [`QboError::Config`] for an invalid realm id or an insecure / unusable URL,
    /// [`QboError::HttpClient`] if the HTTP client cannot be created.
    pub fn build(self) -> Result<QboClient, QboError> {
        let cfg = self.config;
        validate_realm(&cfg.realm_id)?;
        let base = cfg.resolved_base_url()?;
        let token_url = cfg.resolved_token_url()?;
        let mut query_url = base.clone();
        query_url
            .path_segments_mut()
            .map_err(|()| crate::config::ConfigError::UnusableUrl {
                what: "base_url".into(),
                url: crate::config::redacted(&base),
            })?
            .pop_if_empty()
            .extend(["v3", "company", cfg.realm_id.as_str(), "query"]);
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(QboError::HttpClient)?;
        let store = self.store.unwrap_or_else(|| {
            tracing::warn!(
                realm = cfg.realm_id.as_str(),
                "no token store configured: rotated refresh tokens are kept in memory only and lost when the process ends"
            );
            Arc::new(MemoryTokenStore::new())
        });
        let outage = Arc::new(Outage::default());
        let tokens = TokenProvider::new(TokenSettings {
            http: http.clone(),
            token_url,
            realm_id: cfg.realm_id.clone(),
            client_id: cfg.credentials.client_id.clone(),
            client_secret: cfg.credentials.client_secret.clone(),
            configured_refresh_token: cfg.credentials.refresh_token.clone(),
            store,
            retry: self.retry,
            expiry_buffer: self.token_expiry_buffer,
            save_retry_for: self.token_save_retry_for,
            outage: Arc::clone(&outage),
        });
        let origin = base.origin().ascii_serialization();
        let limiter = limit::shared(&origin, &cfg.realm_id, self.rate_limit);
        let batch_limiter = limit::shared_batch(&origin, &cfg.realm_id, self.batch_per_minute);
        Ok(QboClient {
            inner: Arc::new(Inner {
                http,
                realm_id: cfg.realm_id,
                query_url,
                minor_version: self.minor_version.to_string(),
                tokens,
                limiter,
                batch_limiter,
                retry: self.retry,
                outage,
                calls: std::sync::atomic::AtomicU64::new(0),
                batches: std::sync::atomic::AtomicU64::new(0),
                batch_items: std::sync::atomic::AtomicU64::new(0),
                bodies: Arc::default(),
            }),
        })
    }
}

impl QboClient {
    /// Starts a builder for `config`.
    pub fn builder(config: QboConfig) -> QboClientBuilder {
        QboClientBuilder {
            config,
            store: None,
            rate_limit: RateLimit::default(),
            batch_per_minute: limit::BATCH_REQUESTS_PER_MINUTE,
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            minor_version: DEFAULT_MINOR_VERSION,
            user_agent: concat!("qb-backfill-qbo-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            token_expiry_buffer: DEFAULT_TOKEN_EXPIRY_BUFFER,
            token_save_retry_for: DEFAULT_TOKEN_SAVE_RETRY_FOR,
        }
    }
}
