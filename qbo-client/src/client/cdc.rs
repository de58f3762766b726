//! Change Data Capture (`GET /v3/company/{realm}/cdc`): the records of some entities changed
//! since a time, deleted ones as `{"status":"Deleted","Id":..}` stubs, and the re-read by `Id`
//! that confirms a deletion before anyone trusts it.
//!
//! QBO's facts honoured here: at most [`CDC_MAX_AGE`] back, at most [`CDC_MAX_OBJECTS`]
//! objects an answer (no paging: a caller that gets that many must ask again from a later
//! time), several entities per call, an entity without changes answered as `{}` (and a call
//! without any as `"QueryResponse":[{}]`), and `Deleted` reported for records that were merely
//! updated, hence [`QboClient::read_ids`].

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tracing::Instrument;

use super::QboClient;
use super::request::Call;
use crate::body::Body;
use crate::error::{Endpoint, QboError};
use crate::fault::FaultBody;
use crate::page::{Failure, Record, RecordReject, decode_record, fault_in_ok_body, malformed};
use crate::query::{MAX_RESULTS_LIMIT, Op, Query, QueryError};
use crate::retry::FailureClass;
use crate::timefmt::{parse_datetime, render_utc};

/// How far back CDC answers (30 days); an older `changedSince` is refused by QBO.
pub const CDC_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
/// Most objects one CDC answer holds, every entity together; an answer that holds this many
/// may have left some out.
pub const CDC_MAX_OBJECTS: usize = 1000;
/// Ids per re-read query of [`QboClient::read_ids`] (keeps the text short enough for a GET).
const IDS_PER_READ: usize = 100;

/// One CDC answer.
#[derive(Debug, Clone)]
pub struct CdcResponse {
    /// Per entity named in the answer, in its order (entities without changes may be absent).
    pub entities: Vec<CdcEntity>,
    /// The answer's `time` (QBO's clock when it answered), when present and readable.
    pub time: Option<OffsetDateTime>,
    /// The `changedSince` sent.
    pub changed_since: OffsetDateTime,
    /// The response's `intuit_tid` header.
    pub intuit_tid: Option<String>,
    /// Time from sending the request to the last byte of the answer.
    pub latency: Duration,
}

impl CdcResponse {
    /// Objects in the answer, every entity together (records, deleted stubs and rejects).
    #[must_use]
    pub fn objects(&self) -> usize {
        self.entities.iter().map(CdcEntity::objects).sum()
    }

    /// Whether the answer reached [`CDC_MAX_OBJECTS`] (so it may be incomplete).
    #[must_use]
    pub fn is_capped(&self) -> bool {
        self.objects() >= CDC_MAX_OBJECTS
    }

    /// The part of one entity (its name compared case-insensitively).
    #[must_use]
    pub fn entity(&self, name: &str) -> Option<&CdcEntity> {
        self.entities
            .iter()
            .find(|e| e.entity.eq_ignore_ascii_case(name))
    }
}

/// The changes of one entity in a CDC answer.
#[derive(Debug, Clone, Default)]
pub struct CdcEntity {
    /// The entity's name as QBO wrote it (e.g. `Invoice`).
    pub entity: String,
    /// Records changed (created or updated), in QBO's order.
    pub records: Vec<Record>,
    /// Records QBO reports deleted (to be confirmed with [`QboClient::read_ids`]).
    pub deleted: Vec<CdcDeleted>,
    /// Items that are neither a usable record nor a deleted stub, kept as received.
    pub rejects: Vec<RecordReject>,
}

impl CdcEntity {
    /// Objects of this entity in the answer.
    #[must_use]
    pub fn objects(&self) -> usize {
        self.records.len() + self.deleted.len() + self.rejects.len()
    }
}

/// A `{"domain":"QBO","status":"Deleted","Id":..}` stub of a CDC answer.
#[derive(Debug, Clone)]
pub struct CdcDeleted {
    /// The record's `Id`.
    pub id: String,
    /// `MetaData.LastUpdatedTime` of the stub (when QBO deleted it), in UTC, when present.
    pub deleted_at: Option<OffsetDateTime>,
    /// The stub's exact JSON text.
    pub raw: Box<RawValue>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "CDCResponse", borrow, default)]
    cdc: Option<Vec<CdcPart<'a>>>,
    #[serde(rename = "time", borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<FaultBody>,
}

#[derive(Deserialize)]
struct CdcPart<'a> {
    #[serde(rename = "QueryResponse", borrow, default)]
    query_response: Vec<std::collections::BTreeMap<String, &'a RawValue>>,
}

#[derive(Deserialize)]
struct StubMeta {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "status", default)]
    status: Option<String>,
    #[serde(rename = "MetaData", default)]
    meta: Option<StubTimes>,
}

#[derive(Deserialize)]
struct StubTimes {
    #[serde(rename = "LastUpdatedTime", default)]
    last_updated_time: Option<String>,
}

/// A decoded CDC answer: its entities and QBO's `time`.
pub(crate) type DecodedCdc = (Vec<CdcEntity>, Option<OffsetDateTime>);

/// Decodes a CDC body: every `QueryResponse` element's entity lists (`startPosition`,
/// `maxResults`, `totalCount` ignored), stubs with `"status":"Deleted"` apart.
pub(crate) fn decode_cdc(body: &Body, intuit_tid: Option<&String>) -> Result<DecodedCdc, Failure> {
    let env: Envelope<'_> = serde_json::from_str(body.text())
        .map_err(|e| malformed(format!("CDC answer: {e}"), intuit_tid))?;
    if let Some(f) = env.fault {
        return Err(fault_in_ok_body(f, intuit_tid));
    }
    let Some(parts) = env.cdc else {
        return Err(malformed("no CDCResponse in the answer".into(), intuit_tid));
    };
    let time = env
        .time
        .and_then(|t| serde_json::from_str::<String>(t.get()).ok())
        .and_then(|t| parse_datetime(&t));
    let mut out: Vec<CdcEntity> = Vec::new();
    for part in parts {
        for map in part.query_response {
            for (key, list) in map {
                if matches!(key.as_str(), "startPosition" | "maxResults" | "totalCount") {
                    continue;
                }
                let items: Vec<&RawValue> = serde_json::from_str(list.get()).map_err(|e| {
                    malformed(format!("CDC list `{key}` is not an array: {e}"), intuit_tid)
                })?;
                let pos = match out.iter().position(|e| e.entity == key) {
                    Some(p) => p,
                    None => {
                        out.push(CdcEntity {
                            entity: key.clone(),
                            ..CdcEntity::default()
                        });
                        out.len() - 1
                    }
                };
                let entity = &mut out[pos];
                for (i, raw) in items.into_iter().enumerate() {
                    let stub = serde_json::from_str::<StubMeta>(raw.get()).ok();
                    if let Some(stub) = stub.filter(|s| {
                        s.status
                            .as_deref()
                            .is_some_and(|v| v.eq_ignore_ascii_case("deleted"))
                    }) {
                        entity.deleted.push(CdcDeleted {
                            id: stub.id,
                            deleted_at: stub
                                .meta
                                .and_then(|m| m.last_updated_time)
                                .and_then(|t| parse_datetime(&t)),
                            raw: raw.to_owned(),
                        });
                        continue;
                    }
                    match decode_record(body, raw, || {
                        format!("CDCResponse.QueryResponse.{key}[{i}]")
                    }) {
                        Ok(r) => entity.records.push(r),
                        Err(mut reject) => {
                            reject.position = i;
                            entity.rejects.push(reject);
                        }
                    }
                }
            }
        }
    }
    Ok((out, time))
}

/// The `time` of an answer (QBO's clock), when present and readable.
fn answer_time(body: &[u8]) -> Option<OffsetDateTime> {
    #[derive(Deserialize)]
    struct Time<'a> {
        #[serde(borrow, default)]
        time: Option<&'a RawValue>,
    }
    let t: Time<'_> = serde_json::from_slice(body).ok()?;
    let text: String = serde_json::from_str(t.time?.get()).ok()?;
    parse_datetime(&text)
}

impl QboClient {
    /// [`QboClient::count`], with the answer's `time`: QBO's clock when it answered (what a
    /// sync measures CDC's 30-day horizon on, whatever the local clock says).
    ///
    /// # Errors
    /// As [`QboClient::count`].
    pub async fn count_with_time(
        &self,
        query: &Query,
    ) -> Result<(u64, Option<OffsetDateTime>), QboError> {
        let q = if query.is_count() {
            query.clone()
        } else {
            query.to_count()
        };
        let span = tracing::debug_span!(
            "qbo_count",
            realm = self.inner.realm_id.as_str(),
            entity = q.entity()
        );
        let answer = self
            .run(&q.render(), |body, tid| {
                crate::page::decode_count(body.bytes(), tid).map(|n| (n, answer_time(body.bytes())))
            })
            .instrument(span)
            .await?;
        Ok(answer.value)
    }

    /// The changes of `entities` since `changed_since` (one CDC call, every entity together):
    /// changed records and `Deleted` stubs. An answer that [`is_capped`](CdcResponse::is_capped)
    /// may be incomplete: ask again from a later time, or for fewer entities.
    ///
    /// # Errors
    /// [`QueryError::InvalidEntity`] for an empty list or a name that is not a plain entity
    /// name; otherwise as [`QboClient::query_page`] (a `changedSince` older than 30 days is
    /// QBO's validation fault).
    pub async fn cdc(
        &self,
        entities: &[&str],
        changed_since: OffsetDateTime,
    ) -> Result<CdcResponse, QboError> {
        if let Some(bad) = entities
            .iter()
            .find(|e| e.is_empty() || !e.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(|e| (*e).to_owned())
            .or_else(|| entities.is_empty().then(String::new))
        {
            return Err(QueryError::InvalidEntity { entity: bad }.into());
        }
        let url = self
            .inner
            .query_url
            .join("cdc")
            .map_err(|e| QboError::Malformed {
                endpoint: Endpoint::Api,
                detail: format!("CDC URL: {e}"),
                class: FailureClass::Rejected,
                intuit_tid: None,
            })?;
        let params = [
            ("entities", entities.join(",")),
            ("changedSince", render_utc(changed_since)),
        ];
        let span = tracing::debug_span!(
            "qbo_cdc",
            realm = self.inner.realm_id.as_str(),
            entities = params[0].1.as_str()
        );
        let answer = self
            .call(
                &Call::Get {
                    url: &url,
                    params: &params,
                },
                decode_cdc,
            )
            .instrument(span)
            .await?;
        let (entities, time) = answer.value;
        Ok(CdcResponse {
            entities,
            time,
            changed_since,
            intuit_tid: answer.intuit_tid,
            latency: answer.latency,
        })
    }

    /// Which of `ids` of `entity` QBO still returns, read by `SELECT * FROM entity WHERE Id IN
    /// (…)` in batches of 100 (`Active IN (true, false)` added when `include_inactive`, as a
    /// name list needs). An id absent from the answer is gone from `/query`: a CDC `Deleted`
    /// stub is trusted only then.
    ///
    /// # Errors
    /// As [`QboClient::query_page`].
    pub async fn read_ids(
        &self,
        entity: &str,
        ids: &[&str],
        include_inactive: bool,
    ) -> Result<BTreeSet<String>, QboError> {
        let mut present = BTreeSet::new();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        let unique: Vec<&str> = unique.into_iter().collect();
        for batch in unique.chunks(IDS_PER_READ) {
            let list: Vec<String> = batch.iter().map(|s| (*s).to_owned()).collect();
            let mut q = Query::select(entity)
                .filter("Id", Op::In, list)
                .max_results(MAX_RESULTS_LIMIT);
            if include_inactive {
                q = q.include_inactive();
            }
            let page = self.query_page(&q.build()?).await?;
            present.extend(page.records.into_iter().map(|r| r.id));
            present.extend(page.rejects.into_iter().filter_map(|r| r.id));
        }
        Ok(present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8], tid: Option<&String>) -> Result<DecodedCdc, Failure> {
        decode_cdc(&Body::new(body.to_vec(), None).unwrap(), tid)
    }

    #[test]
    fn records_and_deleted_stubs_per_entity() {
        let body = br#"{"CDCResponse":[{"QueryResponse":[{"Invoice":[
            {"Id":"7","SyncToken":"2","MetaData":{"CreateTime":"2024-01-01T10:00:00-08:00","LastUpdatedTime":"2024-01-02T10:00:00-08:00"},"TotalAmt":639.00},
            {"domain":"QBO","status":"Deleted","Id":"979","MetaData":{"LastUpdatedTime":"2024-01-03T10:00:00-08:00"}},
            {"Id":"8"}
        ],"startPosition":1,"maxResults":3},{}]}],"time":"2024-01-04T09:00:00.123-08:00"}"#;
        let (entities, time) = decode(body, None).unwrap();
        assert_eq!(entities.len(), 1);
        let inv = &entities[0];
        assert_eq!(inv.entity, "Invoice");
        assert_eq!(inv.records.len(), 1);
        assert!(inv.records[0].raw.get().contains("639.00"));
        assert_eq!(inv.deleted[0].id, "979");
        assert_eq!(
            inv.deleted[0].deleted_at,
            Some(time::macros::datetime!(2024-01-03 18:00 UTC))
        );
        assert!(inv.deleted[0].raw.get().contains("\"status\":\"Deleted\""));
        assert_eq!(inv.rejects.len(), 1);
        assert_eq!(inv.rejects[0].position, 2);
        assert_eq!(inv.objects(), 3);
        assert_eq!(
            time,
            Some(time::macros::datetime!(2024-01-04 17:00:00.123 UTC))
        );
    }

    #[test]
    fn the_empty_forms_are_no_changes() {
        for body in [
            &br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"2024-01-04T09:00:00-08:00"}"#[..],
            br#"{"CDCResponse":[{"QueryResponse":[{},{}]}]}"#,
            br#"{"CDCResponse":[{}]}"#,
        ] {
            let (entities, _) = decode(body, None).unwrap();
            assert!(entities.iter().all(|e| e.objects() == 0), "{entities:?}");
        }
    }

    #[test]
    fn faults_and_garbage_are_errors() {
        let fault = br#"{"Fault":{"Error":[{"Message":"m","Detail":"changedSince too old","code":"2020"}],"type":"ValidationFault"}}"#;
        assert!(matches!(
            decode(fault, None),
            Err((_, QboError::Fault { .. }))
        ));
        assert!(decode(b"{\"QueryResponse\":{}}", None).is_err());
        assert!(decode(b"not json", None).is_err());
    }
}
