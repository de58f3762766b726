//! The simulated company clock: the wall clock plus an offset a test can move forward
//! ([`crate::SimHandle::advance_clock`]), so that "31 days later" takes no time. Mutations stamp
//! `LastUpdatedTime` from it, responses carry it as `time`, and CDC's 30-day horizon is
//! measured on it. Tokens and rate limits keep real time.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Wall clock plus an offset in seconds.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// The simulated now.
    pub(crate) fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// The simulated now in Unix seconds.
    pub(crate) fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Moves the clock forward by `secs` (never backwards).
    pub(crate) fn advance(&self, secs: u64) {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}
