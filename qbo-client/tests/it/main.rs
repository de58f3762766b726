//! Integration tests of qbo-client against qbo-sim (in-process, random port) and a raw capture
//! server for wire-format checks.
#![allow(clippy::unwrap_used)]

mod auth;
mod batch;
mod cdc;
mod common;
mod connect;
mod diagnosis;
mod faults;
mod limits;
mod paging;
mod robust;
mod secrets;
mod tokens;
mod wire;
