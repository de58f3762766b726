//! The Markdown rendering (`report.md`).

use std::fmt::Write as _;

use super::{Report, WindowRow, human_bytes};

impl Report {
    /// The report as Markdown (`report.md`).
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let realm = self.realm_id.as_deref().unwrap_or("every company");
        let _ = writeln!(m, "# qb-backfill volumetry report\n");
        let _ = writeln!(
            m,
            "Generated {} for {}. Status: **{}**. Every figure comes from one of the queries \
             published in qb-backfill's `docs/VOLUMETRY.md`, which you can run yourself.\n",
            self.generated_at,
            md(realm),
            if self.ok {
                "OK — every window done, no mismatch"
            } else {
                "PROBLEMS — see the verification section"
            }
        );

        let _ = writeln!(m, "## Totals per table\n");
        let _ = writeln!(
            m,
            "| table | entity | rows | companies | first window start | last window end | last ingested | size |"
        );
        let _ = writeln!(m, "|---|---|---:|---:|---|---|---|---:|");
        for t in self.tables_with_rows() {
            let _ = writeln!(
                m,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                t.table,
                t.entity,
                t.rows,
                t.realms,
                opt(t.first_window_start.as_deref()),
                opt(t.last_window_end.as_deref()),
                opt(t.last_ingested_at.as_deref()),
                human_bytes(t.table_bytes)
            );
        }
        let empty: Vec<&str> = self
            .tables
            .iter()
            .filter(|t| t.rows == 0)
            .map(|t| t.table.as_str())
            .collect();
        if !empty.is_empty() {
            let _ = writeln!(m, "\nEmpty: {}.", empty.join(", "));
        }

        let _ = writeln!(
            m,
            "\n## Verification: source COUNT vs records loaded\n\n\
             Per window: the COUNT QBO returned for the window's filter (recorded when the window \
             was verified) against the distinct records its last attempt loaded, and those it \
             kept in `raw.qb_rejects` because PostgreSQL cannot store them. `unverified` windows \
             were never compared with a COUNT.\n"
        );
        let _ = writeln!(
            m,
            "| pipeline | windows | match | quarantined | mismatch | not done | unverified | source total | loaded total | rejected total |"
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for p in &self.pipelines {
            let v = &p.verification;
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.pipeline,
                v.windows,
                v.matched,
                v.quarantined,
                v.mismatch,
                v.not_done,
                v.unverified,
                v.source_total,
                v.loaded_total,
                v.rejected_total
            );
        }
        let problems: Vec<(&str, &WindowRow)> = self
            .pipelines
            .iter()
            .flat_map(|p| {
                p.windows
                    .iter()
                    .filter(|w| w.verification != "match")
                    .map(move |w| (p.pipeline.as_str(), w))
            })
            .collect();
        if problems.is_empty() {
            let _ = writeln!(m, "\nEvery window matches its source COUNT.");
        } else {
            let _ = writeln!(m, "\nWindows that do not match (mismatches first):\n");
            let _ = writeln!(
                m,
                "| pipeline | window | status | verification | source COUNT | loaded | attempts | last error |"
            );
            let _ = writeln!(m, "|---|---|---|---|---:|---:|---:|---|");
            let mut sorted = problems;
            sorted.sort_by_key(|(_, w)| match w.verification.as_str() {
                "mismatch" => 0,
                "not done" => 1,
                _ => 2,
            });
            for (p, w) in sorted {
                let _ = writeln!(
                    m,
                    "| {p} | [{}, {}) | {} | {} | {} | {} | {} | {} |",
                    w.start,
                    w.end,
                    w.status,
                    w.verification,
                    w.source_count
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    w.loaded,
                    w.attempts,
                    md(w.last_error.as_deref().unwrap_or(""))
                );
            }
        }

        let _ = writeln!(
            m,
            "\n## Re-run comparison\n\nThe last two finished runs of every range that ran more \
             than once. A re-run that inserts and updates nothing shows the load is idempotent.\n"
        );
        if self.reruns.is_empty() {
            let _ = writeln!(m, "No range has run twice yet.");
        } else {
            let _ = writeln!(
                m,
                "| pipeline | range | window field | run | status | windows done / skipped | rows | inserted | updated | unchanged | verdict |"
            );
            let _ = writeln!(m, "|---|---|---|---:|---|---|---:|---:|---:|---:|---|");
            for r in &self.reruns {
                for (run, verdict) in [
                    (&r.previous, String::new()),
                    (
                        &r.latest,
                        if r.idempotent {
                            "nothing moved".to_owned()
                        } else {
                            "rows changed".to_owned()
                        },
                    ),
                ] {
                    let _ = writeln!(
                        m,
                        "| {} | [{}, {}) | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
                        r.pipeline,
                        r.range_start,
                        r.range_end,
                        r.window_field,
                        run.id,
                        run.status,
                        run.windows_done,
                        run.windows_skipped,
                        run.rows,
                        run.inserted,
                        run.updated,
                        run.unchanged,
                        verdict
                    );
                }
            }
        }

        let _ = writeln!(m, "\n## Runs (latest first)\n");
        let _ = writeln!(
            m,
            "| run | pipeline | company | range | status | windows planned / done / skipped / failed / mismatch | rows | inserted | updated | unchanged | QBO calls | started | finished | error |"
        );
        let _ = writeln!(
            m,
            "|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---|---|---|"
        );
        for r in &self.runs {
            let _ = writeln!(
                m,
                "| {} | {} | {} | [{}, {}) | {} | {} / {} / {} / {} / {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.id,
                r.pipeline,
                md(&r.realm_id),
                r.range_start,
                r.range_end,
                r.status,
                r.windows_planned,
                r.windows_done,
                r.windows_skipped,
                r.windows_failed,
                r.windows_mismatch,
                r.rows,
                r.inserted,
                r.updated,
                r.unchanged,
                calls(r),
                r.started_at,
                opt(r.finished_at.as_deref()),
                md(r.error.as_deref().unwrap_or(""))
            );
        }

        let _ = writeln!(
            m,
            "\n## Syncs (latest per entity)\n\nLag: from the deletions mark (QuickBooks' clock at \
             the last sync that applied its CDC pass) to this report; above 30 days `sync` refuses (run \
             `reconcile`).\n"
        );
        let _ = writeln!(
            m,
            "| pipeline | company | kind | status | finished | lag | inserted | updated | tombstoned | calls | all syncs' calls |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|");
        for y in &self.syncs {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                y.pipeline,
                md(&y.realm_id),
                y.kind,
                y.status,
                opt(y.finished_at.as_deref()),
                y.lag_seconds
                    .map_or_else(|| "-".to_owned(), super::text::human_lag),
                y.inserted,
                y.updated,
                y.tombstoned,
                y.api_calls,
                y.total_api_calls
            );
        }

        super::books::markdown(&mut m, &self.books_checks);
        m.push_str(&super::connections::markdown(&self.connections));

        let _ = writeln!(m, "\n## One-time triggers\n");
        let _ = writeln!(
            m,
            "| pipeline | company | name | range | status | completed | last run |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---:|");
        for t in &self.triggers {
            let _ = writeln!(
                m,
                "| {} | {} | {} | [{}, {}) | {} | {} | {} |",
                t.pipeline,
                md(&t.realm_id),
                md(&t.name),
                t.range_start,
                t.range_end,
                t.status,
                opt(t.completed_at.as_deref()),
                t.last_run_id
                    .map_or_else(|| "-".to_owned(), |n| n.to_string())
            );
        }

        let _ = writeln!(
            m,
            "\n## Rows per day\n\n![rows per day](rows_per_day.svg)\n"
        );
        let _ = writeln!(
            m,
            "Rows of each raw table by the UTC day their extraction window starts; every day \
             with rows, and the days between, are in `report.json`."
        );

        let _ = writeln!(m, "\n## Rows per window\n");
        for p in &self.pipelines {
            let _ = writeln!(m, "### {} → `{}`\n", p.pipeline, p.table);
            let _ = writeln!(
                m,
                "| window | company | field | status | verification | source COUNT | loaded | received | inserted | updated | unchanged | pages | attempts | ms |"
            );
            let _ = writeln!(
                m,
                "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for w in &p.windows {
                let _ = writeln!(
                    m,
                    "| [{}, {}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    w.start,
                    w.end,
                    md(&w.realm_id),
                    w.window_field,
                    w.status,
                    w.verification,
                    w.source_count
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    w.loaded,
                    w.rows_received,
                    w.inserted,
                    w.updated,
                    w.unchanged,
                    w.pages,
                    w.attempts,
                    w.duration_ms
                        .map_or_else(|| "-".to_owned(), |n| n.to_string())
                );
            }
            let _ = writeln!(m);
        }
        m
    }
}

fn opt(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// Text safe inside a Markdown table cell.
/// Text as one Markdown table cell: pipes escaped, control characters (a name someone typed
/// with an escape sequence, a newline) shown as escapes instead of being interpreted.
pub(super) fn md(s: &str) -> String {
    crate::window::printable(&s.replace(['\n', '\r'], " ")).replace('|', "\\|")
}

/// A run's QBO calls: its queries, and with batch requests how they travelled.
fn calls(r: &super::RunRow) -> String {
    if r.api_batches == 0 {
        return r.api_calls.to_string();
    }
    format!(
        "{} ({} requests: {} batches of {} queries)",
        r.api_calls, r.api_requests, r.api_batches, r.api_batch_items
    )
}
