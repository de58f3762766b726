//! How failures map onto the run: a QBO error ([`qbo_error`]), one that stops the whole run
//! ([`stops_the_run`]), a ledger error ([`ledger_error`]) and errors as one line
//! ([`error_chain`]).
//!
//! Invariant: a database failure, even one raised under the token store, is always
//! [`Error::Database`] (exit 5); rejected credentials are always [`Error::Auth`] (exit 3).

use qbo_client::{QboError, TokenStoreError};
use raw_sink::SinkError;

use crate::Error;

/// A QBO error as the run's error: rejected credentials → `Auth`; the ledger database failing
/// under the token store (saving a rotated token, taking the refresh lock) → `Database`, like
/// any other database failure; anything else → `Qbo`.
pub(super) fn qbo_error(e: QboError) -> Error {
    if e.is_auth() {
        return Error::Auth(e);
    }
    match e {
        QboError::TokenStore(TokenStoreError::Backend { retryable, source }) => {
            match source.downcast::<SinkError>() {
                Ok(db) => Error::Database(*db),
                Err(source) => Error::Qbo(QboError::TokenStore(TokenStoreError::backend(
                    retryable, source,
                ))),
            }
        }
        other => Error::Qbo(other),
    }
}

/// Whether QBO refused in a way that no other window can escape either: rejected credentials,
/// or a fault whose cure is the operator's (the app's keys, the company, the environment, a
/// request QBO rejects whatever the window): the run stops with that error (exit 3 or 6)
/// rather than fail every window one by one.
pub(super) fn stops_the_run(e: &QboError) -> bool {
    e.is_auth() || (e.fault().is_some() && e.diagnosis().remedy.stops_the_job())
}

/// Whether `e` is the ledger database failing under the token store.
pub(super) fn is_database_failure(e: &QboError) -> bool {
    matches!(e, QboError::TokenStore(TokenStoreError::Backend { source, .. }) if source.is::<SinkError>())
}

/// A ledger failure: a trigger name reused with another range is the user's error (exit 2),
/// anything else is the database's (exit 5).
pub(super) fn ledger_error(e: SinkError) -> Error {
    if matches!(e, SinkError::TriggerConflict { .. }) {
        Error::TriggerConflict(e)
    } else {
        Error::Database(e)
    }
}

/// `error: cause: cause` on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let text = cause.to_string();
        if !text.is_empty() && !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitStatus;

    #[test]
    fn a_token_store_database_failure_is_a_database_error() {
        let db = SinkError::NotFound {
            entity: "token",
            key: String::new(),
        };
        let e = QboError::TokenStore(TokenStoreError::backend(true, db));
        assert!(is_database_failure(&e));
        assert_eq!(qbo_error(e).exit_status(), ExitStatus::Database);
        let other = QboError::TokenStore(TokenStoreError::backend(false, "disk full"));
        assert!(!is_database_failure(&other));
        assert_eq!(qbo_error(other).exit_status(), ExitStatus::WindowsFailed);
    }
}
