//! The pure parts of paging one range: which STARTPOSITIONs to request ([`PagePlan`]) and the
//! overlap check between consecutive pages, whatever order they arrive in ([`OverlapChain`]).
//!
//! Invariants: page `k + 1` starts where page `k`'s last `overlap` items start, so that those
//! items must repeat; pages are planned ahead only while a COUNT says they hold a row not in
//! the page before them, and after a page that ended differently than planned (short) every
//! later position is planned again from where it really ended; a page is compared with its
//! predecessor exactly when both have arrived and the later one starts where the earlier one's
//! tail starts.

use std::collections::BTreeMap;

/// One planned request: its STARTPOSITION and how many of its first items repeat the
/// previous page (not written again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Planned {
    pub(super) start: u32,
    pub(super) skip: u32,
}

/// The pages of one paged query, by index (page `k` is the `k + 1`-th in QBO's order).
#[derive(Debug)]
pub(super) struct PagePlan {
    step: u32,
    overlap: u32,
    total: Option<u64>,
    pages: Vec<Planned>,
}

impl PagePlan {
    /// The plan of a query paged `page_size` at a time with `overlap` repeated items, knowing
    /// `total` records from a COUNT (every page it implies is planned at once) or not (one
    /// page at a time).
    pub(super) fn new(page_size: u32, overlap: u32, total: Option<u64>) -> PagePlan {
        let page_size = page_size.max(1);
        let overlap = overlap.min(page_size - 1);
        let mut plan = PagePlan {
            step: page_size - overlap,
            overlap,
            total,
            pages: vec![Planned { start: 1, skip: 0 }],
        };
        plan.fill();
        plan
    }

    /// Pages planned so far.
    pub(super) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Page `k`, if planned.
    pub(super) fn get(&self, k: usize) -> Option<Planned> {
        self.pages.get(k).copied()
    }

    /// What a page of this query should hold, for checking a batch's answer: by the COUNT
    /// when one is known; otherwise nothing can be said (a page may be short because the range
    /// ends there), and a short page is replanned from where it ended by the paging itself.
    pub(super) fn expected(&self) -> qbo_client::ExpectedRows {
        match self.total {
            Some(n) => qbo_client::ExpectedRows::Count(n),
            None => qbo_client::ExpectedRows::MaxResults { window_ends: true },
        }
    }

    /// A COUNT taken meanwhile: plan the pages it implies.
    pub(super) fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        self.fill();
    }

    /// Page `k` came back full: page `k + 1` follows it (whatever the COUNT said).
    pub(super) fn after_full(&mut self, k: usize) {
        if self.pages.len() == k + 1
            && let Some(p) = self.get(k)
        {
            self.pages.push(Planned {
                start: p.start.saturating_add(self.step),
                skip: self.overlap,
            });
        }
        self.fill();
    }

    /// Page `k` came back short with `len` items while more records lie beyond it: every
    /// later page is planned again, starting with its last `overlap` items.
    pub(super) fn after_short(&mut self, k: usize, len: u32) {
        let Some(p) = self.get(k) else { return };
        self.pages.truncate(k + 1);
        let skip = self.overlap.min(len);
        self.pages.push(Planned {
            start: p.start.saturating_add(len) - skip,
            skip,
        });
        self.fill();
    }

    /// Page `k` is the last one: nothing after it.
    pub(super) fn end_at(&mut self, k: usize) {
        self.pages.truncate(k + 1);
    }

    /// Plans, after the last planned page, every further page that holds a record not in
    /// its predecessor according to the COUNT.
    fn fill(&mut self) {
        let Some(total) = self.total else { return };
        while let Some(last) = self.pages.last() {
            let next = last.start.saturating_add(self.step);
            if next == u32::MAX || u64::from(next) + u64::from(self.overlap) > total {
                break;
            }
            self.pages.push(Planned {
                start: next,
                skip: self.overlap,
            });
        }
    }
}

/// What the overlap check keeps of an arrived page.
#[derive(Debug, Clone)]
pub(super) struct Ends {
    /// STARTPOSITION.
    pub(super) start: u32,
    /// Items returned.
    pub(super) len: u32,
    /// Ids of its first `overlap` items (fewer if the page is shorter).
    pub(super) head: Vec<String>,
    /// Ids of its last `overlap` items (fewer if the page is shorter).
    pub(super) tail: Vec<String>,
}

/// The overlap check over pages arriving in any order.
#[derive(Debug, Default)]
pub(super) struct OverlapChain {
    overlap: u32,
    pages: BTreeMap<usize, Ends>,
}

impl OverlapChain {
    /// A chain for pages overlapping by `overlap` items.
    pub(super) fn new(overlap: u32) -> OverlapChain {
        OverlapChain {
            overlap,
            pages: BTreeMap::new(),
        }
    }

    /// The ends of page `k`, if it arrived.
    pub(super) fn get(&self, k: usize) -> Option<&Ends> {
        self.pages.get(&k)
    }

    /// Page `k` arrived: compares it with page `k - 1` and page `k + 1` when they have
    /// arrived too and line up. `Err` describes the first disagreement (records were
    /// inserted or deleted while paging).
    pub(super) fn arrive(&mut self, k: usize, ends: Ends) -> Result<(), String> {
        self.pages.insert(k, ends);
        if k > 0 {
            self.compare(k - 1, k)?;
        }
        self.compare(k, k + 1)
    }

    /// Forgets pages after `k` (they are planned again).
    pub(super) fn forget_after(&mut self, k: usize) {
        self.pages.split_off(&(k + 1));
    }

    fn compare(&self, a: usize, b: usize) -> Result<(), String> {
        let (Some(pa), Some(pb)) = (self.pages.get(&a), self.pages.get(&b)) else {
            return Ok(());
        };
        let repeated = self.overlap.min(pa.len);
        // Page b was planned after a page ending elsewhere: the plan replaces it.
        if pa.start.saturating_add(pa.len) - repeated != pb.start {
            return Ok(());
        }
        let tail = &pa.tail[pa.tail.len().saturating_sub(repeated as usize)..];
        if (pb.len as usize) < tail.len() {
            return Err(format!(
                "page {} at position {} returned {} rows, fewer than the {} overlapping ones",
                b + 1,
                pb.start,
                pb.len,
                tail.len()
            ));
        }
        let head = &pb.head[..tail.len().min(pb.head.len())];
        if head != tail {
            return Err(format!(
                "page {} at position {} should start with ids {tail:?}, got {head:?}",
                b + 1,
                pb.start
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(p: &PagePlan) -> Vec<u32> {
        (0..p.len()).map(|k| p.get(k).unwrap().start).collect()
    }

    #[test]
    fn a_counted_range_plans_every_page_holding_a_new_row() {
        // 10 a page, 2 repeated: steps of 8; 25 rows need pages at 1, 9, 17 (17 + 2 <= 25).
        let p = PagePlan::new(10, 2, Some(25));
        assert_eq!(starts(&p), vec![1, 9, 17]);
        assert_eq!(p.get(0).unwrap().skip, 0);
        assert_eq!(p.get(2).unwrap().skip, 2);
        // 19 rows: the page at 17 repeats rows 17 and 18 and holds row 19; with 18 it would
        // only repeat.
        assert_eq!(starts(&PagePlan::new(10, 2, Some(19))), vec![1, 9, 17]);
        assert_eq!(starts(&PagePlan::new(10, 2, Some(18))), vec![1, 9]);
        assert_eq!(starts(&PagePlan::new(10, 2, Some(0))), vec![1]);
        // Unknown count: one page at a time.
        assert_eq!(starts(&PagePlan::new(10, 2, None)), vec![1]);
    }

    #[test]
    fn full_and_short_pages_extend_or_replan_the_positions() {
        let mut p = PagePlan::new(10, 2, None);
        p.after_full(0);
        assert_eq!(starts(&p), vec![1, 9]);
        // A full page beyond what the COUNT said: one more page regardless.
        let mut q = PagePlan::new(10, 2, Some(10));
        assert_eq!(starts(&q), vec![1]);
        q.after_full(0);
        assert_eq!(starts(&q), vec![1, 9]);
        // A COUNT taken later plans the rest at once.
        p.set_total(40);
        assert_eq!(starts(&p), vec![1, 9, 17, 25, 33]);
        // Page 1 (at 9) came back with 6 items while more lie beyond: the next page starts
        // with its last 2 items, at 13, and the rest follows from there.
        p.after_short(1, 6);
        assert_eq!(starts(&p), vec![1, 9, 13, 21, 29, 37]);
        assert_eq!(p.get(2).unwrap().skip, 2);
        // A short page of one item repeats just that one.
        p.after_short(5, 1);
        assert_eq!(p.get(6), Some(Planned { start: 37, skip: 1 }));
        p.end_at(2);
        assert_eq!(starts(&p), vec![1, 9, 13]);
    }

    fn ends(start: u32, ids: std::ops::Range<u32>, overlap: usize) -> Ends {
        let ids: Vec<String> = ids.map(|i| i.to_string()).collect();
        Ends {
            start,
            len: ids.len() as u32,
            head: ids.iter().take(overlap).cloned().collect(),
            tail: ids[ids.len().saturating_sub(overlap)..].to_vec(),
        }
    }

    #[test]
    fn pages_arriving_out_of_order_are_compared_once_both_are_there() {
        // Rows 1..=30 as ids, pages of 10 overlapping by 2: starts 1, 9, 17.
        let mut c = OverlapChain::new(2);
        assert!(c.arrive(2, ends(17, 17..27, 2)).is_ok());
        assert!(c.arrive(0, ends(1, 1..11, 2)).is_ok());
        assert!(c.arrive(1, ends(9, 9..19, 2)).is_ok());
        // A record inserted before position 9 after page 0 was read shifts page 1 by one.
        let mut c = OverlapChain::new(2);
        assert!(
            c.arrive(1, ends(9, 8..18, 2)).is_ok(),
            "nothing to compare yet"
        );
        let e = c.arrive(0, ends(1, 1..11, 2)).unwrap_err();
        assert!(
            e.contains("page 2 at position 9 should start with ids"),
            "{e}"
        );
        // Seen from the other side: page 1 arrives after page 2, which starts shifted.
        let mut c = OverlapChain::new(2);
        c.arrive(2, ends(17, 18..28, 2)).unwrap();
        let e = c.arrive(1, ends(9, 9..19, 2)).unwrap_err();
        assert!(e.contains("page 3 at position 17"), "{e}");
        // Fewer rows than the overlap where more were expected.
        let mut c = OverlapChain::new(2);
        c.arrive(0, ends(1, 1..11, 2)).unwrap();
        let e = c.arrive(1, ends(9, 9..10, 2)).unwrap_err();
        assert!(e.contains("fewer than the 2 overlapping ones"), "{e}");
    }

    #[test]
    fn a_page_planned_after_a_page_that_ended_short_is_not_compared() {
        let mut c = OverlapChain::new(2);
        // Page 0 came back with 6 items: page 1 at 9 no longer follows it.
        c.arrive(1, ends(9, 20..30, 2)).unwrap();
        assert!(c.arrive(0, ends(1, 1..7, 2)).is_ok());
        c.forget_after(0);
        assert!(c.get(1).is_none());
        // Its replacement at 5 (6 - 2 + 1) is compared.
        let e = c.arrive(1, ends(5, 6..16, 2)).unwrap_err();
        assert!(e.contains("should start with ids [\"5\", \"6\"]"), "{e}");
    }
}
