//! `reports`: report snapshots period by period into `raw.qb_reports`, resumable.
//!
//! Invariants: a period already `done` in the ledger is not asked again unless `reload`
//! (then an unchanged report writes nothing); the budget (`max_api_calls`) and a stop
//! request are checked before each request, so the run stops between periods and the next
//! one resumes with the periods still owed; a refusal that no re-run fixes (auth, the
//! company, the app) stops the run at once, any other failure marks its period `failed`
//! and the run goes on. Every run is a row of `backfill.report_runs` with the calls it made
//! (the monthly budget counts them), finished however the run ends.

use std::collections::BTreeSet;

use qbo_client::QboClient;
use raw_sink::{NewReportRun, ReportKey, ReportRunEnd, ReportRunStatus, ReportWrite, Sink};
use time::Date;

use super::{AccountingMethod, Period};
use crate::{Error, ExitStatus, Shutdown, StopReason};

/// What a `reports` run loads.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// QBO report names.
    pub reports: Vec<String>,
    /// The periods, oldest first.
    pub periods: Vec<(Date, Date)>,
    /// How the range was cut into them.
    pub period: Period,
    /// `accounting_method`.
    pub method: AccountingMethod,
    /// Ask again for periods already done.
    pub reload: bool,
    /// Stop once this run has made this many API calls.
    pub max_api_calls: Option<u64>,
    /// Stop requests (signals).
    pub shutdown: Shutdown,
}

/// A failed report period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPeriod {
    /// Report name.
    pub report: String,
    /// First day.
    pub start: Date,
    /// Last day.
    pub end: Date,
    /// The error, one line.
    pub error: String,
}

/// What a `reports` run did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Snapshots stored for the first time.
    pub inserted: u64,
    /// Snapshots replaced because QBO's answer changed.
    pub updated: u64,
    /// Snapshots asked again and found the same (nothing written).
    pub unchanged: u64,
    /// Periods already done, not asked.
    pub skipped: u64,
    /// Periods that failed.
    pub failed: Vec<FailedPeriod>,
    /// Periods left for a later run (stopped by a signal or the budget).
    pub left: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// QBO API calls this run made (retries included).
    pub api_calls: u64,
}

impl LoadReport {
    /// The process exit status: 0 when every period is done.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self.stopped {
            Some(reason) => reason.exit_status(),
            None if self.failed.is_empty() => ExitStatus::Success,
            None => ExitStatus::WindowsFailed,
        }
    }
}

/// The URL parameters of one period.
fn params(start: Date, end: Date, method: AccountingMethod) -> Vec<(&'static str, String)> {
    vec![
        ("start_date", start.to_string()),
        ("end_date", end.to_string()),
        ("accounting_method", method.as_str().to_owned()),
    ]
}

/// Loads the reports of `cfg` through `client` into `sink`.
///
/// # Errors
/// [`Error::Database`] when the ledger or the snapshot cannot be written; [`Error::Auth`] /
/// [`Error::Qbo`] when QBO refuses in a way that stops the whole run.
pub async fn load(client: &QboClient, sink: &Sink, cfg: &LoadConfig) -> Result<LoadReport, Error> {
    let realm = client.realm_id().to_owned();
    let (Some(first), Some(last)) = (cfg.periods.first(), cfg.periods.last()) else {
        return Ok(LoadReport::default());
    };
    let run = sink
        .start_report_run(&NewReportRun {
            realm_id: &realm,
            range_start: first.0,
            range_end: last.1,
            period: cfg.period.as_str(),
            accounting_method: cfg.method.as_str(),
            reports: &cfg.reports,
        })
        .await
        .map_err(Error::Database)?;
    let calls_before = client.api_calls();
    let result = load_periods(client, sink, cfg, &realm).await;
    let api_calls = client.api_calls() - calls_before;
    let error = result.as_ref().err().map(|e| crate::run::error_chain(e));
    let end = match &result {
        Ok(out) => ReportRunEnd {
            status: match (out.stopped, out.failed.is_empty()) {
                (Some(_), _) => ReportRunStatus::Stopped,
                (None, true) => ReportRunStatus::Succeeded,
                (None, false) => ReportRunStatus::Partial,
            },
            periods_loaded: out.inserted + out.updated + out.unchanged,
            periods_failed: out.failed.len() as u64,
            periods_left: out.left,
            api_calls,
            error: None,
        },
        Err(_) => ReportRunEnd {
            status: ReportRunStatus::Failed,
            periods_loaded: 0,
            periods_failed: 0,
            periods_left: 0,
            api_calls,
            error: error.as_deref(),
        },
    };
    if let Err(e) = sink.finish_report_run(run, &end).await {
        // The run's own error, if any, says more than the ledger's.
        if result.is_ok() {
            return Err(Error::Database(e));
        }
        tracing::warn!(error = %crate::run::error_chain(&e), "report_run_not_recorded");
    }
    result
}

async fn load_periods(
    client: &QboClient,
    sink: &Sink,
    cfg: &LoadConfig,
    realm: &str,
) -> Result<LoadReport, Error> {
    let realm = realm.to_owned();
    let params_text = cfg.method.params_text();
    let calls_before = client.api_calls();
    let mut out = LoadReport::default();
    let mut owed: Vec<(&str, Date, Date)> = Vec::new();
    for name in &cfg.reports {
        let done: BTreeSet<(Date, Date)> = if cfg.reload {
            BTreeSet::new()
        } else {
            sink.done_report_periods(&realm, name, &params_text)
                .await
                .map_err(Error::Database)?
                .into_iter()
                .collect()
        };
        for &(s, e) in &cfg.periods {
            if done.contains(&(s, e)) {
                out.skipped += 1;
            } else {
                owed.push((name, s, e));
            }
        }
    }
    for (i, &(name, start, end)) in owed.iter().enumerate() {
        let spent = client.api_calls() - calls_before;
        let stop = cfg.shutdown.reason().or_else(|| {
            cfg.max_api_calls
                .filter(|max| spent >= *max)
                .map(|_| StopReason::Budget)
        });
        if let Some(reason) = stop {
            out.stopped = Some(reason);
            out.left = (owed.len() - i) as u64;
            tracing::warn!(reason = reason.as_str(), left = out.left, "reports_stopped");
            break;
        }
        let key = ReportKey {
            realm_id: &realm,
            report_name: name,
            params: &params_text,
            period_start: start,
            period_end: end,
        };
        let p = params(start, end, cfg.method);
        let request = p
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let before = client.api_calls();
        match client.report(name, &p).await {
            Ok(report) => {
                let calls = client.api_calls() - before;
                let w = sink
                    .store_report(&key, &request, report.raw.get(), calls)
                    .await
                    .map_err(Error::Database)?;
                match w {
                    ReportWrite::Inserted => out.inserted += 1,
                    ReportWrite::Updated => out.updated += 1,
                    ReportWrite::Unchanged => out.unchanged += 1,
                }
                tracing::info!(report = name, start = %start, end = %end, outcome = w.as_str(), "report_loaded");
            }
            Err(e) => {
                let calls = client.api_calls() - before;
                let text = crate::run::error_chain(&e);
                sink.report_period_failed(&key, calls, &text)
                    .await
                    .map_err(Error::Database)?;
                tracing::warn!(report = name, start = %start, end = %end, error = text.as_str(), "report_failed");
                if e.is_auth() {
                    return Err(Error::Auth(e));
                }
                if !e.is_retryable() && !e.diagnosis().remedy.rerun_helps() {
                    return Err(Error::Qbo(e));
                }
                out.failed.push(FailedPeriod {
                    report: name.to_owned(),
                    start,
                    end,
                    error: text,
                });
            }
        }
    }
    out.api_calls = client.api_calls() - calls_before;
    Ok(out)
}
