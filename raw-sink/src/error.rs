//! The crate's one error type.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;

use deadpool_postgres::PoolError;

/// Everything that can go wrong in `raw-sink`.
///
/// Messages are one line and never contain a password or a connection URL; the cause, when
/// there is one, is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A required environment variable is missing.
    #[error("{var} is not set ({hint})")]
    MissingVar {
        /// The variable.
        var: &'static str,
        /// What to set instead.
        hint: &'static str,
    },
    /// Two variables that exclude each other are both set (e.g. `X` and `X_FILE`).
    #[error("both {first} and {second} are set; use only one")]
    ConflictingVars {
        /// The first variable.
        first: &'static str,
        /// The second variable.
        second: &'static str,
    },
    /// A variable has an unusable value.
    #[error("{var} is invalid: {reason}")]
    InvalidVar {
        /// The variable.
        var: &'static str,
        /// Why (never the secret value).
        reason: String,
    },
    /// The file named by an `X_FILE` variable cannot be read.
    #[error("cannot read {var} file {}", path.display())]
    SecretFile {
        /// The `X_FILE` variable.
        var: &'static str,
        /// The path it names.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The `PG_SSLROOTCERT` bundle cannot be read or holds no certificate.
    #[error("cannot load PG_SSLROOTCERT file {}", path.display())]
    TlsRoots {
        /// The bundle's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The TLS client cannot be configured.
    #[error("configuring TLS for PostgreSQL")]
    Tls(#[source] rustls::Error),
    /// The first connection could not be opened (server down, refused, timeout, auth…).
    #[error("cannot connect to PostgreSQL at {target} (database {dbname}, user {user})")]
    Connect {
        /// `host:port`.
        target: String,
        /// Database name.
        dbname: String,
        /// Role name.
        user: String,
        /// The cause.
        #[source]
        source: PoolError,
    },
    /// No pooled connection could be obtained.
    #[error("getting a PostgreSQL connection from the pool")]
    Pool(#[source] PoolError),
    /// A statement failed.
    #[error("{context}")]
    Query {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("applying database migrations")]
    Migration(#[source] refinery::Error),
    /// A ledger row cannot move from its current status to the requested one.
    #[error("{entity} {key} cannot go from {from} to {to}")]
    InvalidTransition {
        /// `trigger`, `run`, `window` or `worker`.
        entity: &'static str,
        /// Its key, for the message.
        key: String,
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
    },
    /// A page was offered for a window that is not `running` (nothing was written).
    #[error("window {window} is {status}, not running; the page was not written")]
    WindowNotRunning {
        /// The window's id.
        window: i64,
        /// Its current status.
        status: String,
    },
    /// A ledger row does not exist.
    #[error("{entity} {key} not found")]
    NotFound {
        /// `trigger`, `run`, `window` or `worker`.
        entity: &'static str,
        /// Its key, for the message.
        key: String,
    },
    /// A trigger name is reused with a different range.
    #[error("trigger {name} already exists for {existing}, not for {requested}")]
    TriggerConflict {
        /// The trigger name.
        name: String,
        /// Its stored range.
        existing: String,
        /// The range asked for.
        requested: String,
    },
    /// A record cannot be stored as JSONB.
    #[error("record {id} cannot be stored: {reason}")]
    InvalidPayload {
        /// The record's id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// A value read from the database is not one this crate writes.
    #[error("unexpected value {value:?} in {column}")]
    Corrupt {
        /// Table and column.
        column: &'static str,
        /// The value found.
        value: String,
    },
}

impl SinkError {
    /// Whether retrying the same operation later may succeed: lost or refused connections,
    /// timeouts, I/O errors, deadlocks, serialization failures, server shutdown or overload.
    /// Configuration, constraint, SQL, migration and state errors are not retryable.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Pool(source) => pool_error_is_retryable(source),
            Self::Query { source, .. } => pg_error_is_retryable(source),
            _ => false,
        }
    }

    /// Whether this is a failure to reach the database at start-up (exit code 5).
    #[must_use]
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// Whether this is a configuration error (exit code 2).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::MissingVar { .. }
                | Self::ConflictingVars { .. }
                | Self::InvalidVar { .. }
                | Self::SecretFile { .. }
                | Self::TlsRoots { .. }
                | Self::Tls(_)
        )
    }

    /// The PostgreSQL SQLSTATE code, when the server reported one.
    #[must_use]
    pub fn sqlstate(&self) -> Option<&str> {
        let pg = match self {
            Self::Query { source, .. } => Some(source),
            Self::Connect {
                source: PoolError::Backend(e),
                ..
            }
            | Self::Pool(PoolError::Backend(e)) => Some(e),
            _ => None,
        };
        pg.and_then(tokio_postgres::Error::code).map(|c| c.code())
    }

    pub(crate) fn query(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Query {
            context: context.into(),
            source,
        }
    }
}

fn pool_error_is_retryable(e: &PoolError) -> bool {
    match e {
        PoolError::Timeout(_) => true,
        PoolError::Backend(e) => pg_error_is_retryable(e),
        PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => false,
    }
}

/// SQLSTATE classes and codes worth retrying.
fn sqlstate_is_retryable(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, …)
        || matches!(
            code,
            "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "55P03" // lock_not_available
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
                | "57014" // query_canceled (statement timeout)
        )
}

fn io_kind_is_retryable(kind: io::ErrorKind) -> bool {
    !matches!(
        kind,
        io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::Unsupported
    )
}

pub(crate) fn pg_error_is_retryable(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        return sqlstate_is_retryable(db.code().code());
    }
    if e.is_closed() {
        return true;
    }
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return io_kind_is_retryable(io.kind());
        }
        cause = c.source();
    }
    // "timeout waiting for server" carries no source.
    e.to_string().contains("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classification() {
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "57P01", "55P03",
        ] {
            assert!(sqlstate_is_retryable(code), "{code}");
        }
        for code in [
            "23505", "23514", "42601", "42P01", "22P02", "28P01", "3D000",
        ] {
            assert!(!sqlstate_is_retryable(code), "{code}");
        }
    }

    #[test]
    fn io_classification() {
        assert!(io_kind_is_retryable(io::ErrorKind::ConnectionRefused));
        assert!(io_kind_is_retryable(io::ErrorKind::TimedOut));
        assert!(io_kind_is_retryable(io::ErrorKind::UnexpectedEof));
        assert!(!io_kind_is_retryable(io::ErrorKind::InvalidData));
    }

    #[test]
    fn pool_classification() {
        assert!(pool_error_is_retryable(&PoolError::Timeout(
            deadpool_postgres::TimeoutType::Wait
        )));
        assert!(!pool_error_is_retryable(&PoolError::Closed));
        assert!(
            SinkError::Pool(PoolError::Timeout(deadpool_postgres::TimeoutType::Create))
                .is_retryable()
        );
        assert!(
            !SinkError::MissingVar {
                var: "PG_HOST",
                hint: "x"
            }
            .is_retryable()
        );
    }
}
