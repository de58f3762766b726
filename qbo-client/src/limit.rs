//! Proactive rate limiting, per realm and shared by every client of the process: the
//! per-minute budget (a window of recent sends when QBO's per-second allowance lets a run go
//! faster than the minute's even pace, a GCRA limiter from governor otherwise) plus a
//! semaphore for the concurrency cap, and evenly spaced slots for QBO's batch budget (40
//! batch requests a minute, [`BatchLimiter`]). A batch request takes one slot of each: it is
//! a request like any other for the 500 a minute and the 10 in flight, and one of the 40,
//! taken last, right before it is sent.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// QBO's limits for one realm: requests per minute, per second and in flight. `0` means
/// unlimited (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests per minute (QBO: 500).
    pub per_minute: u32,
    /// Requests per second while the minute's budget lasts (QBO: 10). A run of fewer than
    /// `per_minute` requests then goes at this pace instead of the minute's even one; `0`, or a
    /// pace no faster than `per_minute` spread evenly, spaces requests evenly over the minute.
    pub per_second: u32,
    /// Requests in flight at once (QBO: 10).
    pub max_concurrency: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::QBO
    }
}

impl RateLimit {
    /// QBO's published limits: 500 requests/min, 10 requests/s and 10 concurrent requests
    /// per realm.
    pub const QBO: Self = Self {
        per_minute: 500,
        per_second: 10,
        max_concurrency: 10,
    };

    /// No limits at all (tests only).
    #[must_use]
    pub const fn unlimited() -> Self {
        Self {
            per_minute: 0,
            per_second: 0,
            max_concurrency: 0,
        }
    }
}

/// The spacing of `per_minute` evenly spaced requests: a hair over 60 s / N, so that no closed
/// 60-second window ever holds more than N of them; `None` for 0 (unlimited).
fn spacing(per_minute: u32) -> Option<Duration> {
    (per_minute > 0)
        .then(|| Duration::from_micros(60_000_000u64.div_ceil(u64::from(per_minute)) + 1))
}

/// The window the per-minute budget is counted over when requests go at the per-second pace:
/// a minute and a second, so that a request reaching QBO up to a second later than the one a
/// minute before it (a slow connection, a stalled process) still finds the budget free.
pub(crate) const MINUTE_WINDOW: Duration = Duration::from_secs(61);

/// The spacing of requests at `per_second` a second: a tenth longer than 1 s / N, so that
/// no second at QBO holds more than N of them unless their travel times differ by more than
/// a tenth of a second; `None` for 0.
fn second_spacing(per_second: u32) -> Option<Duration> {
    (per_second > 0).then(|| Duration::from_micros(1_100_000u64.div_ceil(u64::from(per_second))))
}

/// The governor quota for `per_minute` requests: evenly spaced ([`spacing`]), burst of one (a
/// 500/min budget then also stays under QBO's 10 requests/second).
pub(crate) fn quota(per_minute: u32) -> Option<Quota> {
    Quota::with_period(spacing(per_minute)?).map(|q| q.allow_burst(NonZeroU32::MIN))
}

/// The sends of the last [`MINUTE_WINDOW`]: at most `budget` of them, each at least `spacing`
/// after the one before (the per-second pace). The pure part of the per-second pacing.
pub(crate) struct SendWindow {
    budget: usize,
    spacing: Duration,
    sent: VecDeque<Instant>,
    /// When the per-second pace allows the next send.
    next: Option<Instant>,
}

impl SendWindow {
    pub(crate) fn new(per_minute: u32, spacing: Duration) -> Self {
        let budget = per_minute as usize;
        Self {
            budget,
            spacing,
            sent: VecDeque::with_capacity(budget.min(1024)),
            next: None,
        }
    }

    /// Records a send at `now` when both budgets allow it; otherwise says when to ask again.
    pub(crate) fn try_send(&mut self, now: Instant) -> Result<(), Instant> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= MINUTE_WINDOW)
        {
            self.sent.pop_front();
        }
        let mut at = self.next.unwrap_or(now);
        if self.sent.len() >= self.budget
            && let Some(oldest) = self.sent.front()
        {
            at = at.max(*oldest + MINUTE_WINDOW);
        }
        if now < at {
            return Err(at);
        }
        self.sent.push_back(now);
        self.next = Some(now + self.spacing);
        Ok(())
    }
}

/// How the per-minute budget is paced.
enum Pace {
    /// Unlimited.
    Free,
    /// Evenly spaced over the minute.
    Even(DefaultDirectRateLimiter),
    /// At the per-second pace while the minute's budget lasts.
    Window(Mutex<SendWindow>),
}

impl Pace {
    fn new(config: RateLimit) -> Self {
        let Some(even) = spacing(config.per_minute) else {
            return Pace::Free;
        };
        match second_spacing(config.per_second) {
            Some(fast) if fast < even => {
                Pace::Window(Mutex::new(SendWindow::new(config.per_minute, fast)))
            }
            _ => quota(config.per_minute)
                .map(governor::RateLimiter::direct)
                .map_or(Pace::Free, Pace::Even),
        }
    }

    async fn until_ready(&self) {
        match self {
            Pace::Free => {}
            Pace::Even(rate) => rate.until_ready().await,
            Pace::Window(window) => loop {
                let wait = {
                    let mut w = window
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match w.try_send(Instant::now()) {
                        Ok(()) => return,
                        Err(at) => at,
                    }
                };
                tokio::time::sleep_until(wait).await;
            },
        }
    }
}

/// The limiter of one realm.
pub(crate) struct RealmLimiter {
    config: RateLimit,
    rate: Pace,
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
            rate: Pace::new(config),
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
        self.rate.until_ready().await;
        Permit { _slot: slot }
    }

    pub(crate) fn config(&self) -> RateLimit {
        self.config
    }
}

/// QBO's batch budget: batch requests a minute per realm and app.
pub const BATCH_REQUESTS_PER_MINUTE: u32 = 40;

/// The batch budget of one realm (batch requests per minute; `0` = unlimited): evenly spaced
/// slots ([`spacing`], as [`quota`] spaces requests), each taken right before a
/// batch is sent, after the request budget's permit, so that batch requests leave at least one
/// spacing apart whatever they waited for before (taken earlier, a wait for the request
/// budget in between could bunch them up beyond the budget).
pub(crate) struct BatchLimiter {
    per_minute: u32,
    /// Slot spacing; `None` = unlimited.
    period: Option<Duration>,
    state: Mutex<BatchState>,
}

struct BatchState {
    /// When the next slot is free.
    next: Instant,
    /// When a caller of [`BatchLimiter::try_take`] was promised the next slot (its batch has
    /// not taken it yet): no other caller is told the slot is free meanwhile.
    promised: Option<Instant>,
}

/// How long a promise of [`BatchLimiter::try_take`] holds when its batch never comes (it was
/// dropped before being sent).
const PROMISE_FOR: Duration = Duration::from_secs(10);

impl BatchLimiter {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            period: spacing(per_minute),
            state: Mutex::new(BatchState {
                next: Instant::now(),
                promised: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BatchState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for one slot of the batch budget and takes it. Taken after the realm's
    /// [`RealmLimiter`] permit, right before the batch is sent; a caller that was promised the
    /// slot ([`BatchLimiter::try_take`]) normally finds it free.
    pub(crate) async fn acquire(&self) {
        let Some(period) = self.period else { return };
        let mut first = true;
        loop {
            let wait = {
                let mut st = self.lock();
                if first {
                    st.promised = None;
                    first = false;
                }
                let now = Instant::now();
                if now >= st.next {
                    st.next = now + period;
                    return;
                }
                st.next
            };
            tokio::time::sleep_until(wait).await;
        }
    }

    /// Whether a batch request sent now would find a slot free, without waiting or taking
    /// it: `true` promises the next slot to this caller (others are told `false` until a
    /// batch takes it, or for [`PROMISE_FOR`] if none does), so that one free slot never
    /// starts several batches.
    pub(crate) fn try_take(&self) -> bool {
        if self.period.is_none() {
            return true;
        }
        let mut st = self.lock();
        let now = Instant::now();
        if st.promised.is_some_and(|at| now < at + PROMISE_FOR) || now < st.next {
            return false;
        }
        st.promised = Some(now);
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
            requested_per_second = config.per_second,
            requested_max_concurrency = config.max_concurrency,
            per_minute = limiter.config().per_minute,
            per_second = limiter.config().per_second,
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

    /// Greedy callers against a [`SendWindow`] for `limit`; returns the allowed instants.
    fn simulate_window(limit: RateLimit, requests: usize) -> Vec<Duration> {
        let fast = second_spacing(limit.per_second).unwrap();
        let mut w = SendWindow::new(limit.per_minute, fast);
        let start = Instant::now();
        let mut now = start;
        let mut times = Vec::with_capacity(requests);
        while times.len() < requests {
            match w.try_send(now) {
                Ok(()) => times.push(now - start),
                Err(at) => {
                    assert!(at > now, "asked to wait for the past");
                    now = at;
                }
            }
        }
        times
    }

    #[test]
    fn qbo_pace_uses_the_per_second_allowance_until_the_minute_is_spent() {
        let times = simulate_window(RateLimit::QBO, 2000);
        // Never more than 500 in any 60-second window, nor 10 in any second, even when the
        // requests' travel times differ by up to a tenth of a second.
        assert_eq!(max_in_window(&times, Duration::from_secs(60)), 500);
        assert_eq!(max_in_window(&times, Duration::from_micros(1_099_999)), 10);
        // The first 500 go at ~9 a second (not 500/min's 8.3): the 110th leaves after 12 s.
        assert!(
            times[109] < Duration::from_millis(12_000),
            "{:?}",
            times[109]
        );
        assert!(times[499] < Duration::from_secs(55), "{:?}", times[499]);
        // Then each request waits for the one sent a window earlier: 2,000 take four windows.
        assert!(times[500] >= MINUTE_WINDOW, "{:?}", times[500]);
        let total = *times.last().unwrap();
        assert!(total >= 3 * MINUTE_WINDOW, "{total:?}");
        assert!(total < 4 * MINUTE_WINDOW, "{total:?}");
    }

    #[test]
    fn the_per_second_pace_applies_only_when_it_is_faster_than_the_even_one() {
        let window = |per_minute, per_second| {
            matches!(
                Pace::new(RateLimit {
                    per_minute,
                    per_second,
                    max_concurrency: 1
                }),
                Pace::Window(_)
            )
        };
        assert!(window(500, 10));
        // A worker's half of QBO's budget: 5 a second beat 250 a minute.
        assert!(window(250, 5));
        // A quarter: 2 a second (with the margin, 109 a minute) would be slower than 125 a
        // minute spread evenly, so requests are spread evenly.
        assert!(!window(125, 2));
        assert!(!window(500, 0));
        assert!(matches!(Pace::new(RateLimit::unlimited()), Pace::Free));
        assert!(matches!(
            Pace::new(RateLimit {
                per_minute: 0,
                per_second: 10,
                max_concurrency: 1
            }),
            Pace::Free
        ));
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

    #[tokio::test(start_paused = true)]
    async fn a_free_batch_slot_is_seen_without_waiting_and_promised_to_one_batch() {
        let l = BatchLimiter::new(60);
        // The first slot is free: seen once; until a batch takes it, nobody else is told so.
        assert!(l.try_take());
        assert!(!l.try_take(), "one free slot started two batches");
        // The promised batch takes it at once.
        tokio::time::timeout(Duration::from_millis(1), l.acquire())
            .await
            .unwrap_or_else(|_| panic!("the promised slot was not free"));
        // The next slot is a second away: not free now, free then.
        assert!(!l.try_take());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(l.try_take());
        // A promise whose batch never comes lapses.
        tokio::time::advance(PROMISE_FOR).await;
        assert!(l.try_take());
        // Unlimited: always free.
        assert!(BatchLimiter::new(0).try_take());
    }

    #[tokio::test(start_paused = true)]
    async fn batch_slots_are_spaced_when_taken() {
        let l = BatchLimiter::new(BATCH_REQUESTS_PER_MINUTE);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..81 {
            l.acquire().await;
            at.push(start.elapsed());
        }
        // 40 a minute: never more than 40 in any 60-second window.
        assert_eq!(max_in_window(&at, Duration::from_secs(60)), 40);
        assert!(at[80] >= Duration::from_secs(120), "{:?}", at[80]);
    }

    #[tokio::test]
    async fn concurrency_cap() {
        let l = Arc::new(RealmLimiter::new(RateLimit {
            per_minute: 0,
            per_second: 0,
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
