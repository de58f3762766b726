//! Query responses: pages of raw records and COUNT results.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::{Date, OffsetDateTime};

use crate::body::{Body, BodyText};
use crate::error::{Endpoint, QboError};
use crate::fault::FaultBody;
use crate::retry::FailureClass;
use crate::timefmt::{parse_date, parse_datetime};

/// One page of a query: the unit of write and of progress.
#[derive(Debug, Clone)]
pub struct Page {
    /// 1-based page number: `(start_position - 1) / max_results + 1`.
    pub page_number: u32,
    /// STARTPOSITION sent.
    pub start_position: u32,
    /// MAXRESULTS sent (QBO's default 100 if the query did not say): the page size.
    pub max_results: u32,
    /// The exact query text sent.
    pub query: String,
    /// The records, in QBO's order.
    pub records: Vec<Record>,
    /// Items of the page that are not usable records (no `Id`, no `MetaData`, an unparsable
    /// timestamp), kept as received so the caller can quarantine them; the rest of the page
    /// is unaffected.
    pub rejects: Vec<RecordReject>,
    /// The response's `intuit_tid` header.
    pub intuit_tid: Option<String>,
    /// Time from sending the request to the last byte of the answer (successful attempt).
    pub latency: Duration,
}

impl Page {
    /// Number of items QBO returned: records and rejects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len() + self.rejects.len()
    }

    /// Whether QBO returned no item.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the page is shorter than MAXRESULTS. A short page is not proof that the query
    /// has no more rows (QBO has answered short pages mid-range): only an empty page or a
    /// COUNT is.
    #[must_use]
    pub fn is_last(&self) -> bool {
        self.len() < self.max_results as usize
    }

    /// Bytes the page holds in memory: each buffer its records' text lies in, counted once at
    /// its capacity (a response body, or a batch answer shared with the batch's other pages),
    /// plus its items' own allocations. What a memory budget should count: the text of the
    /// records alone says less than the buffers they keep alive.
    #[must_use]
    pub fn held_bytes(&self) -> u64 {
        let mut bodies: Vec<&Arc<BodyText>> = Vec::with_capacity(1);
        let mut bytes = self.records.capacity() * std::mem::size_of::<Record>()
            + self.rejects.capacity() * std::mem::size_of::<RecordReject>();
        for r in &self.records {
            bytes += r.id.capacity();
            if !bodies.iter().any(|b| Arc::ptr_eq(b, &r.raw.body)) {
                bodies.push(&r.raw.body);
                bytes += r.raw.body.capacity();
            }
        }
        for r in &self.rejects {
            bytes +=
                r.raw.get().len() + r.reason.capacity() + r.id.as_ref().map_or(0, String::capacity);
        }
        bytes as u64
    }

    /// The page's items in QBO's order: records and rejects interleaved as they came.
    pub fn items(&self) -> impl Iterator<Item = PageItem<'_>> {
        let mut records = self.records.iter();
        let mut rejects = self.rejects.iter().peekable();
        (0..self.len()).filter_map(move |position| {
            match rejects.next_if(|r| r.position == position) {
                Some(r) => Some(PageItem::Reject(r)),
                None => records.next().map(PageItem::Record),
            }
        })
    }
}

/// One item of a [`Page`], in QBO's order.
#[derive(Debug, Clone, Copy)]
pub enum PageItem<'a> {
    /// A usable record.
    Record(&'a Record),
    /// An item that is not a usable record.
    Reject(&'a RecordReject),
}

impl<'a> PageItem<'a> {
    /// What identifies the item when overlapping pages are compared: the `Id`, or for a
    /// reject without one its text.
    #[must_use]
    pub fn key(&self) -> &'a str {
        match self {
            PageItem::Record(r) => &r.id,
            PageItem::Reject(r) => r.id.as_deref().unwrap_or(r.raw.get()),
        }
    }
}

/// An item of a page that is not a usable record.
#[derive(Debug, Clone)]
pub struct RecordReject {
    /// Its 0-based position in the page.
    pub position: usize,
    /// Its `Id`, when it has a readable one.
    pub id: Option<String>,
    /// Its exact JSON text.
    pub raw: Box<RawValue>,
    /// Why it is not usable, naming the field (e.g. `MetaData.CreateTime: ...`).
    pub reason: String,
}

/// One entity as QBO returned it, with the fields the pipeline needs parsed.
#[derive(Debug, Clone)]
pub struct Record {
    /// QBO `Id` (unique per realm only).
    pub id: String,
    /// `MetaData.CreateTime`, converted to UTC.
    pub create_time: OffsetDateTime,
    /// `MetaData.LastUpdatedTime`, converted to UTC.
    pub last_updated_time: OffsetDateTime,
    /// `TxnDate` of transactions.
    pub txn_date: Option<Date>,
    /// The entity's exact JSON text (numbers untouched; never re-serialised).
    pub raw: RawJson,
}

/// A record's exact JSON text, held as a slice of the response body it came in: the records
/// of a page share that one buffer (a page costs its body once, not its body plus a copy of
/// every record), and it is freed when the last of them is dropped.
#[derive(Clone)]
pub struct RawJson {
    body: Arc<BodyText>,
    start: usize,
    end: usize,
}

impl RawJson {
    /// JSON text of its own (not a slice of a body). The text is not checked: it is what the
    /// caller says QBO sent.
    pub fn new(text: impl Into<String>) -> Self {
        let body = Body::owned(text.into());
        let end = body.text().len();
        Self {
            body: body.0,
            start: 0,
            end,
        }
    }

    /// `part` as a slice of `body` when it lies within it (as every value decoded from the
    /// body does), else as a copy.
    pub(crate) fn within(body: &Body, part: &str) -> Self {
        let base = body.text().as_ptr() as usize;
        let at = part.as_ptr() as usize;
        match at.checked_sub(base) {
            Some(start) if body.text().get(start..start + part.len()).is_some() => Self {
                body: Arc::clone(&body.0),
                start,
                end: start + part.len(),
            },
            _ => Self::new(part),
        }
    }

    /// The JSON text.
    #[must_use]
    pub fn get(&self) -> &str {
        // `start..end` is a slice of the body on character boundaries (checked when made).
        &self.body.text()[self.start..self.end]
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawJson").field(&self.get()).finish()
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

pub(crate) fn page_number(start_position: u32, max_results: u32) -> u32 {
    (start_position.saturating_sub(1)) / max_results.max(1) + 1
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "QueryResponse", borrow, default)]
    query_response: Option<BTreeMap<String, &'a RawValue>>,
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<FaultBody>,
}

#[derive(Deserialize)]
struct RecordMeta {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "MetaData")]
    meta: MetaTimes,
    #[serde(rename = "TxnDate", default, deserialize_with = "opt_date")]
    txn_date: Option<Date>,
}

/// Just the `Id` of an item that failed to decode, when it has one.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "Id", default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct MetaTimes {
    #[serde(rename = "CreateTime", deserialize_with = "datetime")]
    create_time: OffsetDateTime,
    #[serde(rename = "LastUpdatedTime", deserialize_with = "datetime")]
    last_updated_time: OffsetDateTime,
}

fn datetime<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse_datetime(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a QBO timestamp")))
}

fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
    let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => parse_date(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a date"))),
    }
}

/// A failed decode with its retry class.
pub(crate) type Failure = (FailureClass, QboError);

const COUNTERS: [&str; 3] = ["startPosition", "maxResults", "totalCount"];

/// Decodes the top level; a fault (even in HTTP 200) becomes an error.
fn envelope<'a>(
    body: &'a [u8],
    intuit_tid: Option<&String>,
) -> Result<BTreeMap<String, &'a RawValue>, Failure> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let env: Envelope<'a> =
        serde_path_to_error::deserialize(de).map_err(|e| decode_failure(e, intuit_tid, None))?;
    if let Some(f) = env.fault {
        return Err(fault_in_ok_body(f, intuit_tid));
    }
    env.query_response.ok_or_else(|| {
        (
            FailureClass::Rejected,
            QboError::Malformed {
                endpoint: Endpoint::Api,
                detail: "no QueryResponse in the answer".into(),
                class: FailureClass::Rejected,
                intuit_tid: intuit_tid.cloned(),
            },
        )
    })
}

pub(crate) fn decode_failure(
    e: serde_path_to_error::Error<serde_json::Error>,
    intuit_tid: Option<&String>,
    prefix: Option<&str>,
) -> Failure {
    let path = match prefix {
        Some(p) if e.path().to_string() == "." => p.to_owned(),
        Some(p) => format!("{p}.{}", e.path()),
        None => e.path().to_string(),
    };
    let inner = e.into_inner();
    if inner.is_eof() {
        return (
            FailureClass::TruncatedBody,
            QboError::TruncatedBody {
                endpoint: Endpoint::Api,
                intuit_tid: intuit_tid.cloned(),
            },
        );
    }
    let class = if inner.is_syntax() {
        FailureClass::Malformed
    } else {
        FailureClass::Rejected
    };
    if class == FailureClass::Malformed {
        return (
            class,
            QboError::Malformed {
                endpoint: Endpoint::Api,
                detail: format!("not JSON: {inner}"),
                class,
                intuit_tid: intuit_tid.cloned(),
            },
        );
    }
    (
        class,
        QboError::Decode {
            path,
            intuit_tid: intuit_tid.cloned(),
            source: inner,
        },
    )
}

fn counter(
    map: &BTreeMap<String, &RawValue>,
    key: &str,
    intuit_tid: Option<&String>,
) -> Result<Option<u64>, Failure> {
    let Some(raw) = map.get(key) else {
        return Ok(None);
    };
    let de = &mut serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize::<_, u64>(de)
        .map(Some)
        .map_err(|e| decode_failure(e, intuit_tid, Some(&format!("QueryResponse.{key}"))))
}

/// What a page decode needs to know about the request.
pub(crate) struct PageRequest<'a> {
    pub(crate) entity: &'a str,
    pub(crate) start_position: u32,
    pub(crate) max_results: u32,
}

/// A decoded page: its records and the items that are not usable records.
pub(crate) type Decoded = (Vec<Record>, Vec<RecordReject>);

/// Decodes a page's answer `part` of `body` (the whole body, or a batch item of it) into
/// records (raw JSON kept byte for byte, as slices of `body`). The page as a whole must be
/// well-formed; an item of it that is not a usable record becomes a [`RecordReject`].
pub(crate) fn decode_page(
    body: &Body,
    part: &str,
    req: &PageRequest<'_>,
    intuit_tid: Option<&String>,
) -> Result<Decoded, Failure> {
    let map = envelope(part.as_bytes(), intuit_tid)?;
    let mut list_key: Option<&String> = None;
    for key in map.keys() {
        if COUNTERS.contains(&key.as_str()) {
            continue;
        }
        if key.eq_ignore_ascii_case(req.entity) {
            list_key = Some(key);
        } else {
            return Err(malformed(
                format!(
                    "unexpected list `{key}` in the answer to a {} query",
                    req.entity
                ),
                intuit_tid,
            ));
        }
    }
    if let Some(echo) = counter(&map, "startPosition", intuit_tid)?
        && list_key.is_some()
        && echo != u64::from(req.start_position)
    {
        return Err(malformed(
            format!(
                "startPosition {echo} in the answer, {} requested",
                req.start_position
            ),
            intuit_tid,
        ));
    }
    let Some(key) = list_key else {
        // `{"QueryResponse":{}}`: an empty page.
        return Ok((Vec::new(), Vec::new()));
    };
    let prefix = format!("QueryResponse.{key}");
    let raw_list = map.get(key).map_or("[]", |r| r.get());
    let de = &mut serde_json::Deserializer::from_str(raw_list);
    let items: Vec<&RawValue> = serde_path_to_error::deserialize(de)
        .map_err(|e| decode_failure(e, intuit_tid, Some(&prefix)))?;
    if items.len() > req.max_results as usize {
        return Err(malformed(
            format!(
                "{} records in a page of MAXRESULTS {}",
                items.len(),
                req.max_results
            ),
            intuit_tid,
        ));
    }
    let mut records = Vec::with_capacity(items.len());
    let mut rejects = Vec::new();
    for (i, raw) in items.into_iter().enumerate() {
        match decode_record(body, raw, || format!("{prefix}[{i}]")) {
            Ok(record) => records.push(record),
            Err(mut reject) => {
                reject.position = i;
                tracing::warn!(
                    entity = req.entity,
                    start_position = req.start_position,
                    position = i,
                    id = reject.id.as_deref().unwrap_or(""),
                    reason = %reject.reason,
                    intuit_tid = intuit_tid.map_or("", String::as_str),
                    "record_rejected"
                );
                rejects.push(reject);
            }
        }
    }
    Ok((records, rejects))
}

/// One item of a list (a page's or a CDC answer's) of `body` as a [`Record`], or why it is not
/// one (naming the field, prefixed by `at()`, only built for a reject; `position` is the
/// caller's to set).
pub(crate) fn decode_record(
    body: &Body,
    raw: &RawValue,
    at: impl FnOnce() -> String,
) -> Result<Record, RecordReject> {
    let de = &mut serde_json::Deserializer::from_str(raw.get());
    match serde_path_to_error::deserialize::<_, RecordMeta>(de) {
        Ok(meta) => Ok(Record {
            id: meta.id,
            create_time: meta.meta.create_time,
            last_updated_time: meta.meta.last_updated_time,
            txn_date: meta.txn_date,
            raw: RawJson::within(body, raw.get()),
        }),
        Err(e) => {
            let id = serde_json::from_str::<IdOnly>(raw.get())
                .ok()
                .and_then(|r| r.id);
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = at();
            let reason = if path == "." {
                format!("{at}: {inner}")
            } else {
                format!("{at}.{path}: {inner}")
            };
            Err(RecordReject {
                position: 0,
                id,
                raw: raw.to_owned(),
                reason,
            })
        }
    }
}

/// Decodes a COUNT answer.
pub(crate) fn decode_count(body: &[u8], intuit_tid: Option<&String>) -> Result<u64, Failure> {
    let map = envelope(body, intuit_tid)?;
    match counter(&map, "totalCount", intuit_tid)? {
        Some(n) => Ok(n),
        None if map.is_empty() => Ok(0),
        None => Err(malformed(
            "no totalCount in the answer to a COUNT query".into(),
            intuit_tid,
        )),
    }
}

/// An answer QBO sent that this client cannot use: a refusal, not worth a retry.
pub(crate) fn malformed(detail: String, intuit_tid: Option<&String>) -> Failure {
    (
        FailureClass::Rejected,
        QboError::Malformed {
            endpoint: Endpoint::Api,
            detail,
            class: FailureClass::Rejected,
            intuit_tid: intuit_tid.cloned(),
        },
    )
}

/// A `Fault` QBO put in an HTTP 200 answer (query, CDC and report bodies alike), classified as
/// if its status had said so.
pub(crate) fn fault_in_ok_body(body: FaultBody, intuit_tid: Option<&String>) -> Failure {
    let mut fault = body.into_fault();
    fault.intuit_tid = intuit_tid.cloned();
    let class = FailureClass::from_status(200, Some(&fault), None);
    (
        class,
        QboError::Fault {
            status: 200,
            fault: Box::new(fault),
            class,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn decode(
        body: &[u8],
        req: &PageRequest<'_>,
        tid: Option<&String>,
    ) -> Result<Decoded, Failure> {
        let body = Body::new(body.to_vec(), None).unwrap();
        decode_page(&body, body.text(), req, tid)
    }

    #[test]
    fn records_share_their_pages_body() {
        let text = r#"{"QueryResponse":{"Invoice":[
            {"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"},"Amt":1.10},
            {"Id":"2","MetaData":{"CreateTime":"2023-01-02T00:00:00Z","LastUpdatedTime":"2023-01-02T00:00:00Z"}}
        ],"startPosition":1,"maxResults":2}}"#;
        let body = Body::new(text.as_bytes().to_vec(), None).unwrap();
        let (recs, _) = decode_page(&body, body.text(), &req("Invoice"), None).unwrap();
        // Both records are slices of the one body: no copy per record.
        assert_eq!(Arc::strong_count(&body.0), 3);
        assert!(recs[0].raw.get().ends_with(r#""Amt":1.10}"#));
        let base = body.text().as_ptr() as usize;
        let at = recs[1].raw.get().as_ptr() as usize;
        assert!(at > base && at < base + text.len());
        drop(body);
        // The records keep the body alive.
        assert!(recs[1].raw.get().starts_with(r#"{"Id":"2""#));
        // Text that is not part of the body is copied.
        let other = Body::new(b"{}".to_vec(), None).unwrap();
        assert_eq!(RawJson::within(&other, "[1]").get(), "[1]");
        assert_eq!(format!("{}", RawJson::new("{\"a\":1}")), "{\"a\":1}");
    }

    #[test]
    fn a_page_counts_the_buffer_its_records_keep_alive_once() {
        let text = r#"{"QueryResponse":{"Invoice":[
            {"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"}},
            {"Id":"2","MetaData":{"CreateTime":"2023-01-02T00:00:00Z","LastUpdatedTime":"2023-01-02T00:00:00Z"}}
        ],"startPosition":1,"maxResults":2}}"#;
        // A buffer with room to spare, as a reused one has: its capacity is what is held.
        let mut bytes = Vec::with_capacity(100_000);
        bytes.extend_from_slice(text.as_bytes());
        let body = Body::new(bytes, None).unwrap();
        let (records, _) = decode_page(&body, body.text(), &req("Invoice"), None).unwrap();
        let page = |records: Vec<Record>| Page {
            page_number: 1,
            start_position: 1,
            max_results: 2,
            query: String::new(),
            records,
            rejects: Vec::new(),
            intuit_tid: None,
            latency: Duration::ZERO,
        };
        let one = page(records.clone()).held_bytes();
        assert!(
            (100_000..101_000).contains(&one),
            "the body once, not per record: {one}"
        );
        // Records of their own each hold their own text.
        let owned: Vec<Record> = records
            .iter()
            .map(|r| Record {
                raw: RawJson::new(r.raw.get()),
                ..r.clone()
            })
            .collect();
        let own = page(owned).held_bytes();
        assert!(own < 1_000, "{own}");
        assert_eq!(page(Vec::new()).held_bytes(), 0);
    }

    fn req(entity: &str) -> PageRequest<'_> {
        PageRequest {
            entity,
            start_position: 1,
            max_results: 1000,
        }
    }

    const INVOICE: &str = r#"{"Id":"130","SyncToken":"0","domain":"QBO","TxnDate":"2023-01-31","TotalAmt":362.07,"Balance":1e2,"Line":[{"Amount":0.1000000000000000055511151231257827}],"MetaData":{"CreateTime":"2023-01-30T16:00:00-08:00","LastUpdatedTime":"2023-03-12T03:30:00-0700"}}"#;

    #[test]
    fn keeps_raw_bytes_and_parses_meta_in_utc() {
        let body = format!(
            r#"{{"QueryResponse":{{"Invoice":[{INVOICE}],"startPosition":1,"maxResults":1}},"time":"2015-07-29T09:29:56.229-07:00"}}"#
        );
        let (recs, rejects) = decode(body.as_bytes(), &req("Invoice"), None).unwrap();
        assert!(rejects.is_empty());
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.id, "130");
        assert_eq!(r.raw.get(), INVOICE, "raw text must be byte-identical");
        assert_eq!(r.create_time, datetime!(2023-01-31 00:00:00 UTC));
        assert_eq!(r.last_updated_time, datetime!(2023-03-12 10:30:00 UTC));
        assert_eq!(r.txn_date, Some(date!(2023 - 01 - 31)));
    }

    #[test]
    fn entity_key_is_case_insensitive_and_empty_pages_are_empty() {
        let body = br#"{"QueryResponse":{"customer":[{"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"}}]}}"#;
        let (recs, _) = decode(body, &req("Customer"), None).unwrap();
        assert_eq!(recs[0].txn_date, None);
        assert!(
            decode(
                br#"{"QueryResponse":{},"time":"x"}"#,
                &req("Customer"),
                None
            )
            .unwrap()
            .0
            .is_empty()
        );
        let err = decode(br#"{"QueryResponse":{"Item":[]}}"#, &req("Customer"), None).unwrap_err();
        assert_eq!(err.0, FailureClass::Rejected);
    }

    #[test]
    fn an_unusable_item_is_rejected_alone_and_its_reason_names_the_field() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"}},{"Id":"2","MetaData":{"CreateTime":"yesterday","LastUpdatedTime":"2023-01-01T00:00:00Z"}},{"Id":7,"MetaData":{}},{"Id":"8"}]}}"#;
        let (recs, rejects) = decode(body, &req("Invoice"), None).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, "1");
        let seen: Vec<(usize, Option<&str>)> = rejects
            .iter()
            .map(|r| (r.position, r.id.as_deref()))
            .collect();
        assert_eq!(seen, vec![(1, Some("2")), (2, None), (3, Some("8"))]);
        assert!(
            rejects[0]
                .reason
                .starts_with("QueryResponse.Invoice[1].MetaData.CreateTime: "),
            "{}",
            rejects[0].reason
        );
        assert!(
            rejects[1]
                .reason
                .starts_with("QueryResponse.Invoice[2].Id: ")
        );
        assert!(
            rejects[2]
                .reason
                .starts_with("QueryResponse.Invoice[3]: missing field `MetaData`")
        );
        assert_eq!(rejects[2].raw.get(), r#"{"Id":"8"}"#);
    }

    #[test]
    fn items_keep_qbo_order_across_records_and_rejects() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"8"},{"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"}},{"x":1}]}}"#;
        let (records, rejects) = decode(body, &req("Invoice"), None).unwrap();
        let page = Page {
            page_number: 1,
            start_position: 1,
            max_results: 3,
            query: String::new(),
            records,
            rejects,
            intuit_tid: None,
            latency: Duration::ZERO,
        };
        let keys: Vec<&str> = page.items().map(|i| i.key()).collect();
        assert_eq!(keys, vec!["8", "1", r#"{"x":1}"#]);
        assert_eq!(page.len(), 3);
        assert!(!page.is_last());
    }

    #[test]
    fn truncated_and_malformed_bodies_are_retryable_classes() {
        let full = format!(r#"{{"QueryResponse":{{"Invoice":[{INVOICE}]}}}}"#);
        let cut = &full.as_bytes()[..full.len() / 2];
        assert_eq!(
            decode(cut, &req("Invoice"), None).unwrap_err().0,
            FailureClass::TruncatedBody
        );
        assert_eq!(
            decode(b"<html>oops</html>", &req("Invoice"), None)
                .unwrap_err()
                .0,
            FailureClass::Malformed
        );
        assert_eq!(
            decode(b"", &req("Invoice"), None).unwrap_err().0,
            FailureClass::TruncatedBody
        );
    }

    #[test]
    fn fault_inside_200() {
        let body = br#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"QueryParserError: Encountered \"<EOF>\"","code":"4000"}],"type":"ValidationFault"},"time":"2015-07-29T09:29:56.229-07:00"}"#;
        let tid = Some("tid-1".to_owned());
        let (class, err) = decode(body, &req("Invoice"), tid.as_ref()).unwrap_err();
        assert_eq!(class, FailureClass::Validation);
        assert_eq!(err.fault().unwrap().code(), Some("4000"));
        assert_eq!(err.intuit_tid(), Some("tid-1"));
        let system = br#"{"Fault":{"Error":[{"Message":"An application error has occurred","code":"10000"}],"type":"SystemFault"}}"#;
        assert_eq!(
            decode_count(system, None).unwrap_err().0,
            FailureClass::InternalError
        );
    }

    #[test]
    fn counts() {
        assert_eq!(
            decode_count(br#"{"QueryResponse":{"totalCount":412},"time":1}"#, None).unwrap(),
            412
        );
        assert_eq!(decode_count(br#"{"QueryResponse":{}}"#, None).unwrap(), 0);
        assert!(decode_count(br#"{"QueryResponse":{"totalCount":"x"}}"#, None).is_err());
        assert!(decode_count(br#"{"time":1}"#, None).is_err());
    }

    #[test]
    fn start_position_echo_and_oversized_pages() {
        let body = format!(
            r#"{{"QueryResponse":{{"Invoice":[{INVOICE}],"startPosition":5,"maxResults":1}}}}"#
        );
        assert!(decode(body.as_bytes(), &req("Invoice"), None).is_err());
        let body = format!(r#"{{"QueryResponse":{{"Invoice":[{INVOICE},{INVOICE}]}}}}"#);
        let small = PageRequest {
            entity: "Invoice",
            start_position: 1,
            max_results: 1,
        };
        assert!(decode(body.as_bytes(), &small, None).is_err());
    }

    #[test]
    fn page_numbers() {
        assert_eq!(page_number(1, 1000), 1);
        assert_eq!(page_number(1001, 1000), 2);
        assert_eq!(page_number(2001, 1000), 3);
        assert_eq!(page_number(101, 100), 2);
        assert_eq!(page_number(1, 0), 1);
    }
}
