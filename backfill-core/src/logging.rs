//! Log subscriber set-up for the binaries: `EnvFilter`, JSON lines or pretty text on stderr,
//! cooperating with the terminal progress bar.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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

/// Installs the global subscriber. Log lines go to stderr; while a progress bar is drawn they
/// are printed above it. Returns `false` if a subscriber was already installed.
pub fn init(format: LogFormat, progress: &Progress) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let writer = BarAwareStderr {
        progress: progress.clone(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
    result.is_ok()
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
