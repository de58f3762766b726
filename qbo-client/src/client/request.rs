//! One QBO request end to end: the token, the realm's limiter, the send, the body read, the
//! classification of what came back, one forced refresh after a 401, and the retries.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{POST_THRESHOLD, QboClient};
use crate::body::{Body, BodyPool};
use crate::error::{Endpoint, QboError};
use crate::fault::{Fault, looks_like_xml};
use crate::http::{intuit_tid_of, retry_after_of, snippet};
use crate::page::Failure;
use crate::retry::{Decision, FailureClass, RetryState, past_horizon};

/// What one request sends: a query (to the query endpoint), a GET of another endpoint of the
/// company with URL parameters (CDC, reports), or a JSON body POSTed (batch). All go through
/// the same loop: limits, 401 refresh, retries, and every attempt counted in
/// [`QboClient::api_calls`].
pub(super) enum Call<'a> {
    /// Query text: GET `query=` or, when long, POSTed as `application/text`.
    Query(&'a str),
    /// `GET url?params&minorversion=…`.
    Get {
        /// The endpoint.
        url: &'a reqwest::Url,
        /// Its parameters (`minorversion` is added).
        params: &'a [(&'a str, String)],
    },
    /// `POST url?minorversion=…` with a JSON body: a batch of `items` items. Each attempt also
    /// takes a slot of the realm's batch budget and counts its items in
    /// [`QboClient::api_batch_items`].
    Batch {
        /// The endpoint.
        url: &'a reqwest::Url,
        /// The JSON body.
        body: &'a [u8],
        /// Items in the body.
        items: usize,
    },
}

/// A successful answer.
pub(super) struct Answer<T> {
    pub(super) value: T,
    pub(super) intuit_tid: Option<String>,
    pub(super) latency: Duration,
}

impl QboClient {
    /// The request loop: token, limiter, send, classify, 401 → one forced refresh, retries.
    pub(super) async fn run<T, D>(&self, text: &str, decode: D) -> Result<Answer<T>, QboError>
    where
        D: Fn(&Body, Option<&String>) -> Result<T, Failure>,
    {
        self.call(&Call::Query(text), decode).await
    }

    /// [`QboClient::run`] for any [`Call`].
    pub(super) async fn call<T, D>(&self, what: &Call<'_>, decode: D) -> Result<Answer<T>, QboError>
    where
        D: Fn(&Body, Option<&String>) -> Result<T, Failure>,
    {
        let inner = &self.inner;
        let mut history = RetryState::new();
        let mut refreshed_after_401 = false;
        let mut proven_refreshes = 0u32;
        loop {
            let token = inner.tokens.access_token().await?;
            let outcome = self.attempt(what, &token.value, &decode).await;
            let (class, err) = match outcome {
                Ok(answer) => {
                    inner.outage.succeeded();
                    inner.tokens.api_call_succeeded(token.generation).await;
                    return Ok(answer);
                }
                Err(f) => f,
            };
            // One forced refresh per request; another only when the token refused is one QBO
            // had accepted (it expired or was revoked while requests were in parallel), at
            // most a few times: a fresh token refused is final.
            if class == FailureClass::Unauthorized
                && (!refreshed_after_401
                    || (inner.tokens.proven(token.generation) && proven_refreshes < 3))
            {
                if refreshed_after_401 {
                    proven_refreshes += 1;
                }
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
        what: &Call<'_>,
        access_token: &secrecy::SecretString,
        decode: &D,
    ) -> Result<Answer<T>, Failure>
    where
        D: Fn(&Body, Option<&String>) -> Result<T, Failure>,
    {
        let inner = &self.inner;
        let endpoint = Endpoint::Api;
        let permit = inner.limiter.acquire().await;
        if let Call::Batch { items, .. } = what {
            // A batch takes one slot of each budget: the request budget's like any request,
            // then the batch budget's, right before it is sent, so that batch requests leave
            // spaced whatever they waited for (a caller that checked
            // `QboClient::batch_slot_free` finds its slot free).
            inner.batch_limiter.acquire().await;
            inner
                .batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            inner.batch_items.fetch_add(
                u64::try_from(*items).unwrap_or(u64::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let started = Instant::now();
        let request = match what {
            Call::Query(text) if text.len() > POST_THRESHOLD => inner
                .http
                .post(inner.query_url.clone())
                .query(&[("minorversion", inner.minor_version.as_str())])
                .header(CONTENT_TYPE, "application/text")
                .body((*text).to_owned()),
            Call::Query(text) => inner.http.get(inner.query_url.clone()).query(&[
                ("query", *text),
                ("minorversion", inner.minor_version.as_str()),
            ]),
            Call::Get { url, params } => inner
                .http
                .get((*url).clone())
                .query(params)
                .query(&[("minorversion", inner.minor_version.as_str())]),
            Call::Batch { url, body, .. } => inner
                .http
                .post((*url).clone())
                .query(&[("minorversion", inner.minor_version.as_str())])
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
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
        let body = match read_body(resp, &inner.bodies).await {
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
            let body = Body::new(body, Some(&inner.bodies)).map_err(|e| {
                (
                    FailureClass::Malformed,
                    QboError::Malformed {
                        endpoint,
                        detail: format!("the answer is not UTF-8 text ({e})"),
                        class: FailureClass::Malformed,
                        intuit_tid: intuit_tid.clone(),
                    },
                )
            })?;
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

/// Reads a response body into one buffer (a pooled one for a large body, see [`crate::body`]),
/// chunk by chunk, sized from `Content-Length` when the server sends it. (`Response::bytes`
/// collects every chunk first and then joins them, holding a page of records twice at its
/// peak; pages are the largest allocations of a run.)
async fn read_body(
    mut resp: reqwest::Response,
    pool: &BodyPool,
) -> Result<Vec<u8>, reqwest::Error> {
    /// Never trust a declared length for more than this up front; larger bodies still grow.
    const MAX_PREALLOCATION: u64 = 64 << 20;
    let hint = resp.content_length().unwrap_or(0).min(MAX_PREALLOCATION);
    let mut body = pool.buffer(usize::try_from(hint).unwrap_or(0));
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
