//! Settings that shape the simulator's behaviour: token rotation, faults, quirks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When the token endpoint hands out a new refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    /// The same refresh token comes back on every refresh.
    Never,
    /// A new refresh token on every refresh.
    #[default]
    EveryRefresh,
    /// A new refresh token once the current one is at least this old (QBO: about a day).
    Every(Duration),
}

/// Which body a throttled (429) response carries. QBO sends XML even when JSON was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleBody {
    /// `<IntuitResponse><Fault type="SERVICE"><Error code="3001">…` (`application/xml`).
    #[default]
    Xml,
    /// `{"Fault":{"Error":[{… "code":"3001"}],"type":"SERVICE"},…}`.
    Json,
}

/// Behaviours where public sources disagree ("unsettled"): each variant can be produced so
/// that clients are tested against all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quirks {
    /// HTTP status for `invalid_client` (wrong client id/secret): 400 or 401. Default 401.
    pub invalid_client_status: u16,
    /// Whether `invalid_grant` carries an `error_description`. Default true.
    pub invalid_grant_description: bool,
    /// Body of 429 responses. Default XML.
    pub throttle_body: ThrottleBody,
    /// `Retry-After` header on 429 responses (whole seconds); `None` = no header (default).
    #[serde(with = "opt_secs")]
    pub retry_after: Option<Duration>,
    /// Clamp MAXRESULTS above 1000 to 1000 instead of answering 400. Default false.
    pub clamp_max_results: bool,
    /// Add `totalCount` (the page's row count) to query pages. Default false.
    pub include_total_count: bool,
    /// HTTP status for a realm the simulator does not know: 401 (code 3100, default) or 404.
    pub unknown_realm_status: u16,
    /// Name the refresh token's hard expiry `x_refresh_token_lifetime_expires_in` (as some of
    /// Intuit's clients read it) instead of `x_refresh_token_hard_expires_in`. Default false.
    pub hard_expiry_lifetime_spelling: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            invalid_client_status: 401,
            invalid_grant_description: true,
            throttle_body: ThrottleBody::Xml,
            retry_after: None,
            clamp_max_results: false,
            include_total_count: false,
            unknown_realm_status: 401,
            hard_expiry_lifetime_spelling: false,
        }
    }
}

/// Intuit's batch reference says a batch response returns at most 1,000 objects without saying
/// whether per item or per batch ("unsettled"): one switch for each reading, so a client's
/// truncation check is tested against both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchObjectCap {
    /// Each item answers at most 1,000 objects: its MAXRESULTS, which the query language
    /// already bounds at 1,000 (the default, and how a single query behaves).
    #[default]
    #[serde(alias = "per-item")]
    PerItem,
    /// The batch answers at most 1,000 objects in all: items are served in order and, once the
    /// total reaches 1,000, the rest of an item's rows are cut off (later items answer empty
    /// pages; COUNT items are not objects and answer in full). Nothing in the answer says so.
    #[serde(alias = "per-batch")]
    PerBatch,
    /// No cap of the batch's own: every item answers its MAXRESULTS. (Identical to
    /// [`BatchObjectCap::PerItem`] while MAXRESULTS is at most 1,000; kept so a test can say
    /// that it does not depend on the cap.)
    Off,
}

/// Most objects one batch answers under [`BatchObjectCap::PerBatch`], and one item under
/// [`BatchObjectCap::PerItem`].
pub const BATCH_OBJECT_CAP: usize = 1000;

/// Which fault a [`BatchItemFault`] puts in an item's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchItemFaultKind {
    /// `SystemFault` code 10000 ("An application error has occurred"): a server-side failure
    /// worth a retry.
    #[default]
    System,
    /// `ValidationFault` code 4000: a refusal a retry does not change.
    Validation,
}

/// A fault for batch items: the items it targets answer QBO's per-item `Fault` (inside
/// `BatchItemResponse`, with their `bId`) while the other items of the batch answer normally.
/// Targets an item by its position in the batch, by text its query contains, or both (then
/// both must match); with neither it targets every item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchItemFault {
    /// 0-based position of the item in its batch.
    pub item: Option<usize>,
    /// Text the item's query must contain (case-sensitive).
    pub query_contains: Option<String>,
    /// The fault the item answers.
    pub kind: BatchItemFaultKind,
    /// How many items it faults before it is spent (0 = every matching item until the faults
    /// are replaced). Default 1, so a retry of the item succeeds.
    pub times: u32,
}

impl Default for BatchItemFault {
    fn default() -> Self {
        BatchItemFault {
            item: None,
            query_contains: None,
            kind: BatchItemFaultKind::System,
            times: 1,
        }
    }
}

impl BatchItemFault {
    /// A fault for the item at `position` (0-based) of the next batch that has one.
    pub fn nth(position: usize) -> Self {
        BatchItemFault {
            item: Some(position),
            ..BatchItemFault::default()
        }
    }

    /// A fault for the next item whose query contains `text`.
    pub fn query_containing(text: impl Into<String>) -> Self {
        BatchItemFault {
            query_contains: Some(text.into()),
            ..BatchItemFault::default()
        }
    }

    /// The same target with another kind of fault.
    pub fn kind(mut self, kind: BatchItemFaultKind) -> Self {
        self.kind = kind;
        self
    }

    /// The same target, faulting `n` items (0 = every matching item).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Whether the item at `position` with query text `query` is targeted.
    pub(crate) fn matches(&self, position: usize, query: Option<&str>) -> bool {
        self.item.is_none_or(|p| p == position)
            && self
                .query_contains
                .as_deref()
                .is_none_or(|t| query.is_some_and(|q| q.contains(t)))
    }
}

/// Probabilistic faults, each in `0.0..=1.0`, applied to API requests (query, batch, CDC)
/// that passed authentication and rate limiting. At most one fault per request; they are
/// drawn in field order. All zero by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultPlan {
    /// 429 throttle (body and `Retry-After` per [`Quirks`]).
    pub throttle: f64,
    /// 500 with a `SystemFault` body.
    pub server_error: f64,
    /// 502 with an HTML body.
    pub bad_gateway: f64,
    /// 503 with an HTML body.
    pub service_unavailable: f64,
    /// 504 with the gateway's XML body (code 6002).
    pub gateway_timeout: f64,
    /// Answer normally after an extra delay of [`FaultPlan::slow_delay`].
    pub slow: f64,
    /// The extra delay of a slow response.
    #[serde(with = "millis")]
    pub slow_delay: Duration,
    /// Declare the full `Content-Length`, send about half the body, then drop the connection.
    pub drop_connection: f64,
    /// 200 with a truncated (invalid) JSON body whose length matches what is sent.
    pub malformed_json: f64,
    /// 200 carrying a `SystemFault` instead of data.
    pub fault_with_200: f64,
    /// Treat the presented access token as expired (it stays expired): gateway 401.
    pub expired_token: f64,
    /// 500 `InternalServerError` from the gateway with code 3100 ([`ScriptedFault::InternalError3100`]).
    pub internal_error_3100: f64,
    /// 403 from the gateway with code 3100 ([`ScriptedFault::Forbidden3100`]).
    pub forbidden_3100: f64,
    /// 403 with the XML throttle fault ([`ScriptedFault::Throttle403`]).
    pub throttle_403: f64,
    /// 401 XML code 120: no API access with the company's subscription
    /// ([`ScriptedFault::NoSubscriptionAccess`]).
    pub no_subscription_access: f64,
    /// 401 XML code 100: token and company do not match ([`ScriptedFault::RealmMismatch`]).
    pub realm_mismatch: f64,
    /// 400 validation fault without `element` and `time` (`ScriptedFault::Status(400)`).
    pub bad_request: f64,
    /// Seed of the fault dice, so a run's faults repeat.
    pub seed: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            throttle: 0.0,
            server_error: 0.0,
            bad_gateway: 0.0,
            service_unavailable: 0.0,
            gateway_timeout: 0.0,
            slow: 0.0,
            slow_delay: Duration::from_secs(5),
            drop_connection: 0.0,
            malformed_json: 0.0,
            fault_with_200: 0.0,
            expired_token: 0.0,
            internal_error_3100: 0.0,
            forbidden_3100: 0.0,
            throttle_403: 0.0,
            no_subscription_access: 0.0,
            realm_mismatch: 0.0,
            bad_request: 0.0,
            seed: 0,
        }
    }
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Draws the fault for one request from a uniform `roll` in `[0, 1)`. Faults added later
    /// come after the older ones, so an old plan and seed still draw the same faults.
    pub(crate) fn pick(&self, roll: f64) -> Option<ScriptedFault> {
        let table = [
            (self.throttle, ScriptedFault::Throttle),
            (self.server_error, ScriptedFault::Status(500)),
            (self.bad_gateway, ScriptedFault::Status(502)),
            (self.service_unavailable, ScriptedFault::Status(503)),
            (self.gateway_timeout, ScriptedFault::Status(504)),
            (self.slow, ScriptedFault::Slow(self.slow_delay)),
            (self.drop_connection, ScriptedFault::DropConnection),
            (self.malformed_json, ScriptedFault::MalformedJson),
            (self.fault_with_200, ScriptedFault::FaultWith200),
            (self.expired_token, ScriptedFault::ExpiredToken),
            (self.internal_error_3100, ScriptedFault::InternalError3100),
            (self.forbidden_3100, ScriptedFault::Forbidden3100),
            (self.throttle_403, ScriptedFault::Throttle403),
            (
                self.no_subscription_access,
                ScriptedFault::NoSubscriptionAccess,
            ),
            (self.realm_mismatch, ScriptedFault::RealmMismatch),
            (self.bad_request, ScriptedFault::Status(400)),
        ];
        let mut acc = 0.0;
        for (p, fault) in table {
            acc += p.clamp(0.0, 1.0);
            if roll < acc {
                return Some(fault);
            }
        }
        None
    }

    /// Whether any probability is non-zero.
    pub(crate) fn is_active(&self) -> bool {
        [
            self.throttle,
            self.server_error,
            self.bad_gateway,
            self.service_unavailable,
            self.gateway_timeout,
            self.slow,
            self.drop_connection,
            self.malformed_json,
            self.fault_with_200,
            self.expired_token,
            self.internal_error_3100,
            self.forbidden_3100,
            self.throttle_403,
            self.no_subscription_access,
            self.realm_mismatch,
            self.bad_request,
        ]
        .iter()
        .any(|p| *p > 0.0)
    }
}

/// One fault for one upcoming request (see `SimHandle::script`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ScriptedFaultRepr", into = "ScriptedFaultRepr")]
pub enum ScriptedFault {
    /// No fault: the request is served normally (lets a script skip requests).
    Pass,
    /// 429 throttle (body and `Retry-After` per [`Quirks`]).
    Throttle,
    /// That HTTP status: 500 gives a `SystemFault` JSON body; 502/503 an HTML page; 504 the
    /// gateway's XML code 6002; 400 a `ValidationFault` without `element` and `time`; other
    /// statuses a generic fault.
    Status(u16),
    /// Answer normally after this extra delay.
    Slow(Duration),
    /// Send the headers and about half the body, then drop the connection.
    DropConnection,
    /// 200 with truncated JSON.
    MalformedJson,
    /// 200 carrying a `SystemFault` (on the token endpoint: 200 with `{"error":"invalid_grant"}`).
    FaultWith200,
    /// The presented access token is treated as expired from now on (gateway 401).
    ExpiredToken,
    /// HTTP 500 `InternalServerError` with code 3100 in the gateway's JSON (a server-side
    /// failure, not a credentials problem).
    InternalError3100,
    /// HTTP 403 with code 3100 in the gateway's JSON (`AuthorizationFailed`).
    Forbidden3100,
    /// HTTP 403 with the XML `ThrottleExceeded` fault (code 3001): the throttle before 429s.
    Throttle403,
    /// HTTP 401, XML code 120: the company's subscription lacks API access.
    NoSubscriptionAccess,
    /// HTTP 401, XML code 100: the token belongs to another company (XML even when JSON was asked).
    RealmMismatch,
}

impl ScriptedFault {
    /// A short label for logs and request records.
    pub fn label(&self) -> String {
        match self {
            ScriptedFault::Pass => "pass".into(),
            ScriptedFault::Throttle => "throttle".into(),
            ScriptedFault::Status(s) => format!("status_{s}"),
            ScriptedFault::Slow(d) => format!("slow_{}ms", d.as_millis()),
            ScriptedFault::DropConnection => "drop_connection".into(),
            ScriptedFault::MalformedJson => "malformed_json".into(),
            ScriptedFault::FaultWith200 => "fault_with_200".into(),
            ScriptedFault::ExpiredToken => "expired_token".into(),
            ScriptedFault::InternalError3100 => "internal_error_3100".into(),
            ScriptedFault::Forbidden3100 => "forbidden_3100".into(),
            ScriptedFault::Throttle403 => "throttle_403".into(),
            ScriptedFault::NoSubscriptionAccess => "no_subscription_access".into(),
            ScriptedFault::RealmMismatch => "realm_mismatch".into(),
        }
    }
}

/// JSON form of [`ScriptedFault`]: `{"kind":"slow","ms":1500}`, `{"kind":"status","status":503}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ScriptedFaultRepr {
    Pass,
    Throttle,
    Status {
        status: u16,
    },
    Slow {
        ms: u64,
    },
    DropConnection,
    MalformedJson,
    FaultWith200,
    ExpiredToken,
    #[serde(rename = "internal_error_3100")]
    InternalError3100,
    #[serde(rename = "forbidden_3100")]
    Forbidden3100,
    #[serde(rename = "throttle_403")]
    Throttle403,
    NoSubscriptionAccess,
    RealmMismatch,
}

impl From<ScriptedFaultRepr> for ScriptedFault {
    fn from(r: ScriptedFaultRepr) -> Self {
        match r {
            ScriptedFaultRepr::Pass => ScriptedFault::Pass,
            ScriptedFaultRepr::Throttle => ScriptedFault::Throttle,
            ScriptedFaultRepr::Status { status } => ScriptedFault::Status(status),
            ScriptedFaultRepr::Slow { ms } => ScriptedFault::Slow(Duration::from_millis(ms)),
            ScriptedFaultRepr::DropConnection => ScriptedFault::DropConnection,
            ScriptedFaultRepr::MalformedJson => ScriptedFault::MalformedJson,
            ScriptedFaultRepr::FaultWith200 => ScriptedFault::FaultWith200,
            ScriptedFaultRepr::ExpiredToken => ScriptedFault::ExpiredToken,
            ScriptedFaultRepr::InternalError3100 => ScriptedFault::InternalError3100,
            ScriptedFaultRepr::Forbidden3100 => ScriptedFault::Forbidden3100,
            ScriptedFaultRepr::Throttle403 => ScriptedFault::Throttle403,
            ScriptedFaultRepr::NoSubscriptionAccess => ScriptedFault::NoSubscriptionAccess,
            ScriptedFaultRepr::RealmMismatch => ScriptedFault::RealmMismatch,
        }
    }
}

impl From<ScriptedFault> for ScriptedFaultRepr {
    fn from(f: ScriptedFault) -> Self {
        match f {
            ScriptedFault::Pass => ScriptedFaultRepr::Pass,
            ScriptedFault::Throttle => ScriptedFaultRepr::Throttle,
            ScriptedFault::Status(status) => ScriptedFaultRepr::Status { status },
            ScriptedFault::Slow(d) => ScriptedFaultRepr::Slow {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            ScriptedFault::DropConnection => ScriptedFaultRepr::DropConnection,
            ScriptedFault::MalformedJson => ScriptedFaultRepr::MalformedJson,
            ScriptedFault::FaultWith200 => ScriptedFaultRepr::FaultWith200,
            ScriptedFault::ExpiredToken => ScriptedFaultRepr::ExpiredToken,
            ScriptedFault::InternalError3100 => ScriptedFaultRepr::InternalError3100,
            ScriptedFault::Forbidden3100 => ScriptedFaultRepr::Forbidden3100,
            ScriptedFault::Throttle403 => ScriptedFaultRepr::Throttle403,
            ScriptedFault::NoSubscriptionAccess => ScriptedFaultRepr::NoSubscriptionAccess,
            ScriptedFault::RealmMismatch => ScriptedFaultRepr::RealmMismatch,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pick_follows_cumulative_probabilities() {
        let plan = FaultPlan {
            throttle: 0.1,
            server_error: 0.2,
            ..FaultPlan::default()
        };
        assert_eq!(plan.pick(0.05), Some(ScriptedFault::Throttle));
        assert_eq!(plan.pick(0.15), Some(ScriptedFault::Status(500)));
        assert_eq!(plan.pick(0.35), None);
        // A later fault kind does not shift the draws of the older ones.
        let more = FaultPlan {
            realm_mismatch: 0.1,
            ..plan.clone()
        };
        assert_eq!(more.pick(0.15), Some(ScriptedFault::Status(500)));
        assert_eq!(more.pick(0.35), Some(ScriptedFault::RealmMismatch));
        assert!(plan.is_active());
        assert!(!FaultPlan::none().is_active());
        assert_eq!(FaultPlan::none().pick(0.0), None);
    }

    #[test]
    fn scripted_fault_json() {
        let v = vec![
            ScriptedFault::Slow(Duration::from_millis(1500)),
            ScriptedFault::Status(503),
            ScriptedFault::Throttle,
        ];
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(
            s,
            r#"[{"kind":"slow","ms":1500},{"kind":"status","status":503},{"kind":"throttle"}]"#
        );
        let back: Vec<ScriptedFault> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        let named: Vec<ScriptedFault> = serde_json::from_str(
            r#"[{"kind":"internal_error_3100"},{"kind":"forbidden_3100"},{"kind":"throttle_403"},{"kind":"no_subscription_access"},{"kind":"realm_mismatch"}]"#,
        )
        .unwrap();
        assert_eq!(
            named,
            vec![
                ScriptedFault::InternalError3100,
                ScriptedFault::Forbidden3100,
                ScriptedFault::Throttle403,
                ScriptedFault::NoSubscriptionAccess,
                ScriptedFault::RealmMismatch,
            ]
        );
        for f in &named {
            assert_eq!(serde_json::to_value(f).unwrap()["kind"], f.label());
        }
    }

    #[test]
    fn quirks_and_plan_json_defaults() {
        let q: Quirks =
            serde_json::from_str(r#"{"throttle_body":"json","retry_after":60}"#).unwrap();
        assert_eq!(q.throttle_body, ThrottleBody::Json);
        assert_eq!(q.retry_after, Some(Duration::from_secs(60)));
        assert_eq!(q.invalid_client_status, 401);
        let p: FaultPlan = serde_json::from_str(r#"{"slow":0.5,"slow_delay":250}"#).unwrap();
        assert_eq!(p.slow_delay, Duration::from_millis(250));
        assert_eq!(p.throttle, 0.0);
    }
}

/// What the consent page of the authorization-code flow (`GET /connect/oauth2`) does, in
/// place of a person at a browser.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// The user approves and picks the primary company (the default).
    #[default]
    Approve,
    /// The user approves and picks this company (a realm the simulator serves).
    ApproveRealm(String),
    /// The user clicks "Cancel": the redirect carries `error=access_denied`.
    Deny,
}
