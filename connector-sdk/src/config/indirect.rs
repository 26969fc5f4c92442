//! Values read from a file or the environment instead of the config file:
//! any key `KEY` of a section may be given as `KEY_file: PATH` (the file's
//! contents, less a trailing newline) or `KEY_env: VAR` (the variable's
//! value). It is meant for secrets (a webhook URL with its token, a signing
//! secret, a Redis URL with its password), so that they can live in a
//! Kubernetes Secret mounted as files while the config file stays in a
//! ConfigMap; it works for any key the runtime or the sink reads, so a sink
//! gets it without a line of its own.
//!
//! It runs over the merged value tree (the file and the `CONNECTOR_*`
//! overrides) before anything is deserialized, so `CONNECTOR_STORE__REDIS__URL_FILE`
//! works too. The known keys come from the types themselves (see
//! `unknown_keys`): a `KEY_file` is read only where `KEY` is a field and
//! `KEY_file` is not. Problems name the key, the file or variable, and what
//! to do; the value read is never quoted.

use std::collections::BTreeMap;
use std::io::Read as _;

use figment::value::{Tag, Value};
use serde::Deserialize;

use super::ConfigProblem;
use super::unknown_keys::{ANY_ITEM, fields_by_pattern};

/// The most a value file may hold: a secret is tens of bytes; a larger file
/// is the wrong one.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    File,
    Env,
}

impl Source {
    /// `KEY_file` or `KEY_env`: the stem and the source.
    fn of(key: &str) -> Option<(&str, Source)> {
        if let Some(stem) = key.strip_suffix("_file") {
            return Some((stem, Source::File));
        }
        key.strip_suffix("_env").map(|stem| (stem, Source::Env))
    }
}

/// Replaces every `KEY_file` and `KEY_env` in `value` by `KEY` and the
/// value read. True when it replaced any. `R` and `C` are the runtime's and
/// the sink's types, whose fields say which keys are there.
pub(super) fn resolve<R, C>(value: &mut Value) -> Result<bool, Vec<ConfigProblem>>
where
    R: for<'de> Deserialize<'de>,
    C: for<'de> Deserialize<'de>,
{
    let mut resolved_any = false;
    // A section past one that does not deserialize yet (a `url` still to be
    // read, say) shows its fields on the next walk: walk again while keys
    // are resolved, at most once per key that could be.
    let passes = candidates(value) + 1;
    for _ in 0..passes {
        let fields = fields_by_pattern::<R, C>(value);
        let mut walk = Walk {
            fields: &fields,
            path: Vec::new(),
            pattern: Vec::new(),
            problems: Vec::new(),
            resolved: false,
        };
        walk.value(value);
        if !walk.problems.is_empty() {
            return Err(walk.problems);
        }
        resolved_any |= walk.resolved;
        if !walk.resolved {
            break;
        }
    }
    Ok(resolved_any)
}

/// How many keys look like `KEY_file` or `KEY_env`.
fn candidates(value: &Value) -> usize {
    match value {
        Value::Dict(_, dict) => dict
            .iter()
            .map(|(key, value)| usize::from(Source::of(key).is_some()) + candidates(value))
            .sum(),
        Value::Array(_, items) => items.iter().map(candidates).sum(),
        _ => 0,
    }
}

struct Walk<'a> {
    fields: &'a BTreeMap<Vec<String>, Vec<&'static str>>,
    path: Vec<String>,
    pattern: Vec<String>,
    problems: Vec<ConfigProblem>,
    resolved: bool,
}

impl Walk<'_> {
    fn value(&mut self, value: &mut Value) {
        match value {
            Value::Dict(_, dict) => {
                let known = self.fields.get(&self.pattern);
                let keys: Vec<String> = dict
                    .keys()
                    .filter(|key| {
                        known.is_some_and(|known| {
                            Source::of(key).is_some_and(|(stem, _)| known.contains(&stem))
                                && !known.contains(&key.as_str())
                        })
                    })
                    .cloned()
                    .collect();
                for key in keys {
                    let Some(given) = dict.remove(&key) else {
                        continue;
                    };
                    let Some((stem, source)) = Source::of(&key) else {
                        continue;
                    };
                    let at = self.at(&key);
                    if dict
                        .get(stem)
                        .is_some_and(|v| !matches!(v, Value::Empty(..)))
                    {
                        self.problems.push(ConfigProblem::new(
                            at,
                            format!("`{stem}` is given as well; give either `{stem}` or `{key}`"),
                        ));
                        continue;
                    }
                    match read(&given, source) {
                        Ok(read) => {
                            dict.insert(stem.to_owned(), Value::String(Tag::Default, read));
                            self.resolved = true;
                        }
                        Err(message) => self.problems.push(ConfigProblem::new(at, message)),
                    }
                }
                for (key, child) in dict.iter_mut() {
                    self.path.push(key.clone());
                    self.pattern.push(key.clone());
                    self.value(child);
                    self.path.pop();
                    self.pattern.pop();
                }
            }
            Value::Array(_, items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.path.push(index.to_string());
                    self.pattern.push(ANY_ITEM.to_owned());
                    self.value(item);
                    self.path.pop();
                    self.pattern.pop();
                }
            }
            _ => {}
        }
    }

    fn at(&self, key: &str) -> String {
        self.path
            .iter()
            .map(String::as_str)
            .chain([key])
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The value `given` (a path or a variable's name) points at.
fn read(given: &Value, source: Source) -> Result<String, String> {
    let Value::String(_, name) = given else {
        return Err(match source {
            Source::File => "must be the path of a file (a string)".to_owned(),
            Source::Env => "must be the name of an environment variable (a string)".to_owned(),
        });
    };
    match source {
        Source::File => read_file(name),
        Source::Env => match std::env::var(name) {
            Ok(value) if value.is_empty() => Err(format!(
                "the environment variable `{name}` is empty; set it to the value"
            )),
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "the environment variable `{name}` is not set; set it, or give the value in the file"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "the environment variable `{name}` is not valid UTF-8"
            )),
        },
    }
}

fn read_file(path: &str) -> Result<String, String> {
    let cannot = |err: std::io::Error| {
        format!(
            "cannot read `{path}` ({err}); mount the secret there (a Kubernetes Secret volume, say) or correct the path"
        )
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::InvalidData {
                format!("`{path}` is not UTF-8 text; it must hold the value itself")
            } else {
                cannot(err)
            }
        })?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "`{path}` is over {} KiB, far more than any secret; check the path",
            MAX_FILE_BYTES / 1024
        ));
    }
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("`{path}` is empty; it must hold the value"));
    }
    Ok(value.to_owned())
}
