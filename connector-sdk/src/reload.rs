//! Live reload: on SIGHUP, on `POST /-/reload`, and when the config file's
//! content changes (polled every second through its path, so a Kubernetes
//! ConfigMap mount, which swaps a symlink, is seen). The new file is read
//! by the same loader as at start (`_file`/`_env` values, `CONNECTOR_*`
//! overrides) and validated in full before anything changes; a bad one
//! leaves the running configuration in place. The sink applies its part
//! ([`Sink::reload`]); of the runtime's keys only `reload.token` changes
//! live, and every other key that differs from what the process started
//! with is reported as needing a restart. Each reload is counted in
//! `connector_config_reloads_total{result}`: `ok`, `invalid` (the new
//! config did not load), `failed` (the sink could not apply it).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::config::{self, RuntimeConfig};
use crate::sink::Sink;

/// How often the config file's content is compared with the last one seen.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// How long a sink may take to apply a new configuration.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The metric counting reloads, by result.
pub(crate) const RELOADS: &str = "connector_config_reloads_total";

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Signal,
    Http,
    File,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Http => "POST /-/reload",
            Trigger::File => "config file changed",
        }
    }
}

/// The answer to one reload, as `POST /-/reload` gives it (and the log).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `ok`, `invalid` or `failed`.
    pub result: &'static str,
    /// The short hash of the file that was read.
    pub hash: String,
    /// What is wrong with it, each with its key path (`invalid`), or why
    /// the sink could not apply it (`failed`).
    pub problems: Vec<String>,
    /// Keys that changed but take effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// The configuration running now, for `/status`.
#[derive(Debug, Clone)]
struct Running {
    /// The runtime's keys last applied (only `reload.token` is used live).
    runtime: RuntimeConfig,
    hash: String,
    loaded_at: chrono::DateTime<chrono::Utc>,
}

/// Reloads one sink's configuration from its file.
pub(crate) struct Reloader<S> {
    sink: Arc<S>,
    path: PathBuf,
    /// The runtime's keys the process started with: what a restart would change.
    started: RuntimeConfig,
    running: Mutex<Running>,
    /// The hash of the content last read, valid or not: the poll reloads
    /// only when it changes, so a bad file is reported once.
    last_seen: Mutex<String>,
    /// One reload at a time.
    serial: tokio::sync::Mutex<()>,
}

impl<S: Sink> Reloader<S> {
    /// A reloader for `sink`, which started on `runtime` read from `text`
    /// at `path`.
    pub(crate) fn new(sink: Arc<S>, path: PathBuf, runtime: RuntimeConfig, text: &str) -> Self {
        for result in ["ok", "invalid", "failed"] {
            metrics::counter!(RELOADS, "result" => result).absolute(0);
        }
        let hash = short_hash(text);
        Self {
            sink,
            path,
            started: runtime.clone(),
            running: Mutex::new(Running {
                runtime,
                hash: hash.clone(),
                loaded_at: chrono::Utc::now(),
            }),
            last_seen: Mutex::new(hash),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The token `POST /-/reload` takes from other than loopback, if any.
    pub(crate) fn token(&self) -> Option<String> {
        lock(&self.running).runtime.reload.token.clone()
    }

    /// What `/status` shows of the running configuration.
    pub(crate) fn status(&self) -> Value {
        let running = lock(&self.running);
        serde_json::json!({
            "path": self.path.display().to_string(),
            "hash": running.hash,
            "loaded_at": running.loaded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }

    /// Reloads when the file's content differs from the last seen.
    pub(crate) async fn poll(&self) {
        let Ok(text) = read(&self.path).await else {
            // Mid-swap, or gone: the next poll looks again; a reload asked
            // for now says what is wrong.
            return;
        };
        if short_hash(&text) != *lock(&self.last_seen) {
            self.reload(Trigger::File).await;
        }
    }

    /// Reads, validates and applies the config file; the running one stays
    /// unless every step passes.
    pub(crate) async fn reload(&self, trigger: Trigger) -> Report {
        let _one = self.serial.lock().await;
        let source_name = self.path.display().to_string();
        let text = match read(&self.path).await {
            Ok(text) => text,
            Err(err) => {
                let problem = format!("cannot read the config file {source_name}: {err}");
                return self.invalid(trigger, String::new(), vec![problem]);
            }
        };
        let hash = short_hash(&text);
        lock(&self.last_seen).clone_from(&hash);
        let loaded = match config::load_from_str::<S::Config>(&text, &source_name) {
            Ok(loaded) => loaded,
            Err(err) => {
                let problems = err.problems.iter().map(ToString::to_string).collect();
                return self.invalid(trigger, hash, problems);
            }
        };
        let needs_restart = changed_keys(&self.started, &loaded.runtime);
        let applied = tokio::time::timeout(APPLY_TIMEOUT, self.sink.reload(loaded.sink)).await;
        let problem = match applied {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some(format!(
                "the sink did not apply the new configuration within {} s",
                APPLY_TIMEOUT.as_secs()
            )),
        };
        if let Some(problem) = problem {
            metrics::counter!(RELOADS, "result" => "failed").increment(1);
            tracing::error!(trigger = trigger.as_str(), %hash, %problem, "config reload failed; the running configuration stays");
            return Report {
                result: "failed",
                hash,
                problems: vec![problem],
                needs_restart,
            };
        }
        *lock(&self.running) = Running {
            runtime: loaded.runtime,
            hash: hash.clone(),
            loaded_at: chrono::Utc::now(),
        };
        metrics::counter!(RELOADS, "result" => "ok").increment(1);
        if needs_restart.is_empty() {
            tracing::info!(trigger = trigger.as_str(), %hash, "config reloaded");
        } else {
            tracing::warn!(trigger = trigger.as_str(), %hash, needs_restart = ?needs_restart, "config reloaded; these keys changed but take effect only after a restart");
        }
        Report {
            result: "ok",
            hash,
            problems: Vec::new(),
            needs_restart,
        }
    }

    fn invalid(&self, trigger: Trigger, hash: String, problems: Vec<String>) -> Report {
        metrics::counter!(RELOADS, "result" => "invalid").increment(1);
        for problem in &problems {
            // A problem names its key path, never the value found.
            tracing::error!(trigger = trigger.as_str(), %hash, %problem, "config reload refused: the new config is invalid; the running configuration stays");
        }
        Report {
            result: "invalid",
            hash,
            problems,
            needs_restart: Vec::new(),
        }
    }
}

/// The runtime keys whose value differs between `old` and `new`, as dotted
/// paths (`port`, `store.path`), but `reload.*`, which applies live.
fn changed_keys(old: &RuntimeConfig, new: &RuntimeConfig) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    diff("", &old, &new, &mut changed);
    changed.retain(|key| key != "reload" && !key.starts_with("reload."));
    changed
}

fn diff(path: &str, old: &Value, new: &Value, changed: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    &at,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    changed,
                );
            }
        }
        (a, b) if a != b => changed.push(path.to_owned()),
        _ => {}
    }
}

/// The file's text, read off the async threads.
async fn read(path: &std::path::Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .unwrap_or_else(|err| Err(std::io::Error::other(err)))
}

/// The first 12 hex digits of the content's SHA-256.
fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SIGHUP, listened for from now on: before the servers listen, so a
/// SIGHUP never finds its default action (exit) in place.
#[cfg(unix)]
pub(crate) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(crate) type Hangup = Option<()>;

/// Starts listening for SIGHUP.
pub(crate) fn hangup() -> Hangup {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGHUP; reload by POST /-/reload or a file change");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Serves the reload triggers that are not HTTP: SIGHUP and the file's
/// content, until the task is aborted.
pub(crate) async fn watch<S: Sink>(reloader: Arc<Reloader<S>>, mut hangup: Hangup) {
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(stream) => stream.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = {
            let _ = &mut hangup;
            std::future::pending::<Option<()>>()
        };
        tokio::select! {
            _ = hup => {
                tracing::info!("SIGHUP received, reloading the config");
                reloader.reload(Trigger::Signal).await;
            }
            _ = poll.tick() => reloader.poll().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_runtime_keys_but_reload() {
        let old = RuntimeConfig::default();
        let mut new = old.clone();
        new.port = 9;
        new.store.path = "/elsewhere".into();
        new.reload.token = Some("t".into());
        assert_eq!(changed_keys(&old, &new), ["port", "store.path"]);
        assert!(changed_keys(&old, &old).is_empty());
    }
}
