//! Process-level tests of `qb-invoices-backfill`: exit codes, logs, secrets, kill and resume.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod chaos;
mod common;
mod exit_codes;
mod resume;
mod run_logs;
mod token_store;
