//! @-mentions: who a message notifies. They come from DingTalk's own `at`
//! object in the event data, or, for senders that can only set attributes,
//! from the `xvatmobiles`, `xvatuserids` (comma-separated) and `xvatall`
//! extensions; both sources merge.
//!
//! DingTalk notifies nobody in a markdown or actionCard message unless the
//! `@mobile` / `@userId` tokens also appear in the text, so [`Mentions::missing_tokens`]
//! says what to append.

use connector_sdk::cloudevents::Event;
use connector_sdk::cloudevents::event::ExtensionValue;
use serde_json::{Map, Value, json};

use super::MessageError;

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
        Ok(mentions)
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
    pub fn missing_tokens(&self, text: &str, everyone_token: bool) -> String {
        let mut tokens: Vec<String> = self
            .mobiles
            .iter()
            .chain(&self.user_ids)
            .map(|who| format!("@{who}"))
            .filter(|token| !contains_token(text, token))
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

/// `@123` is present as a token only when not followed by more of an id
/// (`@1234` does not contain the token `@123`).
fn contains_token(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(at, _)| {
        text[at + token.len()..]
            .chars()
            .next()
            .is_none_or(|next| !(next.is_alphanumeric() || next == '_' || next == '-'))
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

fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

fn invalid(field: &str, problem: &str) -> MessageError {
    MessageError::Invalid {
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}
