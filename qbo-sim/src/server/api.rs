//! The QBO data endpoints: query (GET and POST), CDC and the CompanyInfo read (batch is in
//! `batch.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::respond::{self, JSON, XML};
use super::{Gate, Shared, Tag, gate, lock, tagged};
use crate::data::push_u64;
use crate::query::compile::{CompileOptions, Plan, QueryError, compile};
use crate::realm::{Outcome, Realm};
use crate::schema;
use crate::tz;

/// Most objects a CDC response holds.
const CDC_CAP: usize = 1000;
/// How far back CDC looks.
const CDC_MAX_AGE_SECS: i64 = 30 * 86_400;

fn query_fault(e: &QueryError, json: bool) -> Response {
    respond::fault(
        StatusCode::BAD_REQUEST,
        json,
        "ValidationFault",
        e.code(),
        e.message(),
        &e.detail(),
    )
}

/// Inner `QueryResponse` object text (without the outer `{"QueryResponse":…}`).
pub(super) fn query_response_json(
    realm: &Realm,
    plan: &Plan,
    outcome: &Outcome,
    include_total: bool,
    out: &mut String,
) -> u64 {
    match outcome {
        Outcome::Count(n) => {
            out.push_str("{\"totalCount\":");
            push_u64(out, *n);
            out.push('}');
            0
        }
        Outcome::Rows(rows) if rows.is_empty() => {
            out.push_str("{}");
            0
        }
        Outcome::Rows(rows) => {
            out.push_str("{\"");
            out.push_str(plan.entity.name);
            out.push_str("\":[");
            realm.render_rows(plan.entity, rows, out);
            out.push_str("],\"startPosition\":");
            push_u64(out, plan.start_position);
            out.push_str(",\"maxResults\":");
            push_u64(out, rows.len() as u64);
            if include_total {
                out.push_str(",\"totalCount\":");
                push_u64(out, rows.len() as u64);
            }
            out.push('}');
            rows.len() as u64
        }
    }
}

fn query_response_xml(realm: &Realm, plan: &Plan, outcome: &Outcome) -> String {
    let mut inner = String::new();
    match outcome {
        Outcome::Count(n) => inner.push_str(&format!("<QueryResponse totalCount=\"{n}\"/>")),
        Outcome::Rows(rows) if rows.is_empty() => inner.push_str("<QueryResponse/>"),
        Outcome::Rows(rows) => {
            inner.push_str(&format!(
                "<QueryResponse startPosition=\"{}\" maxResults=\"{}\">",
                plan.start_position,
                rows.len()
            ));
            for e in rows {
                let text = realm.generator.render_string(plan.entity.kind, e);
                if let Some(v) = respond::parse_keeping_numbers(&text) {
                    respond::json_to_xml(&v, plan.entity.name, &mut inner);
                }
            }
            inner.push_str("</QueryResponse>");
        }
    }
    respond::intuit_xml(&inner)
}

async fn run_query(
    shared: Arc<Shared>,
    realm_id: String,
    headers: HeaderMap,
    text: Option<String>,
) -> Response {
    let mut tag = Tag::new("query");
    tag.query = text.clone();
    let g: Gate = match gate(&shared, &realm_id, &headers, tag).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let json = g.json;
    let text = text.unwrap_or_default();
    if text.trim().is_empty() {
        // QBO answers a request without a query with HTTP 200 and a SystemFault.
        let tag = g.tag.clone();
        return tagged(respond::system_fault(StatusCode::OK, json), tag);
    }
    let s = shared.settings();
    let opts = CompileOptions {
        clamp_max_results: s.quirks.clamp_max_results,
    };
    let plan = match compile(&text, opts) {
        Ok(p) => p,
        Err(e) => {
            let tag = g.tag.clone();
            return tagged(query_fault(&e, json), tag);
        }
    };
    {
        let mut st = lock(&shared.stats);
        if plan.count {
            st.stats.count_queries += 1;
        } else {
            st.stats.queries += 1;
        }
    }
    let realm = Arc::clone(&g.realm);
    let include_total = s.quirks.include_total_count;
    let rendered = tokio::task::spawn_blocking(move || {
        let outcome = realm.execute(&plan);
        if json {
            let mut body = String::with_capacity(match &outcome {
                Outcome::Rows(r) => 64 + r.len() * 2600,
                Outcome::Count(_) => 96,
            });
            body.push_str("{\"QueryResponse\":");
            let n = query_response_json(&realm, &plan, &outcome, include_total, &mut body);
            body.push_str(",\"time\":\"");
            body.push_str(&tz::pacific_millis(realm.clock.now()));
            body.push_str("\"}");
            (body, n)
        } else {
            let n = match &outcome {
                Outcome::Rows(r) => r.len() as u64,
                Outcome::Count(_) => 0,
            };
            (query_response_xml(&realm, &plan, &outcome), n)
        }
    })
    .await;
    match rendered {
        Ok((body, rows)) => {
            lock(&shared.stats).stats.rows_served += rows;
            shared.row_latency(&s, rows).await;
            g.finish(if json { JSON } else { XML }, body)
        }
        Err(e) => {
            tracing::error!(error = %e, "query task failed");
            let tag = g.tag.clone();
            tagged(
                respond::system_fault(StatusCode::INTERNAL_SERVER_ERROR, json),
                tag,
            )
        }
    }
}

/// `GET /v3/company/{realm}/query?query=…&minorversion=…`
pub(crate) async fn query_get(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let text = params.get("query").cloned();
    run_query(shared, realm, headers, text).await
}

/// `POST /v3/company/{realm}/query` with `Content-Type: application/text`.
pub(crate) async fn query_post(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("application/text") {
        let mut tag = Tag::new("query");
        tag.realm = Some(realm);
        let r = respond::fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            super::wants_json(&headers),
            "ValidationFault",
            "415",
            "Unsupported Media Type",
            "POST a query with Content-Type: application/text",
        );
        return tagged(r, tag);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    run_query(shared, realm, headers, Some(text)).await
}

/// `GET /v3/company/{realm}/cdc?entities=A,B&changedSince=<timestamp>`
pub(crate) async fn cdc(
    State(shared): State<Arc<Shared>>,
    Path(realm_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut tag = Tag::new("cdc");
    tag.query = Some(
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    );
    let g = match gate(&shared, &realm_id, &headers, tag).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let json = g.json;
    let bad = |g: &Gate, detail: String| {
        tagged(
            respond::fault(
                StatusCode::BAD_REQUEST,
                json,
                "ValidationFault",
                "2020",
                "Required param missing, need to supply the required value for the API",
                &detail,
            ),
            g.tag.clone(),
        )
    };
    let Some(entities) = params.get("entities").filter(|e| !e.trim().is_empty()) else {
        return bad(
            &g,
            "Required parameter entities is missing in the request".into(),
        );
    };
    let Some(since_text) = params.get("changedSince") else {
        return bad(
            &g,
            "Required parameter changedSince is missing in the request".into(),
        );
    };
    let Some(since_nanos) = crate::query::compile::parse_instant(since_text) else {
        return bad(
            &g,
            format!("changedSince {since_text:?} is not a valid date-time"),
        );
    };
    let since = i64::try_from(since_nanos.div_euclid(1_000_000_000)).unwrap_or(i64::MIN)
        + i64::from(since_nanos.rem_euclid(1_000_000_000) != 0);
    let now = g.realm.clock.unix();
    if since < now - CDC_MAX_AGE_SECS {
        return bad(&g, "changedSince must be within the last 30 days".into());
    }
    let mut defs = Vec::new();
    for name in entities.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match schema::entity(name) {
            Some(d) => defs.push(d),
            None => return bad(&g, format!("Invalid entity name: {name}")),
        }
    }
    let realm = Arc::clone(&g.realm);
    let parts = realm.cdc(&defs, since, CDC_CAP);
    let mut body = String::from("{\"CDCResponse\":[{\"QueryResponse\":[");
    for (i, (name, rows, n)) in parts.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        if *n == 0 {
            body.push_str("{}");
            continue;
        }
        body.push_str("{\"");
        body.push_str(name);
        body.push_str("\":[");
        body.push_str(rows);
        body.push_str("],\"startPosition\":1,\"maxResults\":");
        push_u64(&mut body, *n as u64);
        body.push('}');
    }
    body.push_str("]}],\"time\":\"");
    body.push_str(&tz::pacific_millis(realm.clock.now()));
    body.push_str("\"}");
    if !json {
        // CDC in XML is rarely used; convert generically.
        let xml = match respond::parse_keeping_numbers(&body) {
            Some(v) => {
                let mut inner = String::new();
                respond::json_to_xml(&v["CDCResponse"], "CDCResponse", &mut inner);
                respond::intuit_xml(&inner)
            }
            None => String::new(),
        };
        return g.finish(XML, xml);
    }
    g.finish(JSON, body)
}

/// `GET /v3/company/{realm}/companyinfo/{id}`: the company's `CompanyInfo` (its id is the
/// realm id in the URL, the record's `Id` is "1"); another id is a 400 "object not found".
pub(crate) async fn company_info(
    State(shared): State<Arc<Shared>>,
    Path((realm_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let tag = Tag::new("read");
    let g = match gate(&shared, &realm_id, &headers, tag).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let json = g.json;
    if id != realm_id {
        let tag = g.tag.clone();
        let r = respond::fault(
            StatusCode::BAD_REQUEST,
            json,
            "ValidationFault",
            "610",
            "Object Not Found",
            &format!("Object Not Found : CompanyInfo {id} is not this company ({realm_id})"),
        );
        return tagged(r, tag);
    }
    let Some(def) = schema::entity("CompanyInfo") else {
        let tag = g.tag.clone();
        return tagged(
            respond::system_fault(StatusCode::INTERNAL_SERVER_ERROR, json),
            tag,
        );
    };
    let record = g.realm.truth(def).into_iter().next();
    let Some(record) = record else {
        let tag = g.tag.clone();
        return tagged(
            respond::system_fault(StatusCode::INTERNAL_SERVER_ERROR, json),
            tag,
        );
    };
    if json {
        let mut body = String::with_capacity(record.json.len() + 64);
        body.push_str("{\"CompanyInfo\":");
        body.push_str(&record.json);
        body.push_str(",\"time\":\"");
        body.push_str(&tz::now_pacific_millis());
        body.push_str("\"}");
        g.finish(JSON, body)
    } else {
        let mut inner = String::new();
        if let Some(v) = respond::parse_keeping_numbers(&record.json) {
            respond::json_to_xml(&v, "CompanyInfo", &mut inner);
        }
        g.finish(XML, respond::intuit_xml(&inner))
    }
}
