//! A typed QuickBooks Online (QBO) client for services that copy QBO data.
//!
//! - [`QboClient`]: one company (realm). Built from a [`QboConfig`] (environment, realm,
//!   [`Credentials`], optional URL overrides; [`QboConfig::from_env`] reads `QBO_*` and
//!   `X_FILE` variables).
//! - OAuth 2.0: the access token is cached and refreshed single-flight; the refresh token
//!   rotates and every new one is saved to a [`TokenStore`] ([`MemoryTokenStore`],
//!   [`FileTokenStore`], or your own) **before** the new access token is used. A 401 forces one
//!   refresh and one retry. `invalid_grant` / `invalid_client` are typed ([`AuthError`]).
//! - Queries: [`Query`] renders QBO's query language (escaped literals, UTC instants,
//!   `Active IN (true, false)`, ORDERBY, STARTPOSITION, MAXRESULTS ≤ 1000).
//!   [`QboClient::query_page`] returns a [`Page`] of [`Record`]s that keep QBO's JSON text
//!   untouched; [`QboClient::pages`] is a lazy stream of pages; [`QboClient::count`] runs
//!   `COUNT(*)`; [`QboClient::cdc`] reads Change Data Capture (changed records and `Deleted`
//!   stubs of the last 30 days) and [`QboClient::read_ids`] re-reads records by `Id`.
//! - Batch: [`QboClient::batch`] runs up to 30 query items ([`BatchItem`]: pages and COUNTs)
//!   in one request that counts once toward the 500 a minute and once toward QBO's 40 batch
//!   requests a minute ([`QboClientBuilder::batch_rate_limit`]); each item answers its page,
//!   count or its own error ([`BatchItemAnswer`]); [`ExpectedRows::check`] detects a page cut
//!   by the batch's 1,000-object cap (per item or per batch: unsettled) so the caller falls
//!   back to single queries. [`QboClient::api_calls`] counts a batch as one request,
//!   [`QboClient::api_batch_items`] its items (whether Intuit's monthly metering counts items
//!   is undocumented).
//! - Limits: one limiter per realm shared by all clients of the process ([`RateLimit`],
//!   default 500 requests/min, 10 in flight; batch requests 40/min). Retries: a pure [`decide`] over
//!   [`FailureClass`]es with exponential backoff and jitter, honouring `Retry-After`.
//! - Errors: [`QboError`] keeps QBO's [`Fault`] (JSON or XML, even inside HTTP 200) with its
//!   `intuit_tid`; [`QboError::is_retryable`] and [`QboError::is_auth`] drive callers, and
//!   [`QboError::diagnosis`] says what a failure means for the operator ([`Diagnosis`]: cause,
//!   action, and a [`Remedy`] telling whether a re-run can help).
//! - Give-up horizon: after [`RetryPolicy::give_up_after`] (default 5 min) of nothing but
//!   transient failures, requests stop retrying until QBO answers again.
//! - Token safety: a rotated token whose save keeps failing is retried for
//!   [`QboClientBuilder::token_save_retry_for`], then written to a 0600 rescue file that the
//!   next start picks up; [`TokenCipher`] (`QBO_TOKEN_KEY`) encrypts tokens at rest;
//!   [`TokenStore::check_writable`] finds an unusable store before the first refresh.
//!
//! Secrets (client secret, refresh and access tokens) live in [`secrecy::SecretString`] and
//! never appear in `Debug`, error messages or logs. Events: `token_refreshed`, `retry`.
//!
//! # Example: every invoice created on one day
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures::TryStreamExt;
//! use qbo_client::{FileTokenStore, Op, Order, QboClient, QboConfig, Query};
//! use time::macros::datetime;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = QboConfig::from_env()?;
//! let client = QboClient::builder(config)
//!     .token_store(Arc::new(FileTokenStore::new("/var/lib/qb/tokens.json")))
//!     .build()?;
//! let query = Query::select("Invoice")
//!     .filter("MetaData.CreateTime", Op::Ge, datetime!(2023-01-31 00:00 UTC))
//!     .filter("MetaData.CreateTime", Op::Lt, datetime!(2023-02-01 00:00 UTC))
//!     .order_by("MetaData.CreateTime", Order::Asc)
//!     .max_results(1000)
//!     .build()?;
//! let mut pages = std::pin::pin!(client.pages(query.clone()));
//! let mut loaded = 0;
//! while let Some(page) = pages.try_next().await? {
//!     for record in &page.records {
//!         // record.raw is QBO's exact JSON text; record.id, create_time (UTC), …
//!         let _ = (&record.id, record.raw.get());
//!     }
//!     loaded += page.records.len();
//! }
//! assert_eq!(loaded as u64, client.count(&query).await?);
//! # Ok(())
//! # }
//! ```

mod body;
mod client;
mod config;
mod diagnosis;
mod error;
mod fault;
mod http;
mod limit;
mod page;
mod query;
mod retry;
mod timefmt;
mod token;

pub use body::DEFAULT_REUSED_BODY_BYTES;
pub use client::{
    BATCH_MAX_ITEMS, BATCH_MAX_OBJECTS, BatchAnswer, BatchError, BatchItem, BatchItemAnswer,
    BatchValue, CDC_MAX_AGE, CDC_MAX_OBJECTS, CdcDeleted, CdcEntity, CdcResponse,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MINOR_VERSION, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TOKEN_EXPIRY_BUFFER, DEFAULT_TOKEN_SAVE_RETRY_FOR, ExpectedRows, QboClient,
    QboClientBuilder, ReportJson, Truncated,
};
pub use config::{
    ConfigError, Credentials, Environment, PRODUCTION_BASE_URL, QboConfig, SANDBOX_BASE_URL,
    TOKEN_URL,
};
pub use diagnosis::{Diagnosis, Remedy};
pub use error::{AuthError, Endpoint, QboError};
pub use fault::{Fault, FaultDetail};
pub use limit::{BATCH_REQUESTS_PER_MINUTE, RateLimit};
pub use page::{Page, PageItem, RawJson, Record, RecordReject};
pub use query::{
    DEFAULT_MAX_RESULTS, MAX_RESULTS_LIMIT, Op, Order, Query, QueryBuilder, QueryError, Value,
};
pub use reqwest::Url;
pub use retry::{
    DEFAULT_GIVE_UP_AFTER, Decision, FailureClass, RetryPolicy, RetryState, decide, past_horizon,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use token::{
    ACCOUNTING_SCOPE, AUTHORIZE_URL, Authorization, Callback, ConnectedTokens, FileTokenStore,
    MemoryTokenStore, OAuthApp, REVOKE_URL, RefreshGuard, TOKEN_KEY_ENV, TokenCipher,
    TokenMetadata, TokenNote, TokenStore, TokenStoreError, is_encrypted, stored_form,
    token_from_stored,
};
