//! The run ledger (schema `backfill`, SPEC §5) and the OAuth token store (SPEC §3).
//!
//! Every status change is one conditional `UPDATE ... WHERE status IN (allowed) RETURNING`, so
//! the database enforces the legal transitions even with several processes; an illegal one
//! comes back as [`SinkError::InvalidTransition`] naming the current status.

mod budget;
mod claims;
mod lock;
mod runs;
mod syncs;
mod token_meta;
mod tokens;
mod triggers;
mod windows;
mod workers;

use std::fmt;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::SinkError;
use crate::sink::get_client;

pub use budget::BudgetReservation;
pub use claims::{ClaimStatus, Reload, WindowClaim};
pub use lock::AdvisoryLock;
pub use runs::{NewRun, Run, RunStatus, RunSummary};
pub(crate) use syncs::from_row as sync_from_row;
pub use syncs::{NewSync, SyncId, SyncKind, SyncMarks, SyncRow, SyncStatus, SyncTally};
pub use token_meta::{ConnectionExpiry, TokenGrantNote, TokenMetaRow};
pub use tokens::TokenLock;
pub use triggers::{Trigger, TriggerKey, TriggerStatus};
pub use windows::{Window, WindowOutcome, WindowScope, WindowSpan, WindowStatus};
pub use workers::{BudgetShare, LeaseRenewal, NewWorker, ShareGrant, WorkerRow};

/// Ledger and token-store operations on a pool. Cheap to clone; get one from
/// [`Sink::ledger`](crate::Sink::ledger).
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub(crate) async fn client(&self) -> Result<Object, SinkError> {
        get_client(&self.pool).await
    }
}

/// Id of a row of `backfill.runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(i64);

impl RunId {
    /// Wraps a stored id (e.g. given on a command line).
    #[must_use]
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The numeric id.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Id of a row of `backfill.windows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowId(i64);

impl WindowId {
    /// Wraps a stored id.
    #[must_use]
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The numeric id.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Reads column `name`, mapping a type mismatch to an error instead of panicking.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, SinkError> {
    row.try_get(name)
        .map_err(|e| SinkError::query(format!("reading ledger column {name}"), e))
}

/// A non-negative count column as `u64` (CHECK constraints keep them >= 0).
fn count_col(row: &Row, name: &str) -> Result<u64, SinkError> {
    let v: i64 = col(row, name)?;
    Ok(u64::try_from(v).unwrap_or_default())
}

/// A non-negative `INT` column as `u32`.
fn small_col(row: &Row, name: &str) -> Result<u32, SinkError> {
    let v: i32 = col(row, name)?;
    Ok(u32::try_from(v).unwrap_or_default())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Declares a status enum stored as lowercase text.
macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident, $column:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The value stored in the database.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            // Some statuses are only written (e.g. `backfill.report_runs`), never read back.
            #[allow(dead_code)]
            pub(crate) fn parse(text: &str) -> Result<Self, crate::error::SinkError> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(crate::error::SinkError::Corrupt {
                        column: $column,
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use status_enum;
