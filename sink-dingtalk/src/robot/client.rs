//! The HTTP side of a robot: sign a request, POST the body, read the answer.
//!
//! The other side is trusted no more than a client: redirects are not
//! followed (a webhook never redirects; following one would post the
//! message, token and all, somewhere else), at most `MAX_ANSWER_BYTES` of
//! an answer are read, and what is quoted from it goes through
//! [`mask::quote`](super::mask::quote).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::answer::{SendError, classify};
use super::mask::{QUOTED_BYTES, quote};
use super::sign::sign;
use super::webhook::Webhook;
use crate::secret::Secret;

/// The most of DingTalk's answer that is read: its JSON answer is tens of
/// bytes; anything much larger is not DingTalk.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The body DingTalk answers with.
#[derive(Debug, Deserialize)]
struct Reply {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Posts one message body to `webhook`, signed afresh with `secret` when
/// given, and waits at most `timeout`.
pub async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    secret: Option<&Secret>,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut request = client
        .post(webhook.expose().clone())
        .timeout(timeout)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body);
    let mut signature = None;
    if let Some(secret) = secret {
        // DingTalk rejects a timestamp more than an hour off: a fresh one per request.
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let signed = signature.insert(sign(secret, timestamp));
        request = request.query(&[
            ("timestamp", timestamp.to_string().as_str()),
            ("sign", signed.as_str()),
        ]);
    }
    let quoted = |text: &[u8]| {
        let mut secrets = webhook.secrets();
        if let Some(signature) = &signature {
            secrets.push(url::form_urlencoded::byte_serialize(signature.as_bytes()).collect());
            secrets.push(signature.clone());
        }
        quote(text, secrets)
    };

    let response = request
        .send()
        .await
        .map_err(|err| transport_error(err, timeout))?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(SendError::HttpThrottled { retry_after });
    }
    if !status.is_success() {
        return Err(SendError::HttpStatus(status.as_u16()));
    }
    let (bytes, whole) = read_answer(response, timeout).await?;
    if !whole {
        return Err(SendError::BadAnswer(format!(
            "the answer is over {} KiB (DingTalk answers with a short JSON object); it starts with \"{}\"",
            MAX_ANSWER_BYTES / 1024,
            quoted(&bytes)
        )));
    }
    let reply: Reply = serde_json::from_slice(&bytes).map_err(|err| {
        SendError::BadAnswer(format!("{err}; it starts with \"{}\"", quoted(&bytes)))
    })?;
    if reply.errcode == 0 {
        return Ok(());
    }
    classify(reply.errcode, quoted(reply.errmsg.as_bytes()))
}

/// The answer's body, and whether it is whole: past `MAX_ANSWER_BYTES`,
/// reading stops.
pub(crate) async fn read_answer(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), SendError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| transport_error(err, timeout))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            bytes.extend_from_slice(&chunk[..chunk.len().min(QUOTED_BYTES)]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

/// A reqwest failure without its URL (the URL carries the access token):
/// one that never connected sent nothing; a timeout or a failure after the
/// connection opened may have reached DingTalk.
pub(crate) fn transport_error(err: reqwest::Error, timeout: Duration) -> SendError {
    let connect = err.is_connect();
    if err.is_timeout() && !connect {
        return SendError::Timeout(timeout);
    }
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if connect {
        SendError::Unreachable(text)
    } else {
        SendError::Broken(text)
    }
}

/// The one HTTP client every robot shares: pooled connections, rustls, a
/// connect timeout (each request sets its own total timeout), and no
/// redirects followed.
pub fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider (ring builds far
    // faster than aws-lc); install it once. A second install is a no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("sink-dingtalk/", env!("CARGO_PKG_VERSION")))
        .build()
}
