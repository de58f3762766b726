//! The crate's error type.

use std::fmt;
use std::time::Duration;

use crate::config::ConfigError;
use crate::fault::Fault;
use crate::query::QueryError;
use crate::retry::FailureClass;
use crate::token::TokenStoreError;

/// Which server a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The OAuth 2.0 token endpoint.
    Token,
    /// The QuickBooks accounting API.
    Api,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Token => "token endpoint",
            Self::Api => "QuickBooks API",
        })
    }
}

/// Formats an optional `intuit_tid` as a message suffix.
struct Tid<'a>(&'a Option<String>);

impl fmt::Display for Tid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, " [intuit_tid {t}]"),
            None => Ok(()),
        }
    }
}

/// The fix for an HTTP failure without a fault body, when it is not transient.
struct Action(FailureClass, Endpoint, u16);

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_transient() {
            return Ok(());
        }
        let probe = QboError::Http {
            endpoint: self.1,
            status: self.2,
            class: self.0,
            retry_after: None,
            intuit_tid: None,
            body: None,
        };
        write!(f, "; {}", probe.diagnosis())
    }
}

/// The refresh token or the app credentials were refused by the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// `invalid_grant`: the refresh token is expired, revoked or superseded.
    #[error(
        "the refresh token was rejected (invalid_grant{}): it is expired, revoked or was superseded by a rotation \
         that was not saved. Rotate it per the runbook: get a new refresh token from Intuit's OAuth 2.0 \
         Playground or `qb-backfill auth connect`, then set QBO_REFRESH_TOKEN (or QBO_REFRESH_TOKEN_FILE) or \
         update the token store{}",
        Desc(description),
        Tid(intuit_tid)
    )]
    InvalidGrant {
        /// `error_description`, if any.
        description: Option<String>,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
    },
    /// `invalid_client`: wrong client id or secret.
    #[error(
        "the app credentials were rejected (invalid_client{}, HTTP {status}): check QBO_CLIENT_ID and \
         QBO_CLIENT_SECRET, and that sandbox and production keys are not mixed up (QBO_ENV){}",
        Desc(description),
        Tid(intuit_tid)
    )]
    InvalidClient {
        /// `error_description`, if any.
        description: Option<String>,
        /// HTTP status (Intuit sends 400 or 401).
        status: u16,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
    },
    /// No refresh token anywhere: none stored for the realm and none configured.
    #[error(
        "no refresh token for company {realm_id}: none is in the token store and QBO_REFRESH_TOKEN is \
         not set; connect the company with `qb-backfill auth connect` (or set QBO_REFRESH_TOKEN), \
         using the same --token-store"
    )]
    NoRefreshToken {
        /// The realm.
        realm_id: String,
    },
    /// `invalid_grant` for an authorization code: it expired, was used already, or the
    /// redirect URI differs from the consent page's.
    #[error(
        "the authorization code was rejected (invalid_grant{}): it expired (codes live minutes), was used \
         already, or the redirect URI differs from the one the consent page was opened with; connect \
         again, with the same redirect URI throughout{}",
        Desc(description),
        Tid(intuit_tid)
    )]
    CodeRejected {
        /// `error_description`, if any.
        description: Option<String>,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
    },
    /// The consent page redirected with an `error` (`access_denied`: the person clicked
    /// Cancel).
    #[error(
        "the company was not connected: the consent page answered {error}{}; run the connect \
         command again and approve (as an admin of the company)",
        Desc(description)
    )]
    ConsentDenied {
        /// The OAuth `error` code of the redirect.
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The redirect's `state` is not the one sent: it does not answer this request (an old
    /// tab, another connect run, or a forged link).
    #[error(
        "the redirect's state does not match the one this connect run sent: it answers another \
         request (an older browser tab or another connect run) or was forged; nothing was stored, \
         run the connect command again and use the URL it prints"
    )]
    StateMismatch,
    /// The redirect lacks `code` or `realmId`.
    #[error(
        "the redirect carries no {missing}: paste the whole URL the browser was sent to (it \
         contains code=, state= and realmId=)"
    )]
    CallbackIncomplete {
        /// What is missing.
        missing: &'static str,
    },
    /// Another OAuth error (`unauthorized_client`, `invalid_request`, …).
    #[error(
        "the token endpoint refused the refresh ({error}{}, HTTP {status}){}",
        Desc(description),
        Tid(intuit_tid)
    )]
    Refused {
        /// The OAuth `error` code.
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
        /// HTTP status.
        status: u16,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
    },
}

struct Desc<'a>(&'a Option<String>);

impl fmt::Display for Desc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, ": {d}"),
            None => Ok(()),
        }
    }
}

impl AuthError {
    /// The response's `intuit_tid`.
    #[must_use]
    pub fn intuit_tid(&self) -> Option<&str> {
        match self {
            Self::InvalidGrant { intuit_tid, .. }
            | Self::CodeRejected { intuit_tid, .. }
            | Self::InvalidClient { intuit_tid, .. }
            | Self::Refused { intuit_tid, .. } => intuit_tid.as_deref(),
            Self::ConsentDenied { .. }
            | Self::NoRefreshToken { .. }
            | Self::StateMismatch
            | Self::CallbackIncomplete { .. } => None,
        }
    }
}

/// Everything that can go wrong talking to QBO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QboError {
    /// Invalid configuration.
    #[error("invalid QuickBooks client configuration")]
    Config(#[from] ConfigError),
    /// The query cannot be sent.
    #[error("invalid query")]
    Query(#[from] QueryError),
    /// The batch cannot be sent (no item, more than 30, an empty or repeated `bId`).
    #[error("invalid batch")]
    Batch(#[from] crate::client::BatchError),
    /// The token endpoint refused the credentials (not retried; the runbook applies).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// QBO answered with a fault (JSON or XML, any status including 200).
    #[error("QuickBooks answered HTTP {status} with a fault: {fault}")]
    Fault {
        /// HTTP status.
        status: u16,
        /// The fault as QBO sent it (with `intuit_tid`).
        fault: Box<Fault>,
        /// How the failure was classified.
        class: FailureClass,
    },
    /// A non-success HTTP status without a fault body.
    #[error(
        "{endpoint} answered HTTP {status}{}{}{}",
        Snippet(body),
        Action(*class, *endpoint, *status),
        Tid(intuit_tid)
    )]
    Http {
        /// Which server.
        endpoint: Endpoint,
        /// HTTP status.
        status: u16,
        /// How the failure was classified.
        class: FailureClass,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
        /// The start of the body (API only; never for the token endpoint).
        body: Option<String>,
    },
    /// The request timed out.
    #[error("{endpoint} request timed out{}", Tid(intuit_tid))]
    Timeout {
        /// Which server.
        endpoint: Endpoint,
        /// The response's `intuit_tid`, if headers had arrived.
        intuit_tid: Option<String>,
    },
    /// The connection failed or broke before an answer.
    #[error("could not reach the {endpoint}")]
    Connection {
        /// Which server.
        endpoint: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The body ended early.
    #[error("the {endpoint} response body was cut short{}", Tid(intuit_tid))]
    TruncatedBody {
        /// Which server.
        endpoint: Endpoint,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
    },
    /// The body is not what the endpoint should send (syntax error, HTML, unexpected shape).
    #[error("the {endpoint} response is malformed: {detail}{}", Tid(intuit_tid))]
    Malformed {
        /// Which server.
        endpoint: Endpoint,
        /// What was wrong (never a secret).
        detail: String,
        /// How the failure was classified (`Malformed` is retried, `Rejected` is not).
        class: FailureClass,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
    },
    /// The JSON does not fit the expected schema; `path` names the field.
    #[error("unexpected QuickBooks response at `{path}`{}", Tid(intuit_tid))]
    Decode {
        /// Where in the document (e.g. `QueryResponse.Invoice[3].MetaData.CreateTime`).
        path: String,
        /// The response's `intuit_tid`.
        intuit_tid: Option<String>,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Paging did not advance (the server ignored STARTPOSITION or repeated a page).
    #[error("paging did not advance at STARTPOSITION {start_position}: {detail} (query: {query})")]
    PagingStalled {
        /// The position requested.
        start_position: u32,
        /// What was seen.
        detail: String,
        /// The query text sent.
        query: String,
    },
    /// Reading or writing the refresh token store failed.
    #[error("token store failed")]
    TokenStore(#[from] TokenStoreError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// Retries ran out, or the give-up horizon passed ([`crate::RetryPolicy::give_up_after`]);
    /// the last failure is the source.
    #[error("gave up after {attempts} attempt(s){}", Troubled(*troubled_for))]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// How long the client had seen nothing but transient failures when it gave up.
        troubled_for: Duration,
        /// The last failure.
        #[source]
        last: Box<QboError>,
    },
}

struct Troubled(Duration);

impl fmt::Display for Troubled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= Duration::from_secs(1) {
            write!(
                f,
                ", {}s into an unbroken run of failures",
                self.0.as_secs()
            )
        } else {
            Ok(())
        }
    }
}

/// The error after a request stopped retrying: `GaveUp` when it was retried at all or the
/// horizon stopped it, else the failure itself.
pub(crate) fn gave_up(
    attempts: u32,
    troubled_for: Duration,
    horizon: bool,
    last: QboError,
) -> QboError {
    if attempts > 1 || horizon {
        QboError::GaveUp {
            attempts,
            troubled_for,
            last: Box::new(last),
        }
    } else {
        last
    }
}

/// An error and its sources on one line, `: `-separated (for log fields).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

struct Snippet<'a>(&'a Option<String>);

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(b) if !b.is_empty() => write!(f, ": {b}"),
            _ => Ok(()),
        }
    }
}

impl QboError {
    /// How this failure is classified for retries, if it came from a request.
    #[must_use]
    pub fn failure_class(&self) -> Option<FailureClass> {
        match self {
            Self::Fault { class, .. }
            | Self::Http { class, .. }
            | Self::Malformed { class, .. } => Some(*class),
            Self::Timeout { .. } => Some(FailureClass::Timeout),
            Self::Connection { .. } => Some(FailureClass::Connection),
            Self::TruncatedBody { .. } => Some(FailureClass::TruncatedBody),
            Self::Decode { .. } => Some(FailureClass::Rejected),
            Self::GaveUp { last, .. } => last.failure_class(),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (throttling, 5xx, timeouts, broken connections,
    /// truncated bodies). Authentication, validation and configuration errors are not.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::TokenStore(e) => e.is_retryable(),
            _ => self.failure_class().is_some_and(FailureClass::is_transient),
        }
    }

    /// Whether credentials were refused: the refresh token (`invalid_grant`), the app
    /// (`invalid_client`), or the API still answering 401/403 after a fresh token.
    #[must_use]
    pub fn is_auth(&self) -> bool {
        match self {
            Self::Auth(_) => true,
            Self::GaveUp { last, .. } => last.is_auth(),
            _ => matches!(
                self.failure_class(),
                Some(FailureClass::Unauthorized | FailureClass::Forbidden)
            ),
        }
    }

    /// What this failure means and what fixes it: cause, action, and whether a re-run can help
    /// ([`crate::Diagnosis::rerun_helps`]). One classification for every failure, from QBO's
    /// real fault bodies (JSON or XML), the HTTP status and the OAuth error.
    #[must_use]
    pub fn diagnosis(&self) -> crate::Diagnosis {
        crate::diagnosis::of_error(self)
    }

    /// QBO's fault, if the failure carried one.
    #[must_use]
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Self::Fault { fault, .. } => Some(fault),
            Self::GaveUp { last, .. } => last.fault(),
            _ => None,
        }
    }

    /// The `intuit_tid` of the failing response, if any.
    #[must_use]
    pub fn intuit_tid(&self) -> Option<&str> {
        match self {
            Self::Fault { fault, .. } => fault.intuit_tid.as_deref(),
            Self::Auth(a) => a.intuit_tid(),
            Self::Http { intuit_tid, .. }
            | Self::Timeout { intuit_tid, .. }
            | Self::TruncatedBody { intuit_tid, .. }
            | Self::Malformed { intuit_tid, .. }
            | Self::Decode { intuit_tid, .. } => intuit_tid.as_deref(),
            Self::GaveUp { last, .. } => last.intuit_tid(),
            _ => None,
        }
    }

    /// The HTTP status of the failing response, if any.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Fault { status, .. } | Self::Http { status, .. } => Some(*status),
            Self::Auth(
                AuthError::InvalidClient { status, .. } | AuthError::Refused { status, .. },
            ) => Some(*status),
            Self::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}
