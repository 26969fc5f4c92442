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
    /// Largest accepted request body (HTTP) or message (gRPC), in bytes.
    /// Default 4 MiB.
    pub max_body_bytes: usize,
    /// Requests handled at once, HTTP and gRPC together; more are answered
    /// 503 at once. Default 512.
    pub max_in_flight: usize,
    /// The memory budget, in bytes, HTTP and gRPC together: request bodies
    /// and what they decode into. A request is admitted only when its
    /// declared length still fits (else 503 before its body is read), and
    /// decoded only when its decoded form fits too. At least twice
    /// `max_body_bytes`. Default 16 MiB.
    pub max_buffered_bytes: usize,
    /// Open connections, HTTP and gRPC together. When all are taken, a new
    /// one evicts the connection longest without a request open, or is
    /// closed at once if every one has a request in flight. Default 1024.
    pub max_connections: usize,
    /// Largest HTTP/1 request head (request line and headers) and gRPC
    /// header list, in bytes; larger gets 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Time for a request's headers to arrive, in milliseconds, from the
    /// connection's opening (or the first byte of a later request on it).
    /// Default 5000.
    pub header_read_timeout_ms: u64,
    /// Time for a request's body to arrive once its headers are in, in
    /// milliseconds; a slower one gets 408. Default 10000.
    pub body_read_timeout_ms: u64,
    /// How long a connection may stay open with no request on it, in
    /// milliseconds (keep-alive), and how long an answer may wait for a
    /// client that does not read it. Default 30000.
    pub idle_timeout_ms: u64,
    /// Concurrent gRPC calls (HTTP/2 streams) on one connection. Default 128.
    pub grpc_max_concurrent_streams: u32,
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
            max_in_flight: 512,
            max_buffered_bytes: 16 * 1024 * 1024,
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            grpc_max_concurrent_streams: 128,
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

    /// Problems with the runtime's own keys, each with its path: the
    /// ledger and the store first, then values no server can run with.
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

        // Values no server can run with.
        let mut at_least = |key: &str, value: u64, min: u64, why: &str| {
            if value < min {
                problems.push(ConfigProblem::new(
                    key,
                    format!("must be at least {min}{why}"),
                ));
            }
        };
        at_least("max_body_bytes", self.max_body_bytes as u64, 1, "");
        at_least("max_in_flight", self.max_in_flight as u64, 1, "");
        at_least("max_connections", self.max_connections as u64, 1, "");
        at_least(
            "max_header_bytes",
            self.max_header_bytes as u64,
            MIN_HEADER_BYTES as u64,
            " (the smallest request buffer the HTTP server supports)",
        );
        at_least("header_read_timeout_ms", self.header_read_timeout_ms, 1, "");
        at_least("body_read_timeout_ms", self.body_read_timeout_ms, 1, "");
        at_least("idle_timeout_ms", self.idle_timeout_ms, 1, "");
        at_least(
            "grpc_max_concurrent_streams",
            u64::from(self.grpc_max_concurrent_streams),
            1,
            "",
        );
        if self.max_buffered_bytes / 2 < self.max_body_bytes {
            problems.push(ConfigProblem::new(
                "max_buffered_bytes",
                format!(
                    "must be at least twice max_body_bytes ({}): a body counts once as bytes and once decoded, or no request of the largest size could ever be admitted",
                    self.max_body_bytes
                ),
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

    /// What a client may hold, and for how long.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
            max_buffered_bytes: self.max_buffered_bytes,
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            grpc_max_concurrent_streams: self.grpc_max_concurrent_streams,
        }
    }
}

/// The smallest `max_header_bytes`: hyper's smallest read buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

/// What one client may hold of the server, and for how long: the limits
/// that keep a hostile or broken client from taking it down or filling its
/// memory. [`RuntimeConfig::limits`] reads them from the config keys of
/// the same names; the defaults are the keys' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (HTTP) or message (gRPC); larger gets 413 /
    /// `InvalidArgument`.
    pub max_body_bytes: usize,
    /// Requests handled at once; more get 503 / `Unavailable`.
    pub max_in_flight: usize,
    /// The memory budget: bytes of request bodies and what they decode
    /// into; a request that does not fit gets 503 / `Unavailable` before
    /// its body is read (or decoded).
    pub max_buffered_bytes: usize,
    /// Open connections; when all are taken, a new one evicts the one
    /// longest without a request open, or is closed at once.
    pub max_connections: usize,
    /// Largest request head (HTTP/1) or header list (gRPC).
    pub max_header_bytes: usize,
    /// Time for a request's headers to arrive.
    pub header_read_timeout: Duration,
    /// Time for a request's body to arrive; slower gets 408.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request, or an answer may
    /// wait for a client that does not read it.
    pub idle_timeout: Duration,
    /// Concurrent gRPC calls on one connection.
    pub grpc_max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        RuntimeConfig::default().limits()
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
        .map(|e| ConfigProblem::new(e.path.join("."), describe(&e.kind)))
        .collect()
}

/// figment's own wording, less the value found: a secret written where a
/// number belongs must not reach the log. The key's path says where to look.
fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(found, expected) => {
            format!(
                "invalid type: found {}, expected {expected}",
                type_of(found)
            )
        }
        Kind::InvalidValue(found, expected) => {
            format!(
                "invalid value: found {}, expected {expected}",
                type_of(found)
            )
        }
        Kind::Unsupported(found) => format!("unsupported type {}", type_of(found)),
        Kind::UnsupportedKey(found, expected) => {
            format!(
                "unsupported key type {}, expected {expected}",
                type_of(found)
            )
        }
        other => other.to_string(),
    }
}

fn type_of(found: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match found {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a map",
        _ => "another type",
    }
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
    fn a_value_of_the_wrong_type_is_not_repeated() {
        figment::Jail::expect_with(|_| {
            let err = load_from_str::<Demo>("greeting: hi\ntimes: SEC-not-a-number\n", "cfg.yml")
                .err()
                .ok_or("expected an error")?;
            let text = err.to_string();
            assert!(text.contains("times:"), "{text}");
            assert!(text.contains("found a string, expected u32"), "{text}");
            assert!(!text.contains("SEC-not-a-number"), "{text}");
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
    fn limits_no_server_can_run_with_are_reported() {
        figment::Jail::expect_with(|_| {
            let err = load_from_str::<NoConfig>(
                "max_connections: 0\nmax_header_bytes: 100\nmax_body_bytes: 2048\nmax_buffered_bytes: 4000\n",
                "cfg.yml",
            )
            .err()
            .ok_or("expected an error")?;
            let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(
                paths,
                ["max_connections", "max_header_bytes", "max_buffered_bytes"],
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn limits_come_from_their_keys() {
        figment::Jail::expect_with(|_| {
            let loaded: Loaded<NoConfig> = load_from_str(
                "header_read_timeout_ms: 250\nidle_timeout_ms: 1500\ngrpc_max_concurrent_streams: 4\n",
                "test",
            )
            .map_err(|e| e.to_string())?;
            let limits = loaded.runtime.limits();
            assert_eq!(limits.header_read_timeout, Duration::from_millis(250));
            assert_eq!(limits.idle_timeout, Duration::from_millis(1500));
            assert_eq!(limits.grpc_max_concurrent_streams, 4);
            assert_eq!(limits.max_body_bytes, Limits::default().max_body_bytes);
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
