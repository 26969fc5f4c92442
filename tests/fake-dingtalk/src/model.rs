//! The public data types of the fake: robot configuration, injected
//! failures, accepted messages, events and DingTalk's errcodes.

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// DingTalk errcodes answered by the fake.
pub mod errcode {
    /// Success.
    pub const OK: i64 = 0;
    /// Unknown or missing `access_token`.
    pub const TOKEN_NOT_EXIST: i64 = 300_001;
    /// Signature missing or wrong, or timestamp out of range.
    pub const SIGN: i64 = 310_000;
    /// `Content-Type` is not `application/json`.
    pub const CONTENT_TYPE: i64 = 43_004;
    /// Body is not JSON, or a required parameter is missing.
    pub const MISSING_PARAM: i64 = 40_035;
    /// Body over [`crate::MAX_BODY_BYTES`].
    pub const TOO_LONG: i64 = 460_101;
    /// Over the per-minute limit, or blocked for having been over it.
    pub const TOO_FAST: i64 = 410_100;
}

/// Largest body, in bytes, the fake accepts.
pub const MAX_BODY_BYTES: usize = 20_000;

/// DingTalk's default per-robot limit of messages per minute.
pub const DEFAULT_PER_MINUTE: u32 = 20;

/// DingTalk's default block after exceeding the limit: 10 minutes.
pub const DEFAULT_BLOCK_FOR: Duration = Duration::from_secs(600);

/// One robot the fake serves.
#[derive(Clone, PartialEq, Eq)]
pub struct RobotSpec {
    /// The webhook's `access_token`.
    pub token: String,
    /// The signing secret (`SEC...`); `None` for an unsigned robot.
    pub secret: Option<String>,
    /// Accepted messages allowed per sliding 60-second window.
    pub per_minute: u32,
    /// How long the robot refuses everything after exceeding the limit.
    pub block_for: Duration,
    /// Whether a repeated `msgUuid` is answered ok without being shown
    /// again. Off by default: DingTalk documents no such de-duplication for
    /// custom robots, so every POST counts and shows.
    pub honours_msg_uuid: bool,
    /// The robot's security keywords: a message whose text contains none
    /// of them is refused with errcode 310000. Empty: not keyword-secured.
    pub keywords: Vec<String>,
}

impl RobotSpec {
    /// An unsigned robot with DingTalk's limits (20/min, 10 min block).
    pub fn new(token: &str) -> Self {
        RobotSpec {
            token: token.to_owned(),
            secret: None,
            per_minute: DEFAULT_PER_MINUTE,
            block_for: DEFAULT_BLOCK_FOR,
            honours_msg_uuid: false,
            keywords: Vec::new(),
        }
    }

    /// A robot that requires signed requests with `secret`.
    pub fn signed(token: &str, secret: &str) -> Self {
        RobotSpec {
            secret: Some(secret.to_owned()),
            ..RobotSpec::new(token)
        }
    }

    /// Sets the per-minute limit.
    pub fn per_minute(self, n: u32) -> Self {
        RobotSpec {
            per_minute: n,
            ..self
        }
    }

    /// Makes a repeated `msgUuid` be answered ok without being shown or
    /// counted again (what some clients assume; DingTalk does not promise it).
    pub fn honour_msg_uuid(self) -> Self {
        RobotSpec {
            honours_msg_uuid: true,
            ..self
        }
    }

    /// Secures the robot by `keywords`, as DingTalk's "custom keywords"
    /// setting does: a message must contain one of them.
    pub fn keywords(self, keywords: &[&str]) -> Self {
        RobotSpec {
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            ..self
        }
    }

    /// Sets how long the robot stays blocked after exceeding its limit.
    pub fn block_for(self, d: Duration) -> Self {
        RobotSpec {
            block_for: d,
            ..self
        }
    }
}

impl std::fmt::Debug for RobotSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("RobotSpec")
            .field("token", &self.token)
            .field("signed", &self.secret.is_some())
            .field("per_minute", &self.per_minute)
            .field("block_for", &self.block_for)
            .field("honours_msg_uuid", &self.honours_msg_uuid)
            .field("keywords", &self.keywords)
            .finish()
    }
}

/// A failure injected with [`crate::FakeDingTalk::fail_next`].
#[derive(Clone, Debug)]
pub enum Failure {
    /// Answer with this HTTP status and a short plain-text body.
    Http(u16),
    /// Answer HTTP 200 with this errcode and errmsg. A non-zero errcode is
    /// recorded in the rejections (410100 also counts as a throttle);
    /// errcode 0 answers "ok" without recording the message, like a message
    /// silently lost.
    ErrCode(i64, String),
    /// Sleep this long, then handle the request normally.
    Delay(Duration),
    /// Sleep this long, then answer with the inner failure: a slow
    /// "too fast", for instance.
    After(Duration, Box<Failure>),
}

/// A message the fake accepted (errcode 0, not a duplicate).
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The robot's token.
    pub token: String,
    /// The body's `msgtype`.
    pub msgtype: String,
    /// The whole JSON body.
    pub body: Value,
    /// Wall-clock time of acceptance.
    pub at: SystemTime,
}

/// The most POSTs within any 60 s of `posted` (their times, from
/// [`crate::FakeDingTalk::posted_at`]): what DingTalk's limit of 20 a minute
/// is checked against. Pass every POST, not only the accepted ones: the fake
/// accepts no more than its limit, so those alone can never exceed it.
pub fn most_in_any_minute(posted: &[SystemTime]) -> usize {
    let mut times = posted.to_vec();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| {
                    t.duration_since(times[i]).unwrap_or_default() < Duration::from_secs(60)
                })
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Something the fake did, reported to [`crate::FakeDingTalk::on_event`]
/// listeners as it happens.
#[derive(Clone, Debug)]
pub enum Event {
    /// A message was accepted.
    Accepted(Accepted),
    /// A message repeated an already accepted `msgUuid`: answered ok, not
    /// recorded again.
    Duplicate {
        /// The robot's token.
        token: String,
        /// The repeated `msgUuid`.
        msg_uuid: String,
    },
    /// A request was answered with a non-zero errcode.
    Rejected {
        /// The token the request named (empty when it named none).
        token: String,
        /// The errcode answered.
        errcode: i64,
        /// The errmsg answered.
        errmsg: String,
    },
    /// An injected [`Failure::Http`] was answered.
    HttpFailure {
        /// The token the request named.
        token: String,
        /// The HTTP status answered.
        status: u16,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let r = RobotSpec::new("t");
        assert_eq!(r.per_minute, 20);
        assert_eq!(r.block_for, Duration::from_secs(600));
        assert!(r.secret.is_none());
        assert!(!r.honours_msg_uuid, "every POST shows, as on DingTalk");
        assert!(RobotSpec::new("t").honour_msg_uuid().honours_msg_uuid);
        let r = RobotSpec::signed("t", "SECx")
            .per_minute(3)
            .block_for(Duration::from_millis(5));
        assert_eq!(r.secret.as_deref(), Some("SECx"));
        assert_eq!(r.per_minute, 3);
        assert_eq!(r.block_for, Duration::from_millis(5));
    }

    #[test]
    fn debug_hides_secret() {
        let s = format!("{:?}", RobotSpec::signed("t", "SECsupersecret"));
        assert!(!s.contains("SECsupersecret"), "{s}");
    }

    #[test]
    fn most_in_any_minute_slides_over_the_posts() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(most_in_any_minute(&[]), 0);
        // 0, 30, 59 are in one minute; 59, 61, 90, 118 in another: 4.
        let posts = [at(90), at(0), at(30), at(59), at(61), at(118), at(200)];
        assert_eq!(most_in_any_minute(&posts), 4);
        // A window is [t, t + 60 s): posts 60 s apart are never in one.
        assert_eq!(most_in_any_minute(&[at(0), at(60)]), 1);
    }
}
