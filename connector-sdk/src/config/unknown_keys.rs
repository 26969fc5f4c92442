//! Keys in the configuration that nothing reads: a typo such as `signiture`
//! would otherwise be silently ignored, so each one is reported with its
//! path and, when there is one, the closest key that is known there.
//!
//! The known keys come from the types themselves: the merged config value is
//! deserialized once more into [`RuntimeConfig`](super::RuntimeConfig) and
//! once into the sink's type through a deserializer that notes, at every
//! path, the fields a struct asks for and the keys it skips. A key is
//! unknown when both skip it (the runtime skips the sink's sections whole,
//! and the sink skips the runtime's keys).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use figment::value::{Dict, Value};
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// Similarity (Jaro-Winkler, 0 to 1) above which a known key is suggested.
const SIMILAR: f64 = 0.8;

/// A key in the configuration that nothing reads; it is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Dotted key path, e.g. `bot.webhooks.0.signiture`.
    pub path: String,
    /// The closest known key: a sibling (`signature`), or a key of that name
    /// elsewhere, as a full path (`delivery.deadline_ms`).
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: unknown key, ignored", self.path)?;
        match &self.suggestion {
            Some(known) => write!(f, "; did you mean `{known}`?"),
            None => Ok(()),
        }
    }
}

/// The keys of `value` that neither `R` (the runtime's type) nor `C` (the
/// sink's) reads, in path order.
pub(super) fn find<R, C>(value: &Value) -> Vec<UnknownKey>
where
    R: for<'de> Deserialize<'de>,
    C: for<'de> Deserialize<'de>,
{
    let runtime = Notes::of::<R>(value);
    let sink = Notes::of::<C>(value);
    let mut unknown: BTreeMap<String, UnknownKey> = BTreeMap::new();
    for path in runtime.skipped.iter().chain(&sink.skipped) {
        if runtime.skips(path) && sink.skips(path) {
            let dotted = path.join(".");
            unknown.entry(dotted.clone()).or_insert_with(|| UnknownKey {
                path: dotted,
                suggestion: suggest(path, &[&runtime, &sink]),
            });
        }
    }
    unknown.into_values().collect()
}

/// What one type's deserialization saw: the fields each struct asked for,
/// by path, and the paths of the keys it skipped.
#[derive(Debug, Default)]
struct Notes {
    fields: BTreeMap<Vec<String>, &'static [&'static str]>,
    /// The same fields by pattern: a list's items under `*`, so what the
    /// first item of a list showed holds for every item.
    patterns: BTreeMap<Vec<String>, &'static [&'static str]>,
    skipped: Vec<Vec<String>>,
}

impl Notes {
    fn of<T: for<'de> Deserialize<'de>>(value: &Value) -> Notes {
        let notes = RefCell::new(Notes::default());
        // Errors are the loader's to report; the notes taken up to an error
        // still hold (serde reports a missing field after reading every key).
        let _ = T::deserialize(Walker {
            value,
            path: Vec::new(),
            pattern: Vec::new(),
            notes: &notes,
        });
        notes.into_inner()
    }

    /// True when `path`, or a section holding it, was skipped.
    fn skips(&self, path: &[String]) -> bool {
        self.skipped.iter().any(|skipped| path.starts_with(skipped))
    }
}

/// The known key closest to the unknown one at `path`: a similar sibling,
/// else a key of the same name elsewhere.
fn suggest(path: &[String], notes: &[&Notes]) -> Option<String> {
    let (name, parent) = path.split_last()?;
    let siblings = notes
        .iter()
        .filter_map(|n| n.fields.get(parent))
        .flat_map(|fields| fields.iter());
    let best = siblings
        .map(|known| (strsim::jaro_winkler(name, known), *known))
        .filter(|(score, _)| *score >= SIMILAR)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, known)) = best {
        return Some(known.to_owned());
    }
    notes
        .iter()
        .flat_map(|n| n.fields.iter())
        .find_map(|(at, fields)| {
            let known = fields.iter().find(|f| f.eq_ignore_ascii_case(name))?;
            Some(
                at.iter()
                    .map(String::as_str)
                    .chain([*known])
                    .collect::<Vec<_>>()
                    .join("."),
            )
        })
}

/// A deserializer over figment's merged value that keeps notes. Leaves are
/// read by figment's own deserializer, so they mean what they mean to the
/// loader.
struct Walker<'a> {
    value: &'a Value,
    path: Vec<String>,
    /// `path` with list indices as `*`.
    pattern: Vec<String>,
    notes: &'a RefCell<Notes>,
}

impl<'a> Walker<'a> {
    fn child(&self, key: String, value: &'a Value) -> Walker<'a> {
        let mut pattern = self.pattern.clone();
        pattern.push(key.clone());
        self.descend(key, pattern, value)
    }

    fn item(&self, index: usize, value: &'a Value) -> Walker<'a> {
        let mut pattern = self.pattern.clone();
        pattern.push(ANY_ITEM.to_owned());
        self.descend(index.to_string(), pattern, value)
    }

    fn descend(&self, key: String, pattern: Vec<String>, value: &'a Value) -> Walker<'a> {
        let mut path = self.path.clone();
        path.push(key);
        Walker {
            value,
            path,
            pattern,
            notes: self.notes,
        }
    }
}

/// A list's items in a [`fields_by_pattern`] path.
pub(super) const ANY_ITEM: &str = "*";

/// The fields that `R` (the runtime's type) and `C` (the sink's) read in
/// each section of `value`, by path pattern (a list's items under
/// [`ANY_ITEM`]). Sections past one that fails to deserialize may be
/// missing: the caller walks again once it has changed the value.
pub(super) fn fields_by_pattern<R, C>(value: &Value) -> BTreeMap<Vec<String>, Vec<&'static str>>
where
    R: for<'de> Deserialize<'de>,
    C: for<'de> Deserialize<'de>,
{
    let mut fields: BTreeMap<Vec<String>, Vec<&'static str>> = BTreeMap::new();
    for notes in [Notes::of::<R>(value), Notes::of::<C>(value)] {
        for (pattern, known) in notes.patterns {
            fields
                .entry(pattern)
                .or_default()
                .extend(known.iter().copied());
        }
    }
    fields
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = figment::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Dict(_, dict) => visitor.visit_map(MapWalker::new(self, dict)),
            Value::Array(_, items) => visitor.visit_seq(SeqWalker {
                items: items.iter().enumerate(),
                parent: self,
            }),
            leaf => leaf.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        {
            let mut notes = self.notes.borrow_mut();
            notes.fields.insert(self.path.clone(), fields);
            notes.patterns.insert(self.pattern.clone(), fields);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.notes.borrow_mut().skipped.push(self.path);
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Empty(..) => self.value.deserialize_option(visitor),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Enums are read by figment alone: keys inside one are not checked.
        self.value.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct MapWalker<'a> {
    entries: std::collections::btree_map::Iter<'a, String, Value>,
    value: Option<(&'a String, &'a Value)>,
    parent: Walker<'a>,
}

impl<'a> MapWalker<'a> {
    fn new(parent: Walker<'a>, dict: &'a Dict) -> Self {
        Self {
            entries: dict.iter(),
            value: None,
            parent,
        }
    }
}

impl<'de> MapAccess<'de> for MapWalker<'_> {
    type Error = figment::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self.value.take().ok_or_else(|| {
            <figment::Error as de::Error>::custom("a map value was asked for before its key")
        })?;
        seed.deserialize(self.parent.child(key.clone(), value))
    }
}

struct SeqWalker<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    parent: Walker<'a>,
}

impl<'de> SeqAccess<'de> for SeqWalker<'_> {
    type Error = figment::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        match self.items.next() {
            Some((index, item)) => seed.deserialize(self.parent.item(index, item)).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Serialized};
    use serde::Serialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Runtime {
        port: u16,
        grpc_port: Option<u16>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sink {
        bot: Bot,
        #[serde(default)]
        delivery: Delivery,
        #[serde(default)]
        free_form: Option<serde_json::Value>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Bot {
        webhooks: Vec<Webhook>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Webhook {
        url: String,
        signature: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[allow(dead_code)]
    struct Delivery {
        deadline_ms: Option<u64>,
    }

    fn unknown(yaml: &str) -> Vec<String> {
        let value: Value = Figment::from(Serialized::defaults(Runtime::default()))
            .merge(super::super::load::Yaml::string(yaml))
            .extract()
            .expect("a map");
        find::<Runtime, Sink>(&value)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn known_keys_of_both_types_are_quiet() {
        let yaml = "port: 1\nbot:\n  webhooks:\n    - {url: u, signature: s}\ndelivery: {deadline_ms: 5}\nfree_form: {anything: [1, {goes: here}]}\n";
        assert_eq!(unknown(yaml), Vec::<String>::new());
    }

    #[test]
    fn a_typo_is_named_with_its_path_and_the_closest_sibling() {
        let yaml = "bot:\n  webhooks:\n    - {url: u}\n    - {url: u, signiture: s}\n";
        assert_eq!(
            unknown(yaml),
            ["bot.webhooks.1.signiture: unknown key, ignored; did you mean `signature`?"]
        );
    }

    #[test]
    fn runtime_keys_are_suggested_at_the_top_and_misplaced_keys_by_their_path() {
        // A key elsewhere is found only in a section the file has.
        let yaml = "porrt: 1\ndeadline_ms: 3\nzzz: 1\nbot: {webhooks: []}\ndelivery: {}\n";
        assert_eq!(
            unknown(yaml),
            [
                "deadline_ms: unknown key, ignored; did you mean `delivery.deadline_ms`?",
                "porrt: unknown key, ignored; did you mean `port`?",
                "zzz: unknown key, ignored",
            ]
        );
    }

    #[test]
    fn keys_are_found_even_when_the_config_is_invalid() {
        // `webhooks` is missing: the loader reports that; the walk still sees the typo.
        let yaml = "bot:\n  webhook: []\n";
        assert_eq!(
            unknown(yaml),
            ["bot.webhook: unknown key, ignored; did you mean `webhooks`?"]
        );
    }
}
