//! Graceful shutdown: a stop request shared by the loop and whoever asks for it (the signal
//! handlers of the CLI, or an embedding service).
//!
//! Once a stop is requested, [`crate::run()`] starts no new window, page or COUNT; requests in
//! flight to QBO are abandoned (nothing of them was written), a page upsert under way completes
//! (it is one atomic statement), windows that were running go back to `pending` with the reason
//! as their last error, every lease is released, the run is recorded `interrupted`, and the
//! report says so ([`crate::RunReport::interrupted`]). The next run resumes where this one
//! stopped.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use crate::ExitStatus;

/// Why a run was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// SIGINT (Ctrl-C): exit code 130.
    Interrupt,
    /// SIGTERM (e.g. `docker stop`, Kubernetes): exit code 143.
    Terminate,
    /// [`Shutdown::request`] by an embedding program: exit code 130.
    Requested,
    /// The run's budget of QBO API calls (`--max-requests`) is spent: exit code 1.
    Budget,
}

impl StopReason {
    /// A short name for logs and the ledger (`SIGINT`, `SIGTERM`, `stop request`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            StopReason::Interrupt => "SIGINT",
            StopReason::Terminate => "SIGTERM",
            StopReason::Requested => "stop request",
            StopReason::Budget => "the request budget (--max-requests)",
        }
    }

    /// The process exit status of a run stopped for this reason.
    #[must_use]
    pub const fn exit_status(self) -> ExitStatus {
        match self {
            StopReason::Terminate => ExitStatus::Terminated,
            StopReason::Interrupt | StopReason::Requested => ExitStatus::Interrupted,
            StopReason::Budget => ExitStatus::WindowsFailed,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stop request, cheap to clone and shared by every clone. The first request wins; later
/// ones are ignored.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Option<StopReason>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.reason())
            .finish()
    }
}

impl Shutdown {
    /// A handle on which nothing has been requested yet.
    #[must_use]
    pub fn new() -> Shutdown {
        let (tx, _rx) = watch::channel(None);
        Shutdown { tx: Arc::new(tx) }
    }

    /// Asks every run sharing this handle to stop. Returns `true` for the first request.
    pub fn request(&self, reason: StopReason) -> bool {
        self.tx.send_if_modified(|current| {
            if current.is_some() {
                false
            } else {
                *current = Some(reason);
                true
            }
        })
    }

    /// The first request, if any.
    #[must_use]
    pub fn reason(&self) -> Option<StopReason> {
        *self.tx.borrow()
    }

    /// Whether a stop was requested.
    #[must_use]
    pub fn is_requested(&self) -> bool {
        self.reason().is_some()
    }

    /// Waits until a stop is requested (at once if it already was).
    pub async fn requested(&self) -> StopReason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: unreachable, but never spin.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Installs SIGINT and SIGTERM handlers on the current tokio runtime: the first signal
    /// requests a stop (event `shutdown_requested`); a second one calls `second` with its
    /// reason, which is expected to end the process at once.
    ///
    /// # Errors
    /// When the signal handlers cannot be registered.
    pub fn install_signal_handlers(
        &self,
        second: impl Fn(StopReason) + Send + 'static,
    ) -> std::io::Result<()> {
        let me = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                loop {
                    let reason = tokio::select! {
                        Some(()) = int.recv() => StopReason::Interrupt,
                        Some(()) = term.recv() => StopReason::Terminate,
                        else => return,
                    };
                    me.on_signal(reason, &second);
                }
            });
        }
        #[cfg(not(unix))]
        {
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    me.on_signal(StopReason::Interrupt, &second);
                }
            });
        }
        Ok(())
    }

    fn on_signal(&self, reason: StopReason, second: &impl Fn(StopReason)) {
        if self.request(reason) {
            tracing::warn!(
                signal = reason.as_str(),
                "shutdown_requested: finishing the pages being written, then stopping; send the signal again to exit at once"
            );
        } else {
            tracing::warn!(signal = reason.as_str(), "second signal: exiting at once");
            second(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_request_wins_and_wakes_waiters() {
        let s = Shutdown::new();
        assert!(!s.is_requested());
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.requested().await })
        };
        tokio::task::yield_now().await;
        assert!(s.request(StopReason::Terminate));
        assert!(!s.request(StopReason::Interrupt));
        assert_eq!(waiter.await.unwrap(), StopReason::Terminate);
        assert_eq!(s.reason(), Some(StopReason::Terminate));
        // Already requested: returns at once.
        assert_eq!(s.requested().await, StopReason::Terminate);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(StopReason::Interrupt.exit_status().code(), 130);
        assert_eq!(StopReason::Terminate.exit_status().code(), 143);
        assert_eq!(StopReason::Requested.exit_status().code(), 130);
    }
}
