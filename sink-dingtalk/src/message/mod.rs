//! CloudEvent -> DingTalk robot message: picks the type from `xvmsgtype`,
//! shapes the body, checks every required field and URL, and enforces
//! DingTalk's 20,000-byte body limit, so nothing DingTalk would refuse is
//! ever sent.
//!
//! text: the event data is the content (a JSON string counts as its text;
//! a JSON object `{"content": ..}` is taken as the text fields). Other types:
//! the data is the JSON object of that type's fields, passed through as is,
//! so fields DingTalk adds later work without a release.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::cloudevents::{AttributesReader, Data, Event};
use connector_sdk::shorten;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub mod digest;
mod error;
pub mod group;
pub mod keywords;
pub mod mention;
pub mod truncate;
mod validate;

pub use error::MessageError;
use mention::Mentions;
/// Checks DingTalk's fields of a type as a send would (templates check their
/// shape at start-up with it).
pub(crate) use validate::validate;

/// The extension naming the message type.
pub const MSGTYPE_EXTENSION: &str = "xvmsgtype";

/// DingTalk refuses bodies above this many bytes (errcode 460101).
pub const MAX_BODY_BYTES: usize = 20_000;

/// How much of an offending value an error quotes.
const QUOTE_BYTES: usize = 64;

/// The DingTalk message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// Plain text.
    Text,
    /// A link card.
    Link,
    /// Markdown.
    Markdown,
    /// A card with one or more buttons.
    ActionCard,
    /// A list of link cards.
    FeedCard,
}

impl MsgType {
    /// The name DingTalk uses, which is also the `xvmsgtype` value.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Text => "text",
            MsgType::Link => "link",
            MsgType::Markdown => "markdown",
            MsgType::ActionCard => "actionCard",
            MsgType::FeedCard => "feedCard",
        }
    }

    const ALL: [MsgType; 5] = [
        MsgType::Text,
        MsgType::Link,
        MsgType::Markdown,
        MsgType::ActionCard,
        MsgType::FeedCard,
    ];
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MsgType {
    type Err = MessageError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        MsgType::ALL
            .into_iter()
            // Exactly a type's name, any case: " text" is not "text".
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| MessageError::UnknownType(shorten(name, QUOTE_BYTES).into_owned()))
    }
}

/// A message ready to send: its type and its serialized JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The DingTalk type.
    pub msgtype: MsgType,
    /// The idempotency key inside the body.
    pub msg_uuid: String,
    /// The UTF-8 JSON body, at most [`MAX_BODY_BYTES`]; cheap to clone for
    /// each send attempt.
    pub body: Bytes,
    /// The same body as JSON, for what reads its fields (a digest's
    /// summary) without parsing `body` again.
    pub json: Value,
}

/// The message type an event asks for: `xvmsgtype`, text by default.
pub fn msgtype_of(event: &Event) -> Result<MsgType, MessageError> {
    match event.extension(MSGTYPE_EXTENSION) {
        None => Ok(MsgType::Text),
        Some(ExtensionValue::String(name)) => name.parse(),
        Some(other) => Err(MessageError::UnknownType(other.to_string())),
    }
}

/// Builds the DingTalk body for `event` in `chat_group` from the event's
/// data (the seed contract: `xvmsgtype` and DingTalk-shaped data), tagged
/// with a content-derived `msgUuid`.
pub fn build(event: &Event, chat_group: &str) -> Result<Message, MessageError> {
    let msgtype = msgtype_of(event)?;
    let fields = match msgtype {
        MsgType::Text => text_fields(event)?,
        other => object_data(event, other)?,
    };
    build_from_fields(event, msgtype, fields, chat_group)
}

/// Builds the DingTalk body of type `msgtype` from its `fields` (DingTalk's
/// fields of that type, `at` allowed among them), whatever produced them:
/// validation, mentions (merged with the event's `xvat*` extensions), the
/// size limit and the `msgUuid` apply the same way.
pub fn build_from_fields(
    event: &Event,
    msgtype: MsgType,
    mut fields: Map<String, Value>,
    chat_group: &str,
) -> Result<Message, MessageError> {
    // DingTalk reads `at` at the top level; senders naturally put it beside
    // the type's fields.
    let mentions = Mentions::collect(fields.remove("at"), event)?;
    validate(msgtype, &fields)?;

    // The field holding the message's long text: cut there when too large,
    // and where markdown and actionCard need the mention tokens.
    let text_field = match msgtype {
        MsgType::Text => Some("content"),
        MsgType::Markdown | MsgType::ActionCard => Some("text"),
        MsgType::Link | MsgType::FeedCard => None,
    };
    // The mention tokens appended to the text, kept whole if it is cut.
    let mut suffix = String::new();
    if let Some(field) = text_field {
        let text = fields
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        suffix = match msgtype {
            MsgType::Markdown => mentions.missing_tokens(text, false),
            MsgType::ActionCard => mentions.missing_tokens(text, true),
            _ => String::new(),
        };
        if !suffix.is_empty() {
            let with_tokens = format!("{text}{suffix}");
            fields.insert(field.to_owned(), Value::String(with_tokens));
        }
    } else if !mentions.is_empty() {
        return Err(MessageError::BadData(format!(
            "{msgtype} messages cannot mention anyone; remove `at` and the xvat* attributes, or use text, markdown or actionCard"
        )));
    }

    let mut body = Map::new();
    body.insert("msgtype".into(), json!(msgtype.as_str()));
    body.insert(msgtype.as_str().into(), Value::Object(fields));
    if !mentions.is_empty() {
        body.insert("at".into(), mentions.to_at());
    }
    let mut bytes = serialize(&body)?;
    let msg_uuid = msg_uuid(&event.source().to_string(), event.id(), chat_group, &bytes);
    // Kept with the body's JSON (and in it, should the text be cut below).
    body.insert("msgUuid".into(), json!(msg_uuid));
    // Append `"msgUuid"` to the serialized object rather than serializing
    // twice: the body ends with `}` and the uuid needs no escaping.
    bytes.pop();
    bytes.extend_from_slice(b",\"msgUuid\":\"");
    bytes.extend_from_slice(msg_uuid.as_bytes());
    bytes.extend_from_slice(b"\"}");

    if bytes.len() > MAX_BODY_BYTES {
        let too_large = MessageError::TooLarge(bytes.len());
        let excess = bytes.len() - MAX_BODY_BYTES;
        // Only text, markdown and actionCard have a text to cut.
        let current = match text_field.and_then(|f| body.get_mut(msgtype.as_str())?.get_mut(f)) {
            Some(Value::String(current)) => current,
            _ => return Err(too_large),
        };
        let original = current.strip_suffix(suffix.as_str()).unwrap_or(current);
        *current = truncate::shrink(original, &suffix, excess).ok_or(too_large)?;
        bytes = serialize(&body)?;
    }
    Ok(Message {
        msgtype,
        msg_uuid,
        body: Bytes::from(bytes),
        json: Value::Object(body),
    })
}

fn serialize(body: &Map<String, Value>) -> Result<Vec<u8>, MessageError> {
    serde_json::to_vec(body).map_err(|err| MessageError::BadData(err.to_string()))
}

/// The idempotency key of one message: the event's identity (`source`, `id`)
/// in one chat group, and what is posted. The same event redelivered gets the
/// same key; different events never share one, even when a sender reuses an
/// id for different content.
pub fn msg_uuid(source: &str, id: &str, chat_group: &str, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [
        source.as_bytes(),
        id.as_bytes(),
        chat_group.as_bytes(),
        content,
    ] {
        // Length-prefix each part so ("a","bc") and ("ab","c") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    // 16 bytes as a UUID-shaped string, 8-4-4-4-12 hex digits.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut uuid = String::with_capacity(36);
    for (i, byte) in digest[..16].iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            uuid.push('-');
        }
        uuid.push(char::from(HEX[usize::from(byte >> 4)]));
        uuid.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    uuid
}

fn text_fields(event: &Event) -> Result<Map<String, Value>, MessageError> {
    let content = match event.data() {
        None => return Err(MessageError::NoData(MsgType::Text)),
        Some(Data::String(text)) => text.clone(),
        Some(Data::Json(Value::String(text))) => text.clone(),
        Some(Data::Json(Value::Object(fields))) if fields.contains_key("content") => {
            return Ok(fields.clone());
        }
        Some(Data::Json(other)) => other.to_string(),
        Some(Data::Binary(bytes)) => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                MessageError::BadData(
                    "the event data is not UTF-8 text; a text message needs text".into(),
                )
            })?;
            match serde_json::from_str::<Value>(text) {
                Ok(Value::String(inner)) => inner,
                Ok(Value::Object(fields)) if fields.contains_key("content") => return Ok(fields),
                _ => text.to_owned(),
            }
        }
    };
    let mut fields = Map::new();
    fields.insert("content".into(), Value::String(content));
    Ok(fields)
}

fn object_data(event: &Event, msgtype: MsgType) -> Result<Map<String, Value>, MessageError> {
    let parsed = match event.data() {
        None => return Err(MessageError::NoData(msgtype)),
        Some(Data::Json(value)) => Ok(value.clone()),
        Some(Data::String(text)) => serde_json::from_str(text),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes),
    };
    match parsed {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(MessageError::BadData(format!(
            "the event data must be a JSON object of {msgtype} fields, e.g. {}",
            example(msgtype)
        ))),
    }
}

fn example(msgtype: MsgType) -> &'static str {
    match msgtype {
        MsgType::Text => r#""hello""#,
        MsgType::Link => r#"{"title": "..", "text": "..", "messageUrl": "https://.."}"#,
        MsgType::Markdown => r##"{"title": "..", "text": "# .."}"##,
        MsgType::ActionCard => {
            r#"{"title": "..", "text": "..", "singleTitle": "..", "singleURL": "https://.."}"#
        }
        MsgType::FeedCard => {
            r#"{"links": [{"title": "..", "messageURL": "https://..", "picURL": "https://.."}]}"#
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::cloudevents::{EventBuilder, EventBuilderV10};

    fn event(msgtype: Option<&str>, content_type: &str, data: impl Into<Data>) -> Event {
        let mut builder = EventBuilderV10::new().id("1").source("test").ty("t");
        if let Some(t) = msgtype {
            builder = builder.extension(MSGTYPE_EXTENSION, t);
        }
        builder
            .data(content_type, data)
            .build()
            .expect("valid event")
    }

    fn body_of(event: &Event) -> Value {
        let message = build(event, "ops").expect("builds");
        let mut body: Value = serde_json::from_slice(&message.body).expect("json body");
        assert_eq!(message.json, body, "the JSON kept is the body sent");
        assert_eq!(body["msgUuid"], message.msg_uuid.as_str());
        body.as_object_mut().map(|b| b.remove("msgUuid"));
        body
    }

    fn error_of(event: &Event) -> String {
        build(event, "ops").expect_err("rejected").to_string()
    }

    #[test]
    fn text_from_a_plain_string() {
        let body = body_of(&event(None, "text/plain", "Hello dingtalk"));
        assert_eq!(
            body,
            json!({"msgtype": "text", "text": {"content": "Hello dingtalk"}})
        );
    }

    #[test]
    fn text_from_a_json_string_uses_the_string_itself() {
        let body = body_of(&event(Some("text"), "application/json", json!("quoted")));
        assert_eq!(body["text"]["content"], "quoted");
        let body = body_of(&event(
            Some("text"),
            "application/json",
            b"\"bytes\"".to_vec(),
        ));
        assert_eq!(body["text"]["content"], "bytes");
    }

    #[test]
    fn text_object_with_content_and_at_is_shaped_for_dingtalk() {
        let data = json!({"content": "deploy done", "at": {"atMobiles": ["123"]}});
        let body = body_of(&event(None, "application/json", data));
        assert_eq!(body["text"], json!({"content": "deploy done"}));
        assert_eq!(
            body["at"],
            json!({"atMobiles": ["123"], "atUserIds": [], "isAtAll": false})
        );
    }

    #[test]
    fn other_types_pass_their_fields_through() {
        let data = json!({"text": "text", "title": "title", "picUrl": "https://www.vanus.ai/x.svg", "messageUrl": "https://github.com/vanus-labs", "future": 1});
        let body = body_of(&event(Some("link"), "application/json", data.clone()));
        assert_eq!(body["msgtype"], "link");
        assert_eq!(body["link"], data);
    }

    #[test]
    fn the_type_name_is_case_insensitive_and_unknown_ones_are_named() {
        assert_eq!("actioncard".parse::<MsgType>(), Ok(MsgType::ActionCard));
        let err = error_of(&event(Some("image"), "text/plain", "x"));
        assert!(err.contains("`image`") && err.contains("feedCard"), "{err}");
        assert!(
            " text".parse::<MsgType>().is_err(),
            "no spaces around a name"
        );
        let huge = "x".repeat(1_000_000);
        let err = error_of(&event(Some(&huge), "text/plain", "x"));
        assert!(
            err.len() < 300,
            "the name is quoted shortened: {} bytes",
            err.len()
        );
    }

    #[test]
    fn non_object_data_for_a_card_is_rejected_with_an_example() {
        let err = error_of(&event(Some("markdown"), "text/plain", "just text"));
        assert!(err.contains("JSON object of markdown fields"), "{err}");
        let err = error_of(&event(Some("link"), "application/json", json!([1, 2])));
        assert!(err.contains("messageUrl"), "{err}");
    }

    #[test]
    fn each_missing_required_field_is_named() {
        let cases = [
            (
                "link",
                json!({"title": "t", "text": "x"}),
                "link.messageUrl is required",
            ),
            (
                "link",
                json!({"title": "t", "messageUrl": "https://a.b"}),
                "link.text is required",
            ),
            (
                "markdown",
                json!({"text": "x"}),
                "markdown.title is required",
            ),
            (
                "markdown",
                json!({"title": "t", "text": ""}),
                "markdown.text is required",
            ),
            (
                "actionCard",
                json!({"title": "t", "text": "x"}),
                "actionCard.singleTitle and actionCard.singleURL, or actionCard.btns, is required",
            ),
            (
                "actionCard",
                json!({"title": "t", "text": "x", "singleTitle": "go"}),
                "actionCard.singleURL is required",
            ),
            (
                "actionCard",
                json!({"title": "t", "text": "x", "btns": [{"title": "a"}]}),
                "actionCard.btns[0].actionURL is required",
            ),
            ("feedCard", json!({}), "feedCard.links is required"),
            (
                "feedCard",
                json!({"links": [{"title": "a", "messageUrl": "https://a.b", "picURL": "https://a.b"}]}),
                "feedCard.links[0].messageURL is required",
            ),
        ];
        for (msgtype, data, expected) in cases {
            assert_eq!(
                error_of(&event(Some(msgtype), "application/json", data)),
                expected
            );
        }
    }

    #[test]
    fn urls_must_be_absolute_http_or_dingtalk() {
        let data = json!({"title": "t", "text": "x", "messageUrl": "/relative"});
        let err = error_of(&event(Some("link"), "application/json", data));
        assert_eq!(
            err,
            "link.messageUrl must be an absolute http(s):// or dingtalk:// URL"
        );
        let data = json!({"title": "t", "text": "x", "singleTitle": "open", "singleURL": "dingtalk://dingtalkclient/page/link?url=x"});
        assert!(build(&event(Some("actionCard"), "application/json", data), "ops").is_ok());
    }

    #[test]
    fn a_body_over_the_limit_is_refused() {
        let links: Vec<Value> = (0..400)
            .map(|i| json!({"title": format!("item {i}"), "messageURL": "https://example.com/a/long/path/to/an/item", "picURL": "https://example.com/a/long/path/to/a/picture.png"}))
            .collect();
        let err = build(
            &event(
                Some("feedCard"),
                "application/json",
                json!({"links": links}),
            ),
            "u",
        )
        .expect_err("too large");
        assert!(matches!(err, MessageError::TooLarge(n) if n > MAX_BODY_BYTES));
    }

    #[test]
    fn msg_uuid_is_stable_and_distinct() {
        let a = msg_uuid("src", "id-1", "ops", b"{}");
        assert_eq!(a, msg_uuid("src", "id-1", "ops", b"{}"));
        assert_eq!(a.len(), 36);
        let shaped = a.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        });
        assert!(shaped, "UUID-shaped: {a}");
        assert_ne!(a, msg_uuid("src", "id-2", "ops", b"{}"));
        assert_ne!(a, msg_uuid("src", "id-1", "dev", b"{}"));
        assert_ne!(a, msg_uuid("src", "id-1", "ops", b"{\"x\":1}"));
        assert_ne!(msg_uuid("a", "bc", "g", b""), msg_uuid("ab", "c", "g", b""));
    }

    #[test]
    fn the_same_event_builds_the_same_message() {
        let e = event(
            Some("markdown"),
            "application/json",
            json!({"title": "t", "text": "x"}),
        );
        let first = build(&e, "ops").expect("builds");
        assert_eq!(first, build(&e, "ops").expect("builds"));
        assert_ne!(first.msg_uuid, build(&e, "dev").expect("builds").msg_uuid);
    }

    fn with_extensions(mut e: Event, extensions: &[(&str, &str)]) -> Event {
        for (name, value) in extensions {
            e.set_extension(name, *value);
        }
        e
    }

    #[test]
    fn markdown_mentions_add_missing_tokens_once() {
        let data = json!({"title": "Alert", "text": "disk full @13800000000", "at": {"atMobiles": ["13800000000", "13900000000"], "atUserIds": ["manager01"]}});
        let body = body_of(&event(Some("markdown"), "application/json", data));
        assert_eq!(
            body["markdown"]["text"],
            "disk full @13800000000\n\n@13900000000 @manager01"
        );
        assert_eq!(
            body["at"],
            json!({"atMobiles": ["13800000000", "13900000000"], "atUserIds": ["manager01"], "isAtAll": false})
        );
    }

    #[test]
    fn a_token_prefix_is_not_mistaken_for_the_token() {
        let data = json!({"title": "t", "text": "ping @1234", "at": {"atMobiles": ["123"]}});
        let body = body_of(&event(Some("markdown"), "application/json", data));
        assert_eq!(body["markdown"]["text"], "ping @1234\n\n@123");
    }

    #[test]
    fn action_card_everyone_gets_the_everyone_token() {
        let data = json!({"title": "t", "text": "release", "singleTitle": "open", "singleURL": "https://a.b", "at": {"isAtAll": true}});
        let body = body_of(&event(Some("actionCard"), "application/json", data));
        assert_eq!(body["actionCard"]["text"], "release\n\n@所有人");
        assert_eq!(body["at"]["isAtAll"], true);
    }

    #[test]
    fn attribute_mentions_merge_with_data_mentions() {
        let e = with_extensions(
            event(None, "text/plain", "on call"),
            &[
                ("xvatmobiles", "111, 222,,111"),
                ("xvatuserids", "u1"),
                ("xvatall", "false"),
            ],
        );
        let body = body_of(&e);
        assert_eq!(body["text"]["content"], "on call", "text needs no tokens");
        assert_eq!(
            body["at"],
            json!({"atMobiles": ["111", "222"], "atUserIds": ["u1"], "isAtAll": false})
        );
    }

    #[test]
    fn link_and_feed_card_cannot_mention() {
        let link = json!({"title": "t", "text": "x", "messageUrl": "https://a.b"});
        let e = with_extensions(
            event(Some("link"), "application/json", link),
            &[("xvatall", "true")],
        );
        assert!(
            error_of(&e).contains("link messages cannot mention anyone"),
            "{}",
            error_of(&e)
        );
    }

    #[test]
    fn a_malformed_at_is_named() {
        let data = json!({"content": "x", "at": {"atMobiles": "123"}});
        assert_eq!(
            error_of(&event(None, "application/json", data)),
            "at.atMobiles must be an array of strings"
        );
        let e = with_extensions(event(None, "text/plain", "x"), &[("xvatall", "maybe")]);
        assert_eq!(error_of(&e), "xvatall must be true or false");
    }

    #[test]
    fn a_long_markdown_is_truncated_to_fit_with_its_tokens_kept() {
        let text = "长".repeat(20_000); // 60,000 bytes
        let data = json!({"title": "big", "text": text, "at": {"atUserIds": ["ops1"]}});
        let message = build(&event(Some("markdown"), "application/json", data), "ops")
            .expect("fits after truncation");
        assert!(
            message.body.len() <= MAX_BODY_BYTES,
            "{}",
            message.body.len()
        );
        assert!(
            message.body.len() > MAX_BODY_BYTES - 100,
            "cut no more than needed: {}",
            message.body.len()
        );
        let body: Value = serde_json::from_slice(&message.body).expect("json");
        assert_eq!(message.json, body, "the JSON kept is the body cut");
        let text = body["markdown"]["text"].as_str().expect("text");
        assert!(
            text.ends_with("bytes omitted)\n\n@ops1"),
            "{}",
            &text[text.len() - 60..]
        );
    }

    #[test]
    fn a_long_text_with_escapes_is_truncated_to_fit() {
        let content = "line \"quoted\"\n".repeat(3_000);
        let message = build(&event(None, "text/plain", content), "ops").expect("fits");
        assert!(message.body.len() <= MAX_BODY_BYTES);
        let body: Value = serde_json::from_slice(&message.body).expect("json");
        assert!(
            body["text"]["content"]
                .as_str()
                .is_some_and(|c| c.contains("(truncated, "))
        );
    }
}
