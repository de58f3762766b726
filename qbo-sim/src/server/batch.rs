//! `POST /v3/company/{realm}/batch`: query items only (other operations answer a per-item
//! fault). A batch passes the request gate once, so it counts once toward the requests-per-
//! window budget and the concurrency cap, and once toward the batch budget; its items are
//! counted in the statistics (`batch_items`, and `queries` / `count_queries` as single queries
//! are). The 1,000-object cap follows [`BatchObjectCap`]; [`BatchItemFault`]s answer the
//! items they target with QBO's per-item `Fault`, the other items normally.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::api::query_response_json;
use super::respond::{self, JSON};
use super::{Shared, Tag, gate, lock, tagged};
use crate::config::{BATCH_OBJECT_CAP, BatchItemFaultKind, BatchObjectCap};
use crate::data;
use crate::query::compile::{CompileOptions, compile};
use crate::realm::Outcome;
use crate::tz;

#[derive(serde::Deserialize)]
struct BatchRequest {
    #[serde(rename = "BatchItemRequest")]
    items: Vec<BatchItem>,
}

#[derive(serde::Deserialize)]
struct BatchItem {
    #[serde(rename = "bId")]
    bid: String,
    #[serde(rename = "Query")]
    query: Option<String>,
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

impl Shared {
    /// The fault for the item at `position` with query `query`, if one targets it; uses up one
    /// of that fault's items.
    fn take_item_fault(&self, position: usize, query: Option<&str>) -> Option<BatchItemFaultKind> {
        let mut faults = lock(&self.item_faults);
        let i = faults.iter().position(|f| f.matches(position, query))?;
        let kind = faults[i].kind;
        match faults[i].times {
            0 => {}
            1 => {
                faults.remove(i);
            }
            _ => faults[i].times -= 1,
        }
        Some(kind)
    }
}

/// How many objects an item may still answer: `served` is what the batch's earlier items
/// answered.
fn room(cap: BatchObjectCap, served: usize) -> usize {
    match cap {
        BatchObjectCap::PerItem => BATCH_OBJECT_CAP,
        BatchObjectCap::PerBatch => BATCH_OBJECT_CAP.saturating_sub(served),
        BatchObjectCap::Off => usize::MAX,
    }
}

/// `POST /v3/company/{realm}/batch`.
pub(crate) async fn batch(
    State(shared): State<Arc<Shared>>,
    Path(realm_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut tag = Tag::new("batch");
    tag.query = Some(String::from_utf8_lossy(&body).into_owned());
    let mut g = match gate(&shared, &realm_id, &headers, tag).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let s = shared.settings();
    if !shared.batch_ok(&realm_id, &s) {
        lock(&shared.stats).stats.throttled_batch += 1;
        let mut tag = g.tag.clone();
        tag.fault = Some("batch_rate_limit".into());
        return tagged(respond::throttle(&s.quirks), tag);
    }
    let req: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let tag = g.tag.clone();
            let r = respond::fault(
                StatusCode::BAD_REQUEST,
                true,
                "ValidationFault",
                "2500",
                "Invalid Request",
                &format!("malformed batch request: {e}"),
            );
            return tagged(r, tag);
        }
    };
    let max = usize::try_from(s.batch_max_items).unwrap_or(usize::MAX);
    if (max > 0 && req.items.len() > max) || req.items.is_empty() {
        let tag = g.tag.clone();
        let most = if max > 0 {
            max.to_string()
        } else {
            "any number of".to_string()
        };
        let r = respond::fault(
            StatusCode::BAD_REQUEST,
            true,
            "ValidationFault",
            "2500",
            "Invalid Request",
            &format!("a batch holds 1 to {most} items, got {}", req.items.len()),
        );
        return tagged(r, tag);
    }
    let opts = CompileOptions {
        clamp_max_results: s.quirks.clamp_max_results,
    };
    let realm = Arc::clone(&g.realm);
    let include_total = s.quirks.include_total_count;
    let cap = s.batch_object_cap;
    let shared2 = Arc::clone(&shared);
    let built = tokio::task::spawn_blocking(move || {
        let mut out = String::from("{\"BatchItemResponse\":[");
        let mut served = 0usize;
        let mut faulted = false;
        for (i, item) in req.items.iter().enumerate() {
            lock(&shared2.stats).stats.batch_items += 1;
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"bId\":");
            data::js(&mut out, &item.bid);
            out.push(',');
            if let Some(kind) = shared2.take_item_fault(i, item.query.as_deref()) {
                {
                    let mut st = lock(&shared2.stats);
                    st.stats.batch_item_faults += 1;
                    st.stats.faults_injected += 1;
                }
                faulted = true;
                push_injected_fault(&mut out, kind);
                out.push('}');
                continue;
            }
            let Some(q) = &item.query else {
                let op = item.other.keys().next().cloned().unwrap_or_default();
                push_item_fault(
                    &mut out,
                    "ValidationFault",
                    "2500",
                    "Unsupported operation",
                    &format!("the simulator answers Query batch items only, not {op}"),
                );
                out.push('}');
                continue;
            };
            match compile(q, opts) {
                Err(e) => push_item_fault(
                    &mut out,
                    "ValidationFault",
                    e.code(),
                    e.message(),
                    &e.detail(),
                ),
                Ok(plan) => {
                    {
                        let mut st = lock(&shared2.stats);
                        if plan.count {
                            st.stats.count_queries += 1;
                        } else {
                            st.stats.queries += 1;
                        }
                    }
                    let mut outcome = realm.execute(&plan);
                    if let Outcome::Rows(rows) = &mut outcome {
                        let room = room(cap, served);
                        if rows.len() > room {
                            rows.truncate(room);
                            lock(&shared2.stats).stats.batch_items_truncated += 1;
                        }
                        served += rows.len();
                    }
                    out.push_str("\"QueryResponse\":");
                    query_response_json(&realm, &plan, &outcome, include_total, &mut out);
                }
            }
            out.push('}');
        }
        out.push_str("],\"time\":\"");
        out.push_str(&tz::pacific_millis(realm.clock.now()));
        out.push_str("\"}");
        (out, served as u64, faulted)
    })
    .await;
    match built {
        Ok((body, rows, faulted)) => {
            lock(&shared.stats).stats.rows_served += rows;
            shared.row_latency(&s, rows).await;
            if faulted && g.tag.fault.is_none() {
                g.tag.fault = Some("batch_item_fault".into());
            }
            g.finish(JSON, body)
        }
        Err(e) => {
            tracing::error!(error = %e, "batch task failed");
            let tag = g.tag.clone();
            tagged(
                respond::system_fault(StatusCode::INTERNAL_SERVER_ERROR, true),
                tag,
            )
        }
    }
}

fn push_injected_fault(out: &mut String, kind: BatchItemFaultKind) {
    match kind {
        BatchItemFaultKind::System => push_item_fault(
            out,
            "SystemFault",
            "10000",
            "An application error has occurred while processing your request",
            "System Failure Error: An unexpected error occurred while accessing or saving your data. Please wait a few minutes and try again. If the problem persists, contact customer support.",
        ),
        BatchItemFaultKind::Validation => push_item_fault(
            out,
            "ValidationFault",
            "4000",
            "Error parsing query",
            "QueryParserError: the item's query was refused (injected by the simulator)",
        ),
    }
}

fn push_item_fault(out: &mut String, fault_type: &str, code: &str, message: &str, detail: &str) {
    out.push_str("\"Fault\":{\"Error\":[{\"Message\":");
    data::js(out, message);
    out.push_str(",\"Detail\":");
    data::js(out, detail);
    out.push_str(",\"code\":");
    data::js(out, code);
    out.push_str(",\"element\":\"\"}],\"type\":");
    data::js(out, fault_type);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_per_reading_of_the_cap() {
        assert_eq!(room(BatchObjectCap::PerItem, 5000), 1000);
        assert_eq!(room(BatchObjectCap::PerBatch, 0), 1000);
        assert_eq!(room(BatchObjectCap::PerBatch, 700), 300);
        assert_eq!(room(BatchObjectCap::PerBatch, 1000), 0);
        assert_eq!(room(BatchObjectCap::PerBatch, 1200), 0);
        assert_eq!(room(BatchObjectCap::Off, 5000), usize::MAX);
    }
}
