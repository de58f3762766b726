//! Batch queries: up to 30 query items in one request (`POST /v3/company/{realm}/batch`).
//!
//! What QBO documents, and what we rely on:
//! - a batch holds at most 30 items (more is refused: checked here before sending,
//!   [`BatchError::TooManyItems`]); each item carries a `bId` that its answer echoes;
//! - a batch is one request toward the realm's 500 requests a minute and its 10 in flight, and
//!   one of its 40 batch requests a minute (per realm and app): [`QboClient::batch`] takes one
//!   slot of each budget;
//! - an item that fails answers its own `Fault` inside `BatchItemResponse` while the other
//!   items answer normally: such an item fails alone ([`BatchItemAnswer::result`]); the batch
//!   as a whole is retried only for what fails the whole request (429, 5xx, a cut body…).
//!
//! What is unsettled, and how it is handled:
//! - the batch reference says a response returns at most 1,000 objects without saying whether
//!   per item or per batch. Nothing in an answer says it was cut, so a caller checks each page
//!   against what it expects ([`ExpectedRows::check`]) and falls back to a single query for a
//!   [`Truncated`] item, logging its reason;
//! - whether Intuit's monthly metering counts a batch as one call or as its items is
//!   undocumented: [`QboClient::api_calls`] counts a batch once, [`QboClient::api_batch_items`]
//!   counts its items, so a caller can meter both ways.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument;

use super::QboClient;
use super::request::Call;
use crate::body::Body;
use crate::error::{Endpoint, QboError};
use crate::fault::FaultBody;
use crate::page::{
    Failure, Page, PageRequest, decode_count, decode_failure, decode_page, fault_in_ok_body,
    malformed, page_number,
};
use crate::query::{DEFAULT_MAX_RESULTS, Query};
use crate::retry::FailureClass;

/// Most items one batch request holds (QBO refuses more).
pub const BATCH_MAX_ITEMS: usize = 30;

/// Most objects Intuit's batch reference says one response returns (per item or per batch:
/// unsettled, see the module documentation).
pub const BATCH_MAX_OBJECTS: usize = 1000;

/// One query of a batch, with the `bId` its answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    bid: String,
    query: Query,
}

impl BatchItem {
    /// An item: `bid` must be non-empty and unique within its batch (checked by
    /// [`QboClient::batch`]).
    pub fn new(bid: impl Into<String>, query: Query) -> Self {
        Self {
            bid: bid.into(),
            query,
        }
    }

    /// Items for `queries`, with bIds `"1"`, `"2"`, … in order.
    pub fn numbered(queries: impl IntoIterator<Item = Query>) -> Vec<Self> {
        queries
            .into_iter()
            .enumerate()
            .map(|(i, q)| Self::new((i + 1).to_string(), q))
            .collect()
    }

    /// The item's `bId`.
    #[must_use]
    pub fn bid(&self) -> &str {
        &self.bid
    }

    /// The item's query.
    #[must_use]
    pub fn query(&self) -> &Query {
        &self.query
    }
}

/// A batch that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// No item.
    #[error("a batch needs at least one item")]
    Empty,
    /// More items than QBO accepts in one request.
    #[error("a batch holds at most {max} items, this one has {items}: split it")]
    TooManyItems {
        /// Items given.
        items: usize,
        /// The most allowed ([`BATCH_MAX_ITEMS`]).
        max: usize,
    },
    /// An item without a `bId`.
    #[error("batch item {position} has an empty bId")]
    EmptyBid {
        /// 0-based position of the item.
        position: usize,
    },
    /// Two items with one `bId`: their answers could not be told apart.
    #[error("bId {bid:?} appears more than once in the batch")]
    DuplicateBid {
        /// The repeated `bId`.
        bid: String,
    },
}

/// What one item answered.
#[derive(Debug, Clone)]
pub enum BatchValue {
    /// A SELECT item's page (records decoded as a single query's, rejects kept apart; its
    /// `intuit_tid` and `latency` are the batch's).
    Page(Page),
    /// A `COUNT(*)` item's count.
    Count(u64),
}

/// One item's answer.
#[derive(Debug)]
pub struct BatchItemAnswer {
    /// The item's `bId`.
    pub bid: String,
    /// The item's query.
    pub query: Query,
    /// Its value, or why this item alone failed: its own `Fault` ([`QboError::Fault`], with
    /// the class QBO's fault type gives it, so [`QboError::is_retryable`] says whether a retry
    /// of the item may help), an unusable item ([`QboError::Malformed`], [`QboError::Decode`]),
    /// or no answer for its `bId`.
    pub result: Result<BatchValue, QboError>,
}

impl BatchItemAnswer {
    /// The page, if the item is a SELECT that succeeded.
    #[must_use]
    pub fn page(&self) -> Option<&Page> {
        match &self.result {
            Ok(BatchValue::Page(p)) => Some(p),
            _ => None,
        }
    }

    /// The count, if the item is a COUNT that succeeded.
    #[must_use]
    pub fn count(&self) -> Option<u64> {
        match &self.result {
            Ok(BatchValue::Count(n)) => Some(*n),
            _ => None,
        }
    }
}

/// A batch's answer: every item's, in the order asked.
#[derive(Debug)]
pub struct BatchAnswer {
    /// One answer per item, in the order of the request.
    pub items: Vec<BatchItemAnswer>,
    /// The response's `intuit_tid` header.
    pub intuit_tid: Option<String>,
    /// Time from sending the request to the last byte of the answer (successful attempt).
    pub latency: Duration,
}

impl BatchAnswer {
    /// The answer of the item with `bid`.
    #[must_use]
    pub fn get(&self, bid: &str) -> Option<&BatchItemAnswer> {
        self.items.iter().find(|i| i.bid == bid)
    }

    /// Objects the pages of the answer hold in all (records and rejects; COUNTs are not
    /// objects). At [`BATCH_MAX_OBJECTS`], a per-batch reading of the cap may have cut items.
    #[must_use]
    pub fn objects(&self) -> usize {
        self.items
            .iter()
            .filter_map(BatchItemAnswer::page)
            .map(Page::len)
            .sum()
    }
}

/// What a caller knows of the rows a batch item's page should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRows {
    /// The COUNT of the item's query without paging (the same filter, from this batch or an
    /// earlier request): the page at STARTPOSITION `s` should hold
    /// `min(MAXRESULTS, count − (s − 1))` rows.
    Count(u64),
    /// No COUNT: a full page of MAXRESULTS rows is expected unless the window is known to end
    /// within this page (`window_ends`), when a short page proves nothing either way.
    MaxResults {
        /// Whether the window's last rows fall within this page.
        window_ends: bool,
    },
}

impl ExpectedRows {
    /// Rows a page at `start_position` of `max_results` should hold, when that can be said.
    #[must_use]
    pub fn rows(self, start_position: u32, max_results: u32) -> Option<u64> {
        match self {
            Self::Count(count) => Some(
                count
                    .saturating_sub(u64::from(start_position.saturating_sub(1)))
                    .min(u64::from(max_results)),
            ),
            Self::MaxResults { window_ends: false } => Some(u64::from(max_results)),
            Self::MaxResults { window_ends: true } => None,
        }
    }

    /// Whether `page` holds fewer rows than expected: then the batch cut it (a per-batch
    /// reading of the 1,000-object cap, or anything else), and the caller should re-read that
    /// work with single queries, logging the returned reason. More rows than expected is not
    /// truncation (records were added since the COUNT; the caller's overlap checks see that).
    #[must_use]
    pub fn check(self, page: &Page) -> Option<Truncated> {
        let expected = self.rows(page.start_position, page.max_results)?;
        let got = page.len() as u64;
        (got < expected).then(|| Truncated {
            query: page.query.clone(),
            start_position: page.start_position,
            expected,
            got,
            by_count: matches!(self, Self::Count(_)),
        })
    }
}

/// A batch item's page shorter than expected ([`ExpectedRows::check`]); its `Display` is the
/// reason to log with the fallback to single queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// The item's query text.
    pub query: String,
    /// Its STARTPOSITION.
    pub start_position: u32,
    /// Rows expected.
    pub expected: u64,
    /// Rows answered.
    pub got: u64,
    /// Whether the expectation came from a COUNT (else from MAXRESULTS).
    pub by_count: bool,
}

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the batch answered {} of the {} rows {} at STARTPOSITION {} (query: {}); \
             falling back to single queries",
            self.got,
            self.expected,
            if self.by_count {
                "its COUNT promises"
            } else {
                "a full page holds"
            },
            self.start_position,
            self.query
        )
    }
}

/// What a batch item's answer is decoded as.
enum Expect<'a> {
    Page(PageRequest<'a>),
    Count,
}

struct Prepared<'a> {
    bid: &'a str,
    text: String,
    expect: Expect<'a>,
}

fn check(items: &[BatchItem]) -> Result<(), BatchError> {
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    if items.len() > BATCH_MAX_ITEMS {
        return Err(BatchError::TooManyItems {
            items: items.len(),
            max: BATCH_MAX_ITEMS,
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (position, item) in items.iter().enumerate() {
        if item.bid.is_empty() {
            return Err(BatchError::EmptyBid { position });
        }
        if !seen.insert(item.bid.as_str()) {
            return Err(BatchError::DuplicateBid {
                bid: item.bid.clone(),
            });
        }
    }
    Ok(())
}

fn prepare(item: &BatchItem) -> Prepared<'_> {
    let q = &item.query;
    let expect = if q.is_count() {
        Expect::Count
    } else {
        Expect::Page(PageRequest {
            entity: q.entity(),
            start_position: q.start_position().unwrap_or(1),
            max_results: q.max_results().unwrap_or(DEFAULT_MAX_RESULTS),
        })
    };
    Prepared {
        bid: &item.bid,
        text: q.render(),
        expect,
    }
}

fn body(prepared: &[Prepared<'_>]) -> Vec<u8> {
    let items: Vec<serde_json::Value> = prepared
        .iter()
        .map(|p| serde_json::json!({"bId": p.bid, "Query": p.text}))
        .collect();
    serde_json::json!({ "BatchItemRequest": items })
        .to_string()
        .into_bytes()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "BatchItemResponse", borrow, default)]
    items: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<FaultBody>,
}

#[derive(Deserialize)]
struct ItemId {
    #[serde(rename = "bId", default)]
    bid: Option<String>,
}

/// What each item answered (a page or count decoded exactly as a single query's answer is),
/// in the order asked. The answer as a whole fails only when it cannot be matched to the
/// request: not JSON, a top-level fault, an item without or with an unknown or repeated `bId`.
type ItemResults = Vec<Result<BatchValue, QboError>>;

fn decode_batch(
    body: &Body,
    prepared: &[Prepared<'_>],
    intuit_tid: Option<&String>,
) -> Result<ItemResults, Failure> {
    let de = &mut serde_json::Deserializer::from_str(body.text());
    let env: Envelope<'_> =
        serde_path_to_error::deserialize(de).map_err(|e| decode_failure(e, intuit_tid, None))?;
    if let Some(f) = env.fault {
        return Err(fault_in_ok_body(f, intuit_tid));
    }
    let Some(answers) = env.items else {
        return Err(malformed(
            "no BatchItemResponse in the answer".into(),
            intuit_tid,
        ));
    };
    let mut slots: Vec<Option<Result<BatchValue, QboError>>> =
        prepared.iter().map(|_| None).collect();
    for (i, raw) in answers.into_iter().enumerate() {
        let bid = serde_json::from_str::<ItemId>(raw.get())
            .ok()
            .and_then(|id| id.bid)
            .ok_or_else(|| malformed(format!("BatchItemResponse[{i}] has no bId"), intuit_tid))?;
        let Some(k) = prepared.iter().position(|p| p.bid == bid) else {
            return Err(malformed(
                format!("BatchItemResponse[{i}] answers bId {bid:?}, which was not asked"),
                intuit_tid,
            ));
        };
        if slots[k].is_some() {
            return Err(malformed(
                format!("bId {bid:?} is answered more than once"),
                intuit_tid,
            ));
        }
        let item = raw.get();
        let result = match &prepared[k].expect {
            Expect::Page(req) => {
                decode_page(body, item, req, intuit_tid).map(|(records, rejects)| {
                    BatchValue::Page(Page {
                        page_number: page_number(req.start_position, req.max_results),
                        start_position: req.start_position,
                        max_results: req.max_results,
                        query: prepared[k].text.clone(),
                        records,
                        rejects,
                        intuit_tid: intuit_tid.cloned(),
                        latency: Duration::ZERO,
                    })
                })
            }
            Expect::Count => decode_count(item.as_bytes(), intuit_tid).map(BatchValue::Count),
        };
        slots[k] = Some(result.map_err(|(_, e)| e));
    }
    Ok(slots
        .into_iter()
        .zip(prepared)
        .map(|(slot, p)| {
            slot.unwrap_or_else(|| {
                Err(QboError::Malformed {
                    endpoint: Endpoint::Api,
                    detail: format!("the batch answer has no item for bId {:?}", p.bid),
                    class: FailureClass::Rejected,
                    intuit_tid: intuit_tid.cloned(),
                })
            })
        })
        .collect())
}

impl QboClient {
    /// Runs up to [`BATCH_MAX_ITEMS`] queries (pages and COUNTs, of any entities) in one
    /// request, through the same request loop as single queries (token, limits, 401 refresh,
    /// retries of what fails the whole request). The request takes one slot of the realm's
    /// batch budget ([`super::QboClientBuilder::batch_rate_limit`], QBO's 40 a minute) and one
    /// of its request budget; it counts once in [`QboClient::api_calls`] and its items in
    /// [`QboClient::api_batch_items`]. An item that fails fails alone, in its
    /// [`BatchItemAnswer::result`]; the caller retries it (alone or in another batch). Pages
    /// may have been cut by the 1,000-object cap: check them with [`ExpectedRows::check`].
    ///
    /// # Errors
    /// [`QboError::Batch`] before sending (no item, more than 30, an empty or repeated bId);
    /// otherwise what fails the whole request after retries, as for
    /// [`QboClient::query_page`], and [`QboError::Malformed`] for an answer that does not
    /// match the request's bIds.
    pub async fn batch(&self, items: &[BatchItem]) -> Result<BatchAnswer, QboError> {
        check(items)?;
        let prepared: Vec<Prepared<'_>> = items.iter().map(prepare).collect();
        let body = body(&prepared);
        let url = self
            .inner
            .query_url
            .join("batch")
            .map_err(|e| QboError::Malformed {
                endpoint: Endpoint::Api,
                detail: format!("batch URL: {e}"),
                class: FailureClass::Rejected,
                intuit_tid: None,
            })?;
        let span = tracing::debug_span!(
            "qbo_batch",
            realm = self.inner.realm_id.as_str(),
            items = items.len()
        );
        let answer = self
            .call(
                &Call::Batch {
                    url: &url,
                    body: &body,
                    items: items.len(),
                },
                |b, tid| decode_batch(b, &prepared, tid),
            )
            .instrument(span)
            .await?;
        let latency = answer.latency;
        let answers = answer
            .value
            .into_iter()
            .zip(items)
            .map(|(mut result, item)| {
                if let Ok(BatchValue::Page(p)) = &mut result {
                    p.latency = latency;
                }
                BatchItemAnswer {
                    bid: item.bid.clone(),
                    query: item.query.clone(),
                    result,
                }
            })
            .collect();
        Ok(BatchAnswer {
            items: answers,
            intuit_tid: answer.intuit_tid,
            latency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(start_position: u32, max_results: u32, rows: usize) -> Page {
        let text = r#"{"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"}}"#;
        let body = Body::new(text.as_bytes().to_vec(), None).unwrap_or_else(|e| panic!("{e}"));
        let raw: &RawValue = serde_json::from_str(body.text()).unwrap_or_else(|e| panic!("{e}"));
        let record = crate::page::decode_record(&body, raw, String::new)
            .unwrap_or_else(|r| panic!("{}", r.reason));
        Page {
            page_number: 1,
            start_position,
            max_results,
            query: "SELECT * FROM Invoice".into(),
            records: vec![record; rows],
            rejects: Vec::new(),
            intuit_tid: None,
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn truncation_against_a_count() {
        // 2,500 rows: pages of 1,000 at 1, 1001, 2001 should hold 1000, 1000, 500.
        let e = ExpectedRows::Count(2500);
        assert_eq!(e.rows(1, 1000), Some(1000));
        assert_eq!(e.rows(2001, 1000), Some(500));
        assert_eq!(e.rows(3001, 1000), Some(0));
        assert_eq!(e.check(&page(2001, 1000, 500)), None);
        assert_eq!(
            e.check(&page(2001, 1000, 501)),
            None,
            "more is not truncation"
        );
        let t = e
            .check(&page(1001, 1000, 400))
            .unwrap_or_else(|| panic!("missed"));
        assert_eq!((t.expected, t.got, t.by_count), (1000, 400, true));
        let reason = t.to_string();
        assert!(
            reason.contains("400 of the 1000 rows its COUNT promises"),
            "{reason}"
        );
        assert!(reason.contains("STARTPOSITION 1001"), "{reason}");
        // An empty page where the COUNT promises rows is truncation too.
        assert!(e.check(&page(2001, 1000, 0)).is_some());
    }

    #[test]
    fn truncation_against_maxresults() {
        let open = ExpectedRows::MaxResults { window_ends: false };
        assert_eq!(open.check(&page(1, 600, 600)), None);
        let t = open
            .check(&page(601, 600, 400))
            .unwrap_or_else(|| panic!("missed"));
        assert!(!t.by_count);
        assert!(t.to_string().contains("a full page holds"));
        let ends = ExpectedRows::MaxResults { window_ends: true };
        assert_eq!(ends.rows(1, 600), None);
        assert_eq!(ends.check(&page(1, 600, 3)), None);
    }

    #[test]
    fn items_are_checked_before_sending() {
        let q = Query::count("Item")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let thirty = BatchItem::numbered(std::iter::repeat_n(q.clone(), 30));
        assert_eq!(check(&thirty), Ok(()));
        assert_eq!(thirty[29].bid(), "30");
        let mut more = thirty.clone();
        more.push(BatchItem::new("31", q.clone()));
        assert_eq!(
            check(&more),
            Err(BatchError::TooManyItems { items: 31, max: 30 })
        );
        assert_eq!(check(&[]), Err(BatchError::Empty));
        let dup = [
            BatchItem::new("a", q.clone()),
            BatchItem::new("a", q.clone()),
        ];
        assert_eq!(
            check(&dup),
            Err(BatchError::DuplicateBid { bid: "a".into() })
        );
        assert_eq!(
            check(&[BatchItem::new("", q)]),
            Err(BatchError::EmptyBid { position: 0 })
        );
    }

    #[test]
    fn answers_are_matched_by_bid_and_fail_item_by_item() {
        let page_q = Query::select("Invoice")
            .max_results(2)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let count_q = Query::count("Invoice")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let items = [
            BatchItem::new("p", page_q.clone()),
            BatchItem::new("n", count_q),
            BatchItem::new("f", page_q.clone()),
            BatchItem::new("missing", page_q),
        ];
        let prepared: Vec<_> = items.iter().map(prepare).collect();
        // Out of order, one item with its own fault, one not answered at all.
        let body = br#"{"BatchItemResponse":[
            {"bId":"n","QueryResponse":{"totalCount":7}},
            {"bId":"f","Fault":{"Error":[{"Message":"An application error has occurred","code":"10000"}],"type":"SystemFault"}},
            {"bId":"p","QueryResponse":{"Invoice":[
                {"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00-08:00","LastUpdatedTime":"2023-01-01T00:00:00-08:00"}},
                {"Id":"2"}],"startPosition":1,"maxResults":2}}
        ],"time":"2023-01-01T00:00:00.000-08:00"}"#;
        let tid = Some("tid-1".to_owned());
        let out = decode_batch(
            &Body::new(body.to_vec(), None).unwrap(),
            &prepared,
            tid.as_ref(),
        )
        .unwrap_or_else(|(_, e)| panic!("{e}"));
        match &out[0] {
            Ok(BatchValue::Page(p)) => {
                assert_eq!(p.records.len(), 1);
                assert_eq!(p.rejects.len(), 1, "the same reject path as a page");
                assert_eq!(p.intuit_tid.as_deref(), Some("tid-1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(out[1], Ok(BatchValue::Count(7))));
        let fault = out[2].as_ref().err().unwrap_or_else(|| panic!("no fault"));
        assert!(fault.is_retryable(), "a SystemFault item is worth a retry");
        assert_eq!(fault.fault().and_then(|f| f.code()), Some("10000"));
        let missing = out[3].as_ref().err().unwrap_or_else(|| panic!("answered"));
        assert!(missing.to_string().contains("missing"), "{missing}");

        // An answer that cannot be matched to the request fails as a whole.
        for bad in [
            &br#"{"BatchItemResponse":[{"bId":"zzz","QueryResponse":{}}]}"#[..],
            br#"{"BatchItemResponse":[{"QueryResponse":{}}]}"#,
            br#"{"BatchItemResponse":[{"bId":"n","QueryResponse":{}},{"bId":"n","QueryResponse":{}}]}"#,
            br#"{"time":"x"}"#,
        ] {
            let (class, _) = decode_batch(&Body::new(bad.to_vec(), None).unwrap(), &prepared, None)
                .err()
                .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(bad)));
            assert_eq!(class, FailureClass::Rejected);
        }
        let (class, _) = decode_batch(
            &Body::new(br#"{"BatchItemResponse":["#.to_vec(), None).unwrap(),
            &prepared,
            None,
        )
        .err()
        .unwrap_or_else(|| panic!("accepted a cut body"));
        assert_eq!(class, FailureClass::TruncatedBody);
    }
}
