//! The client: builder, request loop (limits, 401 refresh, retries), pages and counts.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{QboConfig, validate_realm};
use crate::error::{Endpoint, QboError};
use crate::fault::{Fault, looks_like_xml};
use crate::http::{intuit_tid_of, retry_after_of, snippet};
use crate::limit::{self, RateLimit, RealmLimiter};
use crate::page::{Failure, Page, PageRequest, decode_count, decode_page, page_number};
use crate::query::{DEFAULT_MAX_RESULTS, MAX_RESULTS_LIMIT, Query, QueryError};
use crate::retry::{Decision, FailureClass, Outage, RetryPolicy, RetryState, past_horizon};
use crate::token::{MemoryTokenStore, TokenProvider, TokenSettings, TokenStore};

/// QBO times requests out at 120 s; wait only slightly longer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(125);
/// Default TCP/TLS connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The minor version sent on every request (Intuit ignores anything below 75 since 2025-08-01).
pub const DEFAULT_MINOR_VERSION: u32 = 75;
/// Default refresh margin before the access token expires (capped at a quarter of its lifetime).
pub const DEFAULT_TOKEN_EXPIRY_BUFFER: Duration = Duration::from_secs(120);
/// How long retryable failures to save a rotated refresh token are retried by default before
/// the token is written to a rescue file.
pub const DEFAULT_TOKEN_SAVE_RETRY_FOR: Duration = Duration::from_secs(180);
/// Queries longer than this are POSTed (`application/text`) instead of sent in the URL.
const POST_THRESHOLD: usize = 1500;

/// A QuickBooks Online client for one company. Cheap to clone; share it across tasks.
#[derive(Clone)]
pub struct QboClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    realm_id: String,
    query_url: Url,
    minor_version: String,
    tokens: TokenProvider,
    limiter: Arc<RealmLimiter>,
    retry: RetryPolicy,
    outage: Arc<Outage>,
    /// API requests sent (every attempt, retries included): what Intuit meters.
    calls: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for QboClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboClient")
            .field("realm_id", &self.inner.realm_id)
            .field("query_url", &self.inner.query_url.as_str())
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// Builds a [`QboClient`]; every setting has a QBO-appropriate default.
#[must_use]
pub struct QboClientBuilder {
    config: QboConfig,
    store: Option<Arc<dyn TokenStore>>,
    rate_limit: RateLimit,
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
        Ok(QboClient {
            inner: Arc::new(Inner {
                http,
                realm_id: cfg.realm_id,
                query_url,
                minor_version: self.minor_version.to_string(),
                tokens,
                limiter,
                retry: self.retry,
                outage,
                calls: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

/// A successful answer.
struct Answer<T> {
    value: T,
    intuit_tid: Option<String>,
    latency: Duration,
}

impl QboClient {
    /// Starts a builder for `config`.
    pub fn builder(config: QboConfig) -> QboClientBuilder {
        QboClientBuilder {
            config,
            store: None,
            rate_limit: RateLimit::default(),
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            minor_version: DEFAULT_MINOR_VERSION,
            user_agent: concat!("qb-backfill-qbo-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            token_expiry_buffer: DEFAULT_TOKEN_EXPIRY_BUFFER,
            token_save_retry_for: DEFAULT_TOKEN_SAVE_RETRY_FOR,
        }
    }

    /// The company id.
    #[must_use]
    pub fn realm_id(&self) -> &str {
        &self.inner.realm_id
    }

    /// API requests this client (and its clones) sent so far: every attempt, retries included,
    /// token refreshes not. Intuit meters these ("CorePlus" read calls).
    #[must_use]
    pub fn api_calls(&self) -> u64 {
        self.inner.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The query endpoint URL (`{base}/v3/company/{realm}/query`).
    #[must_use]
    pub fn query_url(&self) -> &Url {
        &self.inner.query_url
    }

    /// Runs one page of a SELECT query (STARTPOSITION 1 and QBO's default MAXRESULTS 100 when
    /// the query does not say).
    ///
    /// # Errors
    /// [`QueryError::CountNotPageable`] for a COUNT query; otherwise whatever the request loop
    /// reports after retries: faults ([`QboError::Fault`]), auth failures ([`QboError::Auth`]),
    /// transport or decode failures.
    pub async fn query_page(&self, query: &Query) -> Result<Page, QboError> {
        if query.is_count() {
            return Err(QueryError::CountNotPageable.into());
        }
        let text = query.render();
        let req = PageRequest {
            entity: query.entity(),
            start_position: query.start_position().unwrap_or(1),
            max_results: query.max_results().unwrap_or(DEFAULT_MAX_RESULTS),
        };
        let span = tracing::debug_span!(
            "qbo_page",
            realm = self.inner.realm_id.as_str(),
            entity = query.entity(),
            start_position = req.start_position
        );
        let answer = self
            .run(&text, |body, tid| decode_page(body, &req, tid))
            .instrument(span)
            .await?;
        Ok(Page {
            page_number: page_number(req.start_position, req.max_results),
            start_position: req.start_position,
            max_results: req.max_results,
            query: text,
            records: answer.value.0,
            rejects: answer.value.1,
            intuit_tid: answer.intuit_tid,
            latency: answer.latency,
        })
    }

    /// All pages of a SELECT query, lazily: the next page is requested only when the stream is
    /// polled. Starts at the query's STARTPOSITION (default 1) with its MAXRESULTS (default
    /// 1000), stops after the first short page, and fails loudly if a page repeats the previous
    /// one. After an error the stream ends; resume with
    /// [`Query::with_start_position`].
    pub fn pages(
        &self,
        query: Query,
    ) -> impl Stream<Item = Result<Page, QboError>> + Send + 'static {
        struct State {
            client: QboClient,
            query: Query,
            next: u32,
            size: u32,
            previous_ids: Option<Vec<String>>,
        }
        let first: Result<State, QboError> = if query.is_count() {
            Err(QueryError::CountNotPageable.into())
        } else {
            Ok(State {
                client: self.clone(),
                next: query.start_position().unwrap_or(1),
                size: query.max_results().unwrap_or(MAX_RESULTS_LIMIT),
                query,
                previous_ids: None,
            })
        };
        futures::stream::unfold(Some(first), |state| async move {
            let mut st = match state? {
                Ok(st) => st,
                Err(e) => return Some((Err(e), None)),
            };
            let q = match st
                .query
                .with_start_position(st.next)
                .and_then(|q| q.with_max_results(st.size))
            {
                Ok(q) => q,
                Err(e) => return Some((Err(e.into()), None)),
            };
            let page = match st.client.query_page(&q).await {
                Ok(p) => p,
                Err(e) => return Some((Err(e), None)),
            };
            let ids: Vec<String> = page.records.iter().map(|r| r.id.clone()).collect();
            if !ids.is_empty() && st.previous_ids.as_ref() == Some(&ids) {
                let err = QboError::PagingStalled {
                    start_position: st.next,
                    detail: format!("the page repeats the previous one ({} records)", ids.len()),
                    query: page.query,
                };
                return Some((Err(err), None));
            }
            if page.is_last() {
                return Some((Ok(page), None));
            }
            match st.next.checked_add(st.size) {
                Some(next) => {
                    st.next = next;
                    st.previous_ids = Some(ids);
                    Some((Ok(page), Some(Ok(st))))
                }
                None => Some((Err(QueryError::PositionOverflow.into()), None)),
            }
        })
    }

    /// `COUNT(*)` of a query's entity and filter (a SELECT query is turned into its COUNT).
    ///
    /// # Errors
    /// As [`QboClient::query_page`].
    pub async fn count(&self, query: &Query) -> Result<u64, QboError> {
        let q = if query.is_count() {
            query.clone()
        } else {
            query.to_count()
        };
        let text = q.render();
        let span = tracing::debug_span!(
            "qbo_count",
            realm = self.inner.realm_id.as_str(),
            entity = q.entity()
        );
        let answer = self.run(&text, decode_count).instrument(span).await?;
        Ok(answer.value)
    }

    /// Makes sure the access token stays valid for at least `d` (capped at half its lifetime),
    /// refreshing only if needed. Useful before a long batch.
    ///
    /// # Errors
    /// [`QboError::Auth`] when the refresh token or credentials are refused, [`QboError::TokenStore`]
    /// when the rotated token cannot be saved, transport errors after retries.
    pub async fn ensure_token_valid_for(&self, d: Duration) -> Result<(), QboError> {
        self.inner.tokens.ensure_valid_for(d).await.map(|_| ())
    }

    /// The request loop: token, limiter, send, classify, 401 → one forced refresh, retries.
    async fn run<T, D>(&self, text: &str, decode: D) -> Result<Answer<T>, QboError>
    where
        D: Fn(&[u8], Option<&String>) -> Result<T, Failure>,
    {
        let inner = &self.inner;
        let mut history = RetryState::new();
        let mut refreshed_after_401 = false;
        loop {
            let token = inner.tokens.access_token().await?;
            let outcome = self.attempt(text, &token.value, &decode).await;
            let (class, err) = match outcome {
                Ok(answer) => {
                    inner.outage.succeeded();
                    return Ok(answer);
                }
                Err(f) => f,
            };
            if class == FailureClass::Unauthorized && !refreshed_after_401 {
                refreshed_after_401 = true;
                tracing::warn!(
                    realm = inner.realm_id.as_str(),
                    cause = class.as_str(),
                    attempt = history.attempts() + 1,
                    wait_ms = 0u64,
                    intuit_tid = err.intuit_tid(),
                    "retry"
                );
                inner.tokens.force_refresh(token.generation).await?;
                continue;
            }
            let troubled_for = if class.is_transient() {
                inner.outage.failed()
            } else {
                Duration::ZERO
            };
            match history.failed(&inner.retry, class) {
                Decision::RetryAfter(wait)
                    if class.is_transient() && past_horizon(&inner.retry, troubled_for, wait) =>
                {
                    tracing::warn!(
                        realm = inner.realm_id.as_str(),
                        cause = class.as_str(),
                        attempt = history.attempts(),
                        troubled_for_s = troubled_for.as_secs(),
                        give_up_after_s = inner.retry.give_up_after.as_secs(),
                        intuit_tid = err.intuit_tid(),
                        "give_up_horizon_reached"
                    );
                    return Err(crate::error::gave_up(
                        history.attempts(),
                        troubled_for,
                        true,
                        err,
                    ));
                }
                Decision::Stop => {
                    return Err(crate::error::gave_up(
                        history.attempts(),
                        troubled_for,
                        false,
                        err,
                    ));
                }
                Decision::RetryAfter(wait) => {
                    tracing::warn!(
                        realm = inner.realm_id.as_str(),
                        cause = class.as_str(),
                        attempt = history.attempts(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        intuit_tid = err.intuit_tid(),
                        status = err.status(),
                        "retry"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One HTTP attempt, classified.
    async fn attempt<T, D>(
        &self,
        text: &str,
        access_token: &secrecy::SecretString,
        decode: &D,
    ) -> Result<Answer<T>, Failure>
    where
        D: Fn(&[u8], Option<&String>) -> Result<T, Failure>,
    {
        let inner = &self.inner;
        let endpoint = Endpoint::Api;
        let permit = inner.limiter.acquire().await;
        let started = Instant::now();
        let request = if text.len() > POST_THRESHOLD {
            inner
                .http
                .post(inner.query_url.clone())
                .query(&[("minorversion", inner.minor_version.as_str())])
                .header(CONTENT_TYPE, "application/text")
                .body(text.to_owned())
        } else {
            inner.http.get(inner.query_url.clone()).query(&[
                ("query", text),
                ("minorversion", inner.minor_version.as_str()),
            ])
        };
        inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = request
            .bearer_auth(access_token.expose_secret())
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err((
                    FailureClass::Timeout,
                    QboError::Timeout {
                        endpoint,
                        intuit_tid: None,
                    },
                ));
            }
            Err(e) => {
                return Err((
                    FailureClass::Connection,
                    QboError::Connection {
                        endpoint,
                        source: e,
                    },
                ));
            }
        };
        let status = resp.status().as_u16();
        let intuit_tid = intuit_tid_of(resp.headers());
        let retry_after = retry_after_of(resp.headers());
        let body = match read_body(resp).await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return Err((
                    FailureClass::Timeout,
                    QboError::Timeout {
                        endpoint,
                        intuit_tid,
                    },
                ));
            }
            Err(_) => {
                return Err((
                    FailureClass::TruncatedBody,
                    QboError::TruncatedBody {
                        endpoint,
                        intuit_tid,
                    },
                ));
            }
        };
        let latency = started.elapsed();
        drop(permit);
        if (200..300).contains(&status) {
            if looks_like_xml(&body) {
                // XML despite Accept: application/json — a fault (e.g. throttling) or garbage.
                return Err(match Fault::parse(&body) {
                    Some(fault) => fault_failure(status, fault, intuit_tid, retry_after),
                    None => (
                        FailureClass::Malformed,
                        QboError::Malformed {
                            endpoint,
                            detail: format!("XML instead of JSON: {}", snippet(&body, 200)),
                            class: FailureClass::Malformed,
                            intuit_tid,
                        },
                    ),
                });
            }
            let value = decode(&body, intuit_tid.as_ref())?;
            return Ok(Answer {
                value,
                intuit_tid,
                latency,
            });
        }
        Err(match Fault::parse(&body) {
            Some(fault) => fault_failure(status, fault, intuit_tid, retry_after),
            None => {
                let class = FailureClass::from_status(status, None, retry_after);
                (
                    class,
                    QboError::Http {
                        endpoint,
                        status,
                        class,
                        retry_after,
                        intuit_tid,
                        body: Some(snippet(&body, 300)),
                    },
                )
            }
        })
    }
}

/// Reads a response body into one buffer, chunk by chunk, sized from `Content-Length` when the
/// server sends it. (`Response::bytes` collects every chunk first and then joins them, holding a
/// page of records twice at its peak; pages are the largest allocations of a run.)
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    /// Never trust a declared length for more than this up front; larger bodies still grow.
    const MAX_PREALLOCATION: u64 = 64 << 20;
    let hint = resp.content_length().unwrap_or(0).min(MAX_PREALLOCATION);
    let mut body = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn fault_failure(
    status: u16,
    mut fault: Fault,
    intuit_tid: Option<String>,
    retry_after: Option<Duration>,
) -> Failure {
    fault.intuit_tid = intuit_tid;
    fault.http_status = Some(status);
    let class = FailureClass::from_status(status, Some(&fault), retry_after);
    (
        class,
        QboError::Fault {
            status,
            fault: Box::new(fault),
            class,
        },
    )
}
