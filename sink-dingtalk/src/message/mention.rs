//! @-mentions: who a message notifies. They come from DingTalk's own `at`
//! object in the event data, or, for senders that can only set attributes,
//! from the `xvatmobiles`, `xvatuserids` (comma-separated) and `xvatall`
//! extensions; both sources merge.
//!
//! DingTalk notifies nobody in a markdown or actionCard message unless the
//! `@mobile` / `@userId` tokens also appear in the text, so [`Mentions::missing_tokens`]
//! says what to append.

use std::collections::HashSet;

use connector_sdk::cloudevents::Event;
use connector_sdk::cloudevents::event::ExtensionValue;
use serde_json::{Map, Value, json};

use super::{MAX_BODY_BYTES, MessageError};

/// Mobile numbers to mention, comma-separated.
pub const AT_MOBILES_EXTENSION: &str = "xvatmobiles";
/// User ids to mention, comma-separated.
pub const AT_USER_IDS_EXTENSION: &str = "xvatuserids";
/// `true` to mention everyone.
pub const AT_ALL_EXTENSION: &str = "xvatall";

/// The token DingTalk shows for "everyone".
pub const EVERYONE_TOKEN: &str = "@所有人";

/// Who a message mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mentions {
    /// Mobile numbers, without duplicates, in first-seen order.
    pub mobiles: Vec<String>,
    /// User ids, without duplicates, in first-seen order.
    pub user_ids: Vec<String>,
    /// Everyone in the group.
    pub all: bool,
}

impl Mentions {
    /// Merges the `at` object from the data (if any) with the extensions.
    /// Refuses more mentions than DingTalk's body limit could ever hold, so
    /// nothing later spends time on them.
    pub fn collect(at: Option<Value>, event: &Event) -> Result<Self, MessageError> {
        let mut mentions = Mentions::default();
        if let Some(at) = at {
            mentions.read_at(at)?;
        }
        let from_data = std::mem::take(&mut mentions.mobiles);
        mentions.mobiles = dedup(
            from_data
                .into_iter()
                .chain(string_list(event, AT_MOBILES_EXTENSION)?),
        );
        let from_data = std::mem::take(&mut mentions.user_ids);
        mentions.user_ids = dedup(
            from_data
                .into_iter()
                .chain(string_list(event, AT_USER_IDS_EXTENSION)?),
        );
        mentions.all |= flag(event, AT_ALL_EXTENSION)?;
        mentions.check_they_can_fit()?;
        Ok(mentions)
    }

    /// Each mention is in the body's `at` object at least as `"who",`, so
    /// when those alone pass [`MAX_BODY_BYTES`] no body can hold them.
    fn check_they_can_fit(&self) -> Result<(), MessageError> {
        let who = self.mobiles.iter().chain(&self.user_ids);
        let at_least: usize = who.map(|who| who.len() + 3).sum();
        if at_least > MAX_BODY_BYTES {
            return Err(MessageError::TooManyMentions(
                self.mobiles.len() + self.user_ids.len(),
            ));
        }
        Ok(())
    }

    /// The mentions of a built body's top-level `at` object (none when it
    /// has none or it is malformed: the body was built by this crate).
    pub fn from_at(at: &Value) -> Self {
        let mut mentions = Mentions::default();
        if at.is_object() && mentions.read_at(at.clone()).is_err() {
            return Mentions::default();
        }
        mentions
    }

    /// Everyone either mentions, each once, in first-seen order.
    pub fn merged(&self, other: &Mentions) -> Mentions {
        Mentions {
            mobiles: dedup(self.mobiles.iter().chain(&other.mobiles).cloned()),
            user_ids: dedup(self.user_ids.iter().chain(&other.user_ids).cloned()),
            all: self.all || other.all,
        }
    }

    /// True when nobody is mentioned.
    pub fn is_empty(&self) -> bool {
        self.mobiles.is_empty() && self.user_ids.is_empty() && !self.all
    }

    /// DingTalk's top-level `at` object.
    pub fn to_at(&self) -> Value {
        json!({
            "atMobiles": self.mobiles,
            "atUserIds": self.user_ids,
            "isAtAll": self.all,
        })
    }

    /// The tokens `text` lacks, space-separated with a leading blank line,
    /// or empty. `everyone_token` adds `@所有人` for "everyone".
    ///
    /// Only the text's first [`MAX_BODY_BYTES`] are searched: a longer text
    /// is cut to fit the body, so a token further on is never sent.
    pub fn missing_tokens(&self, text: &str, everyone_token: bool) -> String {
        let searched = MAX_BODY_BYTES.min(text.len());
        let searched = (0..=searched)
            .rev()
            .find(|&at| text.is_char_boundary(at))
            .unwrap_or_default();
        // The text is read once for the usual ids (letters, digits, `_`, `-`);
        // only an id with other characters is looked for on its own.
        let present = ids_after_at(text, searched);
        let mut tokens: Vec<String> = self
            .mobiles
            .iter()
            .chain(&self.user_ids)
            .filter(|who| {
                if who.chars().all(is_id_char) {
                    !present.contains(who.as_str())
                } else {
                    !contains_token(text, searched, &format!("@{who}"))
                }
            })
            .map(|who| format!("@{who}"))
            .collect();
        if self.all && everyone_token && !text.contains(EVERYONE_TOKEN) {
            tokens.push(EVERYONE_TOKEN.to_owned());
        }
        if tokens.is_empty() {
            String::new()
        } else {
            format!("\n\n{}", tokens.join(" "))
        }
    }

    fn read_at(&mut self, at: Value) -> Result<(), MessageError> {
        let Value::Object(at) = at else {
            return Err(invalid(
                "at",
                "must be an object {atMobiles, atUserIds, isAtAll}",
            ));
        };
        self.mobiles = dedup(strings(&at, "atMobiles")?);
        self.user_ids = dedup(strings(&at, "atUserIds")?);
        self.all = match at.get("isAtAll") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(all)) => *all,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(invalid("at.isAtAll", "must be true or false")),
        };
        Ok(())
    }
}

/// A character that continues an id: `@1234` does not contain the token
/// `@123`.
fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// Every id written as a token in `text`, starting before byte `searched`:
/// the whole run of id characters after each `@`.
fn ids_after_at(text: &str, searched: usize) -> HashSet<&str> {
    text[..searched]
        .match_indices('@')
        .map(|(at, _)| {
            let id = &text[at + 1..];
            let end = id.find(|c| !is_id_char(c)).unwrap_or(id.len());
            &id[..end]
        })
        .filter(|id| !id.is_empty())
        .collect()
}

/// Whether `token` starts before byte `searched` of `text`, not followed by
/// more of an id.
fn contains_token(text: &str, searched: usize, token: &str) -> bool {
    text.match_indices(token)
        .take_while(|(at, _)| *at < searched)
        .any(|(at, _)| {
            text[at + token.len()..]
                .chars()
                .next()
                .is_none_or(|next| !is_id_char(next))
        })
}

fn strings(at: &Map<String, Value>, key: &str) -> Result<Vec<String>, MessageError> {
    match at.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(invalid(
                    &format!("at.{key}"),
                    "must be an array of non-empty strings",
                )),
            })
            .collect(),
        Some(_) => Err(invalid(&format!("at.{key}"), "must be an array of strings")),
    }
}

fn string_list(event: &Event, extension: &str) -> Result<Vec<String>, MessageError> {
    match event.extension(extension) {
        None => Ok(Vec::new()),
        Some(ExtensionValue::String(list)) => Ok(list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(ExtensionValue::Integer(n)) => Ok(vec![n.to_string()]),
        Some(ExtensionValue::Boolean(_)) => {
            Err(invalid(extension, "must be a comma-separated list"))
        }
    }
}

fn flag(event: &Event, extension: &str) -> Result<bool, MessageError> {
    match event.extension(extension) {
        None => Ok(false),
        Some(ExtensionValue::Boolean(b)) => Ok(*b),
        Some(ExtensionValue::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Some(ExtensionValue::String(s))
            if s.trim().eq_ignore_ascii_case("false") || s.trim().is_empty() =>
        {
            Ok(false)
        }
        Some(_) => Err(invalid(extension, "must be true or false")),
    }
}

/// Each item once, in first-seen order.
fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let items: Vec<String> = items.into_iter().collect();
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(items.len());
        items
            .iter()
            .map(|item| seen.insert(item.as_str()))
            .collect()
    };
    items
        .into_iter()
        .zip(first)
        .filter_map(|(item, first)| first.then_some(item))
        .collect()
}

fn invalid(field: &str, problem: &str) -> MessageError {
    MessageError::Invalid {
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::cloudevents::{EventBuilder, EventBuilderV10};

    fn event() -> Event {
        EventBuilderV10::new()
            .id("1")
            .source("test")
            .ty("t")
            .build()
            .expect("valid event")
    }

    fn mobiles(mobiles: &[&str]) -> Mentions {
        Mentions {
            mobiles: mobiles.iter().map(ToString::to_string).collect(),
            ..Mentions::default()
        }
    }

    #[test]
    fn duplicates_are_dropped_in_first_seen_order() {
        let mut e = event();
        e.set_extension(AT_MOBILES_EXTENSION, "333,111,444");
        let at =
            json!({"atMobiles": ["222", "111", "222", "333", "111"], "atUserIds": ["b", "a", "b"]});
        let mentions = Mentions::collect(Some(at), &e).expect("collects");
        assert_eq!(mentions.mobiles, ["222", "111", "333", "444"]);
        assert_eq!(mentions.user_ids, ["b", "a"]);
    }

    #[test]
    fn more_mentions_than_a_body_can_hold_are_refused() {
        // 200,000 distinct mobiles: about 2.6 MB, refused without working
        // through them one against another.
        let many: Vec<String> = (0..200_000u64)
            .map(|i| (13_000_000_000 + i).to_string())
            .collect();
        let at = json!({"atMobiles": many});
        assert_eq!(
            Mentions::collect(Some(at), &event()),
            Err(MessageError::TooManyMentions(200_000))
        );
        // The same mobile 200,000 times is one mention.
        let same = vec!["13800000000"; 200_000];
        let mentions = Mentions::collect(Some(json!({"atMobiles": same})), &event()).expect("fits");
        assert_eq!(mentions.mobiles, ["13800000000"]);
    }

    #[test]
    fn the_refusal_counts_what_the_at_object_needs_at_least() {
        // 11 digits + 3 bytes each: 1,428 fit in the limit, 1,429 do not.
        let mobiles =
            |n: u64| -> Vec<String> { (0..n).map(|i| (13_000_000_000 + i).to_string()).collect() };
        let fits = json!({"atMobiles": mobiles(1_428)});
        assert_eq!(
            Mentions::collect(Some(fits), &event()).map(|m| m.mobiles.len()),
            Ok(1_428)
        );
        let too_many = json!({"atMobiles": mobiles(1_429)});
        assert_eq!(
            Mentions::collect(Some(too_many), &event()),
            Err(MessageError::TooManyMentions(1_429))
        );
    }

    #[test]
    fn missing_tokens_are_found_in_one_read_of_the_text() {
        let mentions = Mentions {
            mobiles: vec!["123".into(), "456".into(), "789".into()],
            user_ids: vec!["ops-1".into(), "a.b".into(), "c.d".into()],
            all: true,
        };
        let text = "@1234 @456, @ops-1 @a.b! @c.de @所有人";
        assert_eq!(mentions.missing_tokens(text, true), "\n\n@123 @789 @c.d");
        assert_eq!(
            mentions.missing_tokens("", false),
            "\n\n@123 @456 @789 @ops-1 @a.b @c.d"
        );
    }

    #[test]
    fn a_token_past_what_a_body_can_hold_is_added_again() {
        // The text is cut to fit the body, so a token only at its far end
        // would never reach DingTalk.
        let text = format!("{}@123 @456", "x".repeat(MAX_BODY_BYTES - 5));
        assert_eq!(
            mobiles(&["123", "456"]).missing_tokens(&text, false),
            "\n\n@456"
        );
        let text = format!("{}@1.5", "长".repeat(MAX_BODY_BYTES));
        assert_eq!(mobiles(&["1.5"]).missing_tokens(&text, false), "\n\n@1.5");
    }
}
