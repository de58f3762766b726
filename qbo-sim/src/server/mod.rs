//! The HTTP server: shared state, routing, the request gate (limits, auth, faults) and
//! request recording.

pub(crate) mod api;
pub(crate) mod batch;
pub(crate) mod connect;
pub(crate) mod control;
pub(crate) mod oauth;
pub(crate) mod reports;
pub(crate) mod respond;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::OffsetDateTime;

use crate::config::{BatchItemFault, BatchObjectCap, Consent, FaultPlan, Quirks, ScriptedFault};
use crate::limits::{Gauge, SlidingWindow, Slot};
use crate::realm::Realm;
use crate::stats::{RequestRecord, StatsState};
use crate::tokens::{AccessRefusal, TokenPolicy, Tokens};

/// Settings that may change while the simulator runs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) faults: FaultPlan,
    pub(crate) quirks: Quirks,
    pub(crate) latency: Duration,
    pub(crate) jitter: Duration,
    /// Added per row a query answers (see [`Shared::row_latency`]).
    pub(crate) latency_per_row: Duration,
    pub(crate) requests_per_window: u32,
    pub(crate) rate_window: Duration,
    pub(crate) max_concurrency: u32,
    /// Intuit's per-second limit (0 = off), counted when a request arrives.
    pub(crate) requests_per_sec: u32,
    /// Batch requests per rate window (0 = off).
    pub(crate) batch_per_window: u32,
    /// Most items in one batch request (0 = no limit).
    pub(crate) batch_max_items: u32,
    /// Which reading of the batch reference's 1,000-object cap applies.
    pub(crate) batch_object_cap: BatchObjectCap,
    pub(crate) token: TokenPolicy,
    /// What the consent page answers.
    pub(crate) consent: Consent,
    /// Redirect URIs registered for the app (empty: any plain-http loopback URI).
    pub(crate) redirect_uris: Vec<String>,
}

/// State shared by every handler and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) realms: Vec<Arc<Realm>>,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// Further apps (client id, secret).
    pub(crate) apps: Vec<(String, String)>,
    pub(crate) settings: Mutex<Settings>,
    pub(crate) tokens: Mutex<Tokens>,
    pub(crate) stats: Mutex<StatsState>,
    pub(crate) gauge: Arc<Gauge>,
    pub(crate) windows: Mutex<HashMap<String, SlidingWindow>>,
    pub(crate) second_windows: Mutex<HashMap<String, SlidingWindow>>,
    pub(crate) batch_windows: Mutex<HashMap<String, SlidingWindow>>,
    pub(crate) script: Mutex<VecDeque<ScriptedFault>>,
    pub(crate) token_script: Mutex<VecDeque<ScriptedFault>>,
    /// Faults for batch items, each with its remaining count (see [`BatchItemFault::times`]).
    pub(crate) item_faults: Mutex<Vec<BatchItemFault>>,
    pub(crate) fault_rng: Mutex<ChaCha8Rng>,
}

/// Locks a mutex, ignoring poisoning (state stays usable after a panicking test thread).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new `intuit_tid` value, shaped like Intuit's (`1-<8 hex>-<24 hex>`).
pub(crate) fn new_tid() -> String {
    let mut r = rand::rng();
    let a: u32 = r.random();
    let b: u64 = r.random();
    let c: u32 = r.random();
    format!("1-{a:08x}-{b:016x}{c:08x}")
}

/// What a handler tells the recorder about a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tag {
    pub(crate) endpoint: &'static str,
    pub(crate) realm: Option<String>,
    pub(crate) query: Option<String>,
    pub(crate) fault: Option<String>,
}

impl Tag {
    pub(crate) fn new(endpoint: &'static str) -> Self {
        Tag {
            endpoint,
            ..Tag::default()
        }
    }
}

/// Attaches a tag to a response.
pub(crate) fn tagged(mut r: Response, tag: Tag) -> Response {
    r.extensions_mut().insert(tag);
    r
}

impl Shared {
    pub(crate) fn new(
        realms: Vec<Arc<Realm>>,
        client_id: String,
        client_secret: String,
        settings: Settings,
        tokens: Tokens,
    ) -> Self {
        let seed = settings.faults.seed;
        Shared {
            realms,
            client_id,
            client_secret,
            apps: Vec::new(),
            settings: Mutex::new(settings),
            tokens: Mutex::new(tokens),
            stats: Mutex::new(StatsState::default()),
            gauge: Arc::new(Gauge::default()),
            windows: Mutex::new(HashMap::new()),
            second_windows: Mutex::new(HashMap::new()),
            batch_windows: Mutex::new(HashMap::new()),
            script: Mutex::new(VecDeque::new()),
            token_script: Mutex::new(VecDeque::new()),
            item_faults: Mutex::new(Vec::new()),
            fault_rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// With further apps (client id, secret) beside the primary one.
    pub(crate) fn with_apps(mut self, apps: Vec<(String, String)>) -> Self {
        self.apps = apps;
        self
    }

    /// Whether `client_id` is one of the simulator's apps.
    pub(crate) fn knows_app(&self, client_id: &str) -> bool {
        client_id == self.client_id || self.apps.iter().any(|(id, _)| id == client_id)
    }

    /// Whether `client_id` and `secret` are one of the simulator's apps.
    pub(crate) fn app_ok(&self, client_id: &str, secret: &str) -> bool {
        (client_id == self.client_id && secret == self.client_secret)
            || self
                .apps
                .iter()
                .any(|(id, s)| id == client_id && s == secret)
    }

    pub(crate) fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    pub(crate) fn realm(&self, id: &str) -> Option<Arc<Realm>> {
        self.realms.iter().find(|r| r.id == id).cloned()
    }

    /// Sleeps the configured latency (fixed + uniform jitter).
    pub(crate) async fn latency(&self, s: &Settings) {
        let jitter = if s.jitter.is_zero() {
            Duration::ZERO
        } else {
            let max = u64::try_from(s.jitter.as_micros()).unwrap_or(u64::MAX);
            Duration::from_micros(rand::rng().random_range(0..=max))
        };
        let total = s.latency + jitter;
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
    }

    /// Sleeps the per-row part of a query's latency: `rows` × the configured cost per row,
    /// after the base latency the gate slept. A COUNT or an empty page costs nothing here;
    /// a full page of 1,000 rows costs 1,000 × the per-row figure. The request keeps its
    /// concurrency slot meanwhile, as on QBO, where the page is being produced.
    pub(crate) async fn row_latency(&self, s: &Settings, rows: u64) {
        let total = s
            .latency_per_row
            .saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX));
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
    }

    /// The next scripted fault, else one drawn from the plan.
    pub(crate) fn next_fault(&self, plan: &FaultPlan) -> Option<ScriptedFault> {
        if let Some(f) = lock(&self.script).pop_front() {
            return Some(f);
        }
        if !plan.is_active() {
            return None;
        }
        let roll: f64 = lock(&self.fault_rng).random();
        plan.pick(roll)
    }

    fn rate_ok(&self, realm: &str, s: &Settings) -> bool {
        admit(&self.windows, realm, s.requests_per_window, s.rate_window)
    }

    /// Intuit's 10 requests per second per realm, on a 1-second sliding window.
    fn per_second_ok(&self, realm: &str, s: &Settings) -> bool {
        admit(
            &self.second_windows,
            realm,
            s.requests_per_sec,
            Duration::from_secs(1),
        )
    }

    /// Intuit's 40 batch requests per minute per realm (per rate window).
    pub(crate) fn batch_ok(&self, realm: &str, s: &Settings) -> bool {
        admit(
            &self.batch_windows,
            realm,
            s.batch_per_window,
            s.rate_window,
        )
    }
}

/// Counts a request against a realm's sliding window if it fits (`limit` 0 = unlimited).
fn admit(
    windows: &Mutex<HashMap<String, SlidingWindow>>,
    realm: &str,
    limit: u32,
    window: Duration,
) -> bool {
    let now = tokio::time::Instant::now().into_std();
    let mut w = lock(windows);
    let win = w
        .entry(realm.to_string())
        .or_insert_with(|| SlidingWindow::new(limit, window));
    win.reconfigure(limit, window);
    win.try_acquire(now)
}

impl Shared {}

/// Whether the client asked for JSON (else QBO answers in XML).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.to_ascii_lowercase().contains("json"))
    })
}

/// A request admitted to an API endpoint.
#[derive(Debug)]
pub(crate) struct Gate {
    _slot: Slot,
    pub(crate) realm: Arc<Realm>,
    pub(crate) json: bool,
    /// Body-level fault to apply to the answer (drop, malformed), if any.
    pub(crate) body_fault: Option<ScriptedFault>,
    pub(crate) tag: Tag,
}

/// Admits an API request: concurrency cap and the per-second limit (both on arrival), latency,
/// bearer token, realm, the per-window budget, then injected faults. On refusal returns the
/// response to send.
pub(crate) async fn gate(
    shared: &Shared,
    realm_id: &str,
    headers: &HeaderMap,
    mut tag: Tag,
) -> Result<Gate, Response> {
    let s = shared.settings();
    let json = wants_json(headers);
    tag.realm = Some(realm_id.to_string());
    let Some(slot) = shared.gauge.try_enter(realm_id, s.max_concurrency) else {
        shared.latency(&s).await;
        lock(&shared.stats).stats.throttled_concurrency += 1;
        tag.fault = Some("concurrency_limit".into());
        return Err(tagged(respond::throttle(&s.quirks), tag));
    };
    // Counted on arrival, before the simulated latency, so that a client pacing itself is
    // judged by when it sent, not by the jitter the simulator adds.
    if !shared.per_second_ok(realm_id, &s) {
        shared.latency(&s).await;
        lock(&shared.stats).stats.throttled_per_second += 1;
        tag.fault = Some("rate_limit_per_second".into());
        return Err(tagged(respond::throttle(&s.quirks), tag));
    }
    shared.latency(&s).await;
    // Bearer token.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(bearer) = bearer.filter(|b| !b.is_empty()) else {
        return Err(tagged(
            respond::gateway_401("3200", "Token revoked or invalid: no bearer token"),
            tag,
        ));
    };
    let now = tokio::time::Instant::now().into_std();
    let token_realm = match lock(&shared.tokens).check_access(bearer, now) {
        Ok(r) => r,
        Err(AccessRefusal::Expired) => {
            return Err(tagged(respond::gateway_401("3200", "Token expired"), tag));
        }
        Err(AccessRefusal::Unknown) => {
            return Err(tagged(
                respond::gateway_401("3200", "Token revoked or invalid"),
                tag,
            ));
        }
    };
    let Some(realm) = shared.realm(realm_id) else {
        let status =
            StatusCode::from_u16(s.quirks.unknown_realm_status).unwrap_or(StatusCode::UNAUTHORIZED);
        let r = if status == StatusCode::NOT_FOUND {
            respond::fault(
                status,
                json,
                "ValidationFault",
                "610",
                "Object Not Found",
                &format!("Company {realm_id} not found"),
            )
        } else {
            respond::fault(
                status,
                json,
                "AuthenticationFault",
                "3100",
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=401",
                &format!(
                    "Company {realm_id} is not accessible with these credentials: production and sandbox keys may be mixed up"
                ),
            )
        };
        return Err(tagged(r, tag));
    };
    if token_realm != realm_id {
        // QBO answers a token of another company in XML, whatever was asked.
        return Err(tagged(respond::realm_mismatch(), tag));
    }
    if !shared.rate_ok(realm_id, &s) {
        lock(&shared.stats).stats.throttled_rate += 1;
        tag.fault = Some("rate_limit".into());
        return Err(tagged(respond::throttle(&s.quirks), tag));
    }
    let mut body_fault = None;
    if let Some(f) = shared.next_fault(&s.faults) {
        if f != ScriptedFault::Pass {
            lock(&shared.stats).stats.faults_injected += 1;
            tag.fault = Some(f.label());
        }
        match f {
            ScriptedFault::Pass => {}
            ScriptedFault::Throttle => return Err(tagged(respond::throttle(&s.quirks), tag)),
            ScriptedFault::Status(code) => {
                return Err(tagged(respond::injected_status(code, json), tag));
            }
            ScriptedFault::FaultWith200 => {
                return Err(tagged(respond::system_fault(StatusCode::OK, json), tag));
            }
            ScriptedFault::ExpiredToken => {
                lock(&shared.tokens).expire_access(bearer, now);
                return Err(tagged(respond::gateway_401("3200", "Token expired"), tag));
            }
            ScriptedFault::InternalError3100
            | ScriptedFault::Forbidden3100
            | ScriptedFault::Throttle403
            | ScriptedFault::NoSubscriptionAccess
            | ScriptedFault::RealmMismatch => {
                if let Some(r) = respond::recorded_fault(f) {
                    return Err(tagged(r, tag));
                }
            }
            ScriptedFault::Slow(d) => tokio::time::sleep(d).await,
            ScriptedFault::DropConnection | ScriptedFault::MalformedJson => body_fault = Some(f),
        }
    }
    Ok(Gate {
        _slot: slot,
        realm,
        json,
        body_fault,
        tag,
    })
}

impl Gate {
    /// Sends a successful body, applying a body-level fault if one was drawn.
    pub(crate) fn finish(self, content_type: &'static str, body: String) -> Response {
        let r = match self.body_fault {
            Some(ScriptedFault::DropConnection) => {
                respond::dropped(StatusCode::OK, content_type, body)
            }
            Some(ScriptedFault::MalformedJson) => respond::malformed(content_type, body),
            _ => respond::full(StatusCode::OK, content_type, body),
        };
        tagged(r, self.tag)
    }
}

/// Records every request and adds `intuit_tid`.
async fn observe(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let at = OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let tid = new_tid();
    if let Ok(v) = HeaderValue::from_str(&tid) {
        resp.headers_mut().insert("intuit_tid", v);
    }
    let tag = resp.extensions().get::<Tag>().cloned().unwrap_or_else(|| {
        Tag::new(if path.starts_with("/__sim") {
            "control"
        } else {
            "other"
        })
    });
    let bytes = resp
        .extensions()
        .get::<respond::DeclaredLen>()
        .map(|d| d.0)
        .or_else(|| resp.body().size_hint().exact())
        .unwrap_or(0);
    let rec = RequestRecord {
        method,
        path,
        endpoint: tag.endpoint.to_string(),
        realm: tag.realm,
        query: tag.query,
        status: resp.status().as_u16(),
        at,
        elapsed_us,
        intuit_tid: tid,
        fault: tag.fault,
        bytes,
    };
    tracing::debug!(endpoint = %rec.endpoint, status = rec.status, path = %rec.path, "request");
    lock(&shared.stats).record(rec);
    resp
}

async fn not_found(headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    respond::fault(
        StatusCode::NOT_FOUND,
        json,
        "ValidationFault",
        "404",
        "Resource not found",
        "No such endpoint",
    )
}

/// The router with every route.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth2/v1/tokens/bearer", post(oauth::token))
        .route("/connect/oauth2", get(connect::authorize))
        .route("/v2/oauth2/tokens/revoke", post(connect::revoke))
        .route("/.well-known/openid_configuration", get(oauth::discovery))
        .route(
            "/.well-known/openid_sandbox_configuration",
            get(oauth::discovery),
        )
        .route(
            "/v3/company/{realm}/query",
            get(api::query_get).post(api::query_post),
        )
        .route("/v3/company/{realm}/batch", post(batch::batch))
        .route("/v3/company/{realm}/cdc", get(api::cdc))
        .route("/v3/company/{realm}/reports/{name}", get(reports::report))
        .route(
            "/v3/company/{realm}/companyinfo/{id}",
            get(api::company_info),
        )
        .nest("/__sim", control::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), observe))
        .with_state(shared)
}
