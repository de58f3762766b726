//! Add an entity in a few lines and run it with the full pipeline command line.
//!
//! An entity is a unit struct and a handful of constants: the QBO name, the pipeline name kept
//! in the ledger, the raw table, and its Active / TxnDate rules. `backfill_core::cli::main`
//! then gives it everything the shipped binaries have: windows, paging, verification, resume,
//! one-time triggers, `report`, exit codes.
//!
//! The table must exist: add a migration such as
//! `migrations/V3__qb_my_entity.sql` with the raw layout (copy one table of
//! `migrations/V2__more_entities.sql`). So that this example runs against `qbo-sim` out of the
//! box, it loads vendors, windowed on `MetaData.LastUpdatedTime`, into `raw.qb_vendors`, which
//! V2 already creates, under its own pipeline name (its own ledger windows and triggers).
//!
//! ```text
//! # QBO_* and DATABASE_URL (or PG_*) in the environment:
//! cargo run -p examples --example new_entity -- --start 2024-01-01 --end 2024-03-01
//! cargo run -p examples --example new_entity -- report --out /tmp/vendor-evidence
//! ```

use backfill_core::{Entity, WindowField};
use raw_sink::RawTable;

/// Vendors by last update: a name list, so inactive vendors are included.
struct RecentlyChangedVendors;

impl Entity for RecentlyChangedVendors {
    const NAME: &'static str = "Vendor";
    const PIPELINE: &'static str = "example_vendors_by_update";
    const TABLE: RawTable = RawTable::new("qb_vendors");
    const NAME_LIST: bool = true;
    const DEFAULT_WINDOW_FIELD: WindowField = WindowField::LastUpdatedTime;
}

fn main() -> std::process::ExitCode {
    backfill_core::cli::main::<RecentlyChangedVendors>()
}
