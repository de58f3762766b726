//! The crate's error type and the process exit statuses of SPEC §8.

use std::process::ExitCode;

use qbo_client::{QboError, Remedy, TokenStoreError};

use crate::WindowField;

/// The runbook line shown with exit code 3.
pub const AUTH_RUNBOOK: &str = "runbook: reconnect the company with `qb-backfill auth connect` (same --token-store), \
or get a new refresh token (Intuit OAuth Playground), set QBO_REFRESH_TOKEN (or QBO_REFRESH_TOKEN_FILE) and run again; a token from the environment that differs \
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
    /// 6: QuickBooks refused the run for a reason that neither a re-run nor a new refresh
    /// token fixes: the app's credentials, the company or environment, the company's
    /// subscription, or a request QBO rejects as invalid. The message names the fix.
    Refused,
    /// 7: `sync` refused: the last sync reached deletions longer ago than CDC's 30 days, so
    /// deletions since may be invisible to it; run `reconcile`, then `sync` again.
    SyncGap,
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
            ExitStatus::Refused => 6,
            ExitStatus::SyncGap => 7,
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
    /// The company was connected with another Intuit app than `QBO_CLIENT_ID`, and
    /// `QBO_APPS_FILE` has no secret for that app (its token refreshes only with that app).
    #[error(
        "company {realm} was connected with app {connected_with}, but QBO_CLIENT_ID is \
         {configured}: list {connected_with}'s client secret in QBO_APPS_FILE (a JSON file \
         {{\"<client id>\": \"<client secret>\"}}, mode 0600), or run this company with \
         QBO_CLIENT_ID={connected_with} and that app's QBO_CLIENT_SECRET[_FILE]"
    )]
    OtherApp {
        /// The company.
        realm: String,
        /// The app it was connected with.
        connected_with: String,
        /// `QBO_CLIENT_ID`.
        configured: String,
    },
    /// `auth connect --app` named an app that is neither `QBO_CLIENT_ID` nor in
    /// `QBO_APPS_FILE` (its client secret is needed to exchange the code).
    #[error(
        "app {client_id} has no client secret in QBO_APPS_FILE: list it there (a JSON file \
         {{\"<client id>\": \"<client secret>\"}}, mode 0600), or set QBO_CLIENT_ID={client_id} \
         and that app's QBO_CLIENT_SECRET[_FILE]"
    )]
    AppNotInAppsFile {
        /// The app named.
        client_id: String,
    },
    /// The status page could not start or stopped (`serve`), or the metrics textfile failed.
    #[error("status page")]
    StatusPage(#[source] status_page::StatusError),
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
    /// QBO refused the credentials or access. Exit 3 with [`AUTH_RUNBOOK`] when the refresh
    /// token is at fault (`invalid_grant`, the app disconnected); exit 6 when something else is
    /// (the app's keys, the company or environment, the subscription): see
    /// [`qbo_client::QboError::diagnosis`].
    #[error("{}", auth_title(.0))]
    Auth(#[source] qbo_client::QboError),
    /// QBO failed in a way that stopped the whole run.
    #[error("{}", qbo_title(.0))]
    Qbo(#[source] qbo_client::QboError),
    /// The refresh-token store cannot be used (found at start, before the first refresh): a
    /// directory for a file, a directory that does not exist or is not writable, a stored
    /// token encrypted with another key or with no key set.
    #[error("the refresh-token store cannot be used")]
    TokenStore(#[source] qbo_client::TokenStoreError),
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
    /// Connecting (or revoking) a company failed; the source says why and what to do.
    #[error("QuickBooks connection")]
    Connect(#[source] qbo_client::QboError),
    /// `sync` refused: deletions are known only up to `mark`, longer ago than CDC keeps them.
    #[error(
        "{pipeline} in company {realm}: deletions are synced only up to {mark}, {days} days before \
         QuickBooks' now, beyond CDC's 30 days, so deletions since may be missed; run \
         `reconcile` for this entity, then `sync` again"
    )]
    SyncGap {
        /// Pipeline.
        pipeline: &'static str,
        /// QBO company.
        realm: String,
        /// The deletions mark (UTC, RFC 3339).
        mark: String,
        /// Whole days between the mark and QBO's clock.
        days: i64,
    },
    /// `sync` or `reconcile` of an entity never backfilled in the company.
    #[error(
        "{pipeline} has no backfilled window in company {realm}: run the backfill first (sync \
         and reconcile keep a backfilled range current)"
    )]
    NotBackfilled {
        /// Pipeline.
        pipeline: &'static str,
        /// QBO company.
        realm: String,
    },
    /// A sync could not make progress (e.g. CDC answering its 1,000-object cap within one
    /// second of changes).
    #[error("{0}")]
    SyncStalled(String),
    /// A stop was requested (SIGINT/SIGTERM) before the run could start its windows.
    #[error("interrupted by {0} before the run started")]
    Interrupted(crate::StopReason),
    /// A `sync` or `reconcile` stopped cleanly before its end: a signal, or the request
    /// budget (`--max-requests`, `--monthly-requests`) spent. What it applied is kept, its
    /// marks moved no further than that, and a re-run resumes.
    #[error("stopped by {0} before the end; what was applied is kept; run again to resume")]
    SyncStopped(crate::StopReason),
}

fn auth_title(e: &QboError) -> &'static str {
    match e.diagnosis().remedy {
        Remedy::RotateRefreshToken => "QuickBooks authentication failed",
        _ => "QuickBooks refused access",
    }
}

fn qbo_title(e: &QboError) -> &'static str {
    match e.diagnosis().remedy {
        Remedy::RetryLater => "QuickBooks request failed",
        Remedy::FixTokenStore => "saving the refresh token failed",
        Remedy::RotateRefreshToken => "QuickBooks authentication failed",
        _ => "QuickBooks refused the request",
    }
}

/// The exit status of a QBO failure that stopped a run, from its diagnosis: 3 when the
/// refresh token must be replaced; 6 when the app's keys, the company, the environment, the
/// subscription or the request itself must change (a re-run alone never helps); otherwise 1
/// for a failure that a later run may get past (including a token-store failure: its startup
/// check then names what to fix, and a rescued token is picked up). `fallback` is the exit
/// when the diagnosis says nothing more specific.
fn qbo_exit(e: &QboError, fallback: ExitStatus) -> ExitStatus {
    match e.diagnosis().remedy {
        Remedy::RotateRefreshToken => ExitStatus::Auth,
        Remedy::FixConfiguration | Remedy::CompanyAccount | Remedy::RequestRejected => {
            ExitStatus::Refused
        }
        Remedy::FixTokenStore => ExitStatus::WindowsFailed,
        _ => fallback,
    }
}

/// Whether the token was rescued to a file because the ledger database (the token store)
/// stayed away: the database is what failed, and the next run resumes with the rescued token.
fn rescued_from_the_database(e: &QboError) -> bool {
    match e {
        QboError::TokenStore(TokenStoreError::Rescued { source, .. }) => matches!(
            source.as_ref(),
            TokenStoreError::Backend { source, .. } if source.is::<raw_sink::SinkError>()
        ),
        _ => false,
    }
}

impl Error {
    /// The runbook line to print with this error, if it has one: [`AUTH_RUNBOOK`] exactly when
    /// the exit status is 3 (a new refresh token fixes it), never for other refusals.
    #[must_use]
    pub fn runbook(&self) -> Option<&'static str> {
        (self.exit_status() == ExitStatus::Auth && !matches!(self, Error::Connect(_)))
            .then_some(AUTH_RUNBOOK)
    }

    /// The process exit status this error ends a pipeline with.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::TriggerCompleted { .. } | Error::TriggerDisabled { .. } => {
                ExitStatus::TriggerCompleted
            }
            Error::Auth(e) => qbo_exit(e, ExitStatus::Auth),
            Error::Connect(QboError::Auth(qbo_client::AuthError::InvalidClient { .. })) => {
                ExitStatus::Usage
            }
            Error::Connect(e) if e.is_retryable() => ExitStatus::WindowsFailed,
            Error::Connect(_) => ExitStatus::Auth,
            Error::Database(_) | Error::Migrations(_) => ExitStatus::Database,
            Error::Qbo(e) if rescued_from_the_database(e) => ExitStatus::Database,
            Error::Qbo(e) => qbo_exit(e, ExitStatus::WindowsFailed),
            Error::Interrupted(reason) => reason.exit_status(),
            Error::SyncStopped(reason) => reason.exit_status(),
            Error::SyncGap { .. } => ExitStatus::SyncGap,
            Error::SyncStalled(_) => ExitStatus::WindowsFailed,
            Error::NotBackfilled { .. } => ExitStatus::Usage,
            Error::StatusPage(status_page::StatusError::Database(_)) => ExitStatus::Database,
            Error::StatusPage(e) if e.is_config() => ExitStatus::Usage,
            Error::StatusPage(_) => ExitStatus::WindowsFailed,
            Error::TriggerConflict(_)
            | Error::UnknownTrigger { .. }
            | Error::UnknownEntity { .. }
            | Error::Write { .. }
            | Error::QboConfig(_)
            | Error::PgConfig(_)
            | Error::TokenStore(_)
            | Error::Timestamp { .. }
            | Error::WindowSize { .. }
            | Error::EmptyRange { .. }
            | Error::StartsInFuture { .. }
            | Error::TooManyWindows { .. }
            | Error::NotWholeDays { .. }
            | Error::WindowFieldNotApplicable { .. }
            | Error::OtherApp { .. }
            | Error::AppNotInAppsFile { .. }
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
            ExitStatus::Refused,
            ExitStatus::SyncGap,
            ExitStatus::Interrupted,
            ExitStatus::Terminated,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7, 130, 143]);
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

    fn fault(status: u16, body: &str) -> QboError {
        // The client's own classification of a real answer, as a run sees it.
        let mut fault = real_fault(body);
        fault.http_status = Some(status);
        let class = qbo_client::FailureClass::from_status(status, Some(&fault), None);
        QboError::Fault {
            status,
            fault: Box::new(fault),
            class,
        }
    }

    /// A fault as the client parses it (only the fields the classification reads).
    fn real_fault(body: &str) -> qbo_client::Fault {
        let (fault_type, code, message) = match body {
            "120" => ("AuthorizationFault", "120", "Authorization Failure"),
            "100" => ("AuthenticationFault", "100", "General Authentication Error"),
            "3100" => (
                "SERVICE",
                "3100",
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            ),
            "500" => (
                "SystemFault",
                "3100",
                "message=InternalServerError; errorCode=003100; statusCode=500",
            ),
            _ => ("ValidationFault", "4000", "Error parsing query"),
        };
        qbo_client::Fault {
            fault_type: Some(fault_type.into()),
            errors: vec![qbo_client::FaultDetail {
                code: Some(code.into()),
                message: Some(message.into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn refusals_that_a_new_refresh_token_does_not_fix_exit_6_without_the_runbook() {
        let grant = QboError::Auth(qbo_client::AuthError::InvalidGrant {
            description: None,
            intuit_tid: None,
        });
        let e = Error::Auth(grant);
        assert_eq!(e.exit_status(), ExitStatus::Auth);
        assert_eq!(e.runbook(), Some(AUTH_RUNBOOK));
        assert!(e.to_string().contains("authentication failed"));

        let client = QboError::Auth(qbo_client::AuthError::InvalidClient {
            description: None,
            status: 401,
            intuit_tid: None,
        });
        for e in [
            Error::Auth(client),
            Error::Auth(fault(401, "120")),
            Error::Auth(fault(401, "100")),
            Error::Auth(fault(403, "3100")),
            // A permanent 400: no re-run fixes it (was exit 1, "run again to resume").
            Error::Qbo(fault(400, "query")),
        ] {
            assert_eq!(e.exit_status(), ExitStatus::Refused, "{e}");
            assert_eq!(e.exit_status().code(), 6);
            assert_eq!(e.runbook(), None, "{e}");
            assert!(!e.to_string().contains("authentication failed"), "{e}");
        }
        // A server failure with code 3100 is not a refusal: a later run may pass.
        let e = Error::Qbo(fault(500, "500"));
        assert_eq!(e.exit_status(), ExitStatus::WindowsFailed);
        let e = Error::TokenStore(qbo_client::TokenStoreError::NotAFile {
            path: "/tmp".into(),
        });
        assert_eq!(e.exit_status(), ExitStatus::Usage);
        // A token rescued because the database stayed away: the database failed (exit 5).
        let db = raw_sink::SinkError::NotFound {
            entity: "token",
            key: String::new(),
        };
        let rescued = |source| {
            Error::Qbo(QboError::TokenStore(TokenStoreError::Rescued {
                path: "/tmp/r.json".into(),
                source: Box::new(source),
            }))
        };
        assert_eq!(
            rescued(TokenStoreError::backend(true, db)).exit_status(),
            ExitStatus::Database
        );
        let disk = TokenStoreError::backend(false, "disk full");
        assert_eq!(rescued(disk).exit_status(), ExitStatus::WindowsFailed);
    }
}
