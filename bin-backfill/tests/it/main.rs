//! Process-level tests of `qb-backfill`: entity dispatch, `report` files against direct SQL,
//! help and usage errors, `serve`'s access rule and the metrics textfile.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod auth;
mod batch;
mod books;
mod common;
mod generic;
mod realms;
mod realms_auth;
mod realms_sync;
mod report;
mod serve;
mod sync;
