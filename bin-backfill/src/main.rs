//! `qb-backfill --entity <Name>`: copies the history of any QuickBooks Online query entity into
//! its `raw.qb_<plural>` table.

fn main() -> std::process::ExitCode {
    backfill_core::cli::main_any()
}
