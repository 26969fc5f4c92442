//! Keywords: a DingTalk robot secured by keywords refuses (errcode 310000)
//! a message whose text contains none of them. [`ensure`] adds the first
//! keyword to a message that lacks all of them, where it reads well for its
//! type:
//!
//! - text: a line of its own at the end of `text.content`;
//! - markdown and actionCard: a paragraph of its own at the end of the text;
//! - link: a line of its own at the end of `link.text`;
//! - feedCard: after the first link's title.
//!
//! What DingTalk searches is what a reader sees: the content of a text, the
//! title and text of a markdown, link or actionCard, the links' titles of a
//! feedCard. A body that would grow past DingTalk's limit has its text cut
//! (with the truncation marker) to make room.

use bytes::Bytes;
use serde_json::Value;

use super::MAX_BODY_BYTES;
use super::truncate::{json_len, shrink};

/// The body with the first of `keywords` added when it contains none of
/// them; `None` when it needs nothing (no keywords, one is already there,
/// or the body is not a message this knows).
pub fn ensure(body: &[u8], keywords: &[String]) -> Option<Bytes> {
    let first = keywords.first()?;
    let mut message: Value = serde_json::from_slice(body).ok()?;
    let msgtype = message.get("msgtype")?.as_str()?.to_owned();
    if searched(&message, &msgtype)
        .iter()
        .any(|text| keywords.iter().any(|k| text.contains(k.as_str())))
    {
        return None;
    }
    let (field, separator) = target(&mut message, &msgtype)?;
    let current = field.as_str()?.to_owned();
    let addition = format!("{separator}{first}");
    let mut grown = format!("{current}{addition}");
    *field = Value::String(grown.clone());
    let mut bytes = serde_json::to_vec(&message).ok()?;
    if bytes.len() > MAX_BODY_BYTES {
        // Make room: cut the text (keeping the keyword whole).
        let excess = bytes.len() - MAX_BODY_BYTES;
        // The cut text, its marker, and the addition kept whole.
        grown = shrink(&current, &addition, excess)?;
        let (field, _) = target(&mut message, &msgtype)?;
        *field = Value::String(grown);
        bytes = serde_json::to_vec(&message).ok()?;
    }
    Some(Bytes::from(bytes))
}

/// The bytes to leave free in a body for [`ensure`] to add a keyword
/// without cutting: none without keywords.
pub fn room(keywords: &[String]) -> usize {
    keywords
        .first()
        .map_or(0, |first| json_len(first) + json_len("\n\n"))
}

/// The texts DingTalk searches for a keyword.
fn searched<'a>(message: &'a Value, msgtype: &str) -> Vec<&'a str> {
    let of = |part: &str, fields: &[&str]| -> Vec<&'a str> {
        fields
            .iter()
            .filter_map(|f| message.get(part)?.get(*f)?.as_str())
            .collect()
    };
    match msgtype {
        "text" => of("text", &["content"]),
        "markdown" => of("markdown", &["title", "text"]),
        "link" => of("link", &["title", "text"]),
        "actionCard" => of("actionCard", &["title", "text"]),
        "feedCard" => message
            .pointer("/feedCard/links")
            .and_then(Value::as_array)
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| l.get("title")?.as_str())
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The field a keyword goes into, and what separates it from the text.
fn target<'a>(message: &'a mut Value, msgtype: &str) -> Option<(&'a mut Value, &'static str)> {
    let (pointer, separator) = match msgtype {
        "text" => ("/text/content", "\n"),
        "markdown" => ("/markdown/text", "\n\n"),
        "actionCard" => ("/actionCard/text", "\n\n"),
        "link" => ("/link/text", "\n"),
        "feedCard" => ("/feedCard/links/0/title", " "),
        _ => return None,
    };
    let field = message.pointer_mut(pointer)?;
    field.is_string().then_some((field, separator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ensured(body: Value, keywords: &[&str]) -> Option<Value> {
        let keywords: Vec<String> = keywords.iter().map(|k| (*k).to_owned()).collect();
        let bytes = serde_json::to_vec(&body).expect("json");
        ensure(&bytes, &keywords).map(|b| serde_json::from_slice(&b).expect("json"))
    }

    #[test]
    fn each_type_gets_the_first_keyword_where_it_reads_well() {
        let kw = &["alert", "ops"];
        let text = ensured(
            json!({"msgtype": "text", "text": {"content": "disk full"}}),
            kw,
        );
        assert_eq!(text.expect("added")["text"]["content"], "disk full\nalert");
        let md = ensured(
            json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "## disk"}}),
            kw,
        );
        assert_eq!(md.expect("added")["markdown"]["text"], "## disk\n\nalert");
        let card = ensured(
            json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x", "singleTitle": "s", "singleURL": "https://x"}}),
            kw,
        );
        assert_eq!(card.expect("added")["actionCard"]["text"], "x\n\nalert");
        let link = ensured(
            json!({"msgtype": "link", "link": {"title": "t", "text": "x", "messageUrl": "https://x"}}),
            kw,
        );
        assert_eq!(link.expect("added")["link"]["text"], "x\nalert");
        let feed = ensured(
            json!({"msgtype": "feedCard", "feedCard": {"links": [
                {"title": "one", "messageURL": "https://x", "picURL": "https://p"},
                {"title": "two", "messageURL": "https://x", "picURL": "https://p"}]}}),
            kw,
        );
        let feed = feed.expect("added");
        assert_eq!(feed["feedCard"]["links"][0]["title"], "one alert");
        assert_eq!(feed["feedCard"]["links"][1]["title"], "two");
    }

    #[test]
    fn a_message_with_any_keyword_is_left_alone() {
        let kw = &["alert", "ops"];
        assert_eq!(
            ensured(
                json!({"msgtype": "text", "text": {"content": "ops: disk"}}),
                kw
            ),
            None
        );
        assert_eq!(
            ensured(
                json!({"msgtype": "markdown", "markdown": {"title": "alert", "text": "x"}}),
                kw
            ),
            None,
            "the title counts"
        );
        assert_eq!(
            ensured(json!({"msgtype": "text", "text": {"content": "x"}}), &[]),
            None,
            "no keywords, nothing to do"
        );
    }

    #[test]
    fn a_body_at_the_limit_is_cut_to_make_room() {
        let content = "x".repeat(MAX_BODY_BYTES - 40);
        let body = json!({"msgtype": "text", "text": {"content": content}});
        let grown = ensured(body, &["keyword-that-is-long-enough"]).expect("added");
        let bytes = serde_json::to_vec(&grown).expect("json");
        assert!(bytes.len() <= MAX_BODY_BYTES, "{}", bytes.len());
        let content = grown["text"]["content"].as_str().expect("text");
        assert!(
            content.ends_with("\nkeyword-that-is-long-enough"),
            "{content:.80}"
        );
        assert!(content.contains("truncated"), "says it was cut");
    }
}
