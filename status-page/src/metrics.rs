//! `/metrics`: the ledger's figures in the OpenMetrics text format, encoded by
//! `prometheus-client`; every name starts with `qb_backfill_`.
//!
//! Per pipeline and realm: windows by ledger state, rows of its raw table, the last run's
//! status, duration and rows, and the time of the last successful run. Per realm: token
//! expiries, and the latest `check-books` (`books_check_*`, in `books.rs`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use raw_sink::{RunStatus, Sink, WindowStatus};
use time::OffsetDateTime;

use crate::StatusError;
use crate::snapshot::{Scope, last_runs};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every window status, in the order the metrics list them.
pub const WINDOW_STATES: [WindowStatus; 5] = [
    WindowStatus::Pending,
    WindowStatus::Running,
    WindowStatus::Done,
    WindowStatus::Failed,
    WindowStatus::Mismatch,
];

const RUN_STATES: [RunStatus; 5] = [
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::Partial,
    RunStatus::Failed,
    RunStatus::Interrupted,
];

pub(crate) type Labels = Vec<(&'static str, String)>;
pub(crate) type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// A label value the text format can carry: `prometheus-client` writes label values as given,
/// so backslashes, double quotes and newlines (possible in text from the ledger) are escaped
/// here as OpenMetrics asks.
#[must_use]
pub fn label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Labels `pipeline` and `realm`, escaped.
pub(crate) fn scope_labels(pipeline: &str, realm: &str) -> Labels {
    vec![
        ("pipeline", label_value(pipeline)),
        ("realm", label_value(realm)),
    ]
}

/// Labels plus one more.
pub(crate) fn with(mut labels: Labels, key: &'static str, value: &str) -> Labels {
    labels.push((key, label_value(value)));
    labels
}

/// Seconds since the Unix epoch, with sub-second precision.
pub(crate) fn unix_seconds(t: OffsetDateTime) -> f64 {
    // i128 nanoseconds fit f64 well enough for a timestamp metric.
    #[allow(clippy::cast_precision_loss)]
    let secs = t.unix_timestamp_nanos() as f64 / 1e9;
    secs
}

/// Converts a count for a gauge.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn figure(n: u64) -> f64 {
    n as f64
}

/// A registry with the `qb_backfill` prefix and gauge families.
pub(crate) struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            registry: Registry::with_prefix("qb_backfill"),
        }
    }

    /// Registers a gauge family (`name` gets the prefix, and the unit's suffix if any).
    pub(crate) fn gauges(&mut self, name: &str, help: &str, unit: Option<Unit>) -> GaugeFamily {
        let family = GaugeFamily::default();
        match unit {
            Some(unit) => self
                .registry
                .register_with_unit(name, help, unit, family.clone()),
            None => self.registry.register(name, help, family.clone()),
        }
        family
    }

    /// The OpenMetrics text, `# EOF` included.
    pub(crate) fn encode(&self) -> Result<String, StatusError> {
        let mut out = String::new();
        encode(&mut out, &self.registry).map_err(StatusError::Encode)?;
        Ok(out)
    }
}

/// The exposition of `GET /metrics` for the pipelines of `scope`.
///
/// # Errors
/// [`StatusError::Database`] when a ledger query fails; [`StatusError::Encode`] (not expected).
pub async fn exposition(sink: &Sink, scope: &Scope) -> Result<String, StatusError> {
    let mut m = Metrics::new();
    let windows = m.gauges("windows", "Ledger windows of the pipeline by state", None);
    let raw_rows = m.gauges(
        "raw_rows",
        "Rows of the pipeline's raw table for the realm",
        None,
    );
    let last_status = m.gauges(
        "last_run_status",
        "1 for the status of the latest run, 0 for the others",
        None,
    );
    let last_duration = m.gauges(
        "last_run_duration",
        "Wall time of the latest finished run",
        Some(Unit::Seconds),
    );
    let last_rows = m.gauges(
        "last_run_rows",
        "Rows received from QBO by the latest run",
        None,
    );
    let last_calls = m.gauges(
        "last_run_api_calls",
        "QBO API calls (retries included) spent by the latest run",
        None,
    );
    let last_success = m.gauges(
        "last_success_timestamp",
        "When the latest succeeded run finished (Unix time)",
        Some(Unit::Seconds),
    );
    for source in &scope.sources {
        let volumes = sink
            .window_volumes(&source.pipeline, None)
            .await
            .map_err(StatusError::Database)?;
        let lasts = last_runs(sink, &source.pipeline).await?;
        let mut realms: Vec<&str> = volumes
            .iter()
            .map(|w| w.scope.realm_id.as_str())
            .chain(lasts.iter().map(|l| l.realm_id.as_str()))
            .collect();
        realms.sort_unstable();
        realms.dedup();
        for realm in realms {
            let labels = scope_labels(&source.pipeline, realm);
            for state in WINDOW_STATES {
                let n = volumes
                    .iter()
                    .filter(|w| w.scope.realm_id == realm && w.status == state)
                    .count();
                windows
                    .get_or_create(&with(labels.clone(), "state", state.as_str()))
                    .set(figure(u64::try_from(n).unwrap_or(u64::MAX)));
            }
            let totals = sink
                .table_totals(source.table, Some(realm))
                .await
                .map_err(StatusError::Database)?;
            raw_rows
                .get_or_create(&with(labels.clone(), "table", &source.table.to_string()))
                .set(figure(totals.rows));
        }
        for last in &lasts {
            let labels = scope_labels(&last.pipeline, &last.realm_id);
            let run = &last.last;
            for state in RUN_STATES {
                last_status
                    .get_or_create(&with(labels.clone(), "status", state.as_str()))
                    .set(if run.summary.status == state {
                        1.0
                    } else {
                        0.0
                    });
            }
            if let Some(finished) = run.finished_at {
                last_duration
                    .get_or_create(&labels)
                    .set((finished - run.started_at).as_seconds_f64().max(0.0));
            }
            last_rows
                .get_or_create(&labels)
                .set(figure(run.summary.rows));
            last_calls
                .get_or_create(&labels)
                .set(figure(run.summary.api_calls));
            if let Some(t) = last.last_success {
                last_success.get_or_create(&labels).set(unix_seconds(t));
            }
        }
    }
    upkeep(&mut m, sink, scope).await?;
    crate::books::metrics(&mut m, sink).await?;
    m.encode()
}

/// The token facts of every connected company and the lag of each pipeline's latest sync.
async fn upkeep(m: &mut Metrics, sink: &Sink, scope: &Scope) -> Result<(), StatusError> {
    let refresh = m.gauges(
        "token_refresh_expiry_timestamp",
        "When the company's stored refresh token expires unless used (Unix time)",
        Some(Unit::Seconds),
    );
    let hard = m.gauges(
        "token_hard_expiry_timestamp",
        "The hard expiry of the company's grant: reconnect before it (Unix time)",
        Some(Unit::Seconds),
    );
    let lag = m.gauges(
        "sync_lag",
        "Now minus the deletions mark of the latest successful sync",
        Some(Unit::Seconds),
    );
    for c in sink
        .ledger()
        .token_meta(None)
        .await
        .map_err(StatusError::Database)?
    {
        let labels = vec![("realm", label_value(&c.realm_id))];
        if let Some(t) = c.refresh_expires_at {
            refresh.get_or_create(&labels).set(unix_seconds(t));
        }
        if let Some(t) = c.hard_expires_at {
            hard.get_or_create(&labels).set(unix_seconds(t));
        }
    }
    let names: Vec<&str> = scope.sources.iter().map(|s| s.pipeline.as_str()).collect();
    for s in sink
        .sync_statuses(&names, None)
        .await
        .map_err(StatusError::Database)?
    {
        if let Some(l) = s.lag_seconds {
            #[allow(clippy::cast_precision_loss)]
            lag.get_or_create(&scope_labels(&s.pipeline, &s.realm_id))
                .set(l as f64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label_value("x\ny"), "x\\ny");
        assert_eq!(label_value("9130354"), "9130354");
    }

    #[test]
    fn families_are_prefixed_and_end_with_eof() {
        let mut m = Metrics::new();
        let g = m.gauges("last_success_timestamp", "When", Some(Unit::Seconds));
        g.get_or_create(&scope_labels("qb_items_backfill", "r\"1"))
            .set(1.5);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                "qb_backfill_last_success_timestamp_seconds{pipeline=\"qb_items_backfill\",realm=\"r\\\"1\"} 1.5"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE qb_backfill_last_success_timestamp_seconds gauge"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
