//! What is quoted from DingTalk's answers (`errmsg`, the start of an answer
//! that is not JSON) before it reaches a reason, a log line or `/status`: at
//! most [`QUOTED_BYTES`] of printable UTF-8, with the request's secrets
//! masked. A proxy that echoes the request's URL must not pass on the
//! access token or the signature.

use connector_sdk::shorten;

/// The most of DingTalk's text (`errmsg`, a non-JSON answer) quoted onwards.
pub const QUOTED_BYTES: usize = 256;

/// `text`, ready to quote: each of `secrets` (the access token, a password,
/// the signature, as sent and encoded) and any `access_token=` or `sign=`
/// value masked, then shortened to [`QUOTED_BYTES`] of printable text.
pub fn quote(text: &[u8], mut secrets: Vec<String>) -> String {
    // The longest first: one may contain another.
    secrets.sort_unstable_by_key(|secret| std::cmp::Reverse(secret.len()));
    let mut text = String::from_utf8_lossy(text).into_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    for key in ["access_token=", "sign="] {
        text = mask_values(&text, key);
    }
    shorten(&text, QUOTED_BYTES).into_owned()
}

/// `text` with the value after each `key` (up to `&`, a quote, a bracket or
/// a blank) replaced by `***`.
fn mask_values(text: &str, key: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let (before, after) = rest.split_at(at + key.len());
        masked.push_str(before);
        let end = after
            .find(|c: char| matches!(c, '&' | '"' | '\'' | '<' | '>') || c.is_whitespace())
            .unwrap_or(after.len());
        if end > 0 {
            masked.push_str("***");
        }
        rest = &after[end..];
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robot::webhook::Webhook;

    #[test]
    fn quoted_answers_never_carry_the_requests_secrets() {
        let webhook =
            Webhook::parse("https://u:pw-secret@h.test/robot/send?access_token=topsecret")
                .expect("parses");
        let secrets = |signature: Option<&str>| {
            let mut secrets = webhook.secrets();
            if let Some(signature) = signature {
                secrets.push(url::form_urlencoded::byte_serialize(signature.as_bytes()).collect());
                secrets.push(signature.to_owned());
            }
            secrets
        };
        // A proxy echoing the request, the signature encoded and not.
        let echo = b"<h1>bad gateway</h1> POST /robot/send?access_token=topsecret&timestamp=1&sign=ab%2Bc%2Fd%3D for ab+c/d= (pw-secret, topsecret)";
        let quoted = quote(echo, secrets(Some("ab+c/d=")));
        assert_eq!(
            quoted,
            "<h1>bad gateway</h1> POST /robot/send?access_token=***&timestamp=1&sign=*** for *** (***, ***)"
        );
        // Values after the keys are masked even when they are not the ones
        // sent (a proxy re-encoding them, say).
        let quoted = quote(b"access_token=other sign=xyz design", secrets(None));
        assert_eq!(quoted, "access_token=*** sign=*** design");
        // Long text is still cut, after masking.
        let long = format!("{}topsecret", "x".repeat(QUOTED_BYTES - 4));
        assert!(!quote(long.as_bytes(), secrets(None)).contains("tops"));
    }
}
