//! `qb-items-backfill`: copies a QuickBooks Online company's Item history into `raw.qb_items`.

fn main() -> std::process::ExitCode {
    backfill_core::cli::main::<backfill_core::Item>()
}
