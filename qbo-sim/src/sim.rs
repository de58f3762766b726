//! The builder and the handle of a running simulator.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{
    BatchItemFault, BatchObjectCap, Consent, FaultPlan, Quirks, Rotation, ScriptedFault,
};
use crate::data::GenConfig;
use crate::error::SimError;
use crate::realm::{Realm, TruthRecord};
use crate::server::{self, Settings, Shared, lock};
use crate::stats::{RequestRecord, SimStats};
use crate::tokens::{TokenPolicy, Tokens};

/// The base latency of a realistic model of QBO's query endpoint ([`SimBuilder::latency`]):
/// what a COUNT or an empty page takes. With [`REALISTIC_LATENCY_PER_ROW`] a full page of
/// 1,000 invoices takes 2 s, in the range public reports give for QBO ("seconds" for a
/// 1,000-invoice page, a few hundred ms for a COUNT). The simulator's own default is no
/// latency at all, so that tests run fast; the benchmarks pass these figures explicitly.
pub const REALISTIC_BASE_LATENCY: Duration = Duration::from_millis(150);

/// The per-row cost of the realistic model ([`SimBuilder::latency_per_row`]): 1.85 ms a row,
/// so 150 ms + 1,000 × 1.85 ms = 2 s for a full page.
pub const REALISTIC_LATENCY_PER_ROW: Duration = Duration::from_micros(1850);

/// Default realm id of the primary company.
pub const DEFAULT_REALM_ID: &str = "9130357766900456";
/// Default OAuth client id.
pub const DEFAULT_CLIENT_ID: &str = "ABsimClientId0qbo0sim0000000000000000000000000000";
/// Default OAuth client secret.
pub const DEFAULT_CLIENT_SECRET: &str = "simClientSecret0000000000000000000000000";
/// Default initial refresh token of the primary company.
pub const DEFAULT_REFRESH_TOKEN: &str = "AB11sim0initial0refresh0token000000000000000000000";

/// The simulator. Start one with [`Sim::builder`].
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// A builder with the defaults: seed 42, 200 customers, 100 items, 1,000 invoices,
    /// 40 vendors, 400 payments, 300 bills, 150 journal entries, 200 estimates, 300 sales
    /// receipts, 60 accounts and 20 employees created over 2023-01-01..2025-01-01 UTC; 500
    /// requests/min and 10 concurrent requests per realm, 40 batch requests/min of at most 30
    /// items, no per-second limit (see [`SimBuilder::requests_per_sec`] and
    /// [`SimBuilder::qbo_limits`]); access tokens valid 1 h; a new refresh token on every refresh with
    /// the old one dead at once; no latency, no faults, default [`Quirks`].
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }
}

/// Configures and starts a simulator. Every setter is optional.
#[derive(Debug, Clone)]
pub struct SimBuilder {
    seed: u64,
    customers: usize,
    inactive_customers: Option<usize>,
    items: usize,
    invoices: usize,
    vendors: usize,
    payments: usize,
    bills: usize,
    journal_entries: usize,
    estimates: usize,
    sales_receipts: usize,
    accounts: usize,
    employees: usize,
    start: OffsetDateTime,
    end: OffsetDateTime,
    realm_id: String,
    extra_realms: Vec<(String, u64)>,
    /// Further apps (client id, secret) beside the primary one.
    extra_apps: Vec<(String, String)>,
    /// Companies connected with one of them: (realm, client id).
    realm_apps: Vec<(String, String)>,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    access_token_ttl: Duration,
    rotation: Rotation,
    grace: Option<Duration>,
    requests_per_min: u32,
    rate_window: Duration,
    max_concurrency: u32,
    requests_per_sec: u32,
    batch_per_min: u32,
    batch_max_items: u32,
    batch_object_cap: BatchObjectCap,
    latency: Duration,
    jitter: Duration,
    latency_per_row: Duration,
    faults: FaultPlan,
    quirks: Quirks,
    port: u16,
    host: std::net::IpAddr,
    consent: Consent,
    redirect_uris: Vec<String>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            seed: 42,
            customers: 200,
            inactive_customers: None,
            items: 100,
            invoices: 1000,
            vendors: 40,
            payments: 400,
            bills: 300,
            journal_entries: 150,
            estimates: 200,
            sales_receipts: 300,
            accounts: 60,
            employees: 20,
            start: datetime!(2023-01-01 00:00 UTC),
            end: datetime!(2025-01-01 00:00 UTC),
            realm_id: DEFAULT_REALM_ID.to_string(),
            extra_realms: Vec::new(),
            extra_apps: Vec::new(),
            realm_apps: Vec::new(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            refresh_token: DEFAULT_REFRESH_TOKEN.to_string(),
            access_token_ttl: Duration::from_secs(3600),
            rotation: Rotation::EveryRefresh,
            grace: None,
            requests_per_min: 500,
            rate_window: Duration::from_secs(60),
            max_concurrency: 10,
            requests_per_sec: 0,
            batch_per_min: 40,
            batch_max_items: 30,
            batch_object_cap: BatchObjectCap::PerItem,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            latency_per_row: Duration::ZERO,
            faults: FaultPlan::default(),
            quirks: Quirks::default(),
            port: 0,
            host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            consent: Consent::Approve,
            redirect_uris: Vec::new(),
        }
    }
}

impl SimBuilder {
    /// Seed of the generated data (same seed and sizes → identical bytes).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of generated customers.
    pub fn customers(mut self, n: usize) -> Self {
        self.customers = n;
        self
    }

    /// Exactly `n` of the generated customers inactive (spread evenly over the ids; at most
    /// the number of customers); `None` (the default): each one inactive with probability
    /// 0.08. The other fields of every record stay as without it.
    pub fn inactive_customers(mut self, n: Option<usize>) -> Self {
        self.inactive_customers = n;
        self
    }

    /// Number of generated items.
    pub fn items(mut self, n: usize) -> Self {
        self.items = n;
        self
    }

    /// Number of generated invoices.
    pub fn invoices(mut self, n: usize) -> Self {
        self.invoices = n;
        self
    }

    /// Number of generated vendors.
    pub fn vendors(mut self, n: usize) -> Self {
        self.vendors = n;
        self
    }

    /// Number of generated payments (most applied to an invoice created before them).
    pub fn payments(mut self, n: usize) -> Self {
        self.payments = n;
        self
    }

    /// Number of generated bills.
    pub fn bills(mut self, n: usize) -> Self {
        self.bills = n;
        self
    }

    /// Number of generated journal entries.
    pub fn journal_entries(mut self, n: usize) -> Self {
        self.journal_entries = n;
        self
    }

    /// Number of generated estimates.
    pub fn estimates(mut self, n: usize) -> Self {
        self.estimates = n;
        self
    }

    /// Number of generated sales receipts.
    pub fn sales_receipts(mut self, n: usize) -> Self {
        self.sales_receipts = n;
        self
    }

    /// Number of generated accounts (the chart of accounts; beyond its 36 entries, sub-accounts).
    pub fn accounts(mut self, n: usize) -> Self {
        self.accounts = n;
        self
    }

    /// Number of generated employees.
    pub fn employees(mut self, n: usize) -> Self {
        self.employees = n;
        self
    }

    /// Span `[start, end)` of `MetaData.CreateTime` of generated records.
    pub fn span(mut self, start: OffsetDateTime, end: OffsetDateTime) -> Self {
        self.start = start;
        self.end = end;
        self
    }

    /// Realm id of the primary company.
    pub fn realm_id(mut self, realm: impl Into<String>) -> Self {
        self.realm_id = realm.into();
        self
    }

    /// Adds another company with the same sizes and its own seed (its ids collide with the
    /// primary's, as in QBO). Its initial refresh token is [`SimHandle::refresh_token_for`].
    pub fn extra_realm(mut self, realm: impl Into<String>, seed: u64) -> Self {
        self.extra_realms.push((realm.into(), seed));
        self
    }

    /// Another Intuit app (client id and secret) the simulator knows beside the primary one:
    /// its credentials authenticate at the token endpoint and its consent page, and a company
    /// connected with it ([`SimBuilder::realm_app`], or `auth connect` with its id) refreshes
    /// only with them (another app's credentials get `invalid_grant`, as with Intuit).
    pub fn extra_app(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.extra_apps.push((client_id.into(), secret.into()));
        self
    }

    /// Company `realm` is connected with app `client_id` (default: the primary app).
    pub fn realm_app(mut self, realm: impl Into<String>, client_id: impl Into<String>) -> Self {
        self.realm_apps.push((realm.into(), client_id.into()));
        self
    }

    /// OAuth client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// OAuth client secret.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = secret.into();
        self
    }

    /// Initial refresh token of the primary company.
    pub fn refresh_token(mut self, token: impl Into<String>) -> Self {
        self.refresh_token = token.into();
        self
    }

    /// Lifetime of access tokens (QBO: 1 h; tests use seconds).
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Refresh-token rotation mode.
    pub fn rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// How long a superseded refresh token keeps working (`None` = it dies at once).
    pub fn old_refresh_token_grace(mut self, grace: Option<Duration>) -> Self {
        self.grace = grace;
        self
    }

    /// Requests per minute per realm (0 = unlimited). Default 500.
    pub fn requests_per_min(mut self, n: u32) -> Self {
        self.requests_per_min = n;
        self
    }

    /// Length of the rate window that `requests_per_min` and `batch_requests_per_min` apply to
    /// (default 60 s; the per-second limit always uses 1 s; tests
    /// shorten it to check the budget quickly: 50 per 1 s behaves like 500 per 10 s).
    pub fn rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// Concurrent requests per realm (0 = unlimited). Default 10.
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Intuit's per-second limit per realm (QBO: 10; 0 = off, the default of the library so
    /// that tests which burst against an otherwise default simulator keep working; the
    /// `qbo-sim` binary turns it on with QBO's per-minute budget). Counted when a request
    /// arrives, before the simulated latency; answered like the other throttles (429).
    pub fn requests_per_sec(mut self, n: u32) -> Self {
        self.requests_per_sec = n;
        self
    }

    /// Batch requests per realm per rate window (QBO: 40 a minute; 0 = unlimited). Default 40.
    /// A refused batch gets the throttle answer (429); each batch also counts toward
    /// `requests_per_min`.
    pub fn batch_requests_per_min(mut self, n: u32) -> Self {
        self.batch_per_min = n;
        self
    }

    /// Most items in one batch request (QBO: 30; 0 = no limit). Default 30; more is a 400.
    pub fn batch_max_items(mut self, n: u32) -> Self {
        self.batch_max_items = n;
        self
    }

    /// Which reading of the batch reference's 1,000-object cap applies (default
    /// [`BatchObjectCap::PerItem`]).
    pub fn batch_object_cap(mut self, cap: BatchObjectCap) -> Self {
        self.batch_object_cap = cap;
        self
    }

    /// Every limit QBO enforces, at QBO's values: 500 requests a minute, 10 a second and 10 in
    /// flight per realm, 40 batch requests a minute of at most 30 items.
    pub fn qbo_limits(self) -> Self {
        self.requests_per_min(500)
            .rate_window(Duration::from_secs(60))
            .requests_per_sec(10)
            .max_concurrency(10)
            .batch_requests_per_min(40)
            .batch_max_items(30)
    }

    /// Latency added to every API and token response: `fixed` plus uniform `0..=jitter`.
    pub fn latency(mut self, fixed: Duration, jitter: Duration) -> Self {
        self.latency = fixed;
        self.jitter = jitter;
        self
    }

    /// Latency added to a query's answer per row it holds, on top of [`SimBuilder::latency`]:
    /// a COUNT or an empty page answers in the base latency, a full page of 1,000 rows in
    /// base + 1,000 × `per_row` (+ jitter). See [`REALISTIC_LATENCY_PER_ROW`] for QBO's figures.
    pub fn latency_per_row(mut self, per_row: Duration) -> Self {
        self.latency_per_row = per_row;
        self
    }

    /// Probabilistic faults.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = plan;
        self
    }

    /// Behaviours where QBO's documentation is unsettled.
    pub fn quirks(mut self, quirks: Quirks) -> Self {
        self.quirks = quirks;
        self
    }

    /// Port to listen on; 0 (default) picks a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Address to listen on: loopback (127.0.0.1) by default. Another address (e.g. `0.0.0.0`
    /// inside a container network) exposes the simulator beyond this machine.
    pub fn host(mut self, host: std::net::IpAddr) -> Self {
        self.host = host;
        self
    }

    /// What the consent page of `GET /connect/oauth2` answers (default: approve, primary
    /// company).
    pub fn consent(mut self, consent: Consent) -> Self {
        self.consent = consent;
        self
    }

    /// Registers a redirect URI for the app. With none registered (the default) any plain-http
    /// loopback URI is accepted; with some, only those, exactly, as at Intuit.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    fn gen_config(&self, seed: u64) -> GenConfig {
        GenConfig {
            seed,
            customers: self.customers,
            inactive_customers: self.inactive_customers,
            items: self.items,
            invoices: self.invoices,
            vendors: self.vendors,
            payments: self.payments,
            bills: self.bills,
            journal_entries: self.journal_entries,
            estimates: self.estimates,
            sales_receipts: self.sales_receipts,
            accounts: self.accounts,
            employees: self.employees,
            start: self.start.unix_timestamp(),
            end: self.end.unix_timestamp(),
        }
    }

    /// Generates the data and starts serving on a background task of the current runtime.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] for an empty span, duplicate realms or a record count
    /// above 100 million; [`SimError::Bind`] if the port cannot be opened.
    pub async fn spawn(self) -> Result<SimHandle, SimError> {
        if self.end <= self.start {
            return Err(SimError::InvalidConfig(
                "span end must be after its start".into(),
            ));
        }
        if self.inactive_customers.is_some_and(|n| n > self.customers) {
            return Err(SimError::InvalidConfig(
                "more inactive customers than customers".into(),
            ));
        }
        const MAX: usize = 100_000_000;
        if [
            self.customers,
            self.items,
            self.invoices,
            self.vendors,
            self.payments,
            self.bills,
            self.journal_entries,
            self.estimates,
            self.sales_receipts,
            self.accounts,
            self.employees,
        ]
        .iter()
        .any(|n| *n > MAX)
        {
            return Err(SimError::InvalidConfig(format!(
                "at most {MAX} records per entity"
            )));
        }
        if self.realm_id.is_empty() {
            return Err(SimError::InvalidConfig("realm id must not be empty".into()));
        }
        let mut realm_specs = vec![(self.realm_id.clone(), self.seed)];
        for (r, s) in &self.extra_realms {
            if realm_specs.iter().any(|(x, _)| x == r) {
                return Err(SimError::InvalidConfig(format!("realm {r} given twice")));
            }
            realm_specs.push((r.clone(), *s));
        }
        let configs: Vec<(String, GenConfig)> = realm_specs
            .iter()
            .map(|(r, s)| (r.clone(), self.gen_config(*s)))
            .collect();
        let started = std::time::Instant::now();
        let clock = Arc::new(crate::clock::Clock::default());
        let realm_clock = Arc::clone(&clock);
        let realms = tokio::task::spawn_blocking(move || {
            configs
                .into_iter()
                .map(|(id, cfg)| Arc::new(Realm::new(id, cfg, Arc::clone(&realm_clock))))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| SimError::InvalidConfig(format!("data generation failed: {e}")))?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            realms = realms.len(),
            "data generated"
        );

        let now = tokio::time::Instant::now().into_std();
        let mut tokens = Tokens::default();
        tokens.seed_realm(&self.realm_id, &self.refresh_token, now);
        for (r, _) in &self.extra_realms {
            tokens.seed_realm(r, &extra_refresh_token(r), now);
        }
        for (r, app) in &self.realm_apps {
            if !realm_specs.iter().any(|(x, _)| x == r) {
                return Err(SimError::InvalidConfig(format!("realm_app: no realm {r}")));
            }
            if *app != self.client_id && !self.extra_apps.iter().any(|(id, _)| id == app) {
                return Err(SimError::InvalidConfig(format!("realm_app: no app {app}")));
            }
            tokens.connect_app(r, app);
        }
        let settings = Settings {
            faults: self.faults.clone(),
            quirks: self.quirks,
            latency: self.latency,
            jitter: self.jitter,
            latency_per_row: self.latency_per_row,
            requests_per_window: self.requests_per_min,
            rate_window: self.rate_window.max(Duration::from_millis(1)),
            max_concurrency: self.max_concurrency,
            requests_per_sec: self.requests_per_sec,
            batch_per_window: self.batch_per_min,
            batch_max_items: self.batch_max_items,
            batch_object_cap: self.batch_object_cap,
            token: TokenPolicy {
                access_ttl: self.access_token_ttl,
                rotation: self.rotation,
                grace: self.grace,
            },
            consent: self.consent.clone(),
            redirect_uris: self.redirect_uris.clone(),
        };
        let shared = Arc::new(
            Shared::new(
                realms,
                self.client_id.clone(),
                self.client_secret.clone(),
                settings,
                tokens,
            )
            .with_apps(self.extra_apps.clone()),
        );
        let listener = tokio::net::TcpListener::bind((self.host, self.port))
            .await
            .map_err(|source| SimError::Bind {
                port: self.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            port: self.port,
            source,
        })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = server::router(Arc::clone(&shared));
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        let join = tokio::spawn(async move { serve.await.map_err(SimError::Serve) });
        tracing::info!(%addr, "qbo-sim listening");
        Ok(SimHandle {
            inner: Arc::new(HandleInner {
                shared,
                addr,
                stop: Mutex::new(Some(tx)),
                join: Mutex::new(Some(join)),
            }),
        })
    }
}

/// Initial refresh token of an extra realm.
fn extra_refresh_token(realm: &str) -> String {
    let mut s = format!("AB11sim0extra0{realm}0");
    while s.len() < 50 {
        s.push('0');
    }
    s
}

#[derive(Debug)]
struct HandleInner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    join: Mutex<Option<JoinHandle<Result<(), SimError>>>>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
    }
}

/// A running simulator. Cheap to clone; the server stops when [`SimHandle::shutdown`] is
/// called or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SimHandle {
    inner: Arc<HandleInner>,
}

/// One company of a running simulator (see [`SimHandle::realm`]).
#[derive(Debug, Clone)]
pub struct RealmHandle {
    shared: Arc<Shared>,
    realm: String,
}

impl RealmHandle {
    /// The realm id.
    pub fn realm_id(&self) -> &str {
        &self.realm
    }

    /// Every record of an entity (inactive included, hard-deleted excluded), oldest first,
    /// with the exact JSON the simulator serves.
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`] for a name the simulator does not know.
    pub fn truth(&self, entity: &str) -> Result<Vec<TruthRecord>, SimError> {
        self.shared.truth(Some(&self.realm), entity)
    }

    /// Number of live records of an entity (inactive included, hard-deleted excluded),
    /// without rendering any JSON (cheap on large datasets, unlike [`RealmHandle::truth`]).
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`] for a name the simulator does not know.
    pub fn count(&self, entity: &str) -> Result<usize, SimError> {
        let r = self.shared.realm_or_err(Some(&self.realm))?;
        Ok(r.live_count(Realm::entity(entity)?))
    }

    /// Adds a generated record; see [`SimHandle::create`].
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], or [`SimError::Unsupported`] for entities without data.
    pub fn create(
        &self,
        entity: &str,
        create_time: Option<OffsetDateTime>,
    ) -> Result<TruthRecord, SimError> {
        self.shared.create(Some(&self.realm), entity, create_time)
    }

    /// Bumps a record's `SyncToken` and `LastUpdatedTime`.
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], [`SimError::Unsupported`] or [`SimError::NotFound`].
    pub fn update(&self, entity: &str, id: &str) -> Result<TruthRecord, SimError> {
        self.shared.update(Some(&self.realm), entity, id)
    }

    /// Deletes a record: name lists become inactive, transactions disappear (CDC shows them).
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], [`SimError::Unsupported`] or [`SimError::NotFound`].
    pub fn delete(&self, entity: &str, id: &str) -> Result<(), SimError> {
        self.shared.delete(Some(&self.realm), entity, id)
    }

    /// Sets `Active` of a name-list record (also an update).
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], [`SimError::Unsupported`] (not a name list) or [`SimError::NotFound`].
    pub fn set_active(
        &self,
        entity: &str,
        id: &str,
        active: bool,
    ) -> Result<TruthRecord, SimError> {
        self.shared
            .set_active(Some(&self.realm), entity, id, active)
    }

    /// The newest refresh token of this realm.
    pub fn refresh_token(&self) -> String {
        lock(&self.shared.tokens)
            .current(&self.realm)
            .unwrap_or_default()
    }
}

impl SimHandle {
    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn primary(&self) -> RealmHandle {
        RealmHandle {
            shared: Arc::clone(&self.inner.shared),
            realm: self
                .inner
                .shared
                .realms
                .first()
                .map(|r| r.id.clone())
                .unwrap_or_default(),
        }
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// API root, e.g. `http://127.0.0.1:43121` (clients append `/v3/company/{realm}/query`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The consent page's URL (Intuit's `https://appcenter.intuit.com/connect/oauth2`).
    pub fn authorize_url(&self) -> String {
        format!("http://{}/connect/oauth2", self.inner.addr)
    }

    /// The revoke endpoint's URL (Intuit's
    /// `https://developer.api.intuit.com/v2/oauth2/tokens/revoke`).
    pub fn revoke_url(&self) -> String {
        format!("http://{}/v2/oauth2/tokens/revoke", self.inner.addr)
    }

    /// Changes what the consent page answers from now on.
    pub fn set_consent(&self, consent: Consent) {
        lock(&self.shared().settings).consent = consent;
    }

    /// Full token endpoint URL, e.g. `http://127.0.0.1:43121/oauth2/v1/tokens/bearer`.
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/v1/tokens/bearer", self.inner.addr)
    }

    /// Realm id of the primary company.
    pub fn realm_id(&self) -> String {
        self.primary().realm
    }

    /// Every realm served, the primary first.
    pub fn realm_ids(&self) -> Vec<String> {
        self.shared().realms.iter().map(|r| r.id.clone()).collect()
    }

    /// A handle on one company.
    ///
    /// # Errors
    /// [`SimError::UnknownRealm`] if the simulator does not serve it.
    pub fn realm(&self, realm_id: &str) -> Result<RealmHandle, SimError> {
        self.shared()
            .realm(realm_id)
            .map(|r| RealmHandle {
                shared: Arc::clone(&self.inner.shared),
                realm: r.id.clone(),
            })
            .ok_or_else(|| SimError::UnknownRealm(realm_id.to_string()))
    }

    /// OAuth client id.
    pub fn client_id(&self) -> String {
        self.shared().client_id.clone()
    }

    /// OAuth client secret.
    pub fn client_secret(&self) -> String {
        self.shared().client_secret.clone()
    }

    /// The newest valid refresh token of the primary company.
    pub fn refresh_token(&self) -> String {
        self.primary().refresh_token()
    }

    /// The newest refresh token of any realm.
    pub fn refresh_token_for(&self, realm_id: &str) -> Option<String> {
        lock(&self.shared().tokens).current(realm_id)
    }

    /// Mints an access token for a realm directly, skipping OAuth (valid for the configured TTL).
    ///
    /// # Errors
    /// [`SimError::UnknownRealm`] if the simulator does not serve it.
    pub fn mint_access_token(&self, realm_id: &str) -> Result<String, SimError> {
        self.realm(realm_id)?;
        let ttl = self.shared().settings().token.access_ttl;
        Ok(lock(&self.shared().tokens).mint_access(
            realm_id,
            ttl,
            tokio::time::Instant::now().into_std(),
        ))
    }

    /// Counters since start or the last [`SimHandle::reset_stats`].
    pub fn stats(&self) -> SimStats {
        self.shared().stats_snapshot()
    }

    /// Every request seen (the newest 100,000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared().requests_snapshot()
    }

    /// Clears counters and the request log.
    pub fn reset_stats(&self) {
        self.shared().reset_stats();
    }

    /// Every record of an entity of the primary company (inactive included, hard-deleted
    /// excluded), oldest first, with the exact JSON served. Unknown entities give an empty
    /// list (use [`RealmHandle::truth`] to get an error instead).
    pub fn truth(&self, entity: &str) -> Vec<TruthRecord> {
        match self.primary().truth(entity) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "truth of an unknown entity");
                Vec::new()
            }
        }
    }

    /// Number of live records of an entity of the primary company (inactive included,
    /// hard-deleted excluded), without rendering JSON; 0 for unknown entities.
    pub fn count(&self, entity: &str) -> usize {
        self.primary().count(entity).unwrap_or(0)
    }

    /// Adds a generated record to the primary company with `MetaData.CreateTime` = `create_time`
    /// (default: now). With an explicit time, `LastUpdatedTime` equals it too, so a record can
    /// be slipped into a window that is being paged.
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], or [`SimError::Unsupported`] for entities without data.
    pub fn create(
        &self,
        entity: &str,
        create_time: Option<OffsetDateTime>,
    ) -> Result<TruthRecord, SimError> {
        self.primary().create(entity, create_time)
    }

    /// Bumps a record's `SyncToken` and sets `LastUpdatedTime` to now (or 1 s after the old value).
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], [`SimError::Unsupported`] or [`SimError::NotFound`].
    pub fn update(&self, entity: &str, id: &str) -> Result<TruthRecord, SimError> {
        self.primary().update(entity, id)
    }

    /// Deletes a record: customers, items, vendors become inactive; invoices disappear from
    /// queries (CDC lists them as deleted).
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], [`SimError::Unsupported`] or [`SimError::NotFound`].
    pub fn delete(&self, entity: &str, id: &str) -> Result<(), SimError> {
        self.primary().delete(entity, id)
    }

    /// Sets `Active` of a name-list record.
    ///
    /// # Errors
    /// [`SimError::UnknownEntity`], [`SimError::Unsupported`] or [`SimError::NotFound`].
    pub fn set_active(
        &self,
        entity: &str,
        id: &str,
        active: bool,
    ) -> Result<TruthRecord, SimError> {
        self.primary().set_active(entity, id, active)
    }

    /// Replaces the probabilistic fault plan (and reseeds its dice).
    pub fn set_faults(&self, plan: FaultPlan) {
        self.shared().set_faults(plan);
    }

    /// The current fault plan.
    pub fn faults(&self) -> FaultPlan {
        self.shared().settings().faults
    }

    /// The next API requests (query, batch, CDC) that pass authentication and rate limiting
    /// get these faults, one each, in order; replaces any script not yet used up.
    pub fn script(&self, faults: Vec<ScriptedFault>) {
        self.shared().set_script(faults);
    }

    /// The next token-endpoint requests get these faults, one each, in order.
    pub fn script_token(&self, faults: Vec<ScriptedFault>) {
        self.shared().set_token_script(faults);
    }

    /// Scripted API faults not yet used.
    pub fn pending_script(&self) -> usize {
        lock(&self.shared().script).len()
    }

    /// Replaces the quirks.
    pub fn set_quirks(&self, quirks: Quirks) {
        lock(&self.shared().settings).quirks = quirks;
    }

    /// The current quirks.
    pub fn quirks(&self) -> Quirks {
        self.shared().settings().quirks
    }

    /// Sets the per-response latency (fixed + uniform jitter).
    pub fn set_latency(&self, fixed: Duration, jitter: Duration) {
        let mut s = lock(&self.shared().settings);
        s.latency = fixed;
        s.jitter = jitter;
    }

    /// Sets the latency a query's answer adds per row (see [`SimBuilder::latency_per_row`]).
    pub fn set_latency_per_row(&self, per_row: Duration) {
        lock(&self.shared().settings).latency_per_row = per_row;
    }

    /// Sets the per-realm budgets: requests per rate window and concurrent requests (0 = unlimited).
    pub fn set_limits(&self, requests_per_min: u32, max_concurrency: u32) {
        let mut s = lock(&self.shared().settings);
        s.requests_per_window = requests_per_min;
        s.max_concurrency = max_concurrency;
    }

    /// Sets the per-second limit per realm (0 = off).
    pub fn set_requests_per_sec(&self, n: u32) {
        lock(&self.shared().settings).requests_per_sec = n;
    }

    /// Sets the batch limits: batch requests per rate window and items per batch (0 = unlimited).
    pub fn set_batch_limits(&self, per_min: u32, max_items: u32) {
        let mut s = lock(&self.shared().settings);
        s.batch_per_window = per_min;
        s.batch_max_items = max_items;
    }

    /// Sets which reading of the batch reference's 1,000-object cap applies.
    pub fn set_batch_object_cap(&self, cap: BatchObjectCap) {
        lock(&self.shared().settings).batch_object_cap = cap;
    }

    /// Replaces the faults for batch items (see [`BatchItemFault`]); an empty list clears them.
    pub fn set_batch_item_faults(&self, faults: Vec<BatchItemFault>) {
        *lock(&self.shared().item_faults) = faults;
    }

    /// The faults for batch items not yet used up, each with the items it still faults.
    pub fn batch_item_faults(&self) -> Vec<BatchItemFault> {
        lock(&self.shared().item_faults).clone()
    }

    /// Sets the rotation mode and the grace of superseded refresh tokens.
    pub fn set_rotation(&self, rotation: Rotation, grace: Option<Duration>) {
        let mut s = lock(&self.shared().settings);
        s.token.rotation = rotation;
        s.token.grace = grace;
    }

    /// Moves the simulated company clock forward by `by` (whole seconds): records created or
    /// changed from now on are stamped with it, responses carry it as `time`, and CDC's 30-day
    /// horizon is measured on it. Access tokens and rate limits keep real time.
    pub fn advance_clock(&self, by: Duration) {
        if let Some(r) = self.shared().realms.first() {
            r.clock.advance(by.as_secs());
        }
    }

    /// The simulated company clock's now (the wall clock unless [`SimHandle::advance_clock`]
    /// moved it).
    pub fn now(&self) -> OffsetDateTime {
        self.shared()
            .realms
            .first()
            .map_or_else(OffsetDateTime::now_utc, |r| r.clock.now())
    }

    /// Sets the lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        lock(&self.shared().settings).token.access_ttl = ttl;
    }

    /// Expires every access token issued so far (the next API call gets the gateway 401).
    pub fn expire_access_tokens(&self) {
        self.shared().expire_access_tokens();
    }

    /// Revokes every refresh token (the next refresh gets `invalid_grant`).
    pub fn revoke_refresh_tokens(&self) {
        self.shared().revoke_refresh_tokens();
    }

    /// Stops serving and waits (up to 5 s) for in-flight requests.
    ///
    /// # Errors
    /// [`SimError::Serve`] if the server had failed.
    pub async fn shutdown(&self) -> Result<(), SimError> {
        if let Some(tx) = lock(&self.inner.stop).take() {
            let _ = tx.send(());
        }
        let join = lock(&self.inner.join).take();
        if let Some(mut join) = join {
            match tokio::time::timeout(Duration::from_secs(5), &mut join).await {
                Ok(Ok(r)) => r?,
                Ok(Err(e)) => tracing::warn!(error = %e, "server task ended abnormally"),
                Err(_) => {
                    join.abort();
                    tracing::warn!("server did not stop within 5 s; aborted");
                }
            }
        }
        Ok(())
    }
}
