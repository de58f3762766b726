//! Terminal progress: windows done / total, rows, rate. Invisible when not on a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress display for a run. Cheap to clone; all clones drive the same bar.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A progress bar drawn on stderr when it is a terminal, hidden otherwise.
    #[must_use]
    pub fn stderr() -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} windows · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar }
    }

    /// A progress display that draws nothing (libraries, tests, non-terminal runs).
    #[must_use]
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// Starts the display for `total` windows, `already_done` of which need no work.
    pub fn start(&self, total: u64, already_done: u64) {
        self.bar.set_length(total);
        self.bar.set_position(already_done);
        self.bar.set_message("0 rows");
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    /// Records finished windows and the rows loaded so far.
    pub fn windows_finished(&self, windows: u64, total_rows: u64) {
        self.bar.inc(windows);
        let secs = self.bar.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            // Display only: precision loss on huge counts is irrelevant.
            #[allow(clippy::cast_precision_loss)]
            let r = total_rows as f64 / secs;
            r
        } else {
            0.0
        };
        self.bar
            .set_message(format!("{total_rows} rows · {rate:.0} rows/s"));
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Runs `f` with the bar hidden, so that text written meanwhile is not garbled.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }
}
