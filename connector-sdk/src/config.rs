//! Layered configuration: defaults < YAML file < environment.
//!
//! The file is `$CONNECTOR_CONFIG`, default `/vanus-connect/config/config.yml`
//! (JSON parses too: it is YAML). Environment variables prefixed with
//! `CONNECTOR_` override keys, `__` separating levels: `CONNECTOR_PORT=9090`,
//! `CONNECTOR_TARGET__URL=http://example.com`. Every problem is reported with its key path.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod unknown_keys;

pub use unknown_keys::UnknownKey;

use crate::store::StoreConfig;

/// Where the config file is looked for when `CONNECTOR_CONFIG` is unset.
pub const DEFAULT_CONFIG_PATH: &str = "/vanus-connect/config/config.yml";

/// The environment variable naming the config file.
pub const CONFIG_PATH_ENV: &str = "CONNECTOR_CONFIG";

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

/// The runtime's own keys, beside the sink's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// HTTP port (`port`, or `CONNECTOR_PORT`). Default 8080.
    pub port: u16,
    /// gRPC port (`grpc_port`); gRPC is off when unset or 0.
    pub grpc_port: Option<u16>,
    /// Address to listen on. Default 0.0.0.0 (every interface).
    pub bind: IpAddr,
    /// Largest accepted HTTP request body, in bytes. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Requests handled at once, HTTP and gRPC together; more are answered
    /// 503 at once. Default 1024.
    pub max_in_flight: usize,
    /// How long shutdown waits for in-flight requests, in seconds. Default 10.
    pub shutdown_timeout_secs: u64,
    /// How long `/readyz` answers 503 before the servers stop accepting, in
    /// milliseconds, so a load balancer stops routing here first. Default 0.
    pub drain_delay_ms: u64,
    /// Where the connector keeps its state (`store.path`, ...).
    pub store: StoreConfig,
    /// How long the delivered-ledger remembers an accepted event, so that a
    /// redelivery of it is answered without reaching the sink. Default
    /// 86400 (a day: a Vanus trigger gives up after about 23 hours).
    pub ledger_ttl_secs: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            grpc_port: None,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_body_bytes: 4 * 1024 * 1024,
            max_in_flight: 1024,
            shutdown_timeout_secs: 10,
            drain_delay_ms: 0,
            store: StoreConfig::default(),
            ledger_ttl_secs: 86_400,
        }
    }
}

impl RuntimeConfig {
    /// The HTTP listen address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The gRPC listen address, when gRPC is on.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_port
            .filter(|port| *port != 0)
            .map(|port| SocketAddr::new(self.bind, port))
    }

    /// Problems with the runtime's own keys, each with its path.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.ledger_ttl_secs == 0 {
            problems.push(ConfigProblem::new(
                "ledger_ttl_secs",
                "must be above 0 (a day, 86400, covers a Vanus trigger's retries)",
            ));
        }
        if self.store.max_records < 1_000 {
            problems.push(ConfigProblem::new(
                "store.max_records",
                "must be at least 1000: the delivered-ledger keeps a record per accepted event",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            problems.push(ConfigProblem::new(
                "store.path",
                "must name a directory the connector can write",
            ));
        }
        problems
    }

    /// How long the ledger remembers an accepted event.
    pub fn ledger_ttl(&self) -> Duration {
        Duration::from_secs(self.ledger_ttl_secs)
    }

    /// The bound on draining in-flight requests at shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Loaded<C> {
    /// The runtime's keys.
    pub runtime: RuntimeConfig,
    /// The sink's keys.
    pub sink: C,
    /// Keys that neither the runtime nor the sink reads (each was logged as
    /// a warning when loaded).
    pub unknown_keys: Vec<UnknownKey>,
}

/// The config file path: `$CONNECTOR_CONFIG`, else the Vanus default.
pub fn config_path() -> PathBuf {
    std::env::var_os(CONFIG_PATH_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Loads and validates the configuration from `path`, then the environment.
pub fn load<C: SinkConfig>(path: &Path) -> Result<Loaded<C>, ConfigError> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        source_name: source_name.clone(),
        problems: vec![ConfigProblem::new(
            "",
            format!(
                "cannot read the config file ({err}); point {CONFIG_PATH_ENV} at your config.yml"
            ),
        )],
        unknown_keys: Vec::new(),
    })?;
    load_from_str(&text, &source_name)
}

/// Loads and validates the configuration from YAML text, then the environment.
/// Keys that neither the runtime nor `C` reads are logged as warnings, each
/// with its path and the closest known key, and do not stop the load.
pub fn load_from_str<C: SinkConfig>(
    yaml: &str,
    source_name: &str,
) -> Result<Loaded<C>, ConfigError> {
    let figment = Figment::from(Serialized::defaults(RuntimeConfig::default()))
        .merge(Yaml::string(yaml))
        .merge(Env::prefixed("CONNECTOR_").ignore(&["config"]).split("__"));

    let mut problems = Vec::new();
    let runtime = figment
        .extract::<RuntimeConfig>()
        .map_err(|err| problems.extend(figment_problems(err)))
        .ok();
    if let Some(runtime) = &runtime {
        problems.extend(runtime.validate());
    }
    let sink = figment
        .extract::<C>()
        .map_err(|err| problems.extend(figment_problems(err)))
        .ok();
    if let Some(sink) = &sink {
        problems.extend(sink.validate());
    }
    let unknown_keys = figment
        .extract::<figment::value::Value>()
        .map(|merged| unknown_keys::find::<RuntimeConfig, C>(&merged))
        .unwrap_or_default();
    match (runtime, sink) {
        (Some(runtime), Some(sink)) if problems.is_empty() => {
            for key in &unknown_keys {
                tracing::warn!(
                    key = %key.path,
                    did_you_mean = key.suggestion.as_deref(),
                    "unknown config key, ignored"
                );
            }
            Ok(Loaded {
                runtime,
                sink,
                unknown_keys,
            })
        }
        _ => Err(ConfigError {
            source_name: source_name.to_owned(),
            problems,
            unknown_keys,
        }),
    }
}

fn figment_problems(err: figment::Error) -> Vec<ConfigProblem> {
    err.into_iter()
        .map(|e| ConfigProblem::new(e.path.join("."), e.kind.to_string()))
        .collect()
}

/// figment's YAML format over `serde_norway`, a maintained YAML crate
/// (figment's own `yaml` feature pulls the archived `serde_yaml`).
struct Yaml;

impl Format for Yaml {
    type Error = serde_norway::Error;
    const NAME: &'static str = "YAML";

    fn from_str<T: DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        serde_norway::from_str(string)
    }
}

#[cfg(test)]
// figment::Jail's closures must return figment::Error, which is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Demo {
        greeting: String,
        #[serde(default)]
        times: u32,
    }

    impl SinkConfig for Demo {
        fn validate(&self) -> Vec<ConfigProblem> {
            if self.greeting.is_empty() {
                vec![ConfigProblem::new("greeting", "must not be empty")]
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn runtime_defaults_and_sink_keys_come_from_one_file() {
        figment::Jail::expect_with(|_| {
            let loaded: Loaded<Demo> =
                load_from_str("greeting: hi\ntimes: 3\nunknown: 1\n", "test")
                    .map_err(|e| e.to_string())?;
            assert_eq!(loaded.sink.greeting, "hi");
            assert_eq!(loaded.sink.times, 3);
            assert_eq!(loaded.runtime, RuntimeConfig::default());
            assert_eq!(loaded.runtime.grpc_addr(), None);
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CONNECTOR_PORT", "9090");
            jail.set_env("CONNECTOR_GREETING", "from env");
            jail.set_env("CONNECTOR_CONFIG", "/somewhere/config.yml");
            let loaded: Loaded<Demo> =
                load_from_str("greeting: hi\nport: 1234\ngrpc_port: 0\n", "test")
                    .map_err(|e| e.to_string())?;
            assert_eq!(loaded.runtime.port, 9090);
            assert_eq!(loaded.runtime.grpc_addr(), None, "grpc_port 0 means off");
            assert_eq!(loaded.sink.greeting, "from env");
            Ok(())
        });
    }

    #[test]
    fn problems_carry_their_key_path() {
        figment::Jail::expect_with(|_| {
            let err = load_from_str::<Demo>("greeting: ''\nport: not-a-port\n", "cfg.yml")
                .err()
                .ok_or("expected an error")?;
            assert_eq!(err.problems.len(), 2, "{err}");
            assert_eq!(err.problems[0].path, "port");
            assert_eq!(
                err.problems[1],
                ConfigProblem::new("greeting", "must not be empty")
            );
            let text = err.to_string();
            assert!(text.contains("cfg.yml") && text.contains("port:"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn no_config_accepts_any_file() {
        figment::Jail::expect_with(|_| {
            let loaded: Loaded<NoConfig> = load_from_str("port: 9000\nanything: [1, 2]\n", "test")
                .map_err(|e| e.to_string())?;
            assert_eq!(loaded.runtime.port, 9000);
            load_from_str::<NoConfig>("", "empty").map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn a_missing_key_is_named() {
        figment::Jail::expect_with(|_| {
            let err = load_from_str::<Demo>("times: 2\n", "cfg.yml")
                .err()
                .ok_or("expected an error")?;
            assert!(
                err.to_string().contains("missing field `greeting`"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_reported_without_stopping_the_load() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CONNECTOR_GRPC_PORTT", "1");
            let loaded: Loaded<Demo> = load_from_str("greeting: hi\ngreting: typo\nport: 1\n", "t")
                .map_err(|e| e.to_string())?;
            let found: Vec<String> = loaded
                .unknown_keys
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(
                found,
                [
                    "greting: unknown key, ignored; did you mean `greeting`?",
                    "grpc_portt: unknown key, ignored; did you mean `grpc_port`?",
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn an_error_notes_the_unknown_keys_that_may_explain_it() {
        figment::Jail::expect_with(|_| {
            let err = load_from_str::<Demo>("greetings: hi\n", "cfg.yml")
                .err()
                .ok_or("expected an error")?;
            let text = err.to_string();
            assert!(
                text.contains("missing field `greeting`")
                    && text.contains(
                        "note: greetings: unknown key, ignored; did you mean `greeting`?"
                    ),
                "{text}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_says_which_variable_to_set() {
        let err = load::<Demo>(Path::new("/no/such/config.yml")).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("/no/such/config.yml") && text.contains(CONFIG_PATH_ENV),
            "{text}"
        );
    }
}
