//! `GET /v3/company/{realm}/reports/{name}`: the reports of `crate::reports`, behind the same
//! gate (limits, auth, faults) as every data endpoint. JSON only, as QBO's Reports API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::respond::{self, JSON};
use super::{Shared, Tag, gate, tagged};
use crate::reports::{Params, ReportName, render};
use crate::tz;

/// `GET /v3/company/{realm}/reports/{name}?start_date=&end_date=&accounting_method=&date_macro=`
pub(crate) async fn report(
    State(shared): State<Arc<Shared>>,
    Path((realm_id, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut tag = Tag::new("report");
    let mut shown: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    shown.sort();
    tag.query = Some(format!("{name}?{}", shown.join("&")));
    let g = match gate(&shared, &realm_id, &headers, tag).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let bad = |detail: String| {
        tagged(
            respond::fault(
                StatusCode::BAD_REQUEST,
                true,
                "ValidationFault",
                "2020",
                "Invalid Report parameter",
                &detail,
            ),
            g.tag.clone(),
        )
    };
    let Some(report) = ReportName::parse(&name) else {
        return bad(format!("Unknown report name: {name}"));
    };
    let now = g.realm.clock.now();
    let today = tz::to_pacific(now).date();
    let p = match Params::from_query(|k| params.get(k).cloned(), today) {
        Ok(p) => p,
        Err(detail) => return bad(detail),
    };
    let realm = Arc::clone(&g.realm);
    let stamp = tz::pacific_millis(now);
    let body =
        tokio::task::spawn_blocking(move || render(report, &p, &realm, &stamp).to_string()).await;
    match body {
        Ok(body) => g.finish(JSON, body),
        Err(e) => {
            tracing::error!(error = %e, "report task failed");
            let tag = g.tag.clone();
            tagged(
                respond::system_fault(StatusCode::INTERNAL_SERVER_ERROR, true),
                tag,
            )
        }
    }
}
