//! A small fake QBO serving hand-made records, for shapes the simulator does not produce
//! (records PostgreSQL cannot store, records without `MetaData`, pages cut short mid-range).
//!
//! It answers the token endpoint with a fixed token and the query endpoint from a list of
//! records: `WHERE MetaData.CreateTime >= 'a' AND MetaData.CreateTime < 'b'` (the pipeline's
//! filter), COUNT, STARTPOSITION and MAXRESULTS. Records are served in list order, which the
//! tests keep sorted by CreateTime. `short_first_page` cuts the page at STARTPOSITION 1 short.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use qbo_client::{Credentials, Environment, QboClient, QboConfig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One served record: its CreateTime (for the filter) and its exact JSON text.
#[derive(Clone)]
pub struct FakeRecord {
    pub create_time: OffsetDateTime,
    pub json: String,
}

impl FakeRecord {
    /// A well-formed invoice.
    pub fn invoice(id: u32, create_time: OffsetDateTime) -> FakeRecord {
        let t = create_time.format(&Rfc3339).unwrap();
        FakeRecord {
            create_time,
            json: format!(
                r#"{{"Id":"{id}","SyncToken":"0","TxnDate":"{}","TotalAmt":639.00,"MetaData":{{"CreateTime":"{t}","LastUpdatedTime":"{t}"}}}}"#,
                create_time.date()
            ),
        }
    }
}

#[derive(Default)]
struct Behaviour {
    records: Vec<FakeRecord>,
    /// Rows the page at STARTPOSITION 1 holds at most (a short page mid-range).
    short_first_page: Option<usize>,
    /// Answer every query with QBO's 400 ValidationFault.
    reject_queries: bool,
    queries: Vec<String>,
}

#[derive(Clone)]
pub struct FakeQbo {
    addr: SocketAddr,
    state: Arc<Mutex<Behaviour>>,
}

impl FakeQbo {
    pub async fn start(records: Vec<FakeRecord>) -> FakeQbo {
        let state = Arc::new(Mutex::new(Behaviour {
            records,
            ..Behaviour::default()
        }));
        let app = Router::new()
            .route("/oauth2/v1/tokens/bearer", post(token))
            .route("/v3/company/{realm}/query", get(query))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeQbo { addr, state }
    }

    pub fn short_first_page(&self, rows: usize) {
        self.state.lock().unwrap().short_first_page = Some(rows);
    }

    pub fn reject_queries(&self) {
        self.state.lock().unwrap().reject_queries = true;
    }

    /// Query texts received so far.
    pub fn queries(&self) -> Vec<String> {
        self.state.lock().unwrap().queries.clone()
    }

    pub fn client(&self) -> QboClient {
        let cfg = QboConfig::new(
            Environment::Sandbox,
            "4620816365",
            Credentials::new("fake-client", "fake-secret", "fake-refresh"),
        )
        .with_base_url(&format!("http://{}", self.addr))
        .unwrap()
        .with_token_url(&format!("http://{}/oauth2/v1/tokens/bearer", self.addr))
        .unwrap();
        crate::common::test_client(cfg, Duration::from_millis(20), 2)
    }
}

async fn token() -> ([(&'static str, &'static str); 1], &'static str) {
    (
        [("content-type", "application/json")],
        r#"{"access_token":"fake-access","refresh_token":"fake-refresh","token_type":"bearer","expires_in":3600,"x_refresh_token_expires_in":8726400}"#,
    )
}

#[derive(serde::Deserialize)]
struct QueryParams {
    query: String,
}

/// The quoted literal after `field op '`.
fn bound(q: &str, op: &str) -> Option<OffsetDateTime> {
    let at = q.find(&format!("MetaData.CreateTime {op} '"))?
        + "MetaData.CreateTime ".len()
        + op.len()
        + 2;
    let lit = q[at..].split('\'').next()?;
    OffsetDateTime::parse(lit, &Rfc3339).ok()
}

fn number_after(q: &str, keyword: &str) -> Option<usize> {
    let at = q.find(keyword)? + keyword.len();
    q[at..].split_whitespace().next()?.parse().ok()
}

async fn query(
    State(state): State<Arc<Mutex<Behaviour>>>,
    Query(p): Query<QueryParams>,
) -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 1],
    String,
) {
    let mut b = state.lock().unwrap();
    b.queries.push(p.query.clone());
    if b.reject_queries {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            r#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"QueryParserError: Encountered \" <INTEGER> \"1 \"\" at line 1, column 34.","code":"4000"}],"type":"ValidationFault"}}"#.to_owned(),
        );
    }
    let q = p.query;
    let lo = bound(&q, ">=");
    let hi = bound(&q, "<");
    let matching: Vec<&FakeRecord> = b
        .records
        .iter()
        .filter(|r| {
            lo.is_none_or(|lo| r.create_time >= lo) && hi.is_none_or(|hi| r.create_time < hi)
        })
        .collect();
    let body = if q.contains("COUNT(*)") {
        format!(
            r#"{{"QueryResponse":{{"totalCount":{}}},"time":"2026-01-01T00:00:00Z"}}"#,
            matching.len()
        )
    } else {
        let start = number_after(&q, "STARTPOSITION ").unwrap_or(1);
        let mut max = number_after(&q, "MAXRESULTS ").unwrap_or(100);
        if start == 1
            && let Some(short) = b.short_first_page
        {
            max = max.min(short);
        }
        let page: Vec<&str> = matching
            .iter()
            .skip(start - 1)
            .take(max)
            .map(|r| r.json.as_str())
            .collect();
        if page.is_empty() {
            r#"{"QueryResponse":{},"time":"2026-01-01T00:00:00Z"}"#.to_owned()
        } else {
            format!(
                r#"{{"QueryResponse":{{"Invoice":[{}],"startPosition":{start},"maxResults":{}}},"time":"2026-01-01T00:00:00Z"}}"#,
                page.join(","),
                page.len()
            )
        }
    };
    (
        axum::http::StatusCode::OK,
        [("content-type", "application/json")],
        body,
    )
}
