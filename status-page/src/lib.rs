//! The read-only status page and metrics of qb-backfill.
//!
//! One job: show what the ledger holds. The page (`GET /`) and the OpenMetrics exposition
//! (`GET /metrics`) are built from the public read API of [`raw_sink`] (its
//! [`raw_sink::volumetry`] queries, and the token facts of `Ledger::token_meta`, which never
//! selects a token), so this crate never writes, never talks to QuickBooks and never reads a
//! token. [`batch`] encodes the final figures of a pipeline run for
//! node_exporter's textfile collector with the same encoder.
//!
//! Access: the server listens on loopback by default; a non-loopback address is refused unless
//! an access token is configured, and then every request must carry it
//! (`Authorization: Bearer <token>`, compared in constant time).
//!
//! ```no_run
//! # async fn demo(sink: raw_sink::Sink) -> Result<(), status_page::StatusError> {
//! use status_page::{Access, Scope, Source, ServeConfig};
//! let scope = Scope {
//!     sources: vec![Source::new("qb_invoices_backfill", "Invoice", raw_sink::RawTable::INVOICES)],
//!     runs_limit: 50,
//! };
//! let cfg = ServeConfig::loopback_default();
//! let access = Access::for_listen(cfg.listen, cfg.auth_token_file.as_deref())?;
//! let server = status_page::bind(cfg.listen, sink, scope, access).await?;
//! println!("status page on http://{}/", server.local_addr());
//! server.run(std::future::pending()).await
//! # }
//! ```

pub mod batch;
mod books;
mod error;
mod html;
pub mod metrics;
mod server;
mod snapshot;
mod upkeep;

pub use books::differences as book_check_differences;
pub use error::StatusError;
pub use html::{escape, render_page};
pub use server::{Access, DEFAULT_LISTEN, ServeConfig, Server, bind, router};
pub use snapshot::{
    LastRun, PipelineState, Scope, Snapshot, Source, VerificationCounts, last_runs,
};
pub use upkeep::{EXPIRY_WARNING, connection_state};
