//! Graceful shutdown as one small piece: a readiness flag the probes read,
//! a signal that tells both servers to stop accepting, and the wait for
//! SIGTERM / SIGINT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Whether the connector takes new work; `/readyz` answers from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub(crate) fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Tells the servers to stop accepting; cheap to clone into each server.
#[derive(Clone, Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub(crate) fn new() -> Self {
        Self(watch::Sender::new(false))
    }

    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once [`Trigger::fire`] has been called.
    pub(crate) fn fired(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            // An error means the sender is gone, which also means stop.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Waits for SIGTERM (what Kubernetes and Docker send) or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fired_resolves_for_waiters_before_and_after_the_fire() {
        let trigger = Trigger::new();
        let early = tokio::spawn(trigger.fired());
        trigger.fire();
        early.await.expect("early waiter finishes");
        trigger.fired().await;
    }
}
