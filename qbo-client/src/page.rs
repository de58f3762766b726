//! Query responses: pages of raw records and COUNT results.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::{Date, OffsetDateTime};

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
    /// The response's `intuit_tid` header.
    pub intuit_tid: Option<String>,
    /// Time from sending the request to the last byte of the answer (successful attempt).
    pub latency: Duration,
}

impl Page {
    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the page has no records.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether this is the last page (shorter than MAXRESULTS).
    #[must_use]
    pub fn is_last(&self) -> bool {
        self.records.len() < self.max_results as usize
    }
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
    pub raw: Box<RawValue>,
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
        let mut fault = f.into_fault();
        fault.intuit_tid = intuit_tid.cloned();
        let class = FailureClass::from_status(200, Some(&fault), None);
        return Err((
            class,
            QboError::Fault {
                status: 200,
                fault: Box::new(fault),
                class,
            },
        ));
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

fn decode_failure(
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

/// Decodes a page body into records (raw JSON kept byte for byte).
pub(crate) fn decode_page(
    body: &[u8],
    req: &PageRequest<'_>,
    intuit_tid: Option<&String>,
) -> Result<Vec<Record>, Failure> {
    let map = envelope(body, intuit_tid)?;
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
        return Ok(Vec::new());
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
    for (i, raw) in items.into_iter().enumerate() {
        let de = &mut serde_json::Deserializer::from_str(raw.get());
        let meta: RecordMeta = serde_path_to_error::deserialize(de)
            .map_err(|e| decode_failure(e, intuit_tid, Some(&format!("{prefix}[{i}]"))))?;
        records.push(Record {
            id: meta.id,
            create_time: meta.meta.create_time,
            last_updated_time: meta.meta.last_updated_time,
            txn_date: meta.txn_date,
            raw: raw.to_owned(),
        });
    }
    Ok(records)
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

fn malformed(detail: String, intuit_tid: Option<&String>) -> Failure {
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

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
        let recs = decode_page(body.as_bytes(), &req("Invoice"), None).unwrap();
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
        let recs = decode_page(body, &req("Customer"), None).unwrap();
        assert_eq!(recs[0].txn_date, None);
        assert!(
            decode_page(
                br#"{"QueryResponse":{},"time":"x"}"#,
                &req("Customer"),
                None
            )
            .unwrap()
            .is_empty()
        );
        let err =
            decode_page(br#"{"QueryResponse":{"Item":[]}}"#, &req("Customer"), None).unwrap_err();
        assert_eq!(err.0, FailureClass::Rejected);
    }

    #[test]
    fn schema_drift_names_the_field() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"1","MetaData":{"CreateTime":"2023-01-01T00:00:00Z","LastUpdatedTime":"2023-01-01T00:00:00Z"}},{"Id":"2","MetaData":{"CreateTime":"yesterday","LastUpdatedTime":"2023-01-01T00:00:00Z"}}]}}"#;
        let (class, err) = decode_page(body, &req("Invoice"), None).unwrap_err();
        assert_eq!(class, FailureClass::Rejected);
        match &err {
            QboError::Decode { path, .. } => {
                assert_eq!(path, "QueryResponse.Invoice[1].MetaData.CreateTime")
            }
            other => panic!("{other:?}"),
        }
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":7,"MetaData":{}}]}}"#;
        match decode_page(body, &req("Invoice"), None).unwrap_err().1 {
            QboError::Decode { path, .. } => assert_eq!(path, "QueryResponse.Invoice[0].Id"),
            other => panic!("{other:?}"),
        }
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"7"}]}}"#;
        match decode_page(body, &req("Invoice"), None).unwrap_err().1 {
            QboError::Decode { path, .. } => assert_eq!(path, "QueryResponse.Invoice[0]"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_malformed_bodies_are_retryable_classes() {
        let full = format!(r#"{{"QueryResponse":{{"Invoice":[{INVOICE}]}}}}"#);
        let cut = &full.as_bytes()[..full.len() / 2];
        assert_eq!(
            decode_page(cut, &req("Invoice"), None).unwrap_err().0,
            FailureClass::TruncatedBody
        );
        assert_eq!(
            decode_page(b"<html>oops</html>", &req("Invoice"), None)
                .unwrap_err()
                .0,
            FailureClass::Malformed
        );
        assert_eq!(
            decode_page(b"", &req("Invoice"), None).unwrap_err().0,
            FailureClass::TruncatedBody
        );
    }

    #[test]
    fn fault_inside_200() {
        let body = br#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"QueryParserError: Encountered \"<EOF>\"","code":"4000"}],"type":"ValidationFault"},"time":"2015-07-29T09:29:56.229-07:00"}"#;
        let tid = Some("tid-1".to_owned());
        let (class, err) = decode_page(body, &req("Invoice"), tid.as_ref()).unwrap_err();
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
        assert!(decode_page(body.as_bytes(), &req("Invoice"), None).is_err());
        let body = format!(r#"{{"QueryResponse":{{"Invoice":[{INVOICE},{INVOICE}]}}}}"#);
        let small = PageRequest {
            entity: "Invoice",
            start_position: 1,
            max_results: 1,
        };
        assert!(decode_page(body.as_bytes(), &small, None).is_err());
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
