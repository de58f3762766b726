//! Request statistics and the request log.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How many request records the log keeps (oldest dropped first).
pub(crate) const REQUEST_LOG_CAP: usize = 100_000;

/// Counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Every request, including control routes.
    pub total_requests: u64,
    /// Responses per endpoint (`token`, `query`, `batch`, `cdc`, `read`, `control`, `other`) and
    /// HTTP status.
    pub by_endpoint: BTreeMap<String, BTreeMap<u16, u64>>,
    /// 429 responses (rate limit, concurrency cap, or injected).
    pub throttled: u64,
    /// Of which refused because more than the allowed requests were in flight for a realm.
    pub throttled_concurrency: u64,
    /// Of which refused by the requests-per-window budget.
    pub throttled_rate: u64,
    /// Of which refused by the per-second limit (Intuit's 10 requests per second).
    #[serde(default)]
    pub throttled_per_second: u64,
    /// Of which batch requests refused by the batch budget (Intuit's 40 a minute).
    #[serde(default)]
    pub throttled_batch: u64,
    /// Most API requests in flight at once for one realm.
    pub peak_concurrency: u32,
    /// Successful token refreshes.
    pub token_refreshes: u64,
    /// Of which handed out a new refresh token.
    pub token_rotations: u64,
    /// Refused token refreshes (`invalid_grant`, `invalid_client`, …).
    pub token_failures: u64,
    /// Authorization codes exchanged for tokens (`grant_type=authorization_code`).
    #[serde(default)]
    pub code_exchanges: u64,
    /// Consents given on the authorization page (codes issued).
    #[serde(default)]
    pub authorizations: u64,
    /// Consents refused on the authorization page (`error=access_denied`).
    #[serde(default)]
    pub denials: u64,
    /// Grants revoked (`POST /v2/oauth2/tokens/revoke`).
    #[serde(default)]
    pub revocations: u64,
    /// Of which per app (the client id that authenticated the revoke); a grant of another app
    /// is refused (`invalid_grant`) and counted nowhere.
    #[serde(default)]
    pub revocations_by_client: BTreeMap<String, u64>,
    /// `SELECT *` queries executed (including batch items).
    pub queries: u64,
    /// `SELECT COUNT(*)` queries executed (including batch items).
    pub count_queries: u64,
    /// Rows returned by queries.
    pub rows_served: u64,
    /// Items of batch requests answered (each batch also counts once in `by_endpoint`).
    #[serde(default)]
    pub batch_items: u64,
    /// Of which answered with an injected per-item fault (`BatchItemFault`).
    #[serde(default)]
    pub batch_item_faults: u64,
    /// Of which had rows cut off by the batch's 1,000-object cap (`BatchObjectCap`).
    #[serde(default)]
    pub batch_items_truncated: u64,
    /// Response body bytes sent (declared length for dropped connections).
    pub bytes_served: u64,
    /// Faults injected (scripted or drawn).
    pub faults_injected: u64,
}

impl SimStats {
    /// Responses of one endpoint with one status.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.by_endpoint
            .get(endpoint)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// All responses of one endpoint.
    pub fn endpoint_total(&self, endpoint: &str) -> u64 {
        self.by_endpoint
            .get(endpoint)
            .map_or(0, |m| m.values().sum())
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// `token`, `query`, `batch`, `cdc`, `read` (CompanyInfo), `control` or `other`.
    pub endpoint: String,
    /// Realm from the path, when there is one.
    pub realm: Option<String>,
    /// The decoded query text (query endpoint), or the raw body (batch), or the URL query (CDC).
    pub query: Option<String>,
    /// HTTP status sent.
    pub status: u16,
    /// When the request arrived (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Microseconds from arrival until the response was ready to send (simulated latency
    /// included; body transfer not).
    #[serde(default)]
    pub elapsed_us: u64,
    /// The `intuit_tid` header sent back.
    pub intuit_tid: String,
    /// The injected fault, if any (e.g. `throttle`, `status_503`, `rate_limit`).
    pub fault: Option<String>,
    /// Response body bytes.
    pub bytes: u64,
}

/// Mutable statistics state.
#[derive(Debug, Default)]
pub(crate) struct StatsState {
    pub(crate) stats: SimStats,
    pub(crate) log: VecDeque<RequestRecord>,
}

impl StatsState {
    pub(crate) fn record(&mut self, rec: RequestRecord) {
        self.stats.total_requests += 1;
        *self
            .stats
            .by_endpoint
            .entry(rec.endpoint.clone())
            .or_default()
            .entry(rec.status)
            .or_insert(0) += 1;
        self.stats.bytes_served += rec.bytes;
        if rec.status == 429 {
            self.stats.throttled += 1;
        }
        if self.log.len() >= REQUEST_LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(rec);
    }

    pub(crate) fn reset(&mut self) {
        self.stats = SimStats::default();
        self.log.clear();
    }
}
