//! PostgreSQL sink of qb-backfill: connection pool, embedded migrations, the raw layer's
//! idempotent page upsert, the run ledger, the OAuth token store and the volumetry queries.
//!
//! `raw-sink` knows nothing of QuickBooks: it stores JSON records by `(realm_id, id)` in tables
//! of schema `raw`, and windows, runs, triggers and tokens in schema `backfill`. All DDL lives in
//! the workspace's `migrations/` folder, embedded at build time and applied by
//! [`Sink::migrate`].
//!
//! ```no_run
//! use raw_sink::{PageMeta, PgConfig, RawRow, RawTable, Sink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = Sink::connect(&PgConfig::from_env()?).await?;
//! sink.migrate().await?;
//!
//! let payload = r#"{"Id":"1","Balance":1.00000000000000000001}"#;
//! let meta = PageMeta {
//!     realm_id: "9130".into(),
//!     window_start: time::macros::datetime!(2024-01-01 0:00 UTC),
//!     window_end: time::macros::datetime!(2024-01-02 0:00 UTC),
//!     page_number: 1,
//!     page_size: 1000,
//!     request_payload: "SELECT * FROM Customer STARTPOSITION 1 MAXRESULTS 1000".into(),
//! };
//! let counts = sink
//!     .upsert_page(RawTable::CUSTOMERS, &meta, &[RawRow { id: "1", payload }], None)
//!     .await?;
//! assert_eq!(counts.inserted + counts.updated + counts.unchanged, 1);
//! # Ok(())
//! # }
//! ```

mod book_checks;
mod config;
mod error;
mod ledger;
mod quarantine;
mod reports;
mod sink;
mod table;
mod tls;
mod tombstone;
mod upsert;
pub mod volumetry;
mod write;

#[cfg(feature = "test-support")]
pub mod testing;

pub use book_checks::{
    BookCheck, BookCheckEnd, BookCheckKind, BookCheckRow, BookCheckStatus, NewBookCheck,
    NewReportRun, ReportRunEnd, ReportRunStatus,
};
pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, PgConfig, SslMode};
pub use error::SinkError;
pub use ledger::{
    AdvisoryLock, BudgetReservation, BudgetShare, ClaimStatus, ConnectionExpiry, LeaseRenewal,
    Ledger, NewRun, NewSync, NewWorker, Reload, Run, RunId, RunStatus, RunSummary, ShareGrant,
    SyncId, SyncKind, SyncMarks, SyncRow, SyncStatus, SyncTally, TokenGrantNote, TokenLock,
    TokenMetaRow, Trigger, TriggerKey, TriggerStatus, Window, WindowClaim, WindowId, WindowOutcome,
    WindowScope, WindowSpan, WindowStatus, WorkerRow,
};
pub use quarantine::RejectRecord;
pub use reports::{ReportKey, ReportWrite, STORE_REPORT_SQL, StoredReport};
pub use sink::{Sink, embedded_migrations};
pub use table::RawTable;
pub use tombstone::{Tombstone, TombstoneOutcome};
pub use upsert::{
    PageMeta, PageOutcome, PageOwner, PageWrite, RawRow, RejectRow, Rejected, UpsertCounts,
};
pub use volumetry::{
    BookMonth, DayCount, RerunEntry, SyncState, TableTotals, Verification, WindowVolume,
};

/// Re-exported so callers can name the pool type of [`Sink::pool`] / [`Sink::from_pool`].
pub use deadpool_postgres;
