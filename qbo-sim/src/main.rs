//! `qbo-sim`: run the QuickBooks Online simulator from the command line.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use qbo_sim::{BatchObjectCap, FaultPlan, Quirks, Rotation, Sim, ThrottleBody};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const LONG_ABOUT: &str = "\
A local QuickBooks Online simulator: a test bed for any QBO client (ours, Airbyte's and
Singer's connectors, dlt, python-quickbooks, your own), serving on loopback over
deterministic generated data.

WHAT IT MODELS
  OAuth 2.0 refresh (POST /oauth2/v1/tokens/bearer): client credentials in a Basic header or
    as client_id/client_secret form fields; 1 h access tokens; refresh-token rotation (every
    refresh, never, or after an age) with the old token dead at once or after a grace;
    invalid_grant, invalid_client (400 or 401). Intuit's discovery document
    (GET /.well-known/openid_configuration) names this token endpoint.
  Query (GET or POST /v3/company/<realm>/query): SELECT * | COUNT(*), WHERE .. AND .. with
    = < > <= >= IN LIKE, ORDERBY / ORDER BY, STARTPOSITION, MAXRESULTS (max 1000); instants
    compared across offsets; name lists (Customer, Item, Vendor, Account, Employee, ...)
    hide inactive rows unless the query filters Active; QBO's page, empty-page and COUNT
    shapes; XML unless JSON is accepted.
  Batch (30 query items at most; the 1,000-object cap per item or per batch,
    --batch-object-cap; per-item faults by PUT /__sim/faults/batch-items), CDC (30 days, 1000 objects, deleted transactions), and
    GET /v3/company/<realm>/companyinfo/<realm>.
  Data: Customer, Vendor, Item, Invoice, Payment, Bill, JournalEntry, Estimate, SalesReceipt,
    Account, Employee, CompanyInfo with the nested shapes of real records (lines, linked
    transactions, custom fields, sub-customers/items/accounts), money as two-decimal text,
    timestamps in US Pacific time, post-dated TxnDates, unicode; other entities (Budget,
    TaxAgency, CustomerType, Class, Term, Purchase, ...) answer empty pages.
  Limits per realm: 500 requests/min, 10 requests/s, 10 in flight, 40 batch requests/min;
    refusals are 429 with QBO's throttle fault (XML by default).
  Faults by probability (--p-*) or script (POST /__sim/script): 429 bursts, 500 SystemFault
    or InternalServerError 3100, 502/503 HTML pages, 504 XML 6002, 403 3100, 403 XML
    throttle, 401 XML 120 and 100, 400 without element/time, slow responses, dropped
    connections, malformed JSON, faults inside HTTP 200, expired access tokens.
  Control and evidence over HTTP under /__sim: statistics, the request log, the truth of
  every entity, mutations while a client runs, faults, quirks, limits, latency.
  Latency: base (--latency-ms, every answer) + per row (--latency-per-row-us, queries:
    a COUNT or an empty page is fast, a full page slow) + uniform jitter (--jitter-ms).
    Default none; QBO-like figures (a 1,000-invoice page takes seconds, a COUNT a few
    hundred ms): --latency-ms 150 --latency-per-row-us 1850 --jitter-ms 200.

WHAT IT DOES NOT MODEL
  Writes (create/update/delete through the API; the /__sim routes mutate data instead),
  reports, attachments, webhooks, the authorization-code flow and revoke, minor-version
  differences, include=enhancedAllCustomFields, multi-currency, Intuit's monthly metering,
  and the accounting itself (balances are plausible, not posted from transactions).";

const AFTER_HELP: &str = "EXAMPLE:
  qbo-sim --port 8080 --invoices 100000 --latency-ms 150 --jitter-ms 100 > /tmp/qbo.env &
  sleep 1; set -a; . /tmp/qbo.env; set +a   # or: eval \"$(cat /tmp/qbo.env)\"
  qb-invoices-backfill --start 2023-01-01 --end 2023-02-01

On start it prints QBO_BASE_URL, QBO_TOKEN_URL, QBO_CLIENT_ID, QBO_CLIENT_SECRET,
QBO_REFRESH_TOKEN, QBO_REALM_ID and QBO_ENV=sandbox, one per line, then serves until
Ctrl-C or SIGTERM. Another client points its API base at QBO_BASE_URL and its token URL at
QBO_TOKEN_URL. Control and statistics over HTTP: GET <base>/__sim/stats, /__sim/requests,
/__sim/credentials, /__sim/truth/<Entity>; PUT /__sim/faults, /__sim/faults/batch-items, /__sim/quirks, /__sim/limits,
/__sim/latency; POST /__sim/script, /__sim/records/<Entity>, ...";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RotationArg {
    /// The same refresh token comes back every time.
    Never,
    /// A new refresh token on every refresh.
    EveryRefresh,
    /// A new refresh token once the current one is --rotate-every-secs old.
    Every,
}

/// Readings of the batch reference's "at most 1,000 objects a response".
#[derive(Debug, Clone, Copy, ValueEnum)]
enum BatchCapArg {
    /// Each item answers at most 1,000 objects (its MAXRESULTS).
    PerItem,
    /// The whole batch answers at most 1,000 objects; later items' rows are cut off.
    PerBatch,
    /// No cap of the batch's own.
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BodyArg {
    Xml,
    Json,
}

/// A local QuickBooks Online simulator: OAuth token endpoint, query/batch/CDC/CompanyInfo
/// endpoints, QBO-shaped faults and rate limits, over deterministic generated data. A test
/// bed for any QBO client (ours, Airbyte's, Singer's, dlt, python-quickbooks, …).
#[derive(Debug, Parser)]
#[command(
    name = "qbo-sim",
    version,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
struct Args {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 0, env = "QBO_SIM_PORT")]
    port: u16,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of customers.
    #[arg(long, default_value_t = 200)]
    customers: usize,
    /// Exactly this many of the customers inactive (default: each one with probability 0.08)
    #[arg(long)]
    inactive_customers: Option<usize>,
    /// Number of items.
    #[arg(long, default_value_t = 100)]
    items: usize,
    /// Number of invoices.
    #[arg(long, default_value_t = 1000)]
    invoices: usize,
    /// Number of vendors.
    #[arg(long, default_value_t = 40)]
    vendors: usize,
    /// Number of payments (most applied to an earlier invoice of the same customer).
    #[arg(long, default_value_t = 400)]
    payments: usize,
    /// Number of bills.
    #[arg(long, default_value_t = 300)]
    bills: usize,
    /// Number of journal entries.
    #[arg(long, default_value_t = 150)]
    journal_entries: usize,
    /// Number of estimates.
    #[arg(long, default_value_t = 200)]
    estimates: usize,
    /// Number of sales receipts.
    #[arg(long, default_value_t = 300)]
    sales_receipts: usize,
    /// Number of accounts (the chart of accounts).
    #[arg(long, default_value_t = 60)]
    accounts: usize,
    /// Number of employees.
    #[arg(long, default_value_t = 20)]
    employees: usize,
    /// Start of the span of MetaData.CreateTime (RFC 3339 or a date = 00:00 UTC).
    #[arg(long, default_value = "2023-01-01")]
    start: String,
    /// End (exclusive) of the span of MetaData.CreateTime.
    #[arg(long, default_value = "2025-01-01")]
    end: String,
    /// Realm id of the company.
    #[arg(long, default_value = qbo_sim::DEFAULT_REALM_ID)]
    realm_id: String,
    /// Address to listen on (use 0.0.0.0 only inside a container network).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// OAuth client id.
    #[arg(long, default_value = qbo_sim::DEFAULT_CLIENT_ID)]
    client_id: String,
    /// Read the OAuth client id from this file instead (e.g. a Compose secret).
    #[arg(long, conflicts_with = "client_id")]
    client_id_file: Option<std::path::PathBuf>,
    /// OAuth client secret.
    #[arg(long, default_value = qbo_sim::DEFAULT_CLIENT_SECRET)]
    client_secret: String,
    /// Read the OAuth client secret from this file instead.
    #[arg(long, conflicts_with = "client_secret")]
    client_secret_file: Option<std::path::PathBuf>,
    /// Initial refresh token.
    #[arg(long, default_value = qbo_sim::DEFAULT_REFRESH_TOKEN)]
    refresh_token: String,
    /// Read the initial refresh token from this file instead.
    #[arg(long, conflicts_with = "refresh_token")]
    refresh_token_file: Option<std::path::PathBuf>,
    /// Fixed latency added to every response, in ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Random extra latency, uniform 0..=N ms.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Latency a query's answer adds per row it holds, in µs, on top of --latency-ms: a COUNT
    /// or an empty page answers in --latency-ms, a full page of 1,000 rows in --latency-ms +
    /// 1,000 × N µs (+ jitter). QBO-like: --latency-ms 150 --latency-per-row-us 1850 (2 s a
    /// full page).
    #[arg(long, default_value_t = 0)]
    latency_per_row_us: u64,
    /// Requests per minute per realm (0 = unlimited).
    #[arg(long, default_value_t = 500)]
    requests_per_min: u32,
    /// Concurrent requests per realm (0 = unlimited).
    #[arg(long, default_value_t = 10)]
    max_concurrency: u32,
    /// Requests per second per realm, counted on arrival (0 = unlimited). Default: Intuit's
    /// 10 while --requests-per-min is QBO's 500; off when the per-minute budget is changed.
    #[arg(long)]
    requests_per_sec: Option<u32>,
    /// Batch requests per minute per realm (0 = unlimited).
    #[arg(long, default_value_t = 40)]
    batch_per_min: u32,
    /// Most items in one batch request (0 = no limit).
    #[arg(long, default_value_t = 30)]
    batch_max_items: u32,
    /// Which reading of the batch reference's 1,000-object cap applies: per item, or per
    /// batch (items' rows cut off once the batch's total reaches 1,000).
    #[arg(long, value_enum, default_value_t = BatchCapArg::PerItem)]
    batch_object_cap: BatchCapArg,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Refresh-token rotation mode.
    #[arg(long, value_enum, default_value_t = RotationArg::EveryRefresh)]
    rotation: RotationArg,
    /// With --rotation every: rotate once the current token is this old.
    #[arg(long, default_value_t = 86_400)]
    rotate_every_secs: u64,
    /// Seconds a superseded refresh token keeps working (absent = dies at once).
    #[arg(long)]
    old_token_grace_secs: Option<u64>,
    /// Probability of a spurious 429.
    #[arg(long, default_value_t = 0.0)]
    p_throttle: f64,
    /// Probability of a 500.
    #[arg(long, default_value_t = 0.0)]
    p_500: f64,
    /// Probability of a 502.
    #[arg(long, default_value_t = 0.0)]
    p_502: f64,
    /// Probability of a 503.
    #[arg(long, default_value_t = 0.0)]
    p_503: f64,
    /// Probability of a 504 (the gateway's XML, code 6002).
    #[arg(long, default_value_t = 0.0)]
    p_504: f64,
    /// Probability of a 500 InternalServerError with code 3100 (gateway JSON).
    #[arg(long, default_value_t = 0.0)]
    p_500_3100: f64,
    /// Probability of a 403 with code 3100 (gateway JSON).
    #[arg(long, default_value_t = 0.0)]
    p_403_3100: f64,
    /// Probability of a 403 throttle (XML, code 3001).
    #[arg(long, default_value_t = 0.0)]
    p_403_throttle: f64,
    /// Probability of a 401 XML code 120 (the company's subscription lacks API access).
    #[arg(long, default_value_t = 0.0)]
    p_401_120: f64,
    /// Probability of a 401 XML code 100 (token and company do not match).
    #[arg(long, default_value_t = 0.0)]
    p_401_100: f64,
    /// Probability of a 400 ValidationFault without `element` and `time`.
    #[arg(long, default_value_t = 0.0)]
    p_400: f64,
    /// Probability of a slow response (delayed by --slow-ms).
    #[arg(long, default_value_t = 0.0)]
    p_slow: f64,
    /// Delay of a slow response, in ms.
    #[arg(long, default_value_t = 5000)]
    slow_ms: u64,
    /// Probability of a connection dropped mid-body.
    #[arg(long, default_value_t = 0.0)]
    p_drop: f64,
    /// Probability of a truncated JSON body.
    #[arg(long, default_value_t = 0.0)]
    p_malformed: f64,
    /// Probability of a SystemFault with HTTP 200.
    #[arg(long, default_value_t = 0.0)]
    p_fault_200: f64,
    /// Probability that the presented access token is declared expired.
    #[arg(long, default_value_t = 0.0)]
    p_expired_token: f64,
    /// Seed of the fault dice.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Body of 429 responses.
    #[arg(long, value_enum, default_value_t = BodyArg::Xml)]
    throttle_body: BodyArg,
    /// Send Retry-After: N on 429 responses (absent = no header).
    #[arg(long)]
    retry_after_secs: Option<u64>,
    /// HTTP status of invalid_client (400 or 401).
    #[arg(long, default_value_t = 401)]
    invalid_client_status: u16,
}

fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("{s:?} is neither RFC 3339 nor YYYY-MM-DD"))?;
    Ok(d.midnight().assume_utc())
}

/// The flag's value, or the trimmed content of its `_file` variant when given.
fn value_or_file(value: String, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match file {
        None => Ok(value),
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned()),
    }
}

fn probability(name: &str, p: f64) -> anyhow::Result<f64> {
    anyhow::ensure!((0.0..=1.0).contains(&p), "--{name} must be between 0 and 1");
    Ok(p)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let faults = FaultPlan {
        throttle: probability("p-throttle", a.p_throttle)?,
        server_error: probability("p-500", a.p_500)?,
        bad_gateway: probability("p-502", a.p_502)?,
        service_unavailable: probability("p-503", a.p_503)?,
        gateway_timeout: probability("p-504", a.p_504)?,
        slow: probability("p-slow", a.p_slow)?,
        slow_delay: Duration::from_millis(a.slow_ms),
        drop_connection: probability("p-drop", a.p_drop)?,
        malformed_json: probability("p-malformed", a.p_malformed)?,
        fault_with_200: probability("p-fault-200", a.p_fault_200)?,
        expired_token: probability("p-expired-token", a.p_expired_token)?,
        internal_error_3100: probability("p-500-3100", a.p_500_3100)?,
        forbidden_3100: probability("p-403-3100", a.p_403_3100)?,
        throttle_403: probability("p-403-throttle", a.p_403_throttle)?,
        no_subscription_access: probability("p-401-120", a.p_401_120)?,
        realm_mismatch: probability("p-401-100", a.p_401_100)?,
        bad_request: probability("p-400", a.p_400)?,
        seed: a.fault_seed,
    };
    anyhow::ensure!(
        matches!(a.invalid_client_status, 400 | 401),
        "--invalid-client-status must be 400 or 401"
    );
    let quirks = Quirks {
        throttle_body: match a.throttle_body {
            BodyArg::Xml => ThrottleBody::Xml,
            BodyArg::Json => ThrottleBody::Json,
        },
        retry_after: a.retry_after_secs.map(Duration::from_secs),
        invalid_client_status: a.invalid_client_status,
        ..Quirks::default()
    };
    let rotation = match a.rotation {
        RotationArg::Never => Rotation::Never,
        RotationArg::EveryRefresh => Rotation::EveryRefresh,
        RotationArg::Every => Rotation::Every(Duration::from_secs(a.rotate_every_secs)),
    };
    let sim = Sim::builder()
        .port(a.port)
        .host(a.host)
        .seed(a.seed)
        .customers(a.customers)
        .inactive_customers(a.inactive_customers)
        .items(a.items)
        .invoices(a.invoices)
        .vendors(a.vendors)
        .payments(a.payments)
        .bills(a.bills)
        .journal_entries(a.journal_entries)
        .estimates(a.estimates)
        .sales_receipts(a.sales_receipts)
        .accounts(a.accounts)
        .employees(a.employees)
        .span(parse_time(&a.start)?, parse_time(&a.end)?)
        .realm_id(a.realm_id)
        .client_id(value_or_file(a.client_id, a.client_id_file.as_deref())?)
        .client_secret(value_or_file(
            a.client_secret,
            a.client_secret_file.as_deref(),
        )?)
        .refresh_token(value_or_file(
            a.refresh_token,
            a.refresh_token_file.as_deref(),
        )?)
        .latency(
            Duration::from_millis(a.latency_ms),
            Duration::from_millis(a.jitter_ms),
        )
        .latency_per_row(Duration::from_micros(a.latency_per_row_us))
        .requests_per_min(a.requests_per_min)
        .max_concurrency(a.max_concurrency)
        .requests_per_sec(a.requests_per_sec.unwrap_or(if a.requests_per_min == 500 {
            10
        } else {
            0
        }))
        .batch_requests_per_min(a.batch_per_min)
        .batch_max_items(a.batch_max_items)
        .batch_object_cap(match a.batch_object_cap {
            BatchCapArg::PerItem => BatchObjectCap::PerItem,
            BatchCapArg::PerBatch => BatchObjectCap::PerBatch,
            BatchCapArg::Off => BatchObjectCap::Off,
        })
        .access_token_ttl(Duration::from_secs(a.token_ttl_secs))
        .rotation(rotation)
        .old_refresh_token_grace(a.old_token_grace_secs.map(Duration::from_secs))
        .faults(faults)
        .quirks(quirks)
        .spawn()
        .await
        .context("starting the simulator")?;
    // The one place this program writes to stdout: lines a shell can `eval`.
    let lines = [
        format!("QBO_BASE_URL={}", sim.base_url()),
        format!("QBO_TOKEN_URL={}", sim.token_url()),
        format!("QBO_CLIENT_ID={}", sim.client_id()),
        format!("QBO_CLIENT_SECRET={}", sim.client_secret()),
        format!("QBO_REFRESH_TOKEN={}", sim.refresh_token()),
        format!("QBO_REALM_ID={}", sim.realm_id()),
        "QBO_ENV=sandbox".to_string(),
    ];
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for l in &lines {
            writeln!(out, "{l}").context("writing to stdout")?;
        }
        out.flush().context("flushing stdout")?;
    }
    wait_for_signal().await;
    tracing::info!("stopping");
    let stats = sim.stats();
    tracing::info!(
        requests = stats.total_requests,
        throttled = stats.throttled,
        bytes = stats.bytes_served,
        "final statistics"
    );
    sim.shutdown().await.context("stopping the simulator")?;
    Ok(())
}
