//! Layered configuration: defaults < YAML file < environment.
//!
//! The file is `$CONNECTOR_CONFIG`, default `/vanus-connect/config/config.yml`
//! (JSON parses too: it is YAML). Environment variables prefixed with
//! `CONNECTOR_` override keys, `__` separating levels: `CONNECTOR_PORT=9090`,
//! `CONNECTOR_TARGET__URL=http://example.com`. Every problem is reported with its key path.
//!
//! Here: what a sink declares ([`SinkConfig`]) and what is wrong
//! ([`ConfigProblem`], [`ConfigError`]); the runtime's own keys in
//! `runtime.rs` ([`RuntimeConfig`], [`Limits`]); reading the file and the
//! environment in `load.rs` ([`load`]); keys nothing reads in
//! `unknown_keys.rs`.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

mod indirect;
mod load;
mod runtime;
#[cfg(test)]
mod tests;
mod unknown_keys;

pub(crate) use load::load_with_text;
pub use load::{Loaded, config_path, load, load_from_str};
pub(crate) use runtime::MIN_HEADER_BYTES;
pub use runtime::{Limits, ReloadConfig, RuntimeConfig};
pub use unknown_keys::UnknownKey;

/// A sink's own configuration type.
///
/// It is deserialized from the whole config file, so it names its own
/// top-level keys and ignores the runtime's. `validate` reports problems
/// that deserialization cannot see (duplicates, references to nothing).
pub trait SinkConfig: DeserializeOwned + Send + 'static {
    /// Every problem with the values, each with its key path. Empty when valid.
    fn validate(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// The configuration of a sink that has none of its own: it accepts any
/// config file (the runtime's keys are read separately).
///
/// `()` cannot be used instead: it deserializes only from nothing, and a
/// config file is a map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct NoConfig {}

impl SinkConfig for NoConfig {}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `targets.0.url`; empty for the whole file.
    pub path: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The configuration could not be loaded; holds every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration in {source_name}:{}", render(.problems, .unknown_keys))]
pub struct ConfigError {
    /// The file (or other source) that was read.
    pub source_name: String,
    /// Every problem, in the order found.
    pub problems: Vec<ConfigProblem>,
    /// Keys nothing reads: not problems in themselves, but often the cause
    /// of one (`webhook:` for `webhooks:` leaves `webhooks` missing).
    pub unknown_keys: Vec<UnknownKey>,
}

fn render(problems: &[ConfigProblem], unknown_keys: &[UnknownKey]) -> String {
    let problems = problems.iter().map(|p| format!("\n  - {p}"));
    let notes = unknown_keys.iter().map(|k| format!("\n  - note: {k}"));
    problems.chain(notes).collect()
}
