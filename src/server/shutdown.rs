//! Shutdown on SIGTERM and SIGINT, fanned out to every task through cancellation tokens.
//!
//! The first signal cancels the *drain* token: servers stop accepting and finish in-flight requests
//! (bounded by [`super::DRAIN_TIMEOUT`]), background tasks return. A second signal cancels the
//! *force* token: servers close their connections at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The shutdown tokens of the process.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    force: CancellationToken,
}

impl Shutdown {
    /// Tokens that only fire when cancelled by hand (for tests and embedding).
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs SIGTERM and SIGINT handlers (now, so that a signal arriving during start-up is not
    /// lost) and spawns the task that cancels the tokens. Must be called inside a tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let tokens = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                if tokens.drain.is_cancelled() {
                    warn!(
                        signal = name,
                        "second shutdown signal; closing connections without draining"
                    );
                    tokens.force.cancel();
                    return;
                }
                info!(
                    signal = name,
                    "shutting down: no new connections, draining in-flight requests"
                );
                tokens.drain.cancel();
            }
        });
        Ok(shutdown)
    }

    /// Fires on the first signal (or [`Self::drain`]): stop accepting, finish in-flight work.
    pub fn drain_token(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Fires on the second signal: stop at once.
    pub fn force_token(&self) -> CancellationToken {
        self.force.clone()
    }

    /// Starts a graceful shutdown, as the first signal does.
    pub fn drain(&self) {
        self.drain.cancel();
    }
}
