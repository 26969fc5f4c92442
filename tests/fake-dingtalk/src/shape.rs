//! Validation of robot message bodies, the way DingTalk checks them.
//!
//! A body is `{"msgtype": T, T: {...}, "at": {...}?, "msgUuid": "..."?}`
//! where `T` is one of `text`, `link`, `markdown`, `actionCard` or
//! `feedCard`. A missing required field is answered with errcode 40035 and
//! an errmsg naming the field (`缺少参数 link.messageUrl`).

use std::fmt;

use serde_json::{Map, Value};

/// A body that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Valid {
    /// The `msgtype` value, e.g. `"text"`.
    pub msgtype: String,
    /// The `msgUuid` value, when the body carries one.
    pub msg_uuid: Option<String>,
}

/// A body that failed validation: the named parameter is missing or unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingParam {
    /// Dotted path of the offending field, e.g. `feedCard.links[0].picURL`.
    pub field: String,
    /// Extra explanation, e.g. for an unsupported msgtype.
    pub detail: Option<String>,
}

impl MissingParam {
    fn new(field: impl Into<String>) -> Self {
        MissingParam {
            field: field.into(),
            detail: None,
        }
    }
}

impl fmt::Display for MissingParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "缺少参数 {}", self.field)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for MissingParam {}

/// The message types DingTalk robots accept.
pub const MSG_TYPES: [&str; 5] = ["text", "link", "markdown", "actionCard", "feedCard"];

/// Validates a parsed JSON body.
pub fn validate(body: &Value) -> Result<Valid, MissingParam> {
    let Some(root) = body.as_object() else {
        return Err(MissingParam::new("msgtype"));
    };
    let msgtype = non_empty_str(root, "msgtype").ok_or_else(|| MissingParam::new("msgtype"))?;
    if !MSG_TYPES.contains(&msgtype) {
        return Err(MissingParam {
            field: "msgtype".into(),
            detail: Some(format!(
                "unsupported msgtype {msgtype:?}, expected one of {}",
                MSG_TYPES.join(", ")
            )),
        });
    }
    let msg = root
        .get(msgtype)
        .and_then(Value::as_object)
        .ok_or_else(|| MissingParam::new(msgtype))?;
    match msgtype {
        "text" => require(msg, "text", &["content"])?,
        "link" => require(msg, "link", &["title", "text", "messageUrl"])?,
        "markdown" => require(msg, "markdown", &["title", "text"])?,
        "actionCard" => action_card(msg)?,
        _ => feed_card(msg)?,
    }
    if let Some(at) = present(root, "at")
        && !at.is_object()
    {
        return Err(MissingParam {
            field: "at".into(),
            detail: Some("must be an object".into()),
        });
    }
    let msg_uuid = match root.get("msgUuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(MissingParam {
                field: "msgUuid".into(),
                detail: Some("must be a string".into()),
            });
        }
    };
    Ok(Valid {
        msgtype: msgtype.to_owned(),
        msg_uuid,
    })
}

/// The texts a reader sees of a message, which a keyword-secured robot
/// searches for its keywords: a text's content, the title and text of a
/// markdown, link or actionCard (and an actionCard's button titles), the
/// titles of a feedCard's links.
pub fn shown_texts(body: &Value) -> Vec<&str> {
    let Some(msgtype) = body.get("msgtype").and_then(Value::as_str) else {
        return Vec::new();
    };
    let Some(msg) = body.get(msgtype) else {
        return Vec::new();
    };
    let field = |key: &str| msg.get(key).and_then(Value::as_str);
    let titles = |list: &str| -> Vec<&str> {
        msg.get(list)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("title").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    };
    match msgtype {
        "text" => field("content").into_iter().collect(),
        "link" | "markdown" => [field("title"), field("text")]
            .into_iter()
            .flatten()
            .collect(),
        "actionCard" => [field("title"), field("text"), field("singleTitle")]
            .into_iter()
            .flatten()
            .chain(titles("btns"))
            .collect(),
        "feedCard" => titles("links"),
        _ => Vec::new(),
    }
}

/// The value at `key`, treating an explicit `null` as absent.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn non_empty_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn require(obj: &Map<String, Value>, prefix: &str, keys: &[&str]) -> Result<(), MissingParam> {
    match keys.iter().find(|k| non_empty_str(obj, k).is_none()) {
        Some(k) => Err(MissingParam::new(format!("{prefix}.{k}"))),
        None => Ok(()),
    }
}

fn action_card(card: &Map<String, Value>) -> Result<(), MissingParam> {
    require(card, "actionCard", &["title", "text"])?;
    let has_single = present(card, "singleTitle").is_some() || present(card, "singleURL").is_some();
    if has_single {
        return require(card, "actionCard", &["singleTitle", "singleURL"]);
    }
    match present(card, "btns") {
        None => Err(MissingParam {
            field: "actionCard.singleTitle/singleURL or actionCard.btns".into(),
            detail: None,
        }),
        Some(btns) => {
            let btns = btns
                .as_array()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| MissingParam::new("actionCard.btns"))?;
            for (i, btn) in btns.iter().enumerate() {
                let prefix = format!("actionCard.btns[{i}]");
                let btn = btn
                    .as_object()
                    .ok_or_else(|| MissingParam::new(prefix.clone()))?;
                require(btn, &prefix, &["title", "actionURL"])?;
            }
            Ok(())
        }
    }
}

fn feed_card(card: &Map<String, Value>) -> Result<(), MissingParam> {
    let links = card
        .get("links")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| MissingParam::new("feedCard.links"))?;
    for (i, link) in links.iter().enumerate() {
        let prefix = format!("feedCard.links[{i}]");
        let link = link
            .as_object()
            .ok_or_else(|| MissingParam::new(prefix.clone()))?;
        require(link, &prefix, &["title", "messageURL", "picURL"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(body: Value) -> String {
        validate(&body).unwrap_err().field
    }

    #[test]
    fn text() {
        let v = validate(&json!({"msgtype": "text", "text": {"content": "hi"}})).unwrap();
        assert_eq!(v.msgtype, "text");
        assert_eq!(v.msg_uuid, None);
        assert_eq!(field_of(json!({"msgtype": "text"})), "text");
        assert_eq!(
            field_of(json!({"msgtype": "text", "text": {}})),
            "text.content"
        );
        assert_eq!(
            field_of(json!({"msgtype": "text", "text": {"content": 5}})),
            "text.content"
        );
        assert_eq!(
            field_of(json!({"msgtype": "text", "text": {"content": ""}})),
            "text.content"
        );
    }

    #[test]
    fn msgtype_missing_or_unknown() {
        assert_eq!(field_of(json!({"text": {"content": "hi"}})), "msgtype");
        assert_eq!(field_of(json!([1, 2])), "msgtype");
        let err = validate(&json!({"msgtype": "image", "image": {}})).unwrap_err();
        assert_eq!(err.field, "msgtype");
        let msg = err.to_string();
        assert!(msg.starts_with("缺少参数 msgtype"), "{msg}");
        assert!(msg.contains("image"), "{msg}");
    }

    #[test]
    fn link() {
        let ok = json!({"msgtype": "link", "link": {
            "title": "t", "text": "x", "messageUrl": "https://e.com"}});
        assert!(validate(&ok).is_ok());
        let missing = json!({"msgtype": "link", "link": {"title": "t", "text": "x",
            "messageURL": "https://e.com"}});
        let err = validate(&missing).unwrap_err();
        assert_eq!(err.field, "link.messageUrl");
        assert_eq!(err.to_string(), "缺少参数 link.messageUrl");
    }

    #[test]
    fn markdown() {
        assert!(
            validate(&json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "# x"}}))
                .is_ok()
        );
        assert_eq!(
            field_of(json!({"msgtype": "markdown", "markdown": {"text": "# x"}})),
            "markdown.title"
        );
    }

    #[test]
    fn action_card_single_and_btns() {
        let single = json!({"msgtype": "actionCard", "actionCard": {
            "title": "t", "text": "x", "singleTitle": "go", "singleURL": "https://e.com"}});
        assert!(validate(&single).is_ok());
        let btns = json!({"msgtype": "actionCard", "actionCard": {
            "title": "t", "text": "x", "btnOrientation": "1",
            "btns": [{"title": "a", "actionURL": "https://a"}, {"title": "b", "actionURL": "https://b"}]}});
        assert!(validate(&btns).is_ok());

        let half_single = json!({"msgtype": "actionCard", "actionCard": {
            "title": "t", "text": "x", "singleTitle": "go"}});
        assert_eq!(field_of(half_single), "actionCard.singleURL");
        let neither = json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x"}});
        assert!(field_of(neither).contains("btns"));
        let empty = json!({"msgtype": "actionCard", "actionCard": {
            "title": "t", "text": "x", "btns": []}});
        assert_eq!(field_of(empty), "actionCard.btns");
        let bad_btn = json!({"msgtype": "actionCard", "actionCard": {
            "title": "t", "text": "x",
            "btns": [{"title": "a", "actionURL": "https://a"}, {"title": "b"}]}});
        assert_eq!(field_of(bad_btn), "actionCard.btns[1].actionURL");
        let no_title = json!({"msgtype": "actionCard", "actionCard": {
            "text": "x", "singleTitle": "go", "singleURL": "https://e.com"}});
        assert_eq!(field_of(no_title), "actionCard.title");
    }

    #[test]
    fn feed_card() {
        let ok = json!({"msgtype": "feedCard", "feedCard": {"links": [
            {"title": "a", "messageURL": "https://a", "picURL": "https://a.png"}]}});
        assert!(validate(&ok).is_ok());
        assert_eq!(
            field_of(json!({"msgtype": "feedCard", "feedCard": {"links": []}})),
            "feedCard.links"
        );
        assert_eq!(
            field_of(json!({"msgtype": "feedCard", "feedCard": {}})),
            "feedCard.links"
        );
        // Link-style casing is wrong for feedCard.
        let wrong_case = json!({"msgtype": "feedCard", "feedCard": {"links": [
            {"title": "a", "messageUrl": "https://a", "picUrl": "https://a.png"}]}});
        assert_eq!(field_of(wrong_case), "feedCard.links[0].messageURL");
    }

    #[test]
    fn msg_uuid_and_at() {
        let v = validate(&json!({"msgtype": "text", "text": {"content": "hi"},
            "at": {"isAtAll": true}, "msgUuid": "u-1"}))
        .unwrap();
        assert_eq!(v.msg_uuid.as_deref(), Some("u-1"));
        let nulls = json!({"msgtype": "actionCard", "at": null, "msgUuid": null,
            "actionCard": {"title": "t", "text": "x", "singleTitle": null, "singleURL": null,
                "btns": [{"title": "a", "actionURL": "https://a"}]}});
        assert_eq!(validate(&nulls).unwrap().msg_uuid, None);
        assert_eq!(
            field_of(json!({"msgtype": "text", "text": {"content": "hi"}, "msgUuid": 7})),
            "msgUuid"
        );
        assert_eq!(
            field_of(json!({"msgtype": "text", "text": {"content": "hi"}, "at": "all"})),
            "at"
        );
    }
}
