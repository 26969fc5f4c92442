//! Reading the configuration: the file (YAML, or JSON, which is YAML), then
//! the environment's `CONNECTOR_*` overrides over it; the runtime's keys and
//! the sink's taken from the same text, each validated, every problem
//! reported with its key path and without the value found (a secret written
//! where a number belongs must not reach the log).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized};
use serde::de::DeserializeOwned;

use super::{
    ConfigError, ConfigProblem, RuntimeConfig, SinkConfig, UnknownKey, indirect, unknown_keys,
};

/// Where the config file is looked for when `CONNECTOR_CONFIG` is unset.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/vanus-connect/config/config.yml";

/// The environment variable naming the config file.
pub(crate) const CONFIG_PATH_ENV: &str = "CONNECTOR_CONFIG";

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
    load_with_text(path).map(|(loaded, _)| loaded)
}

/// [`load`], and the file's text as read (what a live reload compares).
pub(crate) fn load_with_text<C: SinkConfig>(
    path: &Path,
) -> Result<(Loaded<C>, String), ConfigError> {
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
    load_from_str(&text, &source_name).map(|loaded| (loaded, text))
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
    let figment = match with_values_read::<C>(figment) {
        Ok(figment) => figment,
        Err(problems) => {
            return Err(ConfigError {
                source_name: source_name.to_owned(),
                problems,
                unknown_keys: Vec::new(),
            });
        }
    };

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

/// `figment` with every `KEY_file` and `KEY_env` replaced by `KEY` and the
/// value read from the file or the environment (see `indirect`); the same
/// figment when there are none.
fn with_values_read<C: SinkConfig>(figment: Figment) -> Result<Figment, Vec<ConfigProblem>> {
    let Ok(mut merged) = figment.extract::<figment::value::Value>() else {
        // Not even a map: the extractions below say what is wrong.
        return Ok(figment);
    };
    if indirect::resolve::<RuntimeConfig, C>(&mut merged)? {
        Ok(Figment::from(Serialized::defaults(merged)))
    } else {
        Ok(figment)
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
pub(super) struct Yaml;

impl Format for Yaml {
    type Error = serde_norway::Error;
    const NAME: &'static str = "YAML";

    fn from_str<T: DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        serde_norway::from_str(string)
    }
}
