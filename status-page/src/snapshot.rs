//! What the page and `/metrics` show, read from the ledger with the queries of
//! [`raw_sink::volumetry`] (no SQL of this crate's own).

use std::collections::BTreeMap;

use raw_sink::{
    BookCheck, RawTable, Run, RunStatus, Sink, SyncState, TableTotals, TokenMetaRow, Trigger,
    Verification, WindowVolume,
};
use time::OffsetDateTime;

use crate::StatusError;

/// How many of a pipeline's latest runs are read to find its last run and last success per
/// realm.
const LOOKBACK_RUNS: u32 = 500;

/// A pipeline and the raw table it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Pipeline name as the ledger records it (e.g. `qb_invoices_backfill`).
    pub pipeline: String,
    /// QBO entity name, for people.
    pub entity: String,
    /// The raw table.
    pub table: RawTable,
}

impl Source {
    /// A source.
    #[must_use]
    pub fn new(pipeline: impl Into<String>, entity: impl Into<String>, table: RawTable) -> Self {
        Source {
            pipeline: pipeline.into(),
            entity: entity.into(),
            table,
        }
    }
}

/// What the status page covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The pipelines (the caller knows the entities; this crate does not).
    pub sources: Vec<Source>,
    /// How many of the latest runs the page lists.
    pub runs_limit: u32,
}

/// Windows of one pipeline by verification class ([`WindowVolume::verification`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerificationCounts {
    /// Done, verified, COUNT equal to the ids loaded.
    pub matched: u64,
    /// Done, verified, some records kept in `raw.qb_rejects`.
    pub quarantined: u64,
    /// COUNT different from what was loaded.
    pub mismatch: u64,
    /// Failed, pending or running.
    pub not_done: u64,
    /// Done without a COUNT compared.
    pub unverified: u64,
}

impl VerificationCounts {
    /// Counts the classes of `windows`.
    #[must_use]
    pub fn of(windows: &[WindowVolume]) -> Self {
        let mut c = Self::default();
        for w in windows {
            match w.verification() {
                Verification::Match => c.matched += 1,
                Verification::Quarantined => c.quarantined += 1,
                Verification::Mismatch => c.mismatch += 1,
                Verification::NotDone => c.not_done += 1,
                Verification::Unverified => c.unverified += 1,
            }
        }
        c
    }
}

/// One pipeline's windows, in time order per realm and window field.
#[derive(Debug, Clone)]
pub struct PipelineState {
    /// The pipeline.
    pub source: Source,
    /// Its ledger windows ([`Sink::window_volumes`]), sorted by realm, field and start.
    pub windows: Vec<WindowVolume>,
    /// The verification summary of those windows.
    pub verification: VerificationCounts,
}

/// The last run and the last successful run of a pipeline in one realm.
#[derive(Debug, Clone)]
pub struct LastRun {
    /// Pipeline.
    pub pipeline: String,
    /// Realm.
    pub realm_id: String,
    /// The latest run.
    pub last: Run,
    /// When the latest succeeded run finished (among the last runs read).
    pub last_success: Option<OffsetDateTime>,
}

/// Everything the page shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was read.
    pub taken_at: OffsetDateTime,
    /// The latest runs of every pipeline in scope, newest first.
    pub runs: Vec<Run>,
    /// Every trigger, oldest first.
    pub triggers: Vec<Trigger>,
    /// Pipelines that have ledger windows.
    pub pipelines: Vec<PipelineState>,
    /// Totals of every raw table in scope with rows, all realms.
    pub tables: Vec<(Source, TableTotals)>,
    /// Every connected company's token facts (expiries, rotation, last success; never a
    /// token), by realm.
    pub connections: Vec<TokenMetaRow>,
    /// The latest sync or reconcile of each pipeline in scope, per company.
    pub syncs: Vec<SyncState>,
    /// The latest `check-books` of each company, with what it found.
    pub book_checks: Vec<BookCheck>,
}

/// Sorts windows for the heatmap: realm, window field, start.
fn time_order(windows: &mut [WindowVolume]) {
    windows.sort_by(|a, b| {
        (&a.scope.realm_id, &a.scope.window_field, a.span.start).cmp(&(
            &b.scope.realm_id,
            &b.scope.window_field,
            b.span.start,
        ))
    });
}

impl Snapshot {
    /// Reads the ledger.
    ///
    /// # Errors
    /// [`StatusError::Database`] when a query fails.
    pub async fn load(sink: &Sink, scope: &Scope) -> Result<Snapshot, StatusError> {
        let taken_at = OffsetDateTime::now_utc();
        let mut pipelines = Vec::new();
        let mut tables = Vec::new();
        for source in &scope.sources {
            let mut windows = sink
                .window_volumes(&source.pipeline, None)
                .await
                .map_err(StatusError::Database)?;
            if !windows.is_empty() {
                time_order(&mut windows);
                pipelines.push(PipelineState {
                    source: source.clone(),
                    verification: VerificationCounts::of(&windows),
                    windows,
                });
            }
            let totals = sink
                .table_totals(source.table, None)
                .await
                .map_err(StatusError::Database)?;
            if totals.rows > 0 {
                tables.push((source.clone(), totals));
            }
        }
        let names: Vec<&str> = scope.sources.iter().map(|s| s.pipeline.as_str()).collect();
        let runs = sink
            .recent_runs(&names, None, scope.runs_limit)
            .await
            .map_err(StatusError::Database)?;
        let triggers = sink
            .triggers_of(&names, None)
            .await
            .map_err(StatusError::Database)?;
        let connections = sink
            .ledger()
            .token_meta(None)
            .await
            .map_err(StatusError::Database)?;
        let syncs = sink
            .sync_statuses(&names, None)
            .await
            .map_err(StatusError::Database)?;
        let book_checks = sink
            .latest_book_checks(None)
            .await
            .map_err(StatusError::Database)?;
        Ok(Snapshot {
            book_checks,
            taken_at,
            runs,
            triggers,
            pipelines,
            tables,
            connections,
            syncs,
        })
    }

    /// The windows of `run`'s pipeline, realm and window field inside its range whose
    /// verification is not a match: its problem windows, as the ledger holds them now.
    #[must_use]
    pub fn problem_windows(&self, run: &Run) -> Vec<&WindowVolume> {
        self.pipelines
            .iter()
            .filter(|p| p.source.pipeline == run.pipeline)
            .flat_map(|p| p.windows.iter())
            .filter(|w| {
                w.scope.realm_id == run.realm_id
                    && w.scope.window_field == run.window_field
                    && w.span.start >= run.range_start
                    && w.span.end <= run.range_end
                    && w.verification() != Verification::Match
            })
            .collect()
    }
}

/// The last run and last success of `pipeline` per realm, from its latest runs
/// ([`Sink::recent_runs`]).
///
/// # Errors
/// [`StatusError::Database`] when the query fails.
pub async fn last_runs(sink: &Sink, pipeline: &str) -> Result<Vec<LastRun>, StatusError> {
    let runs = sink
        .recent_runs(&[pipeline], None, LOOKBACK_RUNS)
        .await
        .map_err(StatusError::Database)?;
    let mut by_realm: BTreeMap<String, LastRun> = BTreeMap::new();
    for run in runs {
        let success = (run.summary.status == RunStatus::Succeeded)
            .then_some(run.finished_at)
            .flatten();
        match by_realm.get_mut(&run.realm_id) {
            // Newest first: the first run seen of a realm is its last one.
            Some(entry) => {
                if entry.last_success.is_none() {
                    entry.last_success = success;
                }
            }
            None => {
                by_realm.insert(
                    run.realm_id.clone(),
                    LastRun {
                        pipeline: pipeline.to_owned(),
                        realm_id: run.realm_id.clone(),
                        last_success: success,
                        last: run,
                    },
                );
            }
        }
    }
    Ok(by_realm.into_values().collect())
}
