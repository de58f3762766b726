//! Integration tests of backfill-core: the loop against qbo-sim and a real PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod batch;
mod chaos;
mod common;
mod edges;
mod equality;
mod evidence;
mod fake_qbo;
mod faults;
mod paging_change;
mod pipeline;
mod realms;
mod report;
mod rerun;
mod sparse;
mod status;
mod status_books;
mod status_upkeep;
mod token_meta;
mod vendor;
