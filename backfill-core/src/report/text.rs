//! The terminal rendering: the one-screen summary `report` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Report, WindowRow, human_bytes};

impl Report {
    /// The one-screen summary printed by `report`.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let realm = self.realm_id.as_deref().unwrap_or("every company");
        let _ = writeln!(s, "qb-backfill volumetry · {realm} · {}", self.generated_at);
        let _ = writeln!(s, "tables (rows):");
        let mut any = false;
        for t in self.tables_with_rows() {
            any = true;
            let _ = writeln!(
                s,
                "  {:<28} {:>10}  {}",
                t.table,
                t.rows,
                human_bytes(t.table_bytes)
            );
        }
        let empty = self.tables.iter().filter(|t| t.rows == 0).count();
        if !any {
            let _ = writeln!(s, "  (no rows yet)");
        }
        if empty > 0 && any {
            let _ = writeln!(s, "  … and {empty} empty table(s)");
        }
        let _ = writeln!(
            s,
            "verification (source COUNT vs records loaded, per window):"
        );
        if self.pipelines.is_empty() {
            let _ = writeln!(s, "  (no windows in the ledger)");
        }
        for p in &self.pipelines {
            let v = &p.verification;
            let _ = writeln!(
                s,
                "  {:<28} {} windows · {} match · {} mismatch · {} not done · {} unverified · source {} / loaded {}",
                p.pipeline,
                v.windows,
                v.matched,
                v.mismatch,
                v.not_done,
                v.unverified,
                v.source_total,
                v.loaded_total
            );
            if v.quarantined > 0 {
                let _ = writeln!(
                    s,
                    "  {:<28} {} windows hold {} records PostgreSQL cannot store: see raw.qb_rejects",
                    "", v.quarantined, v.rejected_total
                );
            }
        }
        let problems: Vec<(&str, &WindowRow)> = self
            .pipelines
            .iter()
            .flat_map(|p| {
                p.windows
                    .iter()
                    .filter(|w| {
                        matches!(
                            w.verification.as_str(),
                            "mismatch" | "not done" | "quarantined"
                        )
                    })
                    .map(move |w| (p.pipeline.as_str(), w))
            })
            .collect();
        for (pipeline, w) in problems.iter().take(10) {
            let _ = writeln!(
                s,
                "  ! {pipeline} [{}, {}) {} · source {} · loaded {}{}",
                w.start,
                w.end,
                w.status,
                w.source_count
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                w.loaded,
                w.last_error
                    .as_deref()
                    .map_or_else(String::new, |e| format!(" · {e}"))
            );
        }
        if problems.len() > 10 {
            let _ = writeln!(s, "  ! … and {} more", problems.len() - 10);
        }
        if !self.reruns.is_empty() {
            let _ = writeln!(s, "re-runs (last two runs of the same range):");
        }
        for r in &self.reruns {
            let _ = writeln!(
                s,
                "  {} [{}, {}): run {} → run {}: rows {} → {} · inserted {} → {} · updated {} → {} · unchanged {} → {} · {}",
                r.pipeline,
                r.range_start,
                r.range_end,
                r.previous.id,
                r.latest.id,
                r.previous.rows,
                r.latest.rows,
                r.previous.inserted,
                r.latest.inserted,
                r.previous.updated,
                r.latest.updated,
                r.previous.unchanged,
                r.latest.unchanged,
                if r.idempotent {
                    "nothing moved"
                } else {
                    "rows changed"
                }
            );
        }
        if !self.syncs.is_empty() {
            let _ = writeln!(s, "syncs (latest per entity):");
        }
        for y in &self.syncs {
            let lag = y.lag_seconds.map_or_else(
                || "no mark yet".to_owned(),
                |l| format!("lag {}", human_lag(l)),
            );
            let _ = writeln!(
                s,
                "  {:<28} {} {} {} · {lag} · inserted {} · updated {} · tombstoned {} · calls {} (all syncs {})",
                y.pipeline,
                y.kind,
                y.status,
                y.finished_at.as_deref().unwrap_or(&y.started_at),
                y.inserted,
                y.updated,
                y.tombstoned,
                y.api_calls,
                y.total_api_calls
            );
        }
        super::books::text(&mut s, &self.books_checks);
        s.push_str(&super::connections::text(&self.connections));
        let tombstones: u64 = self.tables.iter().map(|t| t.tombstones).sum();
        if tombstones > 0 {
            let _ = writeln!(
                s,
                "tombstones (records QBO deleted, kept with deleted_at_utc): {}",
                self.tables
                    .iter()
                    .filter(|t| t.tombstones > 0)
                    .map(|t| format!("{} {}", t.table, t.tombstones))
                    .collect::<Vec<_>>()
                    .join(" · ")
            );
        }
        let _ = writeln!(
            s,
            "runs: {} listed ({}) · triggers: {} ({})",
            self.runs.len(),
            tally(self.runs.iter().map(|r| r.status.as_str())),
            self.triggers.len(),
            tally(self.triggers.iter().map(|t| t.status.as_str()))
        );
        let batches: u64 = self.runs.iter().map(|r| r.api_batches).sum();
        if batches > 0 {
            let _ = writeln!(
                s,
                "QBO calls of the runs listed: {} queries in {} requests ({} batch requests \
                 carrying {} queries)",
                self.runs.iter().map(|r| r.api_calls).sum::<u64>(),
                self.runs.iter().map(|r| r.api_requests).sum::<u64>(),
                batches,
                self.runs.iter().map(|r| r.api_batch_items).sum::<u64>()
            );
        }
        let _ = writeln!(
            s,
            "status: {}",
            if self.ok {
                "OK: every window done, no mismatch"
            } else {
                "PROBLEMS: some windows are not done or mismatch their source COUNT"
            }
        );
        s
    }
}

/// A lag in seconds as `3d 4h`, `5h 12m`, `7m` or `12s`.
pub(super) fn human_lag(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

pub(super) fn tally<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for i in items {
        *counts.entry(i).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
