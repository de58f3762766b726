//! The crate's error type and the process exit statuses of SPEC §8.

use std::process::ExitCode;

use crate::WindowField;

/// The runbook line shown with exit code 3.
pub const AUTH_RUNBOOK: &str = "runbook: get a new refresh token (Intuit OAuth Playground or the app's connect flow), \
set QBO_REFRESH_TOKEN (or QBO_REFRESH_TOKEN_FILE) and run again; a token from the environment that differs \
from the stored one is tried once and then stored";

/// How a pipeline process ends (SPEC §8). Converts into [`std::process::ExitCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitStatus {
    /// 0: every window done (and verified unless `--no-verify`).
    Success,
    /// 1: the run finished but some windows failed or mismatched.
    WindowsFailed,
    /// 2: usage or configuration error; nothing was called or written.
    Usage,
    /// 3: authentication failed (refresh token rejected).
    Auth,
    /// 4: the trigger was already completed (use `--force`).
    TriggerCompleted,
    /// 5: the database is unreachable or migrations failed.
    Database,
    /// 130: stopped by SIGINT (or a stop request); progress is saved, the next run resumes.
    Interrupted,
    /// 143: stopped by SIGTERM; progress is saved, the next run resumes.
    Terminated,
}

impl ExitStatus {
    /// The numeric process exit code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::WindowsFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Auth => 3,
            ExitStatus::TriggerCompleted => 4,
            ExitStatus::Database => 5,
            ExitStatus::Interrupted => 130,
            ExitStatus::Terminated => 143,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

/// Errors of backfill-core: bad input, configuration, and what stops a run as a whole.
///
/// A window's own failure is not an error of the run: it is recorded in the ledger and reported
/// in the [`crate::RunReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A range bound is not an RFC 3339 timestamp with offset nor a plain date.
    #[error("{input:?} {reason}")]
    Timestamp {
        /// The text given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A `--window` size is not usable.
    #[error("window size {input:?} {reason}")]
    WindowSize {
        /// The text given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The range end is not after its start.
    #[error("the end of the range ({end}) must be after its start ({start})")]
    EmptyRange {
        /// Start (UTC, RFC 3339).
        start: String,
        /// End (UTC, RFC 3339).
        end: String,
    },
    /// The whole range lies in the future.
    #[error("the range starts at {start}, which is not before now ({now})")]
    StartsInFuture {
        /// Start (UTC, RFC 3339).
        start: String,
        /// The current time (UTC, RFC 3339).
        now: String,
    },
    /// The plan would hold more windows than [`crate::window::MAX_WINDOWS`].
    #[error(
        "the range cut into {size} windows makes {windows} windows, above the limit of {limit}; \
         use a larger --window or a shorter range"
    )]
    TooManyWindows {
        /// Windows the plan would hold.
        windows: u64,
        /// The limit.
        limit: u64,
        /// The window size asked for.
        size: String,
    },
    /// A date-valued window field (`TxnDate`) needs whole UTC days.
    #[error("{what} is not whole UTC days, which a TxnDate window needs")]
    NotWholeDays {
        /// What is not whole days.
        what: String,
    },
    /// The window field does not exist on the entity.
    #[error("window field {field} does not apply to {entity}")]
    WindowFieldNotApplicable {
        /// The field asked for.
        field: WindowField,
        /// The entity's QBO name.
        entity: &'static str,
    },
    /// A command-line or environment value is missing or malformed.
    #[error("{0}")]
    Usage(String),
    /// A one-time trigger already completed and `--force` was not given.
    #[error("trigger {name:?} already completed at {completed_at}; use --force to run it again")]
    TriggerCompleted {
        /// Trigger name.
        name: String,
        /// When it completed (UTC, RFC 3339), or `unknown`.
        completed_at: String,
    },
    /// The trigger name already exists for another range.
    #[error("trigger name already used")]
    TriggerConflict(#[source] raw_sink::SinkError),
    /// `triggers disable NAME` named no trigger.
    #[error("no trigger {name:?} for pipeline {pipeline}")]
    UnknownTrigger {
        /// Pipeline.
        pipeline: &'static str,
        /// Name given.
        name: String,
    },
    /// The QBO settings (`QBO_*`) are missing or invalid.
    #[error("QuickBooks configuration")]
    QboConfig(#[source] qbo_client::ConfigError),
    /// The PostgreSQL settings (`DATABASE_URL`, `PG_*`) are missing or invalid.
    #[error("PostgreSQL configuration")]
    PgConfig(#[source] raw_sink::SinkError),
    /// QBO refused the credentials (e.g. `invalid_grant`): see [`AUTH_RUNBOOK`].
    #[error("QuickBooks authentication failed")]
    Auth(#[source] qbo_client::QboError),
    /// QBO failed in a way that stopped the whole run.
    #[error("QuickBooks request failed")]
    Qbo(#[source] qbo_client::QboError),
    /// The database is unreachable or a ledger statement failed.
    #[error("database")]
    Database(#[source] raw_sink::SinkError),
    /// Migrations could not be applied.
    #[error("applying migrations")]
    Migrations(#[source] raw_sink::SinkError),
    /// `--entity` names no known entity.
    #[error("unknown entity {name}; known entities: {known}")]
    UnknownEntity {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A report file (or its directory) cannot be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A one-time trigger was disabled and `--force` was not given.
    #[error("trigger {name:?} is disabled; use --force to run it anyway")]
    TriggerDisabled {
        /// Trigger name.
        name: String,
    },
    /// A stop was requested (SIGINT/SIGTERM) before the run could start its windows.
    #[error("interrupted by {0} before the run started")]
    Interrupted(crate::StopReason),
}

impl Error {
    /// The process exit status this error ends a pipeline with.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::TriggerCompleted { .. } | Error::TriggerDisabled { .. } => {
                ExitStatus::TriggerCompleted
            }
            Error::Auth(_) => ExitStatus::Auth,
            Error::Database(_) | Error::Migrations(_) => ExitStatus::Database,
            Error::Qbo(_) => ExitStatus::WindowsFailed,
            Error::Interrupted(reason) => reason.exit_status(),
            Error::TriggerConflict(_)
            | Error::UnknownTrigger { .. }
            | Error::UnknownEntity { .. }
            | Error::Write { .. }
            | Error::QboConfig(_)
            | Error::PgConfig(_)
            | Error::Timestamp { .. }
            | Error::WindowSize { .. }
            | Error::EmptyRange { .. }
            | Error::StartsInFuture { .. }
            | Error::TooManyWindows { .. }
            | Error::NotWholeDays { .. }
            | Error::WindowFieldNotApplicable { .. }
            | Error::Usage(_) => ExitStatus::Usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_spec() {
        let codes: Vec<u8> = [
            ExitStatus::Success,
            ExitStatus::WindowsFailed,
            ExitStatus::Usage,
            ExitStatus::Auth,
            ExitStatus::TriggerCompleted,
            ExitStatus::Database,
            ExitStatus::Interrupted,
            ExitStatus::Terminated,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 130, 143]);
        assert_eq!(
            Error::Interrupted(crate::StopReason::Terminate).exit_status(),
            ExitStatus::Terminated
        );
        assert_eq!(Error::Usage("x".into()).exit_status(), ExitStatus::Usage);
        assert_eq!(
            Error::TriggerCompleted {
                name: "t".into(),
                completed_at: "unknown".into()
            }
            .exit_status()
            .code(),
            4
        );
    }
}
