//! The Reports API (`GET /v3/company/{realm}/reports/{name}`): a report's JSON exactly as
//! QBO returned it, through the same request loop as every call (limits, 401 refresh,
//! retries, counted in [`QboClient::api_calls`]).
//!
//! Only the envelope is checked here (a JSON object with a `Header`, or QBO's `Fault`); the
//! rows are the caller's to read. Report names are QBO's (`ProfitAndLoss`, `TransactionList`
//! …) and must be plain alphanumeric words, so a name cannot change the URL's path.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument;

use super::QboClient;
use super::request::Call;
use crate::error::{Endpoint, QboError};
use crate::fault::FaultBody;
use crate::page::{Failure, fault_in_ok_body, malformed};
use crate::query::QueryError;
use crate::retry::FailureClass;

/// A report as QBO returned it.
#[derive(Debug, Clone)]
pub struct ReportJson {
    /// The report's name as asked for.
    pub name: String,
    /// The whole answer's JSON text (`Header`, `Columns`, `Rows`).
    pub raw: Box<RawValue>,
    /// Intuit's transaction id of the answer.
    pub intuit_tid: Option<String>,
    /// Time to the answer.
    pub latency: Duration,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Header", borrow, default)]
    header: Option<&'a RawValue>,
    #[serde(rename = "Fault", alias = "fault", default)]
    fault: Option<FaultBody>,
}

/// Decodes a report answer: QBO's fault (even with HTTP 200), or the body kept as text.
pub(crate) fn decode_report(
    body: &[u8],
    intuit_tid: Option<&String>,
) -> Result<Box<RawValue>, Failure> {
    let env: Envelope<'_> = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("report answer: {e}"), intuit_tid))?;
    if let Some(f) = env.fault {
        return Err(fault_in_ok_body(f, intuit_tid));
    }
    if env.header.is_none() {
        return Err(malformed(
            "no Header in the report answer".into(),
            intuit_tid,
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| malformed(format!("report answer: {e}"), intuit_tid))?;
    RawValue::from_string(text.to_owned())
        .map_err(|e| malformed(format!("report answer: {e}"), intuit_tid))
}

impl QboClient {
    /// The report `name` with URL parameters `params` (`start_date`, `end_date`,
    /// `accounting_method`, …; `minorversion` is added).
    ///
    /// # Errors
    /// [`QueryError::InvalidEntity`] for a name that is not one alphanumeric word; otherwise
    /// as [`QboClient::query_page`] (a fault in the body, even with HTTP 200, is an error).
    pub async fn report(
        &self,
        name: &str,
        params: &[(&str, String)],
    ) -> Result<ReportJson, QboError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(QueryError::InvalidEntity {
                entity: name.to_owned(),
            }
            .into());
        }
        let url = self
            .inner
            .query_url
            .join(&format!("reports/{name}"))
            .map_err(|e| QboError::Malformed {
                endpoint: Endpoint::Api,
                detail: format!("report URL: {e}"),
                class: FailureClass::Rejected,
                intuit_tid: None,
            })?;
        let span = tracing::debug_span!("qbo_report", realm = self.inner.realm_id.as_str(), name);
        let answer = self
            .call(&Call::Get { url: &url, params }, |body, tid| {
                decode_report(body.bytes(), tid)
            })
            .instrument(span)
            .await?;
        Ok(ReportJson {
            name: name.to_owned(),
            raw: answer.value,
            intuit_tid: answer.intuit_tid,
            latency: answer.latency,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_report_is_kept_as_text_and_faults_are_errors() {
        let body = br#"{"Header":{"ReportName":"ProfitAndLoss"},"Columns":{},"Rows":{}}"#;
        let raw = decode_report(body, None).unwrap();
        assert_eq!(raw.get().as_bytes(), body);
        let fault = br#"{"Fault":{"Error":[{"Message":"m","Detail":"d","code":"2020"}],"type":"ValidationFault"}}"#;
        let (class, _) = decode_report(fault, None).unwrap_err();
        assert_eq!(class, FailureClass::Validation);
        assert!(decode_report(b"{}", None).is_err());
        assert!(decode_report(b"<xml/>", None).is_err());
    }
}
