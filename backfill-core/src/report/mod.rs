//! The volumetry report (SPEC §11): what was loaded, whether it matches the source, and what
//! re-runs changed. Built from the queries of [`raw_sink::volumetry`] (documented in
//! `docs/VOLUMETRY.md`), rendered as a terminal summary, Markdown, JSON and an SVG chart.
//!
//! `build` turns the queries' rows into a [`Report`]; `text` (the terminal summary),
//! `markdown` (`report.md`), `json` (`report.json`) and `svg` (`rows_per_day.svg`) each render
//! it; this module holds the report's types and writes the files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::entity::EntityInfo;
use crate::{Entity, Error};

mod books;
mod build;
mod connections;
mod json;
mod markdown;
mod svg;
mod text;

pub use books::{BooksCheckSection, BooksDifference, BooksNotLoaded};
pub use build::{build, summarise};
pub use connections::ConnectionRow;
pub use svg::rows_per_day_svg;

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
    /// Whether every window in scope is done, none mismatches its source COUNT and none has
    /// records in `raw.qb_rejects`.
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
    /// The latest `sync` / `reconcile` per pipeline and company.
    pub syncs: Vec<SyncReportRow>,
    /// The latest `check-books` per company.
    pub books_checks: Vec<BooksCheckSection>,
    /// Connected companies (tokens in the database): expiries, days left, warnings.
    pub connections: Vec<ConnectionRow>,
}

/// The latest sync or reconcile of a pipeline in a company, and how current it leaves it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReportRow {
    /// Pipeline.
    pub pipeline: String,
    /// Company.
    pub realm_id: String,
    /// QBO entity.
    pub entity: String,
    /// Its `backfill.syncs` id.
    pub id: i64,
    /// `sync` or `reconcile`.
    pub kind: String,
    /// Its status.
    pub status: String,
    /// Start (UTC).
    pub started_at: String,
    /// End (UTC), once finished.
    pub finished_at: Option<String>,
    /// New ids.
    pub inserted: u64,
    /// Changed ids (restored tombstones included).
    pub updated: u64,
    /// Rows marked deleted.
    pub tombstoned: u64,
    /// CDC `Deleted` refuted by a read.
    pub deletes_refuted: u64,
    /// Its QBO calls.
    pub api_calls: u64,
    /// QBO calls of every sync and reconcile of the pipeline and company.
    pub total_api_calls: u64,
    /// The changes mark (UTC), once a sync succeeded or applied some changes.
    pub changes_mark: Option<String>,
    /// The deletions mark (UTC), once a sync applied its whole CDC pass.
    pub deletes_mark: Option<String>,
    /// Seconds from the deletions mark to the report.
    pub lag_seconds: Option<i64>,
    /// Its error, if any.
    pub error: Option<String>,
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
    /// Rows of records QBO deleted (kept, marked by `deleted_at_utc`).
    pub tombstones: u64,
    /// On-disk size of the table (every company).
    pub table_bytes: u64,
}

/// Verification counts of a pipeline's windows.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct VerificationSummary {
    /// Windows in the ledger.
    pub windows: u64,
    /// Done, verified, and source COUNT = distinct ids loaded.
    #[serde(rename = "match")]
    pub matched: u64,
    /// Done and verified, but some of QBO's records are in `raw.qb_rejects` instead of the
    /// raw table.
    pub quarantined: u64,
    /// Source COUNT ≠ rows loaded, or marked `mismatch`.
    pub mismatch: u64,
    /// Failed, pending or running.
    pub not_done: u64,
    /// Done without a COUNT (`--no-verify`).
    pub unverified: u64,
    /// Sum of the source COUNTs.
    pub source_total: u64,
    /// Sum of the distinct ids loaded.
    pub loaded_total: u64,
    /// Sum of the records quarantined in `raw.qb_rejects`.
    pub rejected_total: u64,
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
    /// `match`, `quarantined`, `mismatch`, `not done` or `unverified`.
    pub verification: String,
    /// The source COUNT, when the window was verified.
    pub source_count: Option<u64>,
    /// Whether the last attempt compared QBO's COUNT with what it loaded.
    pub verified: bool,
    /// Distinct ids the last attempt wrote or found unchanged.
    pub loaded: u64,
    /// Records of the last attempt kept in `raw.qb_rejects`.
    pub rejected: u64,
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
    /// QBO API calls made (retries included), counted as queries (a batch request counts as
    /// its items): what `--max-requests` and `--monthly-requests` count.
    pub api_calls: u64,
    /// HTTP requests sent to QBO (retries included; a batch request is one).
    pub api_requests: u64,
    /// Of `api_requests`, the batch requests (`--batch`).
    pub api_batches: u64,
    /// Query items those batch requests carried.
    pub api_batch_items: u64,
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
}

/// A byte count for people (`8.0 kB`), shared by the text and Markdown renderings.
pub(super) fn human_bytes(n: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::human_bytes;
    use super::markdown::md;
    use super::svg::xml;
    use super::text::tally;

    #[test]
    fn markdown_cells_and_xml_are_escaped() {
        assert_eq!(md("a|b\nc"), "a\\|b c");
        assert_eq!(xml("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(8192), "8.0 kB");
        assert_eq!(tally(["done", "x", "done"].into_iter()), "2 done, 1 x");
    }
}
