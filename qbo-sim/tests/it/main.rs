//! Integration tests of qbo-sim, driven over HTTP with a plain client.
#![allow(clippy::unwrap_used)]

mod batch;
mod batch_cdc;
mod catalog;
mod common;
mod connect;
mod control;
mod determinism;
mod entities;
mod faults;
mod oauth;
mod paging;
mod query;
mod rate;
mod reports;
