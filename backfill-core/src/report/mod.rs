//! The volumetry report (SPEC §11): what was loaded, whether it matches the source, and what
//! re-runs changed. Built from the queries of [`raw_sink::volumetry`] (documented in
//! `docs/VOLUMETRY.md`), rendered as a terminal summary, Markdown, JSON and an SVG chart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use raw_sink::{DayCount, RerunEntry, Run, Sink, TableTotals, Trigger, Verification, WindowVolume};
use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::entity::EntityInfo;
use crate::window::format_utc;
use crate::{Entity, Error};

/// File names written by [`Report::write_to`].
pub const REPORT_FILES: [&str; 3] = ["report.md", "report.json", "rows_per_day.svg"];

/// What a report covers.
#[derive(Debug, Clone)]
pub struct ReportScope {
    /// The entities (tables and pipelines) to report on.
    pub entities: Vec<EntityInfo>,
    /// One company, or every company when `None`.
    pub realm_id: Option<String>,
    /// How many recent runs to list.
    pub runs_limit: u32,
}

impl ReportScope {
    /// Entity `E` only, every company, the latest 50 runs.
    #[must_use]
    pub fn entity<E: Entity>() -> ReportScope {
        ReportScope {
            entities: vec![EntityInfo::of::<E>()],
            realm_id: None,
            runs_limit: 50,
        }
    }

    /// Every built-in entity, every company, the latest 50 runs.
    #[must_use]
    pub fn all() -> ReportScope {
        ReportScope {
            entities: crate::entity::ENTITIES.to_vec(),
            realm_id: None,
            runs_limit: 50,
        }
    }
}

/// The whole report; serialises to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was built (UTC, RFC 3339).
    pub generated_at: String,
    /// The company reported on, or `null` for every company.
    pub realm_id: Option<String>,
    /// Whether every window in scope is done and none mismatches its source COUNT.
    pub ok: bool,
    /// Totals per raw table.
    pub tables: Vec<TableReport>,
    /// Windows and their verification, per pipeline that has any.
    pub pipelines: Vec<PipelineReport>,
    /// Last two runs of every range run more than once.
    pub reruns: Vec<RerunComparison>,
    /// Latest runs, newest first.
    pub runs: Vec<RunRow>,
    /// One-time triggers, oldest first.
    pub triggers: Vec<TriggerRow>,
    /// Rows per UTC day (of the extraction window's start), every day from the first to the last.
    pub rows_per_day: Vec<DayRows>,
}

/// Totals of one raw table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// QBO entity.
    pub entity: String,
    /// `raw.qb_…`.
    pub table: String,
    /// Rows.
    pub rows: u64,
    /// Distinct companies.
    pub realms: u64,
    /// Earliest extraction window start.
    pub first_window_start: Option<String>,
    /// Latest extraction window end.
    pub last_window_end: Option<String>,
    /// Latest write.
    pub last_ingested_at: Option<String>,
    /// On-disk size of the table (every company).
    pub table_bytes: u64,
}

/// Verification counts of a pipeline's windows.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct VerificationSummary {
    /// Windows in the ledger.
    pub windows: u64,
    /// Done and source COUNT = rows loaded.
    #[serde(rename = "match")]
    pub matched: u64,
    /// Source COUNT ≠ rows loaded, or marked `mismatch`.
    pub mismatch: u64,
    /// Failed, pending or running.
    pub not_done: u64,
    /// Done without a COUNT (`--no-verify`).
    pub unverified: u64,
    /// Sum of the source COUNTs.
    pub source_total: u64,
    /// Sum of the rows loaded.
    pub loaded_total: u64,
}

/// One pipeline's windows.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// Pipeline name.
    pub pipeline: String,
    /// QBO entity.
    pub entity: String,
    /// Its raw table.
    pub table: String,
    /// Counts.
    pub verification: VerificationSummary,
    /// Every window, problems first.
    pub windows: Vec<WindowRow>,
}

/// One window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowRow {
    /// Company.
    pub realm_id: String,
    /// Window field.
    pub window_field: String,
    /// Start (UTC).
    pub start: String,
    /// End (UTC, exclusive).
    pub end: String,
    /// Ledger status.
    pub status: String,
    /// `match`, `mismatch`, `not done` or `unverified`.
    pub verification: String,
    /// The source COUNT.
    pub source_count: Option<u64>,
    /// Rows in the raw table carrying this window.
    pub loaded: u64,
    /// Records received by the last attempt.
    pub rows_received: u64,
    /// New ids of the last attempt.
    pub inserted: u64,
    /// Changed ids of the last attempt.
    pub updated: u64,
    /// Unchanged ids of the last attempt.
    pub unchanged: u64,
    /// Pages of the last attempt.
    pub pages: u32,
    /// Attempts.
    pub attempts: u32,
    /// Duration of the last attempt.
    pub duration_ms: Option<u64>,
    /// Last error.
    pub last_error: Option<String>,
}

/// A run, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Company.
    pub realm_id: String,
    /// Range start.
    pub range_start: String,
    /// Range end.
    pub range_end: String,
    /// Window field.
    pub window_field: String,
    /// Trigger.
    pub trigger: Option<String>,
    /// Status.
    pub status: String,
    /// Windows planned.
    pub windows_planned: u32,
    /// Windows done by the run.
    pub windows_done: u32,
    /// Windows skipped (already done).
    pub windows_skipped: u32,
    /// Windows failed.
    pub windows_failed: u32,
    /// Windows mismatched.
    pub windows_mismatch: u32,
    /// Records received.
    pub rows: u64,
    /// New ids.
    pub inserted: u64,
    /// Changed ids.
    pub updated: u64,
    /// Unchanged ids.
    pub unchanged: u64,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// Error.
    pub error: Option<String>,
}

/// A trigger, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerRow {
    /// Pipeline.
    pub pipeline: String,
    /// Company.
    pub realm_id: String,
    /// Name.
    pub name: String,
    /// Range start.
    pub range_start: String,
    /// Range end.
    pub range_end: String,
    /// Status.
    pub status: String,
    /// Completion time.
    pub completed_at: Option<String>,
    /// Last run.
    pub last_run_id: Option<i64>,
}

/// The last two runs of one range.
#[derive(Debug, Clone, Serialize)]
pub struct RerunComparison {
    /// Pipeline.
    pub pipeline: String,
    /// Company.
    pub realm_id: String,
    /// Window field.
    pub window_field: String,
    /// Range start.
    pub range_start: String,
    /// Range end.
    pub range_end: String,
    /// Finished runs of this range.
    pub runs_of_range: u64,
    /// The earlier run.
    pub previous: RunRow,
    /// The later run.
    pub latest: RunRow,
    /// The later run inserted and updated nothing: the data did not move.
    pub idempotent: bool,
}

/// Rows of one UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct DayRows {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// All tables.
    pub total: u64,
    /// Per table (only tables with rows that day).
    pub by_table: BTreeMap<String, u64>,
}

fn utc(t: OffsetDateTime) -> String {
    format_utc(t)
}

fn run_row(r: &Run) -> RunRow {
    let s = &r.summary;
    RunRow {
        id: r.id.get(),
        pipeline: r.pipeline.clone(),
        realm_id: r.realm_id.clone(),
        range_start: utc(r.range_start),
        range_end: utc(r.range_end),
        window_field: r.window_field.clone(),
        trigger: r.trigger_name.clone(),
        status: s.status.to_string(),
        windows_planned: r.windows_planned,
        windows_done: s.windows_done,
        windows_skipped: s.windows_skipped,
        windows_failed: s.windows_failed,
        windows_mismatch: s.windows_mismatch,
        rows: s.rows,
        inserted: s.inserted,
        updated: s.updated,
        unchanged: s.unchanged,
        started_at: utc(r.started_at),
        finished_at: r.finished_at.map(utc),
        error: s.error.clone(),
    }
}

fn trigger_row(t: &Trigger) -> TriggerRow {
    TriggerRow {
        pipeline: t.key.pipeline.clone(),
        realm_id: t.key.realm_id.clone(),
        name: t.key.name.clone(),
        range_start: utc(t.range_start),
        range_end: utc(t.range_end),
        status: t.status.to_string(),
        completed_at: t.completed_at.map(utc),
        last_run_id: t.last_run_id.map(|r| r.get()),
    }
}

fn table_report(e: &EntityInfo, t: &TableTotals) -> TableReport {
    TableReport {
        entity: e.name.to_owned(),
        table: t.table.to_string(),
        rows: t.rows,
        realms: t.realms,
        first_window_start: t.first_window_start.map(utc),
        last_window_end: t.last_window_end.map(utc),
        last_ingested_at: t.last_ingested_at.map(utc),
        table_bytes: t.table_bytes,
    }
}

fn window_row(w: &WindowVolume) -> WindowRow {
    WindowRow {
        realm_id: w.scope.realm_id.clone(),
        window_field: w.scope.window_field.clone(),
        start: utc(w.span.start),
        end: utc(w.span.end),
        status: w.status.to_string(),
        verification: w.verification().as_str().to_owned(),
        source_count: w.source_count,
        loaded: w.loaded,
        rows_received: w.rows_received,
        inserted: w.inserted,
        updated: w.updated,
        unchanged: w.unchanged,
        pages: w.pages,
        attempts: w.attempts,
        duration_ms: w
            .duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        last_error: w.last_error.clone(),
    }
}

/// Counts the verification classes of `windows`.
#[must_use]
pub fn summarise(windows: &[WindowVolume]) -> VerificationSummary {
    let mut s = VerificationSummary::default();
    for w in windows {
        s.windows += 1;
        match w.verification() {
            Verification::Match => s.matched += 1,
            Verification::Mismatch => s.mismatch += 1,
            Verification::NotDone => s.not_done += 1,
            Verification::Unverified => s.unverified += 1,
        }
        s.source_total += w.source_count.unwrap_or(0);
        s.loaded_total += w.loaded;
    }
    s
}

/// Pairs the entries of [`Sink::rerun_pairs`] (earlier run first) into comparisons.
fn pair_reruns(entries: &[RerunEntry]) -> Vec<RerunComparison> {
    entries
        .chunks_exact(2)
        .filter(|p| p[0].nth == 2 && p[1].nth == 1)
        .map(|p| {
            let (prev, last) = (&p[0].run, &p[1].run);
            RerunComparison {
                pipeline: last.pipeline.clone(),
                realm_id: last.realm_id.clone(),
                window_field: last.window_field.clone(),
                range_start: utc(last.range_start),
                range_end: utc(last.range_end),
                runs_of_range: p[1].runs_of_range,
                previous: run_row(prev),
                latest: run_row(last),
                idempotent: last.summary.inserted == 0 && last.summary.updated == 0,
            }
        })
        .collect()
}

/// Every day from the first to the last with rows, with each table's rows.
fn merge_days(per_table: &[(String, Vec<DayCount>)]) -> Vec<DayRows> {
    let mut by_day: BTreeMap<Date, BTreeMap<String, u64>> = BTreeMap::new();
    for (table, days) in per_table {
        for d in days {
            *by_day
                .entry(d.day)
                .or_default()
                .entry(table.clone())
                .or_default() += d.rows;
        }
    }
    let (Some(first), Some(last)) = (
        by_day.keys().next().copied(),
        by_day.keys().next_back().copied(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        let by_table = by_day.remove(&day).unwrap_or_default();
        out.push(DayRows {
            day: day.to_string(),
            total: by_table.values().sum(),
            by_table,
        });
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

/// Builds the report with the queries of [`raw_sink::volumetry`].
///
/// # Errors
/// [`Error::Database`] when a query fails (e.g. migrations not applied).
pub async fn build(sink: &Sink, scope: &ReportScope) -> Result<Report, Error> {
    let realm = scope.realm_id.as_deref();
    let mut tables = Vec::new();
    let mut pipelines = Vec::new();
    let mut days = Vec::new();
    for e in &scope.entities {
        let totals = sink
            .table_totals(e.table, realm)
            .await
            .map_err(Error::Database)?;
        tables.push(table_report(e, &totals));
        let windows = sink
            .window_volumes(e.pipeline, e.table, realm)
            .await
            .map_err(Error::Database)?;
        if !windows.is_empty() {
            pipelines.push(PipelineReport {
                pipeline: e.pipeline.to_owned(),
                entity: e.name.to_owned(),
                table: e.table.to_string(),
                verification: summarise(&windows),
                windows: windows.iter().map(window_row).collect(),
            });
        }
        if totals.rows > 0 {
            let per_day = sink
                .rows_per_day(e.table, realm)
                .await
                .map_err(Error::Database)?;
            days.push((e.table.to_string(), per_day));
        }
    }
    let names: Vec<&str> = scope.entities.iter().map(|e| e.pipeline).collect();
    let runs = sink
        .recent_runs(&names, realm, scope.runs_limit)
        .await
        .map_err(Error::Database)?;
    let triggers = sink
        .triggers_of(&names, realm)
        .await
        .map_err(Error::Database)?;
    let reruns = sink
        .rerun_pairs(&names, realm)
        .await
        .map_err(Error::Database)?;
    let ok = pipelines
        .iter()
        .all(|p| p.verification.mismatch == 0 && p.verification.not_done == 0);
    Ok(Report {
        generated_at: utc(OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())),
        realm_id: scope.realm_id.clone(),
        ok,
        tables,
        pipelines,
        reruns: pair_reruns(&reruns),
        runs: runs.iter().map(run_row).collect(),
        triggers: triggers.iter().map(trigger_row).collect(),
        rows_per_day: merge_days(&days),
    })
}

/// Paths written by [`Report::write_to`].
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.json`.
    pub json: PathBuf,
    /// `rows_per_day.svg`.
    pub svg: PathBuf,
}

impl Report {
    /// The report as pretty-printed JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Writes `report.md`, `report.json` and `rows_per_day.svg` into `dir` (created if
    /// missing). Blocking I/O.
    ///
    /// # Errors
    /// [`Error::Write`] naming the file that could not be written.
    pub fn write_to(&self, dir: &Path) -> Result<ReportFiles, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = ReportFiles {
            markdown: dir.join(REPORT_FILES[0]),
            json: dir.join(REPORT_FILES[1]),
            svg: dir.join(REPORT_FILES[2]),
        };
        let write = |path: &Path, text: String| -> Result<(), Error> {
            std::fs::write(path, text).map_err(|source: io::Error| Error::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        write(&files.markdown, self.to_markdown())?;
        write(&files.json, self.to_json() + "\n")?;
        write(&files.svg, self.rows_per_day_svg())?;
        Ok(files)
    }

    /// Tables of the report that hold rows.
    fn tables_with_rows(&self) -> impl Iterator<Item = &TableReport> {
        self.tables.iter().filter(|t| t.rows > 0)
    }

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
        let _ = writeln!(s, "verification (source COUNT vs rows loaded, per window):");
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
        }
        let problems: Vec<(&str, &WindowRow)> = self
            .pipelines
            .iter()
            .flat_map(|p| {
                p.windows
                    .iter()
                    .filter(|w| w.verification == "mismatch" || w.verification == "not done")
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
        let _ = writeln!(
            s,
            "runs: {} listed ({}) · triggers: {} ({})",
            self.runs.len(),
            tally(self.runs.iter().map(|r| r.status.as_str())),
            self.triggers.len(),
            tally(self.triggers.iter().map(|t| t.status.as_str()))
        );
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
            "\n## Verification: source COUNT vs rows loaded\n\n\
             Per window: the COUNT QBO returned for the window's filter (recorded when the window \
             was verified) against the rows of the raw table whose extraction window is that window.\n"
        );
        let _ = writeln!(
            m,
            "| pipeline | windows | match | mismatch | not done | unverified | source total | loaded total |"
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for p in &self.pipelines {
            let v = &p.verification;
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                p.pipeline,
                v.windows,
                v.matched,
                v.mismatch,
                v.not_done,
                v.unverified,
                v.source_total,
                v.loaded_total
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
            "| run | pipeline | company | range | status | windows planned / done / skipped / failed / mismatch | rows | inserted | updated | unchanged | started | finished | error |"
        );
        let _ = writeln!(
            m,
            "|---:|---|---|---|---|---|---:|---:|---:|---:|---|---|---|"
        );
        for r in &self.runs {
            let _ = writeln!(
                m,
                "| {} | {} | {} | [{}, {}) | {} | {} / {} / {} / {} / {} | {} | {} | {} | {} | {} | {} | {} |",
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
                r.started_at,
                opt(r.finished_at.as_deref()),
                md(r.error.as_deref().unwrap_or(""))
            );
        }

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

    /// A stacked bar chart of rows per day and table, as a standalone SVG document.
    #[must_use]
    pub fn rows_per_day_svg(&self) -> String {
        rows_per_day_svg(&self.rows_per_day)
    }
}

fn tally<'a>(items: impl Iterator<Item = &'a str>) -> String {
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

fn opt(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// Text safe inside a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    // Display only: precision loss on huge sizes is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Text safe inside SVG/XML.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// A round axis maximum at or above `max`: 1, 2, 3, 4, 5, 6 or 8 times a power of ten.
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 3, 4, 5, 6, 8] {
            let v = step.saturating_mul(m);
            if v >= max {
                return v.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The SVG chart of [`Report::rows_per_day_svg`].
#[must_use]
pub fn rows_per_day_svg(days: &[DayRows]) -> String {
    const LEFT: f64 = 70.0;
    const TOP: f64 = 50.0;
    const PLOT_H: f64 = 300.0;
    const BOTTOM: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    let tables: Vec<&str> = days
        .iter()
        .flat_map(|d| d.by_table.keys().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let n = days.len().max(1) as f64;
    let step = (900.0 / n).clamp(1.0, 14.0);
    let plot_w = (step * n).max(300.0);
    let width = LEFT + plot_w + RIGHT;
    let height = TOP + PLOT_H + BOTTOM;
    let max = days.iter().map(|d| d.total).max().unwrap_or(0);
    let top_value = nice_ceiling(max);
    #[allow(clippy::cast_precision_loss)]
    let scale = PLOT_H / top_value as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="14" font-weight="bold">Rows per day (UTC day of the extraction window)</text>"#
    );
    if days.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{:.0}">no rows yet</text></svg>"#,
            TOP + PLOT_H / 2.0
        );
        return s;
    }
    // Legend.
    let mut x = LEFT;
    for (i, t) in tables.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="28" width="10" height="10" fill="{color}"/><text x="{:.0}" y="37">{}</text>"#,
            x + 14.0,
            xml(t)
        );
        #[allow(clippy::cast_precision_loss)]
        let w = t.len() as f64 * 6.5 + 30.0;
        x += w;
    }
    // Grid and y labels.
    for k in 0..=4u64 {
        #[allow(clippy::cast_precision_loss)]
        let value = top_value * k / 4;
        #[allow(clippy::cast_precision_loss)]
        let y = TOP + PLOT_H - value as f64 * scale;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{value}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    // Bars, stacked in table order.
    let bar_w = if step > 2.0 { step - 1.0 } else { step };
    for (i, d) in days.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = LEFT + i as f64 * step;
        let mut y = TOP + PLOT_H;
        for (ti, t) in tables.iter().enumerate() {
            let Some(&rows) = d.by_table.get(*t) else {
                continue;
            };
            #[allow(clippy::cast_precision_loss)]
            let h = rows as f64 * scale;
            y -= h;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{bar_w:.2}" height="{h:.2}" fill="{}"><title>{} {}: {rows} rows</title></rect>"#,
                PALETTE[ti % PALETTE.len()],
                d.day,
                xml(t)
            );
        }
    }
    // X labels: the first day, then the first of each month (or of every few months).
    let months = days
        .iter()
        .filter(|d| d.day.ends_with("-01"))
        .count()
        .max(1);
    #[allow(clippy::cast_precision_loss)]
    let every = ((months as f64 * 70.0 / plot_w).ceil() as usize).max(1);
    let mut month_index = 0usize;
    for (i, d) in days.iter().enumerate() {
        let first_of_month = d.day.ends_with("-01");
        let label = if i == 0 {
            true
        } else if first_of_month {
            month_index += 1;
            month_index.is_multiple_of(every)
        } else {
            false
        };
        if !label {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        let x = LEFT + i as f64 * step;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" transform="rotate(30 {x:.1} {:.1})">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 5.0,
            TOP + PLOT_H + 16.0,
            TOP + PLOT_H + 16.0,
            d.day
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/></svg>"##,
        TOP + PLOT_H,
        LEFT + plot_w,
        TOP + PLOT_H
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn day(d: &str, tables: &[(&str, u64)]) -> DayRows {
        DayRows {
            day: d.to_owned(),
            total: tables.iter().map(|t| t.1).sum(),
            by_table: tables.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn days_are_merged_and_gaps_filled() {
        let merged = merge_days(&[
            (
                "raw.qb_invoices".into(),
                vec![
                    DayCount {
                        day: date!(2024 - 01 - 30),
                        rows: 5,
                    },
                    DayCount {
                        day: date!(2024 - 02 - 02),
                        rows: 7,
                    },
                ],
            ),
            (
                "raw.qb_items".into(),
                vec![DayCount {
                    day: date!(2024 - 01 - 30),
                    rows: 2,
                }],
            ),
        ]);
        let days: Vec<&str> = merged.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(
            days,
            ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"]
        );
        assert_eq!(merged[0].total, 7);
        assert_eq!(merged[1].total, 0);
        assert_eq!(merged[3].by_table["raw.qb_invoices"], 7);
        assert!(merge_days(&[]).is_empty());
    }

    #[test]
    fn svg_has_one_bar_per_table_and_day_with_rows() {
        let days = vec![
            day(
                "2024-01-31",
                &[("raw.qb_invoices", 10), ("raw.qb_items", 3)],
            ),
            day("2024-02-01", &[]),
            day("2024-02-02", &[("raw.qb_invoices", 4)]),
        ];
        let svg = rows_per_day_svg(&days);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("2024-01-31 raw.qb_invoices: 10 rows"));
        assert!(svg.contains(">2024-02-01<"), "first of the month labelled");
        // The axis tops out at a round number at or above the largest day.
        assert!(svg.contains(">20<"));
        assert!(rows_per_day_svg(&[]).contains("no rows yet"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(7), 8);
        assert_eq!(nice_ceiling(13), 20);
        assert_eq!(nice_ceiling(201), 300);
        assert_eq!(nice_ceiling(290), 300);
        assert_eq!(nice_ceiling(1000), 1000);
    }

    #[test]
    fn markdown_cells_and_xml_are_escaped() {
        assert_eq!(md("a|b\nc"), "a\\|b c");
        assert_eq!(xml("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(8192), "8.0 kB");
        assert_eq!(tally(["done", "x", "done"].into_iter()), "2 done, 1 x");
    }
}
