//! The client: pages and counts of a query. Building one is in `builder.rs`; the request loop
//! every call goes through (limits, 401 refresh, retries) in `request.rs`; batch queries in
//! `batch.rs`; Change Data Capture in `cdc.rs`; the Reports API in `reports.rs`.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use reqwest::Url;
use tracing::Instrument;

use crate::error::QboError;
use crate::limit::{BatchLimiter, RealmLimiter};
use crate::page::{Page, PageRequest, decode_count, decode_page, page_number};
use crate::query::{DEFAULT_MAX_RESULTS, MAX_RESULTS_LIMIT, Query, QueryError};
use crate::retry::{Outage, RetryPolicy};
use crate::token::TokenProvider;

mod batch;
mod builder;
mod cdc;
mod reports;
mod request;

pub use batch::{
    BATCH_MAX_ITEMS, BATCH_MAX_OBJECTS, BatchAnswer, BatchError, BatchItem, BatchItemAnswer,
    BatchValue, ExpectedRows, Truncated,
};
pub use builder::QboClientBuilder;
pub use cdc::{CDC_MAX_AGE, CDC_MAX_OBJECTS, CdcDeleted, CdcEntity, CdcResponse};
pub use reports::ReportJson;

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
    /// The realm's batch budget (40 a minute), taken by batch requests on top of `limiter`.
    batch_limiter: Arc<BatchLimiter>,
    retry: RetryPolicy,
    outage: Arc<Outage>,
    /// API requests sent (every attempt, retries included; a batch is one): what Intuit's
    /// 500 a minute counts.
    calls: std::sync::atomic::AtomicU64,
    /// Of which batch requests.
    batches: std::sync::atomic::AtomicU64,
    /// Items those batch requests carried (every attempt's).
    batch_items: std::sync::atomic::AtomicU64,
    /// Buffers of large answers, reused (see [`crate::body`]).
    bodies: Arc<crate::body::BodyPool>,
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

impl QboClient {
    /// The company id.
    #[must_use]
    pub fn realm_id(&self) -> &str {
        &self.inner.realm_id
    }

    /// API requests this client (and its clones) sent so far: every attempt, retries included,
    /// token refreshes not; a batch request counts once, whatever its items. This is what
    /// Intuit's 500 requests a minute counts (a batch is one request toward it). Intuit also
    /// meters read calls monthly ("CorePlus"); whether it meters a batch as one call or as its
    /// items is undocumented, so [`QboClient::api_batch_items`] counts the other way.
    #[must_use]
    pub fn api_calls(&self) -> u64 {
        self.inner.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Of [`QboClient::api_calls`], the batch requests (every attempt).
    #[must_use]
    pub fn api_batches(&self) -> u64 {
        self.inner
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Items the batch requests carried (every attempt's, retries included). A caller metering
    /// the way Intuit might if it counts each item as a read call uses
    /// `api_calls() - api_batches() + api_batch_items()`; which of the two Intuit's monthly
    /// metering uses is unknown.
    #[must_use]
    pub fn api_batch_items(&self) -> u64 {
        self.inner
            .batch_items
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a batch request ([`QboClient::batch`]) sent now would find a slot of the realm's
    /// batch budget free, without waiting or taking it. `true` promises the slot to this
    /// caller: until a batch request takes it (or ten seconds pass), every other caller of the
    /// realm in this process is told `false`, so one free slot never starts several batches.
    /// A caller that sees `true` should send its batch at once; one that sees `false` may send
    /// its queries as single queries instead.
    #[must_use]
    pub fn batch_slot_free(&self) -> bool {
        self.inner.batch_limiter.try_take()
    }

    /// Lowers to `bytes` what this client (and its clones) keep of free answer buffers for
    /// reuse ([`DEFAULT_REUSED_BODY_BYTES`](crate::DEFAULT_REUSED_BODY_BYTES) until then),
    /// freeing what is beyond it at once. The limit is never raised, so every caller that
    /// counts it inside a memory budget of its own can rely on it. Answers in use are not
    /// counted here: their owner bounds them ([`Page::held_bytes`](crate::Page::held_bytes)).
    pub fn limit_reused_bodies(&self, bytes: usize) {
        self.inner.bodies.limit(bytes);
    }

    /// Bytes (of capacity) of the free answer buffers this client keeps for reuse now.
    #[must_use]
    pub fn reused_body_bytes(&self) -> usize {
        self.inner.bodies.free_bytes()
    }

    /// Records in the token store (for `auth status`) that an API call succeeded, if one did
    /// since the last success recorded. The client records its first successful answer by
    /// itself; call this once when a run ends, so the store holds the run's last success
    /// without a write per page.
    pub async fn note_last_success(&self) {
        self.inner.tokens.note_last_success().await;
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
            .run(&text, |body, tid| decode_page(body, body.text(), &req, tid))
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
        let answer = self
            .run(&text, |body, tid| decode_count(body.bytes(), tid))
            .instrument(span)
            .await?;
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
}
