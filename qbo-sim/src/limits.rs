//! Per-realm request budgets: a sliding-window request counter and a concurrency gauge.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Admits at most `limit` requests in any window of length `window` (0 = unlimited).
/// Refused requests are not counted.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    window: Duration,
    limit: u32,
    hits: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            window,
            limit,
            hits: VecDeque::new(),
        }
    }

    pub(crate) fn reconfigure(&mut self, limit: u32, window: Duration) {
        self.limit = limit;
        self.window = window;
    }

    /// Records a request at `now` if the budget allows it.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        while let Some(front) = self.hits.front() {
            if now.saturating_duration_since(*front) >= self.window {
                self.hits.pop_front();
            } else {
                break;
            }
        }
        if self.hits.len() < self.limit as usize {
            self.hits.push_back(now);
            true
        } else {
            false
        }
    }
}

/// In-flight request counts per realm, with the peak seen.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    inner: Mutex<GaugeInner>,
}

#[derive(Debug, Default)]
struct GaugeInner {
    in_flight: HashMap<String, u32>,
    peak: u32,
}

/// Releases a slot when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    gauge: Arc<Gauge>,
    realm: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut g) = self.gauge.inner.lock()
            && let Some(n) = g.in_flight.get_mut(&self.realm)
        {
            *n = n.saturating_sub(1);
        }
    }
}

impl Gauge {
    /// Takes a slot if fewer than `max` requests of the realm are in flight (0 = unlimited).
    pub(crate) fn try_enter(self: &Arc<Self>, realm: &str, max: u32) -> Option<Slot> {
        let mut g = self.inner.lock().ok()?;
        let n = g.in_flight.entry(realm.to_string()).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        let now = *n;
        g.peak = g.peak.max(now);
        Some(Slot {
            gauge: Arc::clone(self),
            realm: realm.to_string(),
        })
    }

    pub(crate) fn peak(&self) -> u32 {
        self.inner.lock().map(|g| g.peak).unwrap_or(0)
    }

    pub(crate) fn reset_peak(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.peak = g.in_flight.values().copied().max().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` requests evenly spread over one minute; returns how many were refused.
    fn refused_in_a_minute(n: u32, limit: u32) -> u32 {
        let mut w = SlidingWindow::new(limit, Duration::from_secs(60));
        let t0 = Instant::now();
        let step = Duration::from_secs(60) / n;
        (0..n).filter(|i| !w.try_acquire(t0 + step * *i)).count() as u32
    }

    #[test]
    fn six_hundred_a_minute_is_throttled_four_fifty_is_not() {
        assert_eq!(refused_in_a_minute(450, 500), 0);
        assert!(refused_in_a_minute(600, 500) >= 90);
        assert_eq!(refused_in_a_minute(500, 500), 0);
    }

    #[test]
    fn a_burst_refills_after_the_window() {
        let mut w = SlidingWindow::new(5, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!((0..8).filter(|_| w.try_acquire(t0)).count(), 5);
        assert!(!w.try_acquire(t0 + Duration::from_millis(9_999)));
        assert!(w.try_acquire(t0 + Duration::from_secs(10)));
        // Unlimited.
        let mut u = SlidingWindow::new(0, Duration::from_secs(1));
        assert!((0..10_000).all(|_| u.try_acquire(t0)));
    }

    #[test]
    fn gauge_caps_and_releases() {
        let g = Arc::new(Gauge::default());
        let a = g.try_enter("r", 2);
        let b = g.try_enter("r", 2);
        assert!(a.is_some() && b.is_some());
        assert!(g.try_enter("r", 2).is_none());
        assert!(g.try_enter("other", 2).is_some());
        drop(a);
        assert!(g.try_enter("r", 2).is_some());
        assert_eq!(g.peak(), 2);
        assert!(g.try_enter("r", 0).is_some());
    }
}
