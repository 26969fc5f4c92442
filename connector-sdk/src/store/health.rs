//! The store's health probe, for `/readyz`, `/status` and the metric
//! `connector_store_up`: a probe a second; one error line when the store
//! goes down, one info line when it is back. While it is down, requests are
//! answered "retry later" (their ledger lookups fail) and `/readyz` is 503,
//! so a load balancer sends the work to a replica that can take it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Opened;

/// How often the store is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The longest a probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The store's latest health: `None` while healthy, else why not.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreHealth {
    problem: Arc<Mutex<Option<String>>>,
}

impl StoreHealth {
    /// Starts probing `store` until the returned handle's task is aborted
    /// (the runtime does at shutdown).
    pub(crate) fn watch(store: Opened) -> (Self, tokio::task::JoinHandle<()>) {
        let health = Self::default();
        let watched = health.clone();
        let task = tokio::spawn(async move {
            // The gauge appears with the first probe's answer, not before.
            loop {
                let problem = match tokio::time::timeout(PROBE_TIMEOUT, store.health()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(err)) => Some(err.to_string()),
                    Err(_) => Some(format!(
                        "the {} store did not answer a probe within {PROBE_TIMEOUT:?}",
                        store.backend_name()
                    )),
                };
                watched.record(problem, store.backend_name());
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        (health, task)
    }

    fn record(&self, problem: Option<String>, backend: &str) {
        let mut current = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        match (&*current, &problem) {
            (None, Some(reason)) => {
                tracing::error!(backend, %reason, "the store is DOWN: new events are answered 503 and /readyz is 503 until it is back");
            }
            (Some(_), None) => tracing::info!(backend, "the store is back: taking events again"),
            _ => {}
        }
        crate::metrics::store_up(problem.is_none());
        *current = problem;
    }

    /// Why the store is down, or `None` while it answers.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Redis, RedisConfig};
    use crate::testing::RedisServer;

    #[tokio::test]
    async fn the_watch_follows_the_store_down_and_back() {
        let mut server = RedisServer::start();
        let config = RedisConfig {
            url: server.url(),
            timeout_ms: 200,
            ..RedisConfig::default()
        };
        let store = Opened::new(Arc::new(Redis::connect(&config, "w").expect("connects")));
        let (health, task) = StoreHealth::watch(store);
        let wait_for = |down: bool| {
            let health = health.clone();
            async move {
                for _ in 0..100 {
                    if health.problem().is_some() == down {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            }
        };
        assert!(wait_for(false).await, "healthy at first");
        server.stop();
        assert!(wait_for(true).await, "seen down");
        assert!(health.problem().unwrap_or_default().contains("redis"));
        server.restart();
        assert!(wait_for(false).await, "seen back");
        task.abort();
    }
}
