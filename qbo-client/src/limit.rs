//! Proactive rate limiting, per realm and shared by every client of the process: a GCRA
//! limiter (governor) for the per-minute budget plus a semaphore for the concurrency cap, and
//! a second GCRA limiter for QBO's batch budget (40 batch requests a minute). A batch request
//! takes one slot of each: it is a request like any other for the 500 a minute and the 10 in
//! flight, and one of the 40.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// QBO's limits for one realm: requests per minute and requests in flight. `0` means unlimited
/// (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests per minute (QBO: 500).
    pub per_minute: u32,
    /// Requests in flight at once (QBO: 10).
    pub max_concurrency: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::QBO
    }
}

impl RateLimit {
    /// QBO's published limits: 500 requests/min and 10 concurrent requests per realm.
    pub const QBO: Self = Self {
        per_minute: 500,
        max_concurrency: 10,
    };

    /// No limits at all (tests only).
    #[must_use]
    pub const fn unlimited() -> Self {
        Self {
            per_minute: 0,
            max_concurrency: 0,
        }
    }
}

/// The governor quota for `per_minute` requests: evenly spaced, burst of one, the spacing a
/// hair over 60 s / N so that no closed 60-second window ever holds more than N requests (and a
/// 500/min budget also stays under QBO's 10 requests/second).
pub(crate) fn quota(per_minute: u32) -> Option<Quota> {
    if per_minute == 0 {
        return None;
    }
    let per_request_micros = 60_000_000u64.div_ceil(u64::from(per_minute)) + 1;
    Quota::with_period(Duration::from_micros(per_request_micros))
        .map(|q| q.allow_burst(NonZeroU32::MIN))
}

/// The limiter of one realm.
pub(crate) struct RealmLimiter {
    config: RateLimit,
    rate: Option<DefaultDirectRateLimiter>,
    slots: Option<Arc<Semaphore>>,
}

/// Held while a request is in flight.
pub(crate) struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
}

impl RealmLimiter {
    fn new(config: RateLimit) -> Self {
        Self {
            config,
            rate: quota(config.per_minute).map(governor::RateLimiter::direct),
            slots: (config.max_concurrency > 0)
                .then(|| Arc::new(Semaphore::new(config.max_concurrency as usize))),
        }
    }

    /// Waits for a concurrency slot, then for the rate budget (in that order, so that requests
    /// queued for a slot cannot go out in a burst later).
    pub(crate) async fn acquire(&self) -> Permit {
        let slot = match &self.slots {
            // The semaphore is never closed.
            Some(s) => Arc::clone(s).acquire_owned().await.ok(),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        Permit { _slot: slot }
    }

    pub(crate) fn config(&self) -> RateLimit {
        self.config
    }
}

/// QBO's batch budget: batch requests a minute per realm and app.
pub const BATCH_REQUESTS_PER_MINUTE: u32 = 40;

/// The batch budget of one realm (batch requests per minute; `0` = unlimited).
pub(crate) struct BatchLimiter {
    per_minute: u32,
    rate: Option<DefaultDirectRateLimiter>,
    /// A slot [`BatchLimiter::try_take`] took from `rate` and kept for the next
    /// [`BatchLimiter::acquire`] (at most one is kept, so the budget is never exceeded).
    kept: std::sync::atomic::AtomicBool,
}

impl BatchLimiter {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            rate: quota(per_minute).map(governor::RateLimiter::direct),
            kept: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Waits for one slot of the batch budget (or uses the one [`BatchLimiter::try_take`]
    /// kept). Taken before the realm's [`RealmLimiter`] permit, so that a batch waiting for
    /// its budget holds no concurrency slot.
    pub(crate) async fn acquire(&self) {
        if self.kept.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
    }

    /// Whether a batch request sent now would not wait for the batch budget, without
    /// waiting: when the budget has a slot free, the slot is taken and kept for the next
    /// [`BatchLimiter::acquire`] (so the answer stays true until a batch uses it).
    pub(crate) fn try_take(&self) -> bool {
        use std::sync::atomic::Ordering;
        let Some(rate) = &self.rate else { return true };
        if self.kept.load(Ordering::Acquire) {
            return true;
        }
        if rate.check().is_err() {
            return false;
        }
        // Should another caller have kept one meanwhile, this slot is spent unused: the kept
        // slots never exceed one.
        self.kept.store(true, Ordering::Release);
        true
    }

    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute
    }
}

type Registry<T> = Mutex<HashMap<String, Weak<T>>>;

static REGISTRY: LazyLock<Registry<RealmLimiter>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static BATCH_REGISTRY: LazyLock<Registry<BatchLimiter>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The live entry of `key` in `registry`, or a new one made by `make`.
fn share<T>(registry: &Registry<T>, key: String, make: impl FnOnce() -> T) -> Arc<T> {
    let mut map = registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    let made = Arc::new(make());
    map.insert(key, Arc::downgrade(&made));
    made
}

/// The process-wide limiter of (`api_origin`, `realm_id`); created with `config` when absent.
/// If it exists with another configuration, the existing one is kept (all clients of a realm
/// must share one budget) and a warning says so.
pub(crate) fn shared(api_origin: &str, realm_id: &str, config: RateLimit) -> Arc<RealmLimiter> {
    let key = format!("{api_origin}|{realm_id}");
    let limiter = share(&REGISTRY, key, || RealmLimiter::new(config));
    if limiter.config() != config {
        tracing::warn!(
            realm = realm_id,
            requested_per_minute = config.per_minute,
            requested_max_concurrency = config.max_concurrency,
            per_minute = limiter.config().per_minute,
            max_concurrency = limiter.config().max_concurrency,
            "another client of this realm already set the rate limit; sharing its limiter"
        );
    }
    limiter
}

/// The process-wide batch limiter of (`api_origin`, `realm_id`), shared like [`shared`]'s.
pub(crate) fn shared_batch(api_origin: &str, realm_id: &str, per_minute: u32) -> Arc<BatchLimiter> {
    let key = format!("{api_origin}|{realm_id}");
    let limiter = share(&BATCH_REGISTRY, key, || BatchLimiter::new(per_minute));
    if limiter.per_minute() != per_minute {
        tracing::warn!(
            realm = realm_id,
            requested_batch_per_minute = per_minute,
            batch_per_minute = limiter.per_minute(),
            "another client of this realm already set the batch limit; sharing its limiter"
        );
    }
    limiter
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::{Clock, FakeRelativeClock, Reference};

    /// Greedy callers against the quota on a fake clock; returns the allowed instants.
    fn simulate(per_minute: u32, requests: usize) -> Vec<Duration> {
        let clock = FakeRelativeClock::default();
        let limiter =
            governor::RateLimiter::direct_with_clock(quota(per_minute).unwrap(), clock.clone());
        let start = clock.now();
        let mut times = Vec::with_capacity(requests);
        while times.len() < requests {
            match limiter.check() {
                Ok(()) => times.push(clock.now().duration_since(start).into()),
                Err(not_until) => clock.advance(not_until.wait_time_from(clock.now())),
            }
        }
        times
    }

    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] > window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn qbo_budget_arithmetic_holds_for_a_2000_request_burst() {
        let times = simulate(500, 2000);
        // Never more than 500 in any closed 60-second window, nor 10 in any second.
        assert!(max_in_window(&times, Duration::from_secs(60)) <= 500);
        assert!(max_in_window(&times, Duration::from_secs(1)) <= 10);
        // And no slower than needed: 2,000 requests fit in about four minutes.
        let total = *times.last().unwrap();
        assert!(total < Duration::from_secs(4 * 60 + 1), "{total:?}");
        assert!(total > Duration::from_secs(3 * 60 + 59), "{total:?}");
        assert_eq!(max_in_window(&times, Duration::from_secs(60)), 500);
    }

    #[test]
    fn other_budgets() {
        for per_minute in [1, 7, 60, 499, 600, 6000, 60_000] {
            let n = (per_minute as usize * 2).min(5000);
            let times = simulate(per_minute, n);
            assert!(
                max_in_window(&times, Duration::from_secs(60)) <= per_minute as usize,
                "{per_minute}"
            );
        }
        assert!(quota(0).is_none());
    }

    #[tokio::test]
    async fn registry_shares_per_origin_and_realm() {
        let a = shared("http://127.0.0.1:1", "realm-a", RateLimit::QBO);
        let b = shared("http://127.0.0.1:1", "realm-a", RateLimit::unlimited());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.config(), RateLimit::QBO);
        let c = shared("http://127.0.0.1:1", "realm-b", RateLimit::QBO);
        assert!(!Arc::ptr_eq(&a, &c));
        let d = shared("http://127.0.0.1:2", "realm-a", RateLimit::QBO);
        assert!(!Arc::ptr_eq(&a, &d));
        drop((a, b));
        // Once every client is gone, a new configuration takes effect.
        let e = shared("http://127.0.0.1:1", "realm-a", RateLimit::unlimited());
        assert_eq!(e.config(), RateLimit::unlimited());
    }

    #[tokio::test]
    async fn batch_registry_shares_per_origin_and_realm() {
        let a = shared_batch("http://127.0.0.1:1", "realm-a", 40);
        let b = shared_batch("http://127.0.0.1:1", "realm-a", 0);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.per_minute(), 40);
        let c = shared_batch("http://127.0.0.1:1", "realm-b", 40);
        assert!(!Arc::ptr_eq(&a, &c));
        // The batch budget is its own: sharing the request limiter's key changes nothing.
        let r = shared("http://127.0.0.1:1", "realm-a", RateLimit::QBO);
        assert_eq!(r.config(), RateLimit::QBO);
        drop((a, b));
        let e = shared_batch("http://127.0.0.1:1", "realm-a", 0);
        assert_eq!(e.per_minute(), 0);
    }

    #[test]
    fn batch_budget_arithmetic_holds_for_a_burst() {
        // 40 a minute: never more than 40 in any 60-second window.
        let times = simulate(BATCH_REQUESTS_PER_MINUTE, 200);
        assert_eq!(max_in_window(&times, Duration::from_secs(60)), 40);
    }

    #[tokio::test]
    async fn a_free_batch_slot_is_seen_without_waiting_and_kept_for_the_next_batch() {
        let l = BatchLimiter::new(60);
        // The first slot is free: seen, and kept (asking again does not spend another).
        assert!(l.try_take());
        assert!(l.try_take());
        // The kept slot serves the next batch at once.
        tokio::time::timeout(Duration::from_millis(100), l.acquire())
            .await
            .unwrap_or_else(|_| panic!("the kept slot was not used"));
        // The budget's next slot is a second away: not free now.
        assert!(!l.try_take());
        // Unlimited: always free.
        assert!(BatchLimiter::new(0).try_take());
    }

    #[tokio::test]
    async fn concurrency_cap() {
        let l = Arc::new(RealmLimiter::new(RateLimit {
            per_minute: 0,
            max_concurrency: 2,
        }));
        let p1 = l.acquire().await;
        let _p2 = l.acquire().await;
        let l2 = Arc::clone(&l);
        let third = tokio::spawn(async move { l2.acquire().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished());
        drop(p1);
        tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .unwrap()
            .unwrap();
    }
}
