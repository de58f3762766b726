//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong while serving the status page or writing metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// A non-loopback address was asked for without an access token.
    #[error(
        "refusing to listen on {addr} without an access token: a non-loopback address needs \
         --auth-token-file PATH (or listen on 127.0.0.1)"
    )]
    NonLoopbackWithoutToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The access-token file could not be read.
    #[error("reading the access token file {}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The access-token file holds no token.
    #[error("the access token file {} is empty", path.display())]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The address could not be bound.
    #[error("listening on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("serving the status page")]
    Serve(#[source] std::io::Error),
    /// A ledger query failed.
    #[error("reading the ledger")]
    Database(#[source] raw_sink::SinkError),
    /// Metrics could not be encoded.
    #[error("encoding metrics")]
    Encode(#[source] std::fmt::Error),
    /// The metrics textfile could not be written.
    #[error("writing the metrics textfile {}", path.display())]
    Textfile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl StatusError {
    /// Whether the error is the operator's configuration (address, token file) rather than a
    /// failure of the database or the machine.
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::NonLoopbackWithoutToken { .. }
                | Self::TokenFile { .. }
                | Self::EmptyToken { .. }
                | Self::Bind { .. }
        )
    }
}
