//! `qb-customers-backfill`: copies a QuickBooks Online company's Customer history into `raw.qb_customers`.

fn main() -> std::process::ExitCode {
    backfill_core::cli::main::<backfill_core::Customer>()
}
