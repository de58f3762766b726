//! Log subscriber set-up for the binaries: `EnvFilter`, JSON lines or pretty text on stderr,
//! cooperating with the terminal progress bar.
//!
//! Whatever `RUST_LOG` says, the PostgreSQL driver's statement log (`tokio_postgres::query`,
//! which prints every bound parameter at debug, the refresh token included) is never
//! recorded: a filter outside the `EnvFilter` drops it, and since that also answers the `log`
//! crate's `log_enabled!`, the driver does not even format the parameters.

use std::io::{IsTerminal, Write};

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::progress::Progress;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default when stderr is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Pretty,
}

impl LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[must_use]
    pub fn detect() -> LogFormat {
        if std::io::stderr().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    }
}

/// The default filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str =
    "info,tokio_postgres=warn,hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn,h2=warn";

/// Log targets never recorded, whatever the filter: they print secrets.
const NEVER_LOGGED: &[&str] = &[
    // "executing statement … with parameters: [...]": every bound value, tokens included.
    "tokio_postgres::query",
];

/// Whether events of `target` may be recorded at all.
fn may_log(target: &str) -> bool {
    !NEVER_LOGGED
        .iter()
        .any(|t| target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::")))
}

/// The subscriber [`init`] installs, writing to `writer` through `filter`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer = match format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => layer.with_ansi(ansi).with_target(false).boxed(),
    };
    let secret_free = tracing_subscriber::filter::filter_fn(|meta| may_log(meta.target()));
    tracing_subscriber::registry().with(layer.with_filter(filter).with_filter(secret_free))
}

/// Installs the global subscriber. Log lines go to stderr; while a progress bar is drawn they
/// are printed above it. Returns `false` if a subscriber was already installed.
pub fn init(format: LogFormat, progress: &Progress) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let writer = BarAwareStderr {
        progress: progress.clone(),
    };
    subscriber(format, filter, writer, std::io::stderr().is_terminal())
        .try_init()
        .is_ok()
}

/// Makes one buffered stderr writer per log event.
struct BarAwareStderr {
    progress: Progress,
}

impl<'a> MakeWriter<'a> for BarAwareStderr {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            progress: self.progress.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Collects one event and writes it in one piece when dropped, hiding the bar meanwhile.
struct EventWriter {
    progress: Progress,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.progress.suspend(|| {
            let mut err = std::io::stderr().lock();
            err.write_all(&buf).and_then(|()| err.flush())
        })
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        // Nowhere to report a failed log write; losing the line is the only option.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// Item 11: the driver's parameter log stays off at `RUST_LOG=trace` and when asked for by
    /// name; everything else still logs.
    #[test]
    fn driver_parameters_are_never_logged_whatever_the_filter() {
        for spec in [
            "trace",
            "info,tokio_postgres=trace",
            "tokio_postgres::query=trace,info",
        ] {
            for format in [LogFormat::Json, LogFormat::Pretty] {
                let buf = Buf::default();
                let sub = subscriber(format, EnvFilter::new(spec), buf.clone(), false);
                tracing::subscriber::with_default(sub, || {
                    tracing::debug!(
                        target: "tokio_postgres::query",
                        "executing statement s1 with parameters: [\"9130\", \"refresh-secret-77\"]"
                    );
                    tracing::trace!(target: "tokio_postgres::query::inner", "refresh-secret-78");
                    tracing::info!(target: "tokio_postgres::connection", "NOTICE: kept");
                    tracing::info!(target: "backfill_core::run", "window_started");
                });
                let text = String::from_utf8_lossy(
                    &buf.0
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                )
                .into_owned();
                assert!(!text.contains("refresh-secret"), "{spec}: {text}");
                assert!(
                    text.contains("window_started") && text.contains("kept"),
                    "{spec}: {text}"
                );
            }
        }
        assert!(may_log("tokio_postgres::prepare") && may_log("tokio_postgres::queryx"));
        assert!(!may_log("tokio_postgres::query"));
    }
}
