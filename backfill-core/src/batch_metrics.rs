//! `--metrics-textfile`: a run's final figures as a node_exporter textfile, built from its
//! [`RunReport`] (or the error that ended it) and written by `status_page::batch`.

use std::path::Path;
use std::time::Duration;

use raw_sink::{Sink, WindowStatus};
use status_page::batch::{self, BatchFigures};

use crate::{Error, RunReport};

/// The figures of a run that ended with `result` after `duration`.
#[must_use]
pub fn figures(
    pipeline: &str,
    realm_id: &str,
    result: &Result<RunReport, Error>,
    duration: Duration,
) -> BatchFigures {
    let mut f = BatchFigures {
        pipeline: pipeline.to_owned(),
        realm_id: realm_id.to_owned(),
        exit_code: 0,
        duration,
        rows: 0,
        windows: Vec::new(),
        qbo_requests: 0,
    };
    match result {
        Ok(r) => {
            let count = |s| {
                r.problems
                    .iter()
                    .filter(|p| p.status == s)
                    .count()
                    .try_into()
                    .unwrap_or(u64::MAX)
            };
            let (failed, mismatch): (u64, u64) =
                (count(WindowStatus::Failed), count(WindowStatus::Mismatch));
            let done = r.windows_done + r.windows_skipped;
            f.exit_code = r.exit_status().code();
            f.duration = r.duration;
            f.rows = r.rows;
            f.qbo_requests = r.requests;
            f.windows = vec![
                ("done", done),
                ("failed", failed),
                ("mismatch", mismatch),
                (
                    "pending",
                    r.windows_planned.saturating_sub(done + failed + mismatch),
                ),
            ];
        }
        Err(e) => f.exit_code = e.exit_status().code(),
    }
    f
}

/// Writes the textfile; a failure is logged, never the run's outcome.
pub(crate) async fn write(sink: &Sink, path: &Path, figures: &BatchFigures) {
    if let Err(e) = batch::write_textfile(sink, path, figures).await {
        tracing::warn!(
            path = %path.display(),
            error = %crate::run::error_chain(&e),
            "metrics_textfile_failed"
        );
    }
}
