//! How many pages a paging attempt keeps ahead of its writer (requested, or arrived and
//! waiting), by Little's law: pages ahead = the writer's rate × the time a page takes to come
//! once its memory is reserved. Fewer, and the writer waits for pages; more, and pages wait
//! for the writer, holding memory that buys nothing (a run bound by PostgreSQL, not by QBO).
//!
//! Invariants: the limit is never below one page, so an attempt always has a page coming
//! while one is written; the times are the run's (every attempt's pages and writes, as moving
//! averages, [`WEIGHT`] for the newest), so an attempt that starts uses what the others
//! measured and the limit follows latency and write times as they change. Before the run's
//! first page arrived, the time a page takes is at least the age of the run's first page
//! request, so the limit grows with that age ([`Ahead::grows_at`] says when it next grows):
//! one page more every [`WRITE_PRIOR`], no slower than QBO's 10 requests a second let
//! requests go anyway, while answers that come at once (a local server) find few pages
//! requested. Before the first write was timed, a write is taken to last [`WRITE_PRIOR`].
//! At QBO's latency (seconds a page) against writes of tenths of a second, the limit is well
//! above what the memory budget and the realm's 10 requests in flight allow, and binds
//! nothing; it binds when answers come faster than one writer stores them.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Weight of the newest observation in each moving average.
const WEIGHT: f64 = 0.25;

/// A write's time until one was measured: a full page of large invoices upserted by an idle
/// PostgreSQL (measured: 0.1–0.2 s), the short end, so that the limit rather starts high.
pub(super) const WRITE_PRIOR: Duration = Duration::from_millis(100);

/// The moving times the limit on pages ahead is taken from, shared by a run's paging
/// attempts: every attempt reads the same QBO and writes to the same PostgreSQL.
#[derive(Debug, Default)]
pub(super) struct Ahead(Mutex<Times>);

#[derive(Debug, Default)]
struct Times {
    /// When the run's first page request could be sent.
    first_sent: Option<Instant>,
    /// Seconds from a page's memory being reserved to the page having arrived.
    arrive: Option<f64>,
    /// Seconds one page takes to be written.
    write: Option<f64>,
}

impl Ahead {
    fn times(&self) -> MutexGuard<'_, Times> {
        // A few numbers, consistent whatever panicked while they were held.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that a page's request can be sent now (its memory is reserved).
    pub(super) fn sending(&self) {
        self.times().first_sent.get_or_insert_with(Instant::now);
    }

    /// Records that a page came `took` after its memory was reserved.
    pub(super) fn arrived(&self, took: Duration) {
        mix(&mut self.times().arrive, took);
    }

    /// Records that a page took `took` to be written.
    pub(super) fn written(&self, took: Duration) {
        mix(&mut self.times().write, took);
    }

    /// Most pages an attempt keeps ahead of its writer (in flight plus waiting to be
    /// written) at `now`.
    pub(super) fn limit(&self, now: Instant) -> usize {
        let t = self.times();
        let arrive = t.arrive.unwrap_or_else(|| {
            t.first_sent
                .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64())
        });
        pages(arrive, t.write.unwrap_or(WRITE_PRIOR.as_secs_f64()))
    }

    /// When the limit next grows by itself: while no page has arrived yet, when the first
    /// request has aged one more [`WRITE_PRIOR`]; `None` once the limit only changes with
    /// what is measured.
    pub(super) fn grows_at(&self, now: Instant) -> Option<Instant> {
        let t = self.times();
        if t.arrive.is_some() {
            return None;
        }
        let step = t
            .write
            .map_or(WRITE_PRIOR, Duration::from_secs_f64)
            .max(Duration::from_millis(1));
        let Some(first) = t.first_sent else {
            return Some(now + step);
        };
        let age = now.saturating_duration_since(first);
        let steps = u32::try_from(age.as_nanos() / step.as_nanos() + 1).unwrap_or(u32::MAX);
        Some(first + step.saturating_mul(steps))
    }
}

/// Pages of `arrive` seconds each that keep a writer of `write` seconds a page busy: at least
/// one; a write so fast it is not measurable sets no useful limit.
fn pages(arrive: f64, write: f64) -> usize {
    let n = if write > 0.0 {
        (arrive / write).ceil()
    } else {
        f64::INFINITY
    };
    // In range after the clamp; a float-to-int `as` saturates.
    n.clamp(1.0, usize::MAX as f64) as usize
}

fn mix(avg: &mut Option<f64>, took: Duration) {
    let x = took.as_secs_f64();
    *avg = Some(match *avg {
        None => x,
        Some(a) => a + WEIGHT * (x - a),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pages_ahead_cover_one_arrival_time_of_writes() {
        let a = Ahead::default();
        let now = Instant::now();
        // QBO's latency: a page in 2 s, written in 0.2 s: ten pages ahead keep the writer busy.
        a.arrived(ms(2000));
        a.written(ms(200));
        assert_eq!(a.limit(now), 10);
        assert_eq!(
            a.grows_at(now),
            None,
            "only what is measured changes it now"
        );
        // Answers faster than writes (PostgreSQL bounds the run): one page ahead.
        let fast = Ahead::default();
        fast.arrived(ms(30));
        fast.written(ms(300));
        assert_eq!(fast.limit(now), 1);
        // A write too fast to measure sets no useful bound.
        let instant = Ahead::default();
        instant.arrived(ms(100));
        instant.written(Duration::ZERO);
        assert!(instant.limit(now) > 1_000_000);
    }

    #[test]
    fn before_the_first_answer_the_limit_grows_with_the_first_requests_age() {
        let a = Ahead::default();
        let t0 = Instant::now();
        assert_eq!(a.limit(t0), 1, "nothing sent: one request");
        a.sending();
        let first = a.times().first_sent.unwrap_or(t0);
        assert_eq!(a.limit(first), 1);
        assert_eq!(
            a.limit(first + ms(250)),
            3,
            "a quarter second: three write times"
        );
        assert_eq!(a.grows_at(first + ms(250)), Some(first + ms(300)));
        assert_eq!(a.limit(first + ms(2000)), 20);
        // A later request does not make the first one younger.
        a.sending();
        assert_eq!(a.limit(first + ms(2000)), 20);
        // A write timed before any answer sets the pace of the growth.
        a.written(ms(50));
        assert_eq!(a.limit(first + ms(200)), 4);
        assert_eq!(a.grows_at(first + ms(210)), Some(first + ms(250)));
        // The first answer ends the growth: what it took decides.
        a.arrived(ms(30));
        assert_eq!(a.limit(first + ms(5000)), 1);
        assert_eq!(a.grows_at(first + ms(5000)), None);
    }

    #[test]
    fn the_limit_follows_latency_as_it_changes() {
        let a = Ahead::default();
        let now = Instant::now();
        a.arrived(ms(100));
        a.written(ms(100));
        assert_eq!(a.limit(now), 1);
        for _ in 0..20 {
            a.arrived(ms(1000));
        }
        assert_eq!(a.limit(now), 10);
    }
}
