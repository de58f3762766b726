//! Reactive retries: one closed set of failure classes, decided in one place, and a pure
//! `decide` function turning (policy, class, attempt) into stop or wait.

use std::fmt;
use std::time::Duration;

use backon::BackoffBuilder;

use crate::fault::Fault;

/// How a failed request failed. Every failure the client sees maps to exactly one class, in
/// [`FailureClass::from_status`] (HTTP answers) or the transport classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// HTTP 429 or QBO's throttle fault (3001), JSON or XML.
    Throttled {
        /// The `Retry-After` delay, when the answer carried one.
        retry_after: Option<Duration>,
    },
    /// HTTP 500 (or a `SystemFault` inside HTTP 200): Intuit says to resubmit once.
    InternalError,
    /// HTTP 502, 503, 504 (and other 5xx).
    ServerError {
        /// The status code.
        status: u16,
        /// The `Retry-After` delay, when the answer carried one.
        retry_after: Option<Duration>,
    },
    /// The request or the body read timed out (also HTTP 408).
    Timeout,
    /// The connection could not be made or broke before an answer.
    Connection,
    /// The body ended early (connection dropped mid-body, JSON cut short).
    TruncatedBody,
    /// The body is not the JSON it should be (syntax error, HTML error page, XML without a fault).
    Malformed,
    /// HTTP 401 / authentication fault: one forced token refresh, then one retry.
    Unauthorized,
    /// HTTP 403 / authorization fault.
    Forbidden,
    /// HTTP 400 / validation fault: the request itself is wrong.
    Validation,
    /// HTTP 404 (e.g. unknown realm).
    NotFound,
    /// Any other refusal (other 4xx, a non-system fault inside HTTP 200, a response that
    /// decodes but does not fit the schema): retrying cannot help.
    Rejected,
}

impl FailureClass {
    /// Classifies an HTTP answer that is not a success (or a success carrying a fault).
    #[must_use]
    pub fn from_status(status: u16, fault: Option<&Fault>, retry_after: Option<Duration>) -> Self {
        if status == 429 || fault.is_some_and(Fault::is_throttle) {
            return Self::Throttled { retry_after };
        }
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            408 => Self::Timeout,
            400 => Self::Validation,
            500 => Self::InternalError,
            501..=599 => Self::ServerError {
                status,
                retry_after,
            },
            200..=299 => match fault {
                // A SystemFault inside a 200 is a server-side failure: resubmit once, like a 500.
                Some(f) if f.is_system() => Self::InternalError,
                Some(f) if f.is_authentication() => Self::Unauthorized,
                Some(f) if f.is_authorization() => Self::Forbidden,
                Some(f) if f.is_validation() => Self::Validation,
                _ => Self::Rejected,
            },
            _ => Self::Rejected,
        }
    }

    /// Whether the class is ever retried with a backoff (401 is handled by a refresh instead).
    #[must_use]
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::InternalError
                | Self::ServerError { .. }
                | Self::Timeout
                | Self::Connection
                | Self::TruncatedBody
                | Self::Malformed
        )
    }

    /// A short stable name, used as the `cause` of `retry` events.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::InternalError => "internal_error",
            Self::ServerError { .. } => "server_error",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::TruncatedBody => "truncated_body",
            Self::Malformed => "malformed_body",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Validation => "validation",
            Self::NotFound => "not_found",
            Self::Rejected => "rejected",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Give up and report the failure.
    Stop,
    /// Wait this long, then try again.
    RetryAfter(Duration),
}

/// Retry settings. Defaults follow Intuit's guidance; tests use millisecond waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts per request, the first included (default 8).
    pub max_attempts: u32,
    /// First wait for 5xx, timeouts, connection and body failures (default 1 s).
    pub initial_backoff: Duration,
    /// First wait after a throttle without `Retry-After` (default 2 s).
    pub throttle_backoff: Duration,
    /// No wait is longer, `Retry-After` included (default 60 s).
    pub max_backoff: Duration,
    /// How many times an HTTP 500 is resubmitted (default 1, per Intuit).
    pub max_internal_error_retries: u32,
    /// Whether waits get random jitter (default true).
    pub jitter: bool,
    /// The give-up horizon (default [`DEFAULT_GIVE_UP_AFTER`], 5 min): once every request of
    /// the client has failed transiently (throttling, 5xx, timeouts, broken connections) for
    /// this long without a single success, a failing request is not retried any more, and
    /// each one gives up at its first failure until QBO answers again. Without it a persistent
    /// throttle or outage keeps every request in its backoff and a caller that retries whole
    /// units of work (a backfill's windows) takes many times longer to stop.
    pub give_up_after: Duration,
}

/// The default give-up horizon of [`RetryPolicy::give_up_after`]: five minutes of nothing but
/// transient failures (Intuit's throttle window is one minute).
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(300);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            throttle_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            max_internal_error_retries: 1,
            jitter: true,
            give_up_after: DEFAULT_GIVE_UP_AFTER,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    #[must_use]
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the total number of attempts (at least 1).
    #[must_use]
    pub const fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = if attempts == 0 { 1 } else { attempts };
        self
    }

    /// Sets the first waits and the cap.
    #[must_use]
    pub const fn with_backoff(
        mut self,
        initial: Duration,
        throttle: Duration,
        max: Duration,
    ) -> Self {
        self.initial_backoff = initial;
        self.throttle_backoff = throttle;
        self.max_backoff = max;
        self
    }

    /// Sets how many times an HTTP 500 is resubmitted.
    #[must_use]
    pub const fn with_max_internal_error_retries(mut self, n: u32) -> Self {
        self.max_internal_error_retries = n;
        self
    }

    /// Turns jitter on or off.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the give-up horizon ([`RetryPolicy::give_up_after`]).
    #[must_use]
    pub const fn with_give_up_after(mut self, horizon: Duration) -> Self {
        self.give_up_after = horizon;
        self
    }
}

/// Whether waiting `wait` more after `troubled_for` of uninterrupted transient failures would
/// pass the policy's give-up horizon (then the request gives up instead of waiting).
#[must_use]
pub fn past_horizon(policy: &RetryPolicy, troubled_for: Duration, wait: Duration) -> bool {
    troubled_for.saturating_add(wait) > policy.give_up_after
}

/// The client's current run of transient failures: when the first failure after the last
/// success happened. Shared by every request (and the token refresh) of one client.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    since: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Outage {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a transient failure; returns how long failures have lasted without a success.
    pub(crate) fn failed(&self) -> Duration {
        let now = tokio::time::Instant::now();
        let mut since = self.lock();
        now.duration_since(*since.get_or_insert(now))
    }

    /// Records a success: the run of failures is over.
    pub(crate) fn succeeded(&self) {
        *self.lock() = None;
    }
}

/// Decides whether attempt number `attempt` (1-based: the attempt that just failed) is followed
/// by another, and after what wait. Pure apart from jitter. Classes that are not transient stop
/// at once; others retry until `max_attempts`, waiting `Retry-After` (capped) or an exponential
/// backoff. The "resubmit a 500 only once" rule needs the request's history and is applied by
/// [`RetryState`].
#[must_use]
pub fn decide(policy: &RetryPolicy, class: FailureClass, attempt: u32) -> Decision {
    if !class.is_transient() || attempt >= policy.max_attempts {
        return Decision::Stop;
    }
    let (retry_after, start) = match class {
        FailureClass::Throttled { retry_after } => (retry_after, policy.throttle_backoff),
        FailureClass::ServerError { retry_after, .. } => (retry_after, policy.initial_backoff),
        _ => (None, policy.initial_backoff),
    };
    let wait = match retry_after {
        Some(d) => d.min(policy.max_backoff),
        None => backoff(policy, start, attempt),
    };
    Decision::RetryAfter(wait)
}

/// The retry history of one request: counts attempts and HTTP 500s, then asks [`decide`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryState {
    attempts: u32,
    internal_errors: u32,
}

impl RetryState {
    /// A request that has not failed yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            attempts: 0,
            internal_errors: 0,
        }
    }

    /// Attempts that failed so far.
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records a failed attempt of `class` and decides what follows.
    pub fn failed(&mut self, policy: &RetryPolicy, class: FailureClass) -> Decision {
        self.attempts += 1;
        if class == FailureClass::InternalError {
            self.internal_errors += 1;
            if self.internal_errors > policy.max_internal_error_retries {
                return Decision::Stop;
            }
        }
        decide(policy, class, self.attempts)
    }
}

/// Exponential backoff (factor 2) from `start` with additive jitter (backon), never above the cap.
fn backoff(policy: &RetryPolicy, start: Duration, attempt: u32) -> Duration {
    let cap = policy.max_backoff;
    let mut builder = backon::ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(start.min(cap))
        .without_max_times();
    builder = if policy.jitter {
        // Jitter adds up to 100%: keep the base under half the cap so waits still spread there.
        builder.with_max_delay(cap / 2).with_jitter()
    } else {
        builder.with_max_delay(cap)
    };
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    builder.build().nth(index).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn fixed() -> RetryPolicy {
        RetryPolicy::default().with_jitter(false)
    }

    #[test]
    fn table_without_jitter() {
        use Decision::{RetryAfter, Stop};
        use FailureClass as F;
        let p = fixed();
        let cases: &[(FailureClass, u32, Decision)] = &[
            // 429: starts at 2 s, doubles, capped at 60 s, stops at max_attempts.
            (F::Throttled { retry_after: None }, 1, RetryAfter(S(2))),
            (F::Throttled { retry_after: None }, 2, RetryAfter(S(4))),
            (F::Throttled { retry_after: None }, 3, RetryAfter(S(8))),
            (F::Throttled { retry_after: None }, 5, RetryAfter(S(32))),
            (F::Throttled { retry_after: None }, 6, RetryAfter(S(60))),
            (F::Throttled { retry_after: None }, 7, RetryAfter(S(60))),
            (F::Throttled { retry_after: None }, 8, Stop),
            // Retry-After wins, capped.
            (
                F::Throttled {
                    retry_after: Some(S(7)),
                },
                1,
                RetryAfter(S(7)),
            ),
            (
                F::Throttled {
                    retry_after: Some(S(600)),
                },
                1,
                RetryAfter(S(60)),
            ),
            (
                F::Throttled {
                    retry_after: Some(S(0)),
                },
                3,
                RetryAfter(S(0)),
            ),
            (
                F::ServerError {
                    status: 503,
                    retry_after: Some(S(5)),
                },
                1,
                RetryAfter(S(5)),
            ),
            // 5xx family from 1 s.
            (
                F::ServerError {
                    status: 503,
                    retry_after: None,
                },
                1,
                RetryAfter(S(1)),
            ),
            (
                F::ServerError {
                    status: 502,
                    retry_after: None,
                },
                2,
                RetryAfter(S(2)),
            ),
            (
                F::ServerError {
                    status: 504,
                    retry_after: None,
                },
                4,
                RetryAfter(S(8)),
            ),
            // 500 backs off like other 5xx (its once-only rule lives in RetryState).
            (F::InternalError, 1, RetryAfter(S(1))),
            (F::InternalError, 2, RetryAfter(S(2))),
            (F::InternalError, 8, Stop),
            // Transport and body failures.
            (F::Timeout, 1, RetryAfter(S(1))),
            (F::Connection, 3, RetryAfter(S(4))),
            (F::TruncatedBody, 1, RetryAfter(S(1))),
            (F::Malformed, 2, RetryAfter(S(2))),
            (F::Connection, 8, Stop),
            // Never retried.
            (F::Validation, 1, Stop),
            (F::Unauthorized, 1, Stop),
            (F::Forbidden, 1, Stop),
            (F::NotFound, 1, Stop),
            (F::Rejected, 1, Stop),
        ];
        for (class, attempt, want) in cases {
            assert_eq!(
                decide(&p, *class, *attempt),
                *want,
                "{class:?} attempt {attempt}"
            );
        }
    }

    #[test]
    fn the_give_up_horizon_bounds_waiting() {
        let p = fixed().with_give_up_after(S(30));
        assert_eq!(RetryPolicy::default().give_up_after, S(300));
        assert!(!past_horizon(&p, S(0), S(2)));
        assert!(!past_horizon(&p, S(28), S(2)));
        assert!(past_horizon(&p, S(29), S(2)));
        assert!(past_horizon(&p, S(31), S(0)));
        assert!(past_horizon(&p, Duration::MAX, S(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_outage_clock_runs_from_the_first_failure_until_a_success() {
        let o = Outage::default();
        assert_eq!(o.failed(), S(0));
        tokio::time::advance(S(7)).await;
        assert_eq!(o.failed(), S(7));
        o.succeeded();
        tokio::time::advance(S(3)).await;
        assert_eq!(o.failed(), S(0));
    }

    #[test]
    fn policy_knobs() {
        let p = fixed().with_max_attempts(2);
        assert_eq!(
            decide(&p, FailureClass::Timeout, 1),
            Decision::RetryAfter(S(1))
        );
        assert_eq!(decide(&p, FailureClass::Timeout, 2), Decision::Stop);
        assert_eq!(
            decide(&RetryPolicy::no_retries(), FailureClass::Timeout, 1),
            Decision::Stop
        );
        let fast = fixed().with_backoff(MS(1), MS(2), MS(10));
        assert_eq!(
            decide(&fast, FailureClass::Throttled { retry_after: None }, 1),
            Decision::RetryAfter(MS(2))
        );
        assert_eq!(
            decide(&fast, FailureClass::Throttled { retry_after: None }, 5),
            Decision::RetryAfter(MS(10))
        );
        // A server-sent Retry-After of seconds is clamped to the test cap.
        assert_eq!(
            decide(
                &fast,
                FailureClass::Throttled {
                    retry_after: Some(S(60))
                },
                1
            ),
            Decision::RetryAfter(MS(10))
        );
        assert_eq!(RetryPolicy::default().with_max_attempts(0).max_attempts, 1);
    }

    #[test]
    fn retry_state_resubmits_a_500_once_per_request() {
        use Decision::{RetryAfter, Stop};
        use FailureClass as F;
        let p = fixed();
        let s503 = F::ServerError {
            status: 503,
            retry_after: None,
        };
        let cases: &[(&[FailureClass], Decision)] = &[
            (&[F::InternalError], RetryAfter(S(1))),
            (&[F::InternalError, F::InternalError], Stop),
            (&[s503, s503, F::InternalError], RetryAfter(S(4))),
            (&[F::InternalError, s503, F::InternalError], Stop),
            (&[s503, F::Timeout, s503], RetryAfter(S(4))),
            (&[F::Validation], Stop),
        ];
        for (history, want) in cases {
            let mut st = RetryState::new();
            let mut last = Stop;
            for class in *history {
                last = st.failed(&p, *class);
            }
            assert_eq!(last, *want, "{history:?}");
            assert_eq!(st.attempts() as usize, history.len());
        }
        let none = fixed().with_max_internal_error_retries(0);
        assert_eq!(RetryState::new().failed(&none, F::InternalError), Stop);
        let mut st = RetryState::new();
        let capped = fixed().with_max_attempts(3);
        assert_ne!(st.failed(&capped, F::Timeout), Stop);
        assert_ne!(st.failed(&capped, F::Timeout), Stop);
        assert_eq!(st.failed(&capped, F::Timeout), Stop);
    }

    #[test]
    fn jitter_stays_in_range_and_under_cap() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            for attempt in 1..8 {
                let Decision::RetryAfter(d) =
                    decide(&p, FailureClass::Throttled { retry_after: None }, attempt)
                else {
                    panic!("should retry");
                };
                let base = S(2).saturating_mul(1 << (attempt - 1)).min(S(30));
                assert!(d >= base, "attempt {attempt}: {d:?} < {base:?}");
                assert!(d <= S(60), "attempt {attempt}: {d:?}");
                assert!(d < base * 2 || d == S(60), "attempt {attempt}: {d:?}");
            }
        }
        // Jitter actually varies.
        let waits: std::collections::HashSet<_> = (0..50)
            .map(|_| decide(&p, FailureClass::Timeout, 1))
            .collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn classification_in_one_place() {
        let throttle_xml = Fault::parse(
            br#"<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded</Message></Error></Fault></IntuitResponse>"#,
        );
        let auth =
            Fault::parse(br#"{"fault":{"error":[{"code":"3200"}],"type":"AUTHENTICATION"}}"#);
        let validation =
            Fault::parse(br#"{"Fault":{"Error":[{"code":"4000"}],"type":"ValidationFault"}}"#);
        let system =
            Fault::parse(br#"{"Fault":{"Error":[{"code":"10000"}],"type":"SystemFault"}}"#);
        let other = Fault::parse(br#"{"Fault":{"type":"Other"}}"#);
        let ra = Some(S(3));
        use FailureClass as F;
        let cases = [
            (429, None, F::Throttled { retry_after: ra }),
            (400, throttle_xml.as_ref(), F::Throttled { retry_after: ra }),
            (200, throttle_xml.as_ref(), F::Throttled { retry_after: ra }),
            (401, auth.as_ref(), F::Unauthorized),
            (200, auth.as_ref(), F::Unauthorized),
            (403, None, F::Forbidden),
            (404, None, F::NotFound),
            (400, validation.as_ref(), F::Validation),
            (200, validation.as_ref(), F::Validation),
            (200, system.as_ref(), F::InternalError),
            (200, other.as_ref(), F::Rejected),
            (500, system.as_ref(), F::InternalError),
            (
                502,
                None,
                F::ServerError {
                    status: 502,
                    retry_after: ra,
                },
            ),
            (
                503,
                None,
                F::ServerError {
                    status: 503,
                    retry_after: ra,
                },
            ),
            (
                504,
                None,
                F::ServerError {
                    status: 504,
                    retry_after: ra,
                },
            ),
            (408, None, F::Timeout),
            (409, None, F::Rejected),
            (302, None, F::Rejected),
        ];
        for (status, fault, want) in cases {
            assert_eq!(
                F::from_status(status, fault, ra),
                want,
                "{status} {fault:?}"
            );
        }
    }
}
