//! The memory budget of a run (`--memory-budget`): bytes of pages in memory, counted from
//! before a page's request is sent until the page is written, plus the free answer buffers the
//! client keeps for reuse ([`split`]).
//!
//! Invariants: a page counts what it holds ([`qbo_client::Page::held_bytes`]: the buffer its
//! records lie in, at its capacity, and its items), not only its records' text; the client's
//! free buffers stay within the part of the budget [`split`] leaves them, so pages in memory
//! and buffers kept for reuse together stay within `--memory-budget`. A request reserves its
//! page's *estimated* bytes ([`MemoryBudget::estimate`]:
//! the bytes per row observed so far, or [`START_BYTES_PER_ROW`] before any page arrived,
//! times MAXRESULTS) before it is sent, and the reservation is re-sized to the page's real
//! size once it arrives ([`Reservation::resize`]); the reservation is released when the page
//! is written (dropped). Reservations are granted first come, first served. A reservation
//! larger than the whole budget is cut to the whole budget, so it waits until nothing else is
//! reserved and is then admitted: a page larger than the budget still progresses, alone. A
//! page that turns out larger than its reservation takes what is free and otherwise stays as
//! it is (it is already in memory; waiting could only stall the writer that would free it).
//! Request slots (the realm's rate and in-flight cap) are the client's, independent of this.
//! Each paging attempt holds at most its share of the budget's pages at once
//! ([`MemoryBudget::share`]: the budget's pages over the attempts paging now, at least
//! [`MIN_SHARE`]), so that the segments in play interleave their requests and their writers
//! (one per segment) work in parallel, instead of the first segment taking the whole budget
//! while its one writer bounds the run; an attempt holds a page beyond its share only while
//! the budget has room for two more pages ([`MemoryBudget::has_room`]), which is when pages
//! wait for answers (latency) rather than for writers, so that segments near their end leave
//! their share to the others instead of fewer requests being in flight. Within its share, an
//! attempt keeps no more pages ahead of its writer than the writer can use (`ahead.rs`), so
//! a run bound by PostgreSQL rather than by QBO holds far less than the budget. The most
//! bytes reserved at once is the run's [`MemoryBudget::peak`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The default `--memory-budget`: 96 MiB (72 MiB of pages: QBO's 10 full pages of large
/// invoices in flight at seconds a page, and the pages arrived or being written beside them;
/// a run bound by PostgreSQL holds far fewer: a paging attempt keeps only as many pages ahead
/// of its writer as it can use).
pub const DEFAULT_MEMORY_BUDGET: u64 = 96 * 1024 * 1024;

/// The estimate of a row's bytes before any page has arrived: conservative for QBO invoices
/// (a large invoice is about 4 KB of JSON).
pub(super) const START_BYTES_PER_ROW: u64 = 4096;

/// The budget is counted in units of this many bytes (a semaphore permit each).
const UNIT: u64 = 1024;

/// The fewest pages a paging attempt may hold at once, whatever its share: one being written
/// while the next is fetched.
pub(super) const MIN_SHARE: usize = 2;

/// Splits a run's `--memory-budget` of `total` bytes into the bytes of pages in memory and the
/// bytes of free answer buffers the client may keep for reuse
/// ([`qbo_client::QboClient::limit_reused_bodies`]): a quarter, a few full pages, so that the
/// buffers of pages just written serve the answers that follow instead of being freed and
/// allocated again (which fragments the heap: see `qbo_client`'s body buffers).
pub(super) fn split(total: u64) -> (u64, usize) {
    let reuse = total / 4;
    (total - reuse, usize::try_from(reuse).unwrap_or(usize::MAX))
}

/// Pages of room an attempt leaves free when it holds a page beyond its share
/// ([`MemoryBudget::has_room`]): one for another segment's next page, one for its own.
const SPARE_PAGES: u64 = 2;

/// Bytes of pages in memory, shared by every segment of a run.
pub(super) struct MemoryBudget {
    units: Semaphore,
    total_units: u32,
    bytes_seen: AtomicU64,
    rows_seen: AtomicU64,
    /// Paging attempts running now ([`MemoryBudget::paging`]).
    paging: AtomicUsize,
    /// Most units reserved at once so far ([`MemoryBudget::peak`]).
    peak_units: AtomicU64,
}

/// One paging attempt, counted among those sharing the budget until dropped.
pub(super) struct Paging<'a> {
    budget: &'a MemoryBudget,
}

impl Drop for Paging<'_> {
    fn drop(&mut self) {
        self.budget.paging.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes of one page, reserved from the budget until dropped.
pub(super) struct Reservation<'a> {
    budget: &'a MemoryBudget,
    permit: SemaphorePermit<'a>,
    granted: Instant,
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one unit).
    pub(super) fn new(bytes: u64) -> MemoryBudget {
        let total_units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        MemoryBudget {
            units: Semaphore::new(total_units as usize),
            total_units,
            bytes_seen: AtomicU64::new(0),
            rows_seen: AtomicU64::new(0),
            paging: AtomicUsize::new(0),
            peak_units: AtomicU64::new(0),
        }
    }

    /// Counts a paging attempt among those sharing the budget, until the result is dropped.
    pub(super) fn paging(&self) -> Paging<'_> {
        self.paging.fetch_add(1, Ordering::Relaxed);
        Paging { budget: self }
    }

    /// Most pages of `rows` rows one paging attempt may hold at once (requested, arrived or
    /// being written): the budget's pages (at the current estimate) over the attempts paging
    /// now, at least [`MIN_SHARE`].
    pub(super) fn share(&self, rows: u32) -> usize {
        let budget = u64::from(self.total_units) * UNIT;
        let pages = budget / self.estimate(rows).max(1);
        let attempts = self.paging.load(Ordering::Relaxed).max(1) as u64;
        usize::try_from(pages / attempts)
            .unwrap_or(usize::MAX)
            .max(MIN_SHARE)
    }

    /// Whether the budget has room now for [`SPARE_PAGES`] pages of `rows` rows beyond what
    /// is reserved: then an attempt may hold a page beyond its share, since pages are waiting
    /// for answers rather than for writers.
    pub(super) fn has_room(&self, rows: u32) -> bool {
        let free = self.units.available_permits() as u64 * UNIT;
        free >= self.estimate(rows).saturating_mul(SPARE_PAGES)
    }

    /// The estimated bytes of a page of `rows` rows.
    pub(super) fn estimate(&self, rows: u32) -> u64 {
        let seen = self.rows_seen.load(Ordering::Relaxed);
        let per_row = if seen == 0 {
            START_BYTES_PER_ROW
        } else {
            self.bytes_seen
                .load(Ordering::Relaxed)
                .div_ceil(seen)
                .max(1)
        };
        per_row.saturating_mul(u64::from(rows.max(1)))
    }

    /// Records a page's real size, for later estimates.
    pub(super) fn observe(&self, rows: usize, bytes: u64) {
        if rows > 0 {
            self.rows_seen.fetch_add(rows as u64, Ordering::Relaxed);
            self.bytes_seen.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Waits until `bytes` (at most the whole budget) are free and reserves them. `None` only
    /// if the budget was closed, which it never is.
    pub(super) async fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        let permit = self.units.acquire_many(self.units_for(bytes)).await.ok()?;
        self.note_peak();
        Some(Reservation {
            budget: self,
            permit,
            granted: Instant::now(),
        })
    }

    /// Most bytes reserved at once so far: the run's peak of pages in memory, as counted.
    pub(super) fn peak(&self) -> u64 {
        self.peak_units.load(Ordering::Relaxed) * UNIT
    }

    fn note_peak(&self) {
        let held = u64::from(self.total_units) - self.units.available_permits() as u64;
        self.peak_units.fetch_max(held, Ordering::Relaxed);
    }

    /// Bytes currently free.
    #[cfg(test)]
    pub(super) fn free(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }

    fn units_for(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.total_units)
    }
}

impl Reservation<'_> {
    /// Time since the reservation was granted (for a page: since its request could be sent).
    pub(super) fn age(&self) -> Duration {
        self.granted.elapsed()
    }

    /// Re-sizes the reservation to a page's real `bytes`: a smaller page gives the difference
    /// back at once; a larger one takes what is free of the difference, without waiting.
    pub(super) fn resize(&mut self, bytes: u64) {
        let want = self.budget.units_for(bytes) as usize;
        let have = self.permit.num_permits();
        if want < have {
            if let Some(extra) = self.permit.split(have - want) {
                drop(extra);
            }
        } else if want > have {
            let more = u32::try_from(want - have).unwrap_or(u32::MAX);
            let free = u32::try_from(self.budget.units.available_permits()).unwrap_or(u32::MAX);
            if let Ok(p) = self.budget.units.try_acquire_many(more.min(free).max(1)) {
                self.permit.merge(p);
                self.budget.note_peak();
            }
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> u64 {
        self.permit.num_permits() as u64 * UNIT
    }
}

/// Parses `--memory-budget`: a number of bytes with an optional unit `K`, `M` or `G` (powers
/// of 1024; `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB` are the same), e.g. `64MB`.
///
/// # Errors
/// A one-line message naming the accepted form when `s` is not such a size or is zero.
pub fn parse_memory_budget(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let bad = || format!("--memory-budget {s:?} is not a size such as 64MB, 512K or 1G");
    let n: u64 = n.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        "G" | "GB" | "GIB" => 1024 * 1024 * 1024,
        _ => return Err(bad()),
    };
    match n.checked_mul(factor) {
        Some(0) => Err(format!("--memory-budget {s:?} must be more than zero")),
        Some(b) => Ok(b),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_free_bytes_and_are_released_when_dropped() {
        let b = MemoryBudget::new(10 * UNIT);
        let r1 = b.reserve(6 * UNIT).await.unwrap();
        assert_eq!(b.free(), 4 * UNIT);
        // 6 more do not fit: the reservation waits.
        let waiting = tokio::time::timeout(Duration::from_millis(20), b.reserve(6 * UNIT)).await;
        assert!(waiting.is_err(), "reserved past the budget");
        drop(r1);
        let r2 = b.reserve(6 * UNIT).await.unwrap();
        assert_eq!(r2.bytes(), 6 * UNIT);
        drop(r2);
        assert_eq!(b.free(), 10 * UNIT);
    }

    #[tokio::test]
    async fn a_page_larger_than_the_budget_is_admitted_alone() {
        let b = MemoryBudget::new(10 * UNIT);
        let small = b.reserve(UNIT).await.unwrap();
        let big = tokio::time::timeout(Duration::from_millis(20), b.reserve(100 * UNIT)).await;
        assert!(big.is_err(), "admitted while something else was reserved");
        drop(small);
        let big = b.reserve(100 * UNIT).await.unwrap();
        assert_eq!(big.bytes(), 10 * UNIT, "cut to the whole budget");
        assert_eq!(b.free(), 0);
    }

    #[tokio::test]
    async fn a_reservation_is_resized_to_the_real_page() {
        let b = MemoryBudget::new(10 * UNIT);
        let mut r = b.reserve(8 * UNIT).await.unwrap();
        r.resize(3 * UNIT);
        assert_eq!((r.bytes(), b.free()), (3 * UNIT, 7 * UNIT));
        // Larger than reserved: takes what is free, never blocks.
        let other = b.reserve(5 * UNIT).await.unwrap();
        r.resize(9 * UNIT);
        assert_eq!((r.bytes(), b.free()), (5 * UNIT, 0));
        drop(other);
        drop(r);
        assert_eq!(b.free(), 10 * UNIT);
    }

    #[test]
    fn attempts_paging_at_once_share_the_budgets_pages() {
        // 16 pages of 1,000 rows at the starting estimate.
        let b = MemoryBudget::new(16 * 1000 * START_BYTES_PER_ROW);
        assert_eq!(b.share(1000), 16, "alone, the whole budget");
        let one = b.paging();
        let two = b.paging();
        assert_eq!(b.share(1000), 8);
        let more: Vec<_> = (0..6).map(|_| b.paging()).collect();
        assert_eq!(b.share(1000), 2);
        let crowd: Vec<_> = (0..8).map(|_| b.paging()).collect();
        assert_eq!(b.share(1000), MIN_SHARE, "never fewer than two");
        drop((more, crowd, two));
        assert_eq!(b.share(1000), 16);
        // Small pages: many at once.
        assert_eq!(b.share(10), 1600);
        drop(one);
    }

    #[test]
    fn estimates_start_conservative_and_follow_observed_rows() {
        let b = MemoryBudget::new(DEFAULT_MEMORY_BUDGET);
        assert_eq!(b.estimate(1000), 1000 * START_BYTES_PER_ROW);
        b.observe(1000, 1_500_000);
        assert_eq!(b.estimate(1000), 1_500_000);
        b.observe(0, 99);
        b.observe(1000, 500_000);
        assert_eq!(b.estimate(100), 100_000);
    }

    #[tokio::test]
    async fn an_attempt_may_go_beyond_its_share_only_while_the_budget_has_room() {
        // 8 pages of 1,000 rows at the starting estimate.
        let page = 1000 * START_BYTES_PER_ROW;
        let b = MemoryBudget::new(8 * page);
        let mut held = Vec::new();
        for _ in 0..6 {
            assert!(b.has_room(1000));
            held.push(b.reserve(page).await.unwrap());
        }
        assert!(b.has_room(1000), "two pages free");
        held.push(b.reserve(page).await.unwrap());
        assert!(!b.has_room(1000), "one page free: left to the others");
        drop(held.pop());
        assert!(b.has_room(1000));
    }

    #[test]
    fn pages_and_reused_buffers_share_the_budget() {
        let (pages, reuse) = split(DEFAULT_MEMORY_BUDGET);
        assert_eq!(pages + reuse as u64, DEFAULT_MEMORY_BUDGET);
        assert_eq!(reuse as u64, DEFAULT_MEMORY_BUDGET / 4);
        assert_eq!(split(1), (1, 0));
    }

    #[test]
    fn memory_budgets_parse_with_binary_units() {
        assert_eq!(parse_memory_budget("64MB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_memory_budget("512k"), Ok(512 * 1024));
        assert_eq!(parse_memory_budget("1GiB"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_memory_budget("4096"), Ok(4096));
        assert!(parse_memory_budget("0MB").is_err());
        assert!(parse_memory_budget("lots").is_err());
        assert!(parse_memory_budget("5TB").is_err());
    }
}
