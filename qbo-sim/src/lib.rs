//! # qbo-sim — a local QuickBooks Online simulator
//!
//! Serves, on `127.0.0.1`, the parts of the QBO API that data pipelines use, faithfully
//! enough that a client passing against it works against QBO:
//!
//! - `POST /oauth2/v1/tokens/bearer` — refresh-token grant with the client credentials in a
//!   Basic header or as `client_id` / `client_secret` form fields, access
//!   token expiry, refresh-token rotation ([`Rotation`]) with the old token dying at once or
//!   after a grace period, `invalid_grant` / `invalid_client`, and
//!   `x_refresh_token_hard_expires_in` when the request header
//!   `x-include-refresh-token-hard-expires-in: true` is sent.
//! - `GET|POST /v3/company/{realm}/query` — the query language subset (`SELECT *` /
//!   `COUNT(*)`, `WHERE … AND …` with `= < > <= >= IN LIKE`, `ORDERBY`/`ORDER BY`,
//!   `STARTPOSITION`, `MAXRESULTS`), instants compared across offsets, the inactive-record
//!   rule of name lists, QBO's page/empty/COUNT shapes, XML when JSON is not accepted.
//! - `POST /v3/company/{realm}/batch` (query items, at most 30; the 1,000-object cap read per
//!   item or per batch, [`BatchObjectCap`]; per-item faults, [`BatchItemFault`]) and
//!   `GET /v3/company/{realm}/cdc`.
//! - `GET /v3/company/{realm}/reports/{name}` — TransactionList, ProfitAndLoss,
//!   BalanceSheet, TrialBalance, GeneralLedger, AgedReceivables and AgedPayables computed
//!   from the simulator's own records (`start_date`, `end_date`, `accounting_method`,
//!   `date_macro`), in QBO's report shape (Header, Columns, Rows with Sections and Summary).
//! - `GET /v3/company/{realm}/companyinfo/{realm}` — the company's `CompanyInfo` (also
//!   `SELECT * FROM CompanyInfo`), which other connectors read first.
//! - `/__sim/…` — statistics, request log, truth, mutations and fault control over HTTP.
//!
//! Data (Customer, Item, Invoice, Vendor, Payment, Bill, JournalEntry, Estimate, SalesReceipt,
//! Account, Employee; other entities are known but empty) is generated deterministically from
//! a seed, with the nested shapes of real records (sales lines with a subtotal and tax
//! detail, payments whose `LinkedTxn` names an earlier invoice of the same customer, balanced
//! journal entries, account- and item-based bill lines, custom fields, sub-accounts), money as
//! two-decimal text, post-dated `TxnDate`s (reversing entries), `MetaData` timestamps in US
//! Pacific time (DST-correct), records exactly on and one second before UTC midnights, ids not
//! in time order, and text with unicode, quotes, backslashes and newlines. Only a 32-byte index entry per record is
//! kept in memory; JSON is rendered on demand, always to the same bytes.
//!
//! Intuit's limits are enforced per realm, each switchable: requests per minute, requests in
//! flight, requests per second (off by default in the library, on in the binary; all of them
//! at QBO's values with [`SimBuilder::qbo_limits`]), batch requests per minute and items per
//! batch.
//!
//! Adversity is switchable by probability ([`FaultPlan`]) or by script ([`ScriptedFault`]):
//! throttling (the limits above, XML or JSON body, with or without `Retry-After`), 500/502/503, the gateway's XML 504 (code 6002), slow responses, connections
//! dropped mid-body, malformed JSON, faults with HTTP 200, expired access tokens, latency with
//! jitter, and the fault bodies public recordings of the live API show: 500
//! `InternalServerError` and 403 with code 3100 in the gateway's JSON (null sibling keys,
//! `requestId`), the 403 XML throttle, 401 XML code 120 (no API access with the company's
//! subscription) and code 100 (token of another company, XML even when JSON was asked; a real
//! realm mismatch is answered the same way), and 400s without `element` and `time`.
//! Behaviours that QBO's documentation leaves unsettled are [`Quirks`].
//!
//! ```no_run
//! use std::time::Duration;
//! use qbo_sim::{Rotation, ScriptedFault, Sim};
//!
//! # async fn demo() -> Result<(), qbo_sim::SimError> {
//! let sim = Sim::builder()
//!     .seed(7)
//!     .customers(50)
//!     .invoices(5_000)
//!     .rotation(Rotation::EveryRefresh)
//!     .latency(Duration::from_millis(20), Duration::from_millis(10))
//!     .spawn()
//!     .await?;
//! println!("QBO_BASE_URL={}", sim.base_url());
//! println!("QBO_TOKEN_URL={}", sim.token_url());
//! // The next two API requests are throttled, then one is answered with a 503.
//! sim.script(vec![ScriptedFault::Throttle, ScriptedFault::Throttle, ScriptedFault::Status(503)]);
//! // ... run a client against it ...
//! let expected = sim.truth("Invoice");
//! assert_eq!(expected.len(), 5_000);
//! println!("{} requests, {} throttled", sim.stats().total_requests, sim.stats().throttled);
//! sim.shutdown().await?;
//! # Ok(()) }
//! ```

mod clock;
mod config;
mod data;
mod error;
mod limits;
mod query;
mod realm;
mod reports;
mod schema;
mod server;
mod sim;
mod stats;
mod tokens;
mod tz;

pub use config::{
    BATCH_OBJECT_CAP, BatchItemFault, BatchItemFaultKind, BatchObjectCap, Consent, FaultPlan,
    Quirks, Rotation, ScriptedFault, ThrottleBody,
};
pub use error::SimError;
pub use realm::TruthRecord;
pub use sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REALM_ID, DEFAULT_REFRESH_TOKEN,
    REALISTIC_BASE_LATENCY, REALISTIC_LATENCY_PER_ROW, RealmHandle, Sim, SimBuilder, SimHandle,
};
pub use stats::{RequestRecord, SimStats};

/// Names of the entities the simulator knows (generated: Customer, Item, Invoice, Vendor,
/// Payment, Bill, JournalEntry, Estimate, SalesReceipt, Account, Employee; the others answer
/// with empty results).
pub fn known_entities() -> Vec<&'static str> {
    schema::ENTITIES.iter().map(|e| e.name).collect()
}
