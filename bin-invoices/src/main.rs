//! `qb-invoices-backfill`: copies a QuickBooks Online company's Invoice history into `raw.qb_invoices`.

fn main() -> std::process::ExitCode {
    backfill_core::cli::main::<backfill_core::Invoice>()
}
