//! The final figures of one pipeline run for node_exporter's textfile collector
//! (`--metrics-textfile PATH`), encoded like `/metrics` and written atomically: a temporary
//! file in the same directory, then a rename, so a scrape never reads half a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus_client::registry::Unit;
use raw_sink::Sink;

use crate::StatusError;
use crate::metrics::{Metrics, figure, scope_labels, unix_seconds, with};
use crate::snapshot::last_runs;

/// What one pipeline run did, as its process ends.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFigures {
    /// Pipeline name.
    pub pipeline: String,
    /// Realm.
    pub realm_id: String,
    /// The process exit code.
    pub exit_code: u8,
    /// Wall time of the run.
    pub duration: Duration,
    /// Rows received from QBO.
    pub rows: u64,
    /// Windows of the plan by state (`done`, `failed`, `mismatch`, `pending`).
    pub windows: Vec<(&'static str, u64)>,
    /// QBO queries issued.
    pub qbo_requests: u64,
}

/// The textfile's content: the run's figures and, from the ledger, the time of the last
/// succeeded run of its pipeline and realm (`None` when none is recorded).
///
/// # Errors
/// [`StatusError::Encode`] (not expected).
pub fn encode(
    figures: &BatchFigures,
    last_success: Option<time::OffsetDateTime>,
) -> Result<String, StatusError> {
    let mut m = Metrics::new();
    let labels = scope_labels(&figures.pipeline, &figures.realm_id);
    m.gauges("run_exit_code", "Exit code of the latest run", None)
        .get_or_create(&labels)
        .set(f64::from(figures.exit_code));
    m.gauges(
        "run_duration",
        "Wall time of the latest run",
        Some(Unit::Seconds),
    )
    .get_or_create(&labels)
    .set(figures.duration.as_secs_f64());
    m.gauges("run_rows", "Rows received from QBO by the latest run", None)
        .get_or_create(&labels)
        .set(figure(figures.rows));
    let windows = m.gauges(
        "run_windows",
        "Windows of the latest run's plan by state",
        None,
    );
    for (state, n) in &figures.windows {
        windows
            .get_or_create(&with(labels.clone(), "state", state))
            .set(figure(*n));
    }
    m.gauges(
        "run_qbo_requests",
        "QBO queries issued by the latest run",
        None,
    )
    .get_or_create(&labels)
    .set(figure(figures.qbo_requests));
    if let Some(t) = last_success {
        m.gauges(
            "last_success_timestamp",
            "When the latest succeeded run finished (Unix time)",
            Some(Unit::Seconds),
        )
        .get_or_create(&labels)
        .set(unix_seconds(t));
    }
    m.encode()
}

/// Writes `text` to `path` atomically (temporary file in the same directory, then rename).
///
/// # Errors
/// [`StatusError::Textfile`].
pub fn write_atomically(path: &Path, text: &str) -> Result<(), StatusError> {
    let err = |source| StatusError::Textfile {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".to_owned());
    // node_exporter reads only `*.prom`: the temporary name does not end so.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// The textfile's content for `figures`, with the last success time read from the ledger:
/// what `--metrics-textfile` writes and `--metrics-push` sends.
///
/// # Errors
/// [`StatusError::Database`]; [`StatusError::Encode`] (not expected).
pub async fn text_with_ledger(sink: &Sink, figures: &BatchFigures) -> Result<String, StatusError> {
    let last_success = last_runs(sink, &figures.pipeline)
        .await?
        .into_iter()
        .find(|l| l.realm_id == figures.realm_id)
        .and_then(|l| l.last_success);
    encode(figures, last_success)
}

/// Encodes `figures` with the last success time read from the ledger and writes the textfile.
///
/// # Errors
/// [`StatusError::Database`], [`StatusError::Textfile`].
pub async fn write_textfile(
    sink: &Sink,
    path: &Path,
    figures: &BatchFigures,
) -> Result<(), StatusError> {
    let text = text_with_ledger(sink, figures).await?;
    write_atomically(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> BatchFigures {
        BatchFigures {
            pipeline: "qb_items_backfill".into(),
            realm_id: "42".into(),
            exit_code: 1,
            duration: Duration::from_millis(2500),
            rows: 17,
            windows: vec![("done", 3), ("failed", 1)],
            qbo_requests: 9,
        }
    }

    #[test]
    fn textfile_holds_every_figure() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let text = encode(&figures(), Some(t)).unwrap();
        let l = "{pipeline=\"qb_items_backfill\",realm=\"42\"}";
        for line in [
            format!("qb_backfill_run_exit_code{l} 1.0"),
            format!("qb_backfill_run_duration_seconds{l} 2.5"),
            format!("qb_backfill_run_rows{l} 17.0"),
            format!("qb_backfill_run_qbo_requests{l} 9.0"),
            "qb_backfill_run_windows{pipeline=\"qb_items_backfill\",realm=\"42\",state=\"failed\"} 1.0".to_owned(),
            format!("qb_backfill_last_success_timestamp_seconds{l} 1700000000.0"),
        ] {
            assert!(text.lines().any(|x| x == line), "{line} missing from\n{text}");
        }
        assert!(!encode(&figures(), None).unwrap().contains("last_success"));
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qb.prom");
        write_atomically(&path, "old\n").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary file left behind");
        let missing = dir.path().join("no/such/dir/qb.prom");
        assert!(matches!(
            write_atomically(&missing, "x"),
            Err(StatusError::Textfile { .. })
        ));
    }
}
