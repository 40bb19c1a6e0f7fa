//! The one shutdown signal every task listens to: first a drain, then (on a second
//! signal or when the drain window ends) a stop.

use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Shutdown {
    /// Fired first: stop taking connections, move clients off.
    pub drain: CancellationToken,
    /// Fired on a second signal: cut the drain short.
    pub abort: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drain on the first SIGTERM/SIGINT, abort on the second.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {} _ = int.recv() => {} }
            tracing::info!("signal received: draining (send it again to stop at once)");
            this.drain.cancel();
            tokio::select! { _ = term.recv() => {} _ = int.recv() => {} }
            tracing::warn!("second signal: stopping now");
            this.abort.cancel();
        });
        Ok(())
    }
}
