//! A message as an app robot sends it: the webhook body the templates and
//! the message builder make (`{"msgtype": T, T: {...}}`) becomes a `msgKey`
//! and its `msgParam`, a JSON *string* of at most 15,000 bytes:
//!
//! | msgtype    | msgKey             | msgParam fields                          |
//! |------------|--------------------|------------------------------------------|
//! | text       | `sampleText`       | content                                  |
//! | markdown   | `sampleMarkdown`   | title, text                              |
//! | link       | `sampleLink`       | text, title, picUrl, messageUrl          |
//! | actionCard | `sampleActionCard` | title, text, singleTitle, singleURL      |
//! | feedCard   | none: refused      |                                          |
//!
//! `at` (mentions) has no app-robot form and is left out; an actionCard
//! with several buttons (`btns`) is refused rather than guessed at.

use serde_json::{Map, Value};

use crate::post::Post;
use crate::robot::SendError;

/// The most bytes of a `msgParam`.
pub const MAX_MSG_PARAM_BYTES: usize = 15_000;

/// A message as an app robot sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    /// The template's name.
    pub msg_key: &'static str,
    /// Its fields, as a JSON string.
    pub msg_param: String,
}

/// The app-robot form of `post`, or why it has none (refused for good: the
/// message's fault).
pub fn of(post: &Post) -> Result<AppMessage, SendError> {
    let body: Value = serde_json::from_slice(&post.body)
        .map_err(|err| SendError::Unsupported(format!("the message is not JSON: {err}")))?;
    let msgtype = body["msgtype"].as_str().unwrap_or(&post.msgtype);
    let fields = &body[msgtype];
    let text = |name: &str| fields[name].as_str().unwrap_or_default().to_owned();
    let (msg_key, names): (&'static str, &[(&str, &str)]) = match msgtype {
        "text" => ("sampleText", &[("content", "content")]),
        "markdown" => ("sampleMarkdown", &[("title", "title"), ("text", "text")]),
        "link" => (
            "sampleLink",
            &[
                ("text", "text"),
                ("title", "title"),
                ("picUrl", "picUrl"),
                ("messageUrl", "messageUrl"),
            ],
        ),
        "actionCard" => {
            if fields["singleTitle"].as_str().is_none() {
                return Err(SendError::Unsupported(
                    "an actionCard with several buttons (btns) has no app-robot form here; give it singleTitle and singleURL".to_owned(),
                ));
            }
            (
                "sampleActionCard",
                &[
                    ("title", "title"),
                    ("text", "text"),
                    ("singleTitle", "singleTitle"),
                    ("singleURL", "singleURL"),
                ],
            )
        }
        "feedCard" => {
            return Err(SendError::Unsupported(
                "feedCard has no app-robot form: DingTalk's OpenAPI cannot send it; use link or markdown for an app robot's group".to_owned(),
            ));
        }
        other => {
            return Err(SendError::Unsupported(format!(
                "msgtype `{other}` has no app-robot form"
            )));
        }
    };
    let mut param = Map::new();
    for (key, field) in names {
        param.insert((*key).to_owned(), Value::String(text(field)));
    }
    let msg_param = Value::Object(param).to_string();
    if msg_param.len() > MAX_MSG_PARAM_BYTES {
        return Err(SendError::Unsupported(format!(
            "the message is {} bytes as an app robot's msgParam, over its {MAX_MSG_PARAM_BYTES}; shorten it",
            msg_param.len()
        )));
    }
    Ok(AppMessage { msg_key, msg_param })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn post(body: Value) -> Post {
        Post {
            msgtype: body["msgtype"].as_str().unwrap_or_default().to_owned(),
            body: body.to_string().into(),
            at_ms: 0,
            summary: None,
            to: None,
        }
    }

    #[test]
    fn each_msgtype_has_its_msg_key() {
        let cases = [
            (
                json!({"msgtype": "text", "text": {"content": "hi"}, "at": {"isAtAll": true}, "msgUuid": "u"}),
                "sampleText",
                json!({"content": "hi"}),
            ),
            (
                json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "# x"}}),
                "sampleMarkdown",
                json!({"title": "t", "text": "# x"}),
            ),
            (
                json!({"msgtype": "link", "link": {"title": "t", "text": "x", "messageUrl": "https://a.test"}}),
                "sampleLink",
                json!({"title": "t", "text": "x", "picUrl": "", "messageUrl": "https://a.test"}),
            ),
            (
                json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x", "singleTitle": "go", "singleURL": "https://a.test"}}),
                "sampleActionCard",
                json!({"title": "t", "text": "x", "singleTitle": "go", "singleURL": "https://a.test"}),
            ),
        ];
        for (body, key, param) in cases {
            let message = of(&post(body)).expect("has a form");
            assert_eq!(message.msg_key, key);
            let parsed: Value = serde_json::from_str(&message.msg_param).expect("a JSON string");
            assert_eq!(parsed, param);
        }
    }

    #[test]
    fn feed_cards_buttons_and_long_messages_are_refused_saying_why() {
        let feed = of(&post(
            json!({"msgtype": "feedCard", "feedCard": {"links": []}}),
        ))
        .expect_err("no form");
        assert!(
            feed.to_string().contains("feedCard has no app-robot form"),
            "{feed}"
        );
        let btns = of(&post(
            json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x", "btns": []}}),
        ))
        .expect_err("no form");
        assert!(btns.to_string().contains("btns"), "{btns}");
        let long = of(&post(
            json!({"msgtype": "text", "text": {"content": "x".repeat(15_000)}}),
        ))
        .expect_err("too long");
        assert!(long.to_string().contains("15000"), "{long}");
    }
}
