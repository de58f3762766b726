//! `--metrics-textfile` and `--metrics-push`: a run's final figures, built from its
//! [`RunReport`] (or the error that ended it) and encoded by `status_page::batch`, written as a
//! node_exporter textfile or PUT to a Prometheus Pushgateway under
//! `URL/metrics/job/qb_backfill/pipeline/<pipeline>/realm/<realm>` (the same text: the
//! Pushgateway reads the text format, whose parser takes OpenMetrics' `# UNIT` / `# EOF` lines as
//! comments).

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

/// How long a push may take before it is given up (logged; the run's outcome stands).
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The Pushgateway job every pipeline pushes under; `pipeline` and `realm` are the grouping
/// labels, so each pipeline and realm keeps its own group and one push replaces only its own.
pub const PUSH_JOB: &str = "qb_backfill";

/// The grouping URL of `figures` under the Pushgateway at `base` (`None` for a URL that cannot
/// have a path, such as `mailto:`). Label values are percent-encoded as path segments.
#[must_use]
pub fn push_url(base: &reqwest::Url, figures: &BatchFigures) -> Option<reqwest::Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url.path_segments_mut().ok()?;
        path.pop_if_empty().extend([
            "metrics",
            "job",
            PUSH_JOB,
            "pipeline",
            &figures.pipeline,
            "realm",
            &figures.realm_id,
        ]);
    }
    Some(url)
}

/// `url` fit for a log line: without user name, password, query or fragment.
fn loggable(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Publishes the figures where the run was asked to: the textfile at `textfile`, a PUT to the
/// Pushgateway at `push_to`; both carry the same text, encoded once. A failure is logged,
/// never the run's outcome.
pub(crate) async fn publish(
    sink: &Sink,
    textfile: Option<&Path>,
    push_to: Option<&reqwest::Url>,
    figures: &BatchFigures,
) {
    let text = match batch::text_with_ledger(sink, figures).await {
        Ok(t) => t,
        Err(e) => {
            let error = crate::run::error_chain(&e);
            if let Some(path) = textfile {
                tracing::warn!(path = %path.display(), error = %error, "metrics_textfile_failed");
            }
            if push_to.is_some() {
                tracing::warn!(error = %error, "metrics_push_failed");
            }
            return;
        }
    };
    if let Some(path) = textfile
        && let Err(e) = batch::write_atomically(path, &text)
    {
        tracing::warn!(
            path = %path.display(),
            error = %crate::run::error_chain(&e),
            "metrics_textfile_failed"
        );
    }
    if let Some(base) = push_to {
        push(base, text, figures).await;
    }
}

/// PUTs `text` to the Pushgateway at `base`. A user name and password in `base` are sent as
/// basic auth and never logged.
async fn push(base: &reqwest::Url, text: String, figures: &BatchFigures) {
    let Some(url) = push_url(base, figures) else {
        tracing::warn!(url = %loggable(base), "metrics_push_failed: the URL cannot take a path");
        return;
    };
    let (user, password) = (url.username().to_owned(), url.password().map(str::to_owned));
    let mut target = url.clone();
    let _ = target.set_username("");
    let _ = target.set_password(None);
    let client = match reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "metrics_push_failed");
            return;
        }
    };
    let mut req = client
        .put(target)
        .header(
            reqwest::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(text);
    if !user.is_empty() || password.is_some() {
        req = req.basic_auth(user, password);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(url = %loggable(&url), status = r.status().as_u16(), "metrics_pushed");
        }
        Ok(r) => tracing::warn!(
            url = %loggable(&url),
            status = r.status().as_u16(),
            "metrics_push_failed: the Pushgateway refused the figures"
        ),
        Err(e) => tracing::warn!(
            url = %loggable(&url),
            error = %e.without_url(),
            "metrics_push_failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(realm: &str) -> BatchFigures {
        BatchFigures {
            pipeline: "qb_items_backfill".into(),
            realm_id: realm.into(),
            exit_code: 0,
            duration: Duration::from_secs(1),
            rows: 0,
            windows: Vec::new(),
            qbo_requests: 0,
        }
    }

    #[test]
    fn push_url_groups_by_pipeline_and_realm() {
        let base = reqwest::Url::parse("http://u:pw@gw:9091/prefix/?x=1#f").unwrap();
        let url = push_url(&base, &figures("42")).unwrap();
        assert_eq!(
            url.as_str(),
            "http://u:pw@gw:9091/prefix/metrics/job/qb_backfill/pipeline/qb_items_backfill/realm/42"
        );
        // A label value cannot escape its path segment.
        let odd = push_url(&base, &figures("a/../b")).unwrap();
        assert!(odd.path().ends_with("/realm/a%2F..%2Fb"), "{odd}");
        assert!(push_url(&reqwest::Url::parse("mailto:x@y").unwrap(), &figures("1")).is_none());
    }

    #[test]
    fn logged_urls_carry_no_credentials() {
        let url = reqwest::Url::parse("https://user:s3cret@gw/metrics?token=t0k#x").unwrap();
        let shown = loggable(&url);
        assert_eq!(shown, "https://gw/metrics");
        assert!(!shown.contains("s3cret") && !shown.contains("t0k"));
    }
}
