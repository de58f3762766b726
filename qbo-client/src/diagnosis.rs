//! What a failure means for the person running the job: its cause, the action that fixes it,
//! and whether running again can help. Decided in one place from QBO's real fault bodies (JSON
//! and XML), the HTTP status and the OAuth error, so every caller says the same true thing.

use std::fmt;

use crate::error::{AuthError, QboError};
use crate::fault::Fault;
use crate::retry::FailureClass;
use crate::token::TokenStoreError;

/// What fixes a failure. Closed set; callers map it to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Remedy {
    /// Transient (throttling, an outage, the network): nothing to change; run again later.
    RetryLater,
    /// The refresh token is unusable (expired, revoked, superseded, or the app was disconnected
    /// from the company): get a new one (the runbook's token rotation).
    RotateRefreshToken,
    /// The settings do not match Intuit's records: the app's client id or secret, the company
    /// id, or the environment (sandbox or production keys and URLs).
    FixConfiguration,
    /// The company's QuickBooks account does not allow API access (subscription, billing, or
    /// the user who connected the app): its administrator must act.
    CompanyAccount,
    /// QuickBooks rejects the request itself: every re-run sends the same one.
    RequestRejected,
    /// The refresh-token store cannot be used (see the message; a rescued token is named).
    FixTokenStore,
}

impl Remedy {
    /// Whether running again, with nothing changed, can succeed.
    #[must_use]
    pub const fn rerun_helps(self) -> bool {
        matches!(self, Remedy::RetryLater)
    }

    /// Whether every other request of the same job would fail the same way (the refresh
    /// token, the app's keys, the company, the environment, the shape of the request): a caller
    /// that works in units (a backfill's windows) should stop the whole job with this error
    /// rather than fail its units one by one.
    #[must_use]
    pub const fn stops_the_job(self) -> bool {
        matches!(
            self,
            Remedy::RotateRefreshToken
                | Remedy::FixConfiguration
                | Remedy::CompanyAccount
                | Remedy::RequestRejected
        )
    }

    /// A short stable name (`retry_later`, `rotate_refresh_token`, …) for logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Remedy::RetryLater => "retry_later",
            Remedy::RotateRefreshToken => "rotate_refresh_token",
            Remedy::FixConfiguration => "fix_configuration",
            Remedy::CompanyAccount => "company_account",
            Remedy::RequestRejected => "request_rejected",
            Remedy::FixTokenStore => "fix_token_store",
        }
    }
}

impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classification of one failure: what happened and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Diagnosis {
    /// What fixes it.
    pub remedy: Remedy,
    /// The cause, in a few words (e.g. "the company's QuickBooks subscription does not allow API
    /// access (fault 120)").
    pub cause: &'static str,
    /// The action that fixes it, addressed to the operator.
    pub action: &'static str,
}

impl Diagnosis {
    const fn new(remedy: Remedy, cause: &'static str, action: &'static str) -> Diagnosis {
        Diagnosis {
            remedy,
            cause,
            action,
        }
    }

    /// Whether running again, with nothing changed, can succeed.
    #[must_use]
    pub const fn rerun_helps(&self) -> bool {
        self.remedy.rerun_helps()
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause, self.action)
    }
}

const THROTTLED: Diagnosis = Diagnosis::new(
    Remedy::RetryLater,
    "QuickBooks throttled the requests (500 a minute and 10 at once per company)",
    "nothing to change: requests are retried after a wait; if it lasts, lower --requests-per-min \
     or stop other apps using this company, then run again",
);
const SERVER: Diagnosis = Diagnosis::new(
    Remedy::RetryLater,
    "QuickBooks failed on its side (an internal error or an outage)",
    "nothing to change: it is retried; if it lasts, check Intuit's developer status page and run \
     again later",
);
const NETWORK: Diagnosis = Diagnosis::new(
    Remedy::RetryLater,
    "QuickBooks could not be reached or the answer was cut short",
    "nothing to change if it passes: run again; if it lasts, check the network, proxies and \
     QBO_BASE_URL / QBO_TOKEN_URL",
);
const SUBSCRIPTION: Diagnosis = Diagnosis::new(
    Remedy::CompanyAccount,
    "the company's QuickBooks subscription or user does not allow API access (fault 120)",
    "ask the company's QuickBooks administrator to check the subscription and billing, and that \
     the user who connected the app still has access; a new refresh token does not help",
);
const LAPSED: Diagnosis = Diagnosis::new(
    Remedy::CompanyAccount,
    "the company's subscription has lapsed, or a sandbox company was reached through the \
     production URL or the reverse (fault 7001)",
    "check QBO_ENV and QBO_BASE_URL for this company, then ask its administrator about the \
     subscription",
);
const REALM_MISMATCH: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "the access token and the company do not match (fault 100)",
    "set QBO_REALM_ID to the company the refresh token was issued for (the realmId of the connect \
     flow), or connect the app to this company; check QBO_ENV too",
);
const WRONG_CLUSTER: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "the request reached the wrong QuickBooks servers for this company (fault 130)",
    "check QBO_ENV and QBO_BASE_URL: sandbox companies are served by the sandbox URL, production \
     companies by the production URL",
);
const APP_NOT_AUTHORISED: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "the app is not authorised for this company in this environment (fault 3100)",
    "check that QBO_ENV matches the app keys (development keys work only with sandbox companies, \
     production keys with production companies) and that the app was connected to this company \
     with the accounting scope",
);
const TOKEN_REFUSED: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "QuickBooks refused a freshly issued access token",
    "check that QBO_ENV and QBO_BASE_URL match the app keys (sandbox keys are refused by \
     production and the reverse); the refresh token itself was accepted",
);
const DISCONNECTED: Diagnosis = Diagnosis::new(
    Remedy::RotateRefreshToken,
    "the app is no longer connected to this company (fault 3201)",
    "reconnect the app to the company (this gives a new refresh token) and set it per the runbook; \
     check QBO_REALM_ID",
);
const FORBIDDEN: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "QuickBooks refused access to this company",
    "check QBO_REALM_ID, QBO_ENV and that the app is connected to this company",
);
const UNKNOWN_COMPANY: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "QuickBooks knows no such company at this address",
    "check QBO_REALM_ID and QBO_ENV / QBO_BASE_URL",
);
const INVALID_REQUEST: Diagnosis = Diagnosis::new(
    Remedy::RequestRejected,
    "QuickBooks rejected the request as invalid",
    "a re-run sends the same request: check the entity and --window-field; if they are right, \
     report it with the query and the intuit_tid",
);
const UNREADABLE_ANSWER: Diagnosis = Diagnosis::new(
    Remedy::RequestRejected,
    "QuickBooks answered in a shape this client cannot read",
    "report it with the intuit_tid; a re-run gets the same answer",
);
const INVALID_GRANT: Diagnosis = Diagnosis::new(
    Remedy::RotateRefreshToken,
    "the refresh token was rejected (invalid_grant): expired, revoked, or superseded by a rotation",
    "get a new refresh token and set it per the runbook (rotating a refresh token)",
);
const INVALID_CLIENT: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "the app's credentials were rejected (invalid_client)",
    "set QBO_CLIENT_ID and QBO_CLIENT_SECRET to the same app's keys, of the environment QBO_ENV \
     names (development keys for sandbox, production keys for production); the refresh token is \
     not at fault",
);
const OAUTH_REFUSED: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "the token endpoint refused the app's request",
    "check the app's settings in Intuit's developer portal (keys, scopes) and QBO_TOKEN_URL",
);
const CONFIG: Diagnosis = Diagnosis::new(
    Remedy::FixConfiguration,
    "the client's settings are invalid",
    "fix the setting the message names",
);
const BAD_QUERY: Diagnosis = Diagnosis::new(
    Remedy::RequestRejected,
    "the query cannot be sent",
    "fix the query the message names",
);
const STORE_TRANSIENT: Diagnosis = Diagnosis::new(
    Remedy::RetryLater,
    "the refresh-token store failed for a moment",
    "nothing to change if it passes: run again",
);
const STORE_BROKEN: Diagnosis = Diagnosis::new(
    Remedy::FixTokenStore,
    "the refresh-token store cannot be used",
    "fix what the message names; a rotated token that could not be saved is in the rescue file it \
     names and is used by the next start",
);

/// Lower-cased message and detail of a fault, for the few causes only they reveal.
fn text_of(fault: &Fault) -> String {
    fault
        .errors
        .iter()
        .flat_map(|e| [e.message.as_deref(), e.detail.as_deref()])
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Classifies a fault; `status` is the HTTP status it came with (the fault's own if `None`).
pub(crate) fn of_fault(fault: &Fault, status: Option<u16>) -> Diagnosis {
    let status = status.or(fault.http_status);
    let text = text_of(fault);
    if fault.is_throttle() || status == Some(429) {
        return THROTTLED;
    }
    // Server-side failures first: QBO sends an HTTP 500 `InternalServerError` with code 3100,
    // and an intermittent code 120 whose detail says statusCode 500. Neither is about access.
    if status.is_some_and(|s| s >= 500)
        || fault.is_system()
        || text.contains("internalservererror")
        || text.contains("statuscode: 500")
        || text.contains("statuscode=500")
    {
        return SERVER;
    }
    match fault.code() {
        Some("120") => return SUBSCRIPTION,
        Some("100") => return REALM_MISMATCH,
        Some("130") => return WRONG_CLUSTER,
        Some("3100") => return APP_NOT_AUTHORISED,
        Some("3201") => return DISCONNECTED,
        Some("7001") => return LAPSED,
        Some("3200") => return TOKEN_REFUSED,
        _ => {}
    }
    match status {
        Some(401) => TOKEN_REFUSED,
        Some(403) => FORBIDDEN,
        Some(404) => UNKNOWN_COMPANY,
        _ if fault.is_authentication() => TOKEN_REFUSED,
        _ if fault.is_authorization() => FORBIDDEN,
        _ => INVALID_REQUEST,
    }
}

fn of_class(class: FailureClass) -> Diagnosis {
    match class {
        FailureClass::Throttled { .. } => THROTTLED,
        FailureClass::InternalError | FailureClass::ServerError { .. } => SERVER,
        FailureClass::Timeout
        | FailureClass::Connection
        | FailureClass::TruncatedBody
        | FailureClass::Malformed => NETWORK,
        FailureClass::Unauthorized => TOKEN_REFUSED,
        FailureClass::Forbidden => FORBIDDEN,
        FailureClass::NotFound => UNKNOWN_COMPANY,
        FailureClass::Validation => INVALID_REQUEST,
        FailureClass::Rejected => UNREADABLE_ANSWER,
    }
}

fn of_store(e: &TokenStoreError) -> Diagnosis {
    if e.is_retryable() {
        STORE_TRANSIENT
    } else {
        STORE_BROKEN
    }
}

/// Classifies any client error.
pub(crate) fn of_error(e: &QboError) -> Diagnosis {
    match e {
        QboError::Config(_) | QboError::HttpClient(_) => CONFIG,
        QboError::Query(_) | QboError::Batch(_) => BAD_QUERY,
        QboError::Auth(AuthError::InvalidGrant { .. } | AuthError::NoRefreshToken { .. }) => {
            INVALID_GRANT
        }
        QboError::Auth(AuthError::InvalidClient { .. }) => INVALID_CLIENT,
        QboError::Auth(_) => OAUTH_REFUSED,
        QboError::Fault { status, fault, .. } => of_fault(fault, Some(*status)),
        QboError::Http {
            endpoint: crate::error::Endpoint::Token,
            status: 400 | 401 | 403,
            ..
        } => OAUTH_REFUSED,
        QboError::Http { class, .. } | QboError::Malformed { class, .. } => of_class(*class),
        QboError::Timeout { .. } | QboError::Connection { .. } | QboError::TruncatedBody { .. } => {
            NETWORK
        }
        QboError::Decode { .. } | QboError::PagingStalled { .. } => UNREADABLE_ANSWER,
        QboError::TokenStore(s) => of_store(s),
        QboError::GaveUp { last, .. } => of_error(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Endpoint;

    fn fault(status: u16, body: &str) -> QboError {
        let mut fault = Fault::parse(body.as_bytes()).expect("a fault body");
        fault.http_status = Some(status);
        let class = FailureClass::from_status(status, Some(&fault), None);
        QboError::Fault {
            status,
            fault: Box::new(fault),
            class,
        }
    }

    // Bodies as QBO sends them (shapes from public recordings of the live API).
    const XML_120: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2024-03-04T08:00:01.123-08:00"><Fault type="AuthorizationFault"><Error code="120"><Message>Authorization Failure</Message><Detail>AuthorizationFailure: Your subscription does not include access to this feature, statusCode: 401</Detail></Error></Fault></IntuitResponse>"#;
    const XML_120_OUTAGE: &str = r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3"><Fault type="AuthorizationFault"><Error code="120"><Message>Authorization Failure</Message><Detail>AuthorizationFailure: Unknown Error during Authentication, statusCode: 500</Detail></Error></Fault></IntuitResponse>"#;
    const XML_100: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2023-02-12T21:41:20.509-08:00"><Fault type="AuthenticationFault"><Error code="100"><Message>General Authentication Error</Message><Detail>AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401</Detail></Error></Fault></IntuitResponse>"#;
    const JSON_403_3100: &str = r#"{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403","detail":null,"code":"3100","element":null}],"type":"SERVICE"},"report":null,"queryResponse":null,"batchItemResponse":[],"attachableResponse":[],"syncErrorResponse":null,"requestId":null,"time":1640612353707,"status":null,"cdcresponse":[]}"#;
    const JSON_500_3100: &str = r#"{"Fault":{"Error":[{"Message":"message=InternalServerError; errorCode=003100; statusCode=500","Detail":"Internal Server Error","code":"3100"}],"type":"SystemFault"},"time":"2024-05-01T10:00:00.000-07:00"}"#;
    const JSON_400_QUERY: &str = r#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"QueryParserError: Encountered \" <INTEGER> \"1 \"\" at line 1, column 34.","code":"4000"}],"type":"ValidationFault"}}"#;
    const XML_401_3200: &str = r#"<IntuitResponse><Fault type="AUTHENTICATION"><Error code="3200"><Message>message=AuthenticationFailed; errorCode=003200; statusCode=401</Message><Detail>Token expired</Detail></Error></Fault></IntuitResponse>"#;
    const JSON_401_3201: &str = r#"{"fault":{"error":[{"message":"message=ApplicationNotAuthorized; errorCode=003201; statusCode=401","detail":null,"code":"3201","element":null}],"type":"AUTHORIZATION"},"requestId":null,"time":1700000000000}"#;
    const XML_403_THROTTLE: &str = r#"<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=403</Message><Detail>The request limit was reached.</Detail></Error></Fault></IntuitResponse>"#;
    const XML_504_6002: &str = r#"<IntuitResponse><Fault type="SystemFault"><Error code="6002"><Message>Request timed out</Message></Error></Fault></IntuitResponse>"#;

    #[test]
    fn real_fault_bodies_get_their_true_cause_and_remedy() {
        let cases: &[(u16, &str, Remedy, &str)] = &[
            (401, XML_120, Remedy::CompanyAccount, "subscription"),
            (500, XML_120_OUTAGE, Remedy::RetryLater, "its side"),
            (401, XML_100, Remedy::FixConfiguration, "QBO_REALM_ID"),
            (403, JSON_403_3100, Remedy::FixConfiguration, "QBO_ENV"),
            (500, JSON_500_3100, Remedy::RetryLater, "its side"),
            (400, JSON_400_QUERY, Remedy::RequestRejected, "same request"),
            (401, XML_401_3200, Remedy::FixConfiguration, "QBO_BASE_URL"),
            (401, JSON_401_3201, Remedy::RotateRefreshToken, "reconnect"),
            (403, XML_403_THROTTLE, Remedy::RetryLater, "throttled"),
            (504, XML_504_6002, Remedy::RetryLater, "its side"),
        ];
        for (status, body, remedy, words) in cases {
            let e = fault(*status, body);
            let d = e.diagnosis();
            assert_eq!(d.remedy, *remedy, "{status} {body}");
            assert!(d.to_string().contains(words), "{status}: {d}");
            assert_eq!(d.rerun_helps(), *remedy == Remedy::RetryLater);
            assert_eq!(d.remedy.stops_the_job(), *remedy != Remedy::RetryLater);
        }
    }

    #[test]
    fn an_internal_server_error_never_says_the_token_was_refused() {
        let e = fault(500, JSON_500_3100);
        let text = e.to_string();
        assert!(!text.contains("access token was refused"), "{text}");
        assert!(!text.contains("QBO_ENV"), "{text}");
        assert!(e.is_retryable() && !e.is_auth());
    }

    #[test]
    fn the_messages_name_the_fix_not_the_rotation() {
        for (status, body) in [(401, XML_120), (401, XML_100), (403, JSON_403_3100)] {
            let e = fault(status, body);
            let text = e.to_string();
            assert!(e.is_auth(), "{text}");
            assert!(!text.contains("QBO_REFRESH_TOKEN"), "{text}");
            assert!(text.contains(e.diagnosis().action), "{text}");
        }
    }

    #[test]
    fn oauth_and_transport_errors() {
        let grant = QboError::Auth(AuthError::InvalidGrant {
            description: None,
            intuit_tid: None,
        });
        assert_eq!(grant.diagnosis().remedy, Remedy::RotateRefreshToken);
        let client = QboError::Auth(AuthError::InvalidClient {
            description: Some("Invalid client".into()),
            status: 401,
            intuit_tid: None,
        });
        assert_eq!(client.diagnosis().remedy, Remedy::FixConfiguration);
        assert!(client.diagnosis().action.contains("QBO_CLIENT_SECRET"));
        let timeout = QboError::Timeout {
            endpoint: Endpoint::Api,
            intuit_tid: None,
        };
        assert_eq!(timeout.diagnosis().remedy, Remedy::RetryLater);
        let gave_up = QboError::GaveUp {
            attempts: 3,
            troubled_for: std::time::Duration::from_secs(400),
            last: Box::new(fault(429, XML_403_THROTTLE)),
        };
        assert_eq!(gave_up.diagnosis().remedy, Remedy::RetryLater);
        let unknown = QboError::Http {
            endpoint: Endpoint::Api,
            status: 404,
            class: FailureClass::NotFound,
            retry_after: None,
            intuit_tid: None,
            body: None,
        };
        assert_eq!(unknown.diagnosis().remedy, Remedy::FixConfiguration);
        let store = QboError::TokenStore(TokenStoreError::NotAFile {
            path: "/tmp".into(),
        });
        assert_eq!(store.diagnosis().remedy, Remedy::FixTokenStore);
        let store = QboError::TokenStore(TokenStoreError::backend(true, "busy"));
        assert_eq!(store.diagnosis().remedy, Remedy::RetryLater);
    }
}
