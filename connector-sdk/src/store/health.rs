//! The store's health probe, for `/readyz`, `/status` and the metric
//! `connector_store_up`: a probe a second; one error line when the store
//! goes down, one info line when it is back. While it is down, requests are
//! answered "retry later" (their ledger lookups fail) and `/readyz` is 503,
//! so a load balancer sends the work to a replica that can take it. A
//! failed write elsewhere (the ledger's) marks it down at once, before the
//! next probe; the probe says when it is back. Down for longer than
//! `store.unhealthy_after_secs`, `/healthz` fails too, so the orchestrator
//! restarts the process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Opened;

/// How often the store is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The longest a probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The store's latest health: healthy, or why not and since when.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreHealth {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` while healthy.
    problem: Option<String>,
    /// When it went down; `None` while healthy.
    since: Option<Instant>,
}

impl StoreHealth {
    /// Starts probing `store` until the returned handle's task is aborted
    /// (the runtime does at shutdown).
    pub(crate) fn watch(&self, store: Opened) -> tokio::task::JoinHandle<()> {
        let watched = self.clone();
        tokio::spawn(async move {
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
        })
    }

    pub(crate) fn record(&self, problem: Option<String>, backend: &str) {
        let mut state = self.state();
        match (&state.problem, &problem) {
            (None, Some(reason)) => {
                tracing::error!(backend, %reason, "the store is DOWN: new events are answered 503 and /readyz is 503 until it is back");
                state.since = Some(Instant::now());
            }
            (Some(_), None) => {
                tracing::info!(backend, "the store is back: taking events again");
                state.since = None;
            }
            _ => {}
        }
        crate::metrics::store_up(problem.is_none());
        state.problem = problem;
    }

    /// A write failed (the ledger's, after its answer): the store counts as
    /// down from now, without waiting for the next probe, which says when
    /// it is back.
    pub(crate) fn failed(&self, reason: String, backend: &str) {
        if self.state().problem.is_none() {
            self.record(Some(reason), backend);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the store is down, or `None` while it answers.
    pub(crate) fn problem(&self) -> Option<String> {
        self.state().problem.clone()
    }

    /// Why the store is down and for how long, or `None` while it answers.
    pub(crate) fn down_for(&self) -> Option<(String, Duration)> {
        let state = self.state();
        let since = state.since?;
        Some((state.problem.clone()?, since.elapsed()))
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
        let health = StoreHealth::default();
        let task = health.watch(store);
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
        assert!(health.down_for().is_some());
        server.restart();
        assert!(wait_for(false).await, "seen back");
        assert!(health.down_for().is_none());
        task.abort();
    }
}

#[cfg(test)]
mod failed {
    use super::*;

    #[test]
    fn a_failed_write_marks_the_store_down_until_a_probe_says_otherwise() {
        let health = StoreHealth::default();
        assert!(health.problem().is_none());
        health.failed("disk full".into(), "embedded");
        assert_eq!(health.problem().as_deref(), Some("disk full"));
        let (reason, _) = health.down_for().expect("down");
        assert_eq!(reason, "disk full");
        // A later failure keeps when it went down and why.
        health.failed("again".into(), "embedded");
        assert_eq!(health.problem().as_deref(), Some("disk full"));
        health.record(None, "embedded");
        assert!(health.problem().is_none());
        assert!(health.down_for().is_none());
    }
}
