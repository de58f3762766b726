//! Repository checks that need no server: the Compose file and the Dockerfile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod compose;
