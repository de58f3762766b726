//! Riding out database loss: statements that fail for a retryable reason (connection dropped
//! or refused, server restarting, deadlock, serialization failure, …; see
//! [`raw_sink::SinkError::is_retryable`]) are retried with exponential backoff and jitter
//! (`backon`) for a bounded time, after which the error stops the run (exit code 5). Nothing is
//! lost meanwhile: a page is committed together with its window's progress, so the statement
//! that failed is simply run again, and a run stopped here resumes on the next invocation.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use raw_sink::SinkError;

use crate::run::error_chain;

/// How long and how often database statements are retried when the database is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbRetry {
    /// Total waiting time after which the run gives up (exit code 5). Zero disables retries.
    pub give_up_after: Duration,
    /// First wait.
    pub min_delay: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
}

impl Default for DbRetry {
    /// Up to 60 s of waiting, from 100 ms doubling to 5 s, with jitter.
    fn default() -> Self {
        DbRetry {
            give_up_after: Duration::from_secs(60),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl DbRetry {
    /// The default policy with another bound.
    #[must_use]
    pub fn for_duration(give_up_after: Duration) -> DbRetry {
        DbRetry {
            give_up_after,
            ..DbRetry::default()
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.min_delay.min(self.max_delay))
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(self.give_up_after))
    }
}

/// Runs `op` until it succeeds, fails for a non-retryable reason, or `policy`'s bound is spent.
/// Each retry is logged as event `db_retry` with the cause and the wait.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: &DbRetry,
    what: &str,
    op: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    if policy.give_up_after.is_zero() {
        let mut op = op;
        return op().await;
    }
    op.retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(SinkError::is_retryable)
        .notify(|e: &SinkError, wait: Duration| {
            tracing::warn!(
                operation = what,
                cause = %error_chain(e),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "db_retry"
            );
        })
        .await
}

/// Parses a duration such as `90s`, `2m`, `1h`, `500ms` (a bare number means seconds).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 2m, 1h or 500ms"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 30s, 2m, 1h or 500ms"
            ));
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn retryable() -> SinkError {
        SinkError::Pool(raw_sink::deadpool_postgres::PoolError::Timeout(
            raw_sink::deadpool_postgres::TimeoutType::Create,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let policy = DbRetry::for_duration(Duration::from_secs(30));
        let out = with_retry(&policy, "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(retryable())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_bound_and_never_retries_other_errors() {
        let calls = AtomicU32::new(0);
        let policy = DbRetry::for_duration(Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let out: Result<(), _> = with_retry(&policy, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(retryable())
        })
        .await;
        assert!(out.unwrap_err().is_retryable());
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(10), "{waited:?}");
        assert!(waited >= Duration::from_secs(4), "{waited:?}");
        assert!(calls.load(Ordering::SeqCst) > 3);

        calls.store(0, Ordering::SeqCst);
        let out: Result<(), _> = with_retry(&policy, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(SinkError::NotFound {
                entity: "window",
                key: "1".into(),
            })
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }
}
