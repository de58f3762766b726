//! Integration tests of raw-sink against a real PostgreSQL (`DATABASE_URL`); every test works
//! in its own fresh database.
#![allow(clippy::unwrap_used)]

mod claims;
mod config;
mod connect;
mod ledger;
mod migrate;
mod quarantine;
mod tls;
mod tokens;
mod tombstones;
mod upsert;

use raw_sink::PageMeta;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::macros::datetime;

pub(crate) const REALM: &str = "9341453050555432";

pub(crate) fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

pub(crate) fn day(n: i64) -> OffsetDateTime {
    datetime!(2024-01-01 0:00 UTC) + time::Duration::days(n)
}

pub(crate) fn meta(page_number: i32) -> PageMeta {
    PageMeta {
        realm_id: REALM.to_owned(),
        window_start: day(0),
        window_end: day(1),
        page_number,
        page_size: 1000,
        request_payload: format!(
            "SELECT * FROM Customer WHERE MetaData.CreateTime >= '2024-01-01T00:00:00Z' \
             STARTPOSITION {} MAXRESULTS 1000",
            (page_number - 1) * 1000 + 1
        ),
    }
}
