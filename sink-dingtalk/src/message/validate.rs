//! What DingTalk would refuse, checked before anything is sent: required
//! fields with DingTalk's casing, and URLs a chat can open.

use serde_json::{Map, Value};

use super::{MessageError, MsgType};

pub(crate) fn validate(msgtype: MsgType, fields: &Map<String, Value>) -> Result<(), MessageError> {
    let t = msgtype.as_str();
    match msgtype {
        MsgType::Text => require_text(fields, t, "content").map(drop),
        MsgType::Markdown => {
            require_text(fields, t, "title")?;
            require_text(fields, t, "text").map(drop)
        }
        MsgType::Link => {
            require_text(fields, t, "title")?;
            require_text(fields, t, "text")?;
            require_url(fields, t, "messageUrl")?;
            optional_url(fields, t, "picUrl")
        }
        MsgType::ActionCard => {
            require_text(fields, t, "title")?;
            require_text(fields, t, "text")?;
            match fields.get("btns") {
                Some(Value::Array(btns)) if !btns.is_empty() => {
                    for (i, btn) in btns.iter().enumerate() {
                        let path = format!("{t}.btns[{i}]");
                        let btn = as_object(btn, &path)?;
                        require_text(btn, &path, "title")?;
                        require_url(btn, &path, "actionURL")?;
                    }
                    Ok(())
                }
                Some(Value::Array(_)) | None
                    if !fields.contains_key("singleTitle") && !fields.contains_key("singleURL") =>
                {
                    Err(MessageError::Missing(format!(
                        "{t}.singleTitle and {t}.singleURL, or {t}.btns,"
                    )))
                }
                Some(Value::Array(_)) | None => {
                    require_text(fields, t, "singleTitle")?;
                    require_url(fields, t, "singleURL")
                }
                Some(_) => Err(invalid(
                    format!("{t}.btns"),
                    "must be an array of {title, actionURL}",
                )),
            }
        }
        MsgType::FeedCard => match fields.get("links") {
            Some(Value::Array(links)) if !links.is_empty() => {
                for (i, link) in links.iter().enumerate() {
                    let path = format!("{t}.links[{i}]");
                    let link = as_object(link, &path)?;
                    require_text(link, &path, "title")?;
                    require_url(link, &path, "messageURL")?;
                    require_url(link, &path, "picURL")?;
                }
                Ok(())
            }
            Some(Value::Array(_)) | None => Err(MessageError::Missing(format!("{t}.links"))),
            Some(_) => Err(invalid(
                format!("{t}.links"),
                "must be an array of {title, messageURL, picURL}",
            )),
        },
    }
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, MessageError> {
    value
        .as_object()
        .ok_or_else(|| invalid(path.to_owned(), "must be a JSON object"))
}

fn invalid(field: String, problem: &str) -> MessageError {
    MessageError::Invalid {
        field,
        problem: problem.to_owned(),
    }
}

fn require_text<'a>(
    fields: &'a Map<String, Value>,
    parent: &str,
    name: &str,
) -> Result<&'a str, MessageError> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            Err(MessageError::Missing(format!("{parent}.{name}")))
        }
        Some(_) => Err(invalid(format!("{parent}.{name}"), "must be a string")),
    }
}

fn require_url(fields: &Map<String, Value>, parent: &str, name: &str) -> Result<(), MessageError> {
    let value = require_text(fields, parent, name)?;
    check_url(value).map_err(|problem| invalid(format!("{parent}.{name}"), problem))
}

fn optional_url(fields: &Map<String, Value>, parent: &str, name: &str) -> Result<(), MessageError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(_) => require_url(fields, parent, name),
    }
}

/// Links must open from a chat: absolute http(s), or DingTalk's own scheme.
fn check_url(value: &str) -> Result<(), &'static str> {
    match url::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        Ok(url) if url.scheme() == "dingtalk" => Ok(()),
        _ => Err("must be an absolute http(s):// or dingtalk:// URL"),
    }
}
