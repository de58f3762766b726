//! Building the report: the rows of the [`raw_sink::volumetry`] queries turned into a
//! [`Report`], with each pipeline's verification summary and the re-run comparisons.

use std::collections::BTreeMap;

use raw_sink::{
    DayCount, RerunEntry, Run, Sink, SyncState, TableTotals, Trigger, Verification, WindowVolume,
};
use time::{Date, OffsetDateTime};

use super::{
    DayRows, PipelineReport, Report, ReportScope, RerunComparison, RunRow, SyncReportRow,
    TableReport, TriggerRow, VerificationSummary, WindowRow,
};
use crate::Error;
use crate::entity::EntityInfo;
use crate::window::format_utc;

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
        api_calls: s.api_calls,
        api_requests: s.api_requests,
        api_batches: s.api_batches,
        api_batch_items: s.api_batch_items,
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
        tombstones: t.tombstones,
        table_bytes: t.table_bytes,
    }
}

fn sync_row(s: &SyncState) -> SyncReportRow {
    let t = &s.last.tally;
    SyncReportRow {
        pipeline: s.pipeline.clone(),
        realm_id: s.realm_id.clone(),
        entity: s.entity.clone(),
        id: s.last.id.get(),
        kind: s.last.kind.to_string(),
        status: s.last.status.to_string(),
        started_at: utc(s.last.started_at),
        finished_at: s.last.finished_at.map(utc),
        inserted: t.inserted,
        updated: t.updated,
        tombstoned: t.tombstoned,
        deletes_refuted: t.deletes_refuted,
        api_calls: t.api_calls,
        total_api_calls: s.total_api_calls,
        changes_mark: s.marks.map(|m| utc(m.changes)),
        deletes_mark: s.marks.map(|m| utc(m.deletes)),
        lag_seconds: s.lag_seconds,
        error: s.last.error.clone(),
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
        verified: w.verified,
        loaded: w.loaded,
        rejected: w.rejected,
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
            Verification::Quarantined => s.quarantined += 1,
            Verification::Mismatch => s.mismatch += 1,
            Verification::NotDone => s.not_done += 1,
            Verification::Unverified => s.unverified += 1,
        }
        s.source_total += w.source_count.unwrap_or(0);
        s.loaded_total += w.loaded;
        s.rejected_total += w.rejected;
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
            .window_volumes(e.pipeline, realm)
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
    let syncs = sink
        .sync_statuses(&names, realm)
        .await
        .map_err(Error::Database)?;
    let books_checks = super::books::load(sink, realm).await?;
    let ok = pipelines.iter().all(|p| {
        let v = &p.verification;
        v.mismatch == 0 && v.not_done == 0 && v.quarantined == 0
    });
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
        syncs: syncs.iter().map(sync_row).collect(),
        books_checks,
        connections: super::connections::connections(sink, realm).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

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
}
