//! The QuickBooks Online backfill: what varies per entity ([`Entity`], and the 26 built-in
//! entities declared once in [`entity`]), the window planner ([`window`]), the generic loop
//! ([`run()`]) that pages each window into the raw layer with verification and a resumable
//! ledger, the volumetry [`report`], and the shared command line of the pipeline binaries
//! ([`cli`]).
//!
//! ```no_run
//! use backfill_core::{Invoice, RunConfig, WindowField, window};
//! use qbo_client::{QboClient, QboConfig};
//! use raw_sink::{PgConfig, Sink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = Sink::connect(&PgConfig::from_env()?).await?;
//! sink.migrate().await?;
//! let client = QboClient::builder(QboConfig::from_env()?).build()?;
//! let plan = window::plan(&window::PlanRequest {
//!     start: window::parse_instant("2023-01-01")?,
//!     end: window::parse_instant("2023-02-01")?,
//!     size: window::WindowSize::DAY,
//!     now: time::OffsetDateTime::now_utc(),
//!     whole_days: false,
//! })?;
//! let cfg = RunConfig::new(plan.windows, WindowField::CreateTime, "january-2023");
//! let report = backfill_core::run::<Invoice>(&client, &sink, &cfg).await?;
//! println!("{} windows done, {} rows", report.windows_done, report.rows);
//! # Ok(())
//! # }
//! ```

pub mod batch_metrics;
pub mod books;
pub mod claim;
pub mod cli;
mod dbretry;
pub mod entity;
mod error;
pub mod logging;
mod progress;
pub mod report;
mod run;
pub mod shutdown;
pub mod sync;
mod token_store;
pub mod window;

pub use claim::{BudgetRequest, Worker, WorkerConfig};
pub use dbretry::{DbRetry, parse_duration};
pub use entity::*;
pub use error::{AUTH_RUNBOOK, Error, ExitStatus};
pub use progress::Progress;
pub use run::{
    DEFAULT_MEMORY_BUDGET, RunConfig, RunReport, WindowProblem, parse_memory_budget, run,
};
pub use shutdown::{Shutdown, StopReason};
pub use token_store::{
    PgTokenStore, TOKEN_RESCUE_DIR_ENV, TokenStoreLocation, open_token_store, token_key_from_env,
};
pub use window::{Plan, PlanRequest, Window, WindowSize};
