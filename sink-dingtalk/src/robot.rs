//! One DingTalk robot: signs a request, POSTs the body, classifies the
//! answer, and decides what a failure means for the next attempt. DingTalk
//! answers HTTP 200 even on failure, so the verdict is in the body's
//! `errcode`.
//!
//! The retry-or-not decision lives here, next to the answer it judges
//! ([`SendError::next`]), and so does the outcome a sender is told
//! ([`SendError::outcome`]); the delivery code only follows them.
//!
//! The other side is trusted no more than a client: redirects are not
//! followed (a webhook never redirects; following one would post the
//! message, token and all, somewhere else), at most `MAX_ANSWER_BYTES` of an
//! answer are read, and what is quoted from it (`errmsg`, the start of an
//! answer that is not JSON) is at most `QUOTED_BYTES` of printable UTF-8
//! before it reaches an answer, a log line or `/status`, with the request's
//! secrets masked: a proxy that echoes the request's URL must not pass on
//! the access token or the signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use connector_sdk::{Outcome, Unavailable, shorten};

use crate::secret::Secret;
use crate::webhook::Webhook;

/// The most of DingTalk's answer that is read: its JSON answer is tens of
/// bytes; anything much larger is not DingTalk.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The most of DingTalk's text (`errmsg`, a non-JSON answer) quoted onwards.
pub const QUOTED_BYTES: usize = 256;

/// How one send attempt ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// DingTalk refused the message for good (bad token, signature, content...).
    #[error("DingTalk refused the message: errcode {errcode} ({errmsg}); {hint}")]
    Refused {
        /// DingTalk's code.
        errcode: i64,
        /// DingTalk's message.
        errmsg: String,
        /// What the operator should check.
        hint: &'static str,
    },
    /// DingTalk says the robot sent too fast (it is now blocked for a while).
    #[error("DingTalk throttled the robot: errcode {errcode} ({errmsg})")]
    TooFast {
        /// DingTalk's code.
        errcode: i64,
        /// DingTalk's message.
        errmsg: String,
    },
    /// DingTalk says it is busy (errcode -1): transient.
    #[error("DingTalk is busy: errcode {errcode} ({errmsg})")]
    Busy {
        /// DingTalk's code.
        errcode: i64,
        /// DingTalk's message.
        errmsg: String,
    },
    /// DingTalk answered with an HTTP error status (or a redirect, which
    /// is not followed).
    #[error("{}", http_status_message(*.0))]
    HttpStatus(u16),
    /// DingTalk's gateway answered HTTP 429: it throttles this robot.
    #[error("DingTalk's gateway answered HTTP 429 (too many requests)")]
    HttpThrottled {
        /// Its `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The answer is not DingTalk's JSON.
    #[error("DingTalk's answer is not valid: {0}")]
    BadAnswer(String),
    /// No answer in time.
    #[error("DingTalk did not answer within {0:?}")]
    Timeout(Duration),
    /// Could not reach DingTalk.
    #[error("cannot reach DingTalk: {0}")]
    Unreachable(String),
}

/// How long a gateway 429 without `Retry-After` holds the robot: DingTalk's
/// minute.
pub const GATEWAY_HOLD: Duration = Duration::from_secs(60);

/// What to do after a failed attempt: the one retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Never again: DingTalk refuses this message for good.
    GiveUp,
    /// DingTalk throttles the robot: hold every message to it, for the
    /// given time when DingTalk said, else for the configured cool-down.
    HoldRobot(Option<Duration>),
    /// Transient: another attempt may succeed soon.
    Retry,
    /// The endpoint refuses every message (a wrong URL, a gateway error):
    /// nothing this message could change, and retrying at once will not
    /// help. Answer "retry later"; an operator must look.
    Later,
}

impl SendError {
    /// What to do next. Throttles are never retried at once: the robot is
    /// held instead, so waiting sends do not make DingTalk's block longer.
    pub fn next(&self) -> Next {
        match self {
            SendError::Refused { .. } => Next::GiveUp,
            SendError::TooFast { .. } => Next::HoldRobot(None),
            SendError::HttpThrottled { retry_after } => {
                Next::HoldRobot(Some(retry_after.unwrap_or(GATEWAY_HOLD)))
            }
            SendError::HttpStatus(status) if *status < 500 => Next::Later,
            SendError::HttpStatus(_)
            | SendError::Busy { .. }
            | SendError::Timeout(_)
            | SendError::Unreachable(_)
            | SendError::BadAnswer(_) => Next::Retry,
        }
    }

    /// The outcome a sender gets for this failure, with `reason` (which
    /// names the event and chat group) and, for a throttle, how long the
    /// robot is held.
    pub fn outcome(&self, reason: String, hold: Duration) -> Outcome {
        match self {
            SendError::Refused { .. } => Outcome::rejected(reason),
            SendError::TooFast { .. } | SendError::HttpThrottled { .. } => Outcome::throttled(
                hold,
                format!("{reason}; holding the robot for {}s", hold.as_secs()),
            ),
            SendError::Timeout(_) => Outcome::unavailable(Unavailable::GatewayTimeout, reason),
            SendError::HttpStatus(500..) | SendError::Busy { .. } | SendError::Unreachable(_) => {
                Outcome::unavailable(Unavailable::ServiceUnavailable, reason)
            }
            SendError::BadAnswer(_) | SendError::HttpStatus(_) => {
                Outcome::unavailable(Unavailable::BadGateway, reason)
            }
        }
    }

    /// True when DingTalk refused *this message* for good (its content, its
    /// size, its shape, a keyword it lacks), false when the refusal is about
    /// the robot (its token, secret, IP allow-list, an errcode we do not
    /// know): fixing the robot's settings makes the same message go. A
    /// message already answered 200 and queued is dropped only in the first
    /// case; in the second it waits for the operator.
    pub fn blames_the_message(&self) -> bool {
        match self {
            SendError::Refused {
                errcode, errmsg, ..
            } => match errcode {
                430_101..=430_104 | 460_101 | 40_035 | 400_105 => true,
                // 310000 is also the answer to a missing keyword.
                310_000 => {
                    let errmsg = errmsg.to_lowercase();
                    errmsg.contains("keyword") || errmsg.contains("关键词")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// DingTalk's errcode, when it gave one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            SendError::Refused { errcode, .. }
            | SendError::TooFast { errcode, .. }
            | SendError::Busy { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

fn http_status_message(status: u16) -> String {
    if (300..400).contains(&status) {
        format!(
            "DingTalk answered with a redirect (HTTP {status}), which is not followed: a robot's webhook never redirects; check that the webhook url is the robot's address"
        )
    } else {
        format!("DingTalk answered HTTP {status}")
    }
}

/// The body DingTalk answers with.
#[derive(Debug, Deserialize)]
struct Answer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// True for the errcodes this sink knows by name (see [`classify`]): only
/// those become metric labels, so a robot answering made-up codes cannot
/// grow the metrics without bound.
pub fn is_known_errcode(errcode: i64) -> bool {
    matches!(
        errcode,
        0 | -1
            | 130_101
            | 410_100
            | 310_000
            | 300_001
            | 300_005
            | 400_101
            | 400_102
            | 400_105
            | 400_106
            | 400_013
            | 40_035
            | 430_101..=430_104 | 460_101
    )
}

/// Turns DingTalk's `errcode` into a verdict.
pub fn classify(errcode: i64, errmsg: String) -> Result<(), SendError> {
    let refused = |hint| SendError::Refused {
        errcode,
        errmsg: errmsg.clone(),
        hint,
    };
    match errcode {
        0 => Ok(()),
        130101 | 410100 => Err(SendError::TooFast { errcode, errmsg }),
        -1 => Err(SendError::Busy { errcode, errmsg }),
        310000 => Err(refused(
            "check the robot's security settings: the signature secret, the keywords the message must contain, or the IP allow-list",
        )),
        300001 | 300005 | 400101 | 400102 | 400106 | 400013 => Err(refused(
            "the access token, the robot or the chat group is gone or disabled; update the webhook url",
        )),
        430101..=430104 => Err(refused("DingTalk blocked the content of this message")),
        460101 => Err(refused("the message body is too long")),
        _ => Err(refused(
            "the message is not acceptable to DingTalk; fix the event",
        )),
    }
}

/// `sign` for a signed robot: base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")).
pub fn sign(secret: &Secret, timestamp_ms: u128) -> String {
    let secret = secret.expose();
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// One robot: where to post and how to sign.
#[derive(Debug, Clone)]
pub struct Robot {
    webhook: Webhook,
    secret: Option<Secret>,
    client: reqwest::Client,
}

impl Robot {
    /// A robot posting to `webhook`, signing with `secret` when given.
    pub fn new(webhook: Webhook, secret: Option<Secret>, client: reqwest::Client) -> Self {
        Self {
            webhook,
            secret,
            client,
        }
    }

    /// The webhook, which prints with its token masked.
    pub fn webhook(&self) -> &Webhook {
        &self.webhook
    }

    /// Whether requests carry a signature.
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }

    /// Posts one message body, signed afresh, and waits at most `timeout`.
    pub async fn send(&self, body: bytes::Bytes, timeout: Duration) -> Result<(), SendError> {
        let mut request = self
            .client
            .post(self.webhook.expose().clone())
            .timeout(timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body);
        let mut signature = None;
        if let Some(secret) = &self.secret {
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
        let quote = |text: &[u8]| self.quote(text, signature.as_deref());

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
                quote(&bytes)
            )));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|err| {
            SendError::BadAnswer(format!("{err}; it starts with \"{}\"", quote(&bytes)))
        })?;
        if answer.errcode == 0 {
            return Ok(());
        }
        classify(answer.errcode, quote(answer.errmsg.as_bytes()))
    }

    /// Text from the answer, ready to quote: the request's secrets (the
    /// access token, a password, the signature, as sent and encoded) and
    /// any `access_token=` or `sign=` value masked, then shortened to
    /// [`QUOTED_BYTES`] of printable text.
    fn quote(&self, text: &[u8], signature: Option<&str>) -> String {
        let mut secrets = self.webhook.secrets();
        if let Some(signature) = signature {
            secrets.push(url::form_urlencoded::byte_serialize(signature.as_bytes()).collect());
            secrets.push(signature.to_owned());
        }
        // The longest first: one may contain another.
        secrets.sort_unstable_by_key(|secret| std::cmp::Reverse(secret.len()));
        let mut text = String::from_utf8_lossy(text).into_owned();
        for secret in &secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        for key in ["access_token=", "sign="] {
            text = mask_values(&text, key);
        }
        shorten(&text, QUOTED_BYTES).into_owned()
    }
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

/// The answer's body, and whether it is whole: past `MAX_ANSWER_BYTES`,
/// reading stops.
async fn read_answer(
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

/// A reqwest failure without its URL: the URL carries the access token.
fn transport_error(err: reqwest::Error, timeout: Duration) -> SendError {
    if err.is_timeout() {
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
    SendError::Unreachable(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_vector() {
        let signature = sign(&Secret::new("SECabc"), 1_700_000_000_000);
        assert_eq!(signature, "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM=");
    }

    #[test]
    fn errcodes_are_classified() {
        assert_eq!(classify(0, "ok".into()), Ok(()));
        for code in [130101, 410100] {
            assert!(matches!(
                classify(code, String::new()),
                Err(SendError::TooFast { .. })
            ));
        }
        let busy = classify(-1, "busy".into()).expect_err("busy");
        assert_eq!(busy.next(), Next::Retry);
        for code in [
            310000, 300001, 300005, 400101, 400102, 400106, 400013, 400105, 40035, 43004, 430101,
            460101,
        ] {
            let err = classify(code, "x".into()).expect_err("refused");
            assert!(matches!(err, SendError::Refused { .. }), "{code}");
            assert_eq!(err.next(), Next::GiveUp, "{code} is permanent");
            assert_eq!(err.errcode(), Some(code));
        }
    }

    #[test]
    fn a_refusal_blames_the_message_or_the_robot() {
        for (code, errmsg, the_message) in [
            (430_102, "含有不安全的外链", true),
            (460_101, "message too long", true),
            (40_035, "缺少参数 json", true),
            (310_000, "keywords not in content", true),
            (310_000, "关键词不匹配", true),
            (310_000, "sign not match", false),
            (310_000, "ip 1.2.3.4 not in whitelist", false),
            (300_001, "token is not exist", false),
            (400_102, "robot stopped", false),
            (999_999, "something new", false),
        ] {
            let err = classify(code, errmsg.into()).expect_err("refused");
            assert_eq!(err.blames_the_message(), the_message, "{code} {errmsg}");
        }
        assert!(!SendError::HttpStatus(500).blames_the_message());
    }

    #[test]
    fn only_documented_errcodes_are_known() {
        for code in [
            0, -1, 130101, 410100, 310000, 300001, 400102, 430103, 460101,
        ] {
            assert!(is_known_errcode(code), "{code}");
        }
        for code in [1, 999_999, 430_105, i64::MIN] {
            assert!(!is_known_errcode(code), "{code}");
        }
    }

    #[test]
    fn quoted_answers_never_carry_the_requests_secrets() {
        let webhook =
            Webhook::parse("https://u:pw-secret@h.test/robot/send?access_token=topsecret")
                .expect("parses");
        let client = http_client(Duration::from_secs(1)).expect("client");
        let robot = Robot::new(webhook, None, client);
        // A proxy echoing the request, the signature encoded and not.
        let echo = b"<h1>bad gateway</h1> POST /robot/send?access_token=topsecret&timestamp=1&sign=ab%2Bc%2Fd%3D for ab+c/d= (pw-secret, topsecret)";
        let quoted = robot.quote(echo, Some("ab+c/d="));
        assert_eq!(
            quoted,
            "<h1>bad gateway</h1> POST /robot/send?access_token=***&timestamp=1&sign=*** for *** (***, ***)"
        );
        // Values after the keys are masked even when they are not the ones
        // sent (a proxy re-encoding them, say).
        let quoted = robot.quote(b"access_token=other sign=xyz design", None);
        assert_eq!(quoted, "access_token=*** sign=*** design");
        // Long text is still cut, after masking.
        let long = format!("{}topsecret", "x".repeat(QUOTED_BYTES - 4));
        assert!(!robot.quote(long.as_bytes(), None).contains("tops"));
    }

    #[test]
    fn refusals_say_what_to_check() {
        let err = classify(310000, "sign not match".into()).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("310000")
                && text.contains("sign not match")
                && text.contains("signature"),
            "{text}"
        );
    }

    #[test]
    fn a_redirect_is_explained_and_answered_retry_later() {
        let err = SendError::HttpStatus(302);
        assert!(err.to_string().contains("redirect"), "{err}");
        assert_eq!(err.next(), Next::Later, "not followed, not retried at once");
        assert_eq!(
            SendError::HttpStatus(502).to_string(),
            "DingTalk answered HTTP 502"
        );
    }

    #[test]
    fn the_next_step_and_the_answer_follow_the_failure() {
        let hold = Duration::from_secs(600);
        let cases = [
            (SendError::HttpStatus(500), Next::Retry, 503_u16),
            (SendError::HttpStatus(502), Next::Retry, 503),
            (SendError::HttpStatus(404), Next::Later, 502),
            (
                SendError::HttpThrottled {
                    retry_after: Some(Duration::from_secs(30)),
                },
                Next::HoldRobot(Some(Duration::from_secs(30))),
                429,
            ),
            (
                SendError::TooFast {
                    errcode: 410_100,
                    errmsg: "too fast".into(),
                },
                Next::HoldRobot(None),
                429,
            ),
            (SendError::Timeout(hold), Next::Retry, 504),
            (SendError::Unreachable("refused".into()), Next::Retry, 503),
            (SendError::BadAnswer("html".into()), Next::Retry, 502),
        ];
        for (err, next, status) in cases {
            assert_eq!(err.next(), next, "{err}");
            let outcome = err.outcome("event e".into(), hold);
            let code = match &outcome {
                Outcome::Rejected { .. } => 400,
                Outcome::Throttled { retry_after, .. } => {
                    assert_eq!(*retry_after, hold);
                    429
                }
                Outcome::Unavailable { kind, .. } => match kind {
                    Unavailable::BadGateway => 502,
                    Unavailable::ServiceUnavailable => 503,
                    Unavailable::GatewayTimeout => 504,
                },
                Outcome::Delivered => 200,
            };
            assert_eq!(code, status, "{err}");
        }
    }
}
