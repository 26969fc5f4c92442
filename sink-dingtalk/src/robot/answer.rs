//! What DingTalk's answers mean: one table of its errcodes (what each is,
//! what the operator should check, whose fault it is), and the one verdict
//! a failed send becomes for the delivery kit. DingTalk answers HTTP 200
//! even on failure, so most of the verdict is in the body's `errcode`; the
//! rest comes from HTTP itself (a gateway's 429, a 5xx, a timeout, a
//! connection that never opened).
//!
//! App robots (DingTalk's OpenAPI) answer errors as HTTP 4xx/5xx with
//! `{"code","message"}`, `code` a string: `APP_CODES` is their part of
//! the table, and [`SendError::App`] their failure.

use std::time::Duration;

use connector_sdk::deliver::{Answer, Blame, Verdict};

/// How long a gateway 429 without `Retry-After` holds the robot: DingTalk's
/// minute.
pub const GATEWAY_HOLD: Duration = Duration::from_secs(60);

/// What an errcode means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// Shown.
    Ok,
    /// Sent too fast: DingTalk now blocks the robot for a while.
    TooFast,
    /// System busy: transient.
    Busy,
    /// Refused for good; whose fault, and what to check.
    Refused(Blame, &'static str),
    /// The app's access token is invalid or expired: refresh it once.
    TokenInvalid,
}

const SECURITY: &str = "check the robot's security settings: the signature secret, the keywords the message must contain, or the IP allow-list";
const GONE: &str =
    "the access token, the robot or the chat group is gone or disabled; update the webhook url";
const BAD_REQUEST: &str = "the message is not acceptable to DingTalk; fix the event";
const BLOCKED: &str = "DingTalk blocked the content of this message";
const TOO_LONG: &str = "the message body is too long";

/// DingTalk's errcodes, each once: what it means for the next send.
const ERRCODES: &[(i64, Meaning)] = &[
    (0, Meaning::Ok),
    (-1, Meaning::Busy),
    (130_101, Meaning::TooFast),
    (410_100, Meaning::TooFast),
    // Also the answer to a missing keyword, which is the message's fault:
    // see `blame`.
    (310_000, Meaning::Refused(Blame::Destination, SECURITY)),
    (300_001, Meaning::Refused(Blame::Destination, GONE)),
    (300_005, Meaning::Refused(Blame::Destination, GONE)),
    (400_101, Meaning::Refused(Blame::Destination, GONE)),
    (400_102, Meaning::Refused(Blame::Destination, GONE)),
    (400_106, Meaning::Refused(Blame::Destination, GONE)),
    (400_013, Meaning::Refused(Blame::Destination, GONE)),
    (400_105, Meaning::Refused(Blame::Message, BAD_REQUEST)),
    (400_402, Meaning::Refused(Blame::Message, BAD_REQUEST)),
    (400_403, Meaning::Refused(Blame::Message, BAD_REQUEST)),
    (40_035, Meaning::Refused(Blame::Message, BAD_REQUEST)),
    (43_004, Meaning::Refused(Blame::Message, BAD_REQUEST)),
    (430_101, Meaning::Refused(Blame::Message, BLOCKED)),
    (430_102, Meaning::Refused(Blame::Message, BLOCKED)),
    (430_103, Meaning::Refused(Blame::Message, BLOCKED)),
    (430_104, Meaning::Refused(Blame::Message, BLOCKED)),
    (460_101, Meaning::Refused(Blame::Message, TOO_LONG)),
];

const APP_BAD_REQUEST: &str = "the message is not acceptable to DingTalk's OpenAPI; fix the event";
const APP_SETTINGS: &str = "check the app's robot_code, its permissions (the robot must be in the group, the app allowed to send robot messages) and open_conversation_id";
const APP_TOKEN: &str =
    "DingTalk refused a freshly fetched access token; check the app's permissions";

/// DingTalk OpenAPI error codes (app robots), matched as prefixes, first
/// match wins: what each means for the next send. A code not listed is
/// read from its HTTP status (see [`SendError::App`]).
const APP_CODES: &[(&str, Meaning)] = &[
    ("InvalidAuthentication", Meaning::TokenInvalid),
    ("invalidAuthentication", Meaning::TokenInvalid),
    ("Forbidden.AccessDenied.QpsLimit", Meaning::TooFast),
    ("Throttling", Meaning::TooFast),
    (
        "invalidParameter",
        Meaning::Refused(Blame::Message, APP_BAD_REQUEST),
    ),
    ("param.", Meaning::Refused(Blame::Message, APP_BAD_REQUEST)),
    (
        "Forbidden",
        Meaning::Refused(Blame::Destination, APP_SETTINGS),
    ),
    (
        "resource.not.found",
        Meaning::Refused(Blame::Destination, APP_SETTINGS),
    ),
    ("robot.", Meaning::Refused(Blame::Destination, APP_SETTINGS)),
    ("ServiceUnavailable", Meaning::Busy),
    ("SystemBusy", Meaning::Busy),
];

/// What an OpenAPI error means: its code in [`APP_CODES`], else its HTTP
/// status (401 a bad token, 429 too fast, 5xx busy, another 4xx the app's
/// settings).
fn app_meaning(status: u16, code: &str) -> Meaning {
    if let Some((_, meaning)) = APP_CODES
        .iter()
        .find(|(prefix, _)| code.starts_with(prefix))
    {
        return *meaning;
    }
    match status {
        401 => Meaning::TokenInvalid,
        429 => Meaning::TooFast,
        500.. => Meaning::Busy,
        _ => Meaning::Refused(Blame::Destination, APP_SETTINGS),
    }
}

/// An errcode this sink does not know: refused, and (as it may be about the
/// robot) a queued message waits for the operator rather than being dropped.
const UNKNOWN: Meaning = Meaning::Refused(Blame::Destination, BAD_REQUEST);

fn meaning(errcode: i64) -> Option<Meaning> {
    ERRCODES
        .iter()
        .find(|(code, _)| *code == errcode)
        .map(|(_, meaning)| *meaning)
}

/// True for the errcodes this sink knows: only those become metric labels,
/// so a robot answering made-up codes cannot grow the metrics without bound.
pub fn is_known_errcode(errcode: i64) -> bool {
    meaning(errcode).is_some()
}

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
    /// No answer in time, after the request was sent.
    #[error("DingTalk did not answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect to DingTalk (refused, no DNS answer, a failed TLS
    /// handshake, a connect timeout): nothing was sent.
    #[error("cannot reach DingTalk: {0}")]
    Unreachable(String),
    /// The connection failed after it opened: the request may have arrived.
    #[error("the connection to DingTalk failed: {0}")]
    Broken(String),
    /// DingTalk's OpenAPI (an app robot) answered an error.
    #[error("DingTalk's OpenAPI answered HTTP {status} {code} ({message}){}", app_hint(*.status, .code))]
    App {
        /// The HTTP status.
        status: u16,
        /// The answer's `code`.
        code: String,
        /// The answer's `message`, secrets masked.
        message: String,
    },
    /// DingTalk refused an app's key and secret (its token request).
    #[error(
        "app `{app}`: DingTalk refused its app_key or app_secret (HTTP {status} {code}: {message}); check bot.apps[].app_key and app_secret (or app_secret_file)"
    )]
    AppCredentials {
        /// The app's name in the config.
        app: String,
        /// The HTTP status.
        status: u16,
        /// The answer's `code`.
        code: String,
        /// The answer's `message`, secrets masked.
        message: String,
    },
    /// The app robot cannot send this message (a type it has no form for,
    /// a `msgParam` too long).
    #[error("{0}")]
    Unsupported(String),
}

fn app_hint(status: u16, code: &str) -> String {
    match app_meaning(status, code) {
        Meaning::Refused(_, hint) => format!("; {hint}"),
        Meaning::TokenInvalid => format!("; {APP_TOKEN}"),
        Meaning::Ok | Meaning::TooFast | Meaning::Busy => String::new(),
    }
}

impl SendError {
    /// DingTalk's errcode, when it gave one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            SendError::Refused { errcode, .. }
            | SendError::TooFast { errcode, .. }
            | SendError::Busy { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// True when an app robot's access token was refused: fetch a new one
    /// and try once more.
    pub fn is_token_invalid(&self) -> bool {
        matches!(self, SendError::App { status, code, .. } if app_meaning(*status, code) == Meaning::TokenInvalid)
    }

    /// What the kit does about it. Throttles are never retried at once: the
    /// robot is held instead, so waiting sends do not make DingTalk's block
    /// longer.
    pub fn verdict(&self) -> Verdict {
        let reason = self.to_string();
        match self {
            SendError::Refused {
                errcode, errmsg, ..
            } => Verdict::Refused {
                blame: blame(*errcode, errmsg),
                reason,
            },
            SendError::TooFast { .. } => Verdict::Throttled { hold: None, reason },
            SendError::HttpThrottled { retry_after } => {
                Verdict::of_http_status(429, Some(retry_after.unwrap_or(GATEWAY_HOLD)), reason)
            }
            SendError::HttpStatus(status) => Verdict::of_http_status(*status, None, reason),
            // DingTalk's "system busy" is its 503.
            SendError::Busy { .. } => Verdict::of_http_status(503, None, reason),
            // An answer that is not DingTalk's: as a success without one.
            SendError::BadAnswer(_) => Verdict::of_http_status(200, None, reason),
            SendError::Timeout(_) => Verdict::no_answer(true, true, reason),
            SendError::Unreachable(_) => Verdict::no_answer(false, false, reason),
            SendError::Broken(_) => Verdict::no_answer(true, false, reason),
            SendError::App { status, code, .. } => match app_meaning(*status, code) {
                Meaning::TooFast => Verdict::Throttled {
                    hold: Some(GATEWAY_HOLD),
                    reason,
                },
                Meaning::Busy => Verdict::of_http_status(503, None, reason),
                Meaning::Refused(blame, _) => Verdict::Refused { blame, reason },
                // Refused again after a refresh: the app's settings.
                Meaning::TokenInvalid | Meaning::Ok => Verdict::Refused {
                    blame: Blame::Destination,
                    reason,
                },
            },
            SendError::AppCredentials { status, .. } if *status >= 500 => {
                Verdict::of_http_status(*status, None, reason)
            }
            SendError::AppCredentials { .. } => Verdict::Refused {
                blame: Blame::Destination,
                reason,
            },
            SendError::Unsupported(_) => Verdict::Refused {
                blame: Blame::Message,
                reason,
            },
        }
    }

    /// The kit's answer for this failure.
    pub fn answer(&self) -> Answer {
        Answer {
            verdict: self.verdict(),
            code: self.errcode(),
        }
    }
}

/// Whose fault a refusal is: the message's (its content, size, shape, a
/// keyword it lacks) or the robot's settings' (its token, secret, IP
/// allow-list, an errcode we do not know).
fn blame(errcode: i64, errmsg: &str) -> Blame {
    if errcode == 310_000 {
        let errmsg = errmsg.to_lowercase();
        if errmsg.contains("keyword") || errmsg.contains("关键词") {
            return Blame::Message;
        }
    }
    match meaning(errcode).unwrap_or(UNKNOWN) {
        Meaning::Refused(blame, _) => blame,
        Meaning::Ok | Meaning::TooFast | Meaning::Busy | Meaning::TokenInvalid => {
            Blame::Destination
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

/// Turns DingTalk's `errcode` into a verdict.
pub fn classify(errcode: i64, errmsg: String) -> Result<(), SendError> {
    match meaning(errcode).unwrap_or(UNKNOWN) {
        Meaning::Ok => Ok(()),
        Meaning::TooFast => Err(SendError::TooFast { errcode, errmsg }),
        Meaning::Busy => Err(SendError::Busy { errcode, errmsg }),
        Meaning::Refused(_, hint) => Err(SendError::Refused {
            errcode,
            errmsg,
            hint,
        }),
        Meaning::TokenInvalid => Err(SendError::Refused {
            errcode,
            errmsg,
            hint: GONE,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::Unavailable;
    use connector_sdk::deliver::Retry;

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
        assert!(matches!(
            busy.verdict(),
            Verdict::Failed {
                retry: Retry::Soon,
                ..
            }
        ));
        for code in [
            310000, 300001, 300005, 400101, 400102, 400106, 400013, 400105, 40035, 43004, 430101,
            460101,
        ] {
            let err = classify(code, "x".into()).expect_err("refused");
            assert!(matches!(err, SendError::Refused { .. }), "{code}");
            assert!(
                matches!(err.verdict(), Verdict::Refused { .. }),
                "{code} is permanent"
            );
            assert_eq!(err.errcode(), Some(code));
        }
    }

    #[test]
    fn a_refusal_blames_the_message_or_the_robot() {
        for (code, errmsg, the_message) in [
            (430_102, "含有不安全的外链", true),
            (460_101, "message too long", true),
            (40_035, "缺少参数 json", true),
            (400_105, "invalid msgtype", true),
            (310_000, "keywords not in content", true),
            (310_000, "关键词不匹配", true),
            (310_000, "sign not match", false),
            (310_000, "ip 1.2.3.4 not in whitelist", false),
            (300_001, "token is not exist", false),
            (400_102, "robot stopped", false),
            (999_999, "something new", false),
        ] {
            let err = classify(code, errmsg.into()).expect_err("refused");
            let blamed = match err.verdict() {
                Verdict::Refused { blame, .. } => blame,
                other => panic!("{code}: {other:?}"),
            };
            assert_eq!(blamed == Blame::Message, the_message, "{code} {errmsg}");
        }
        assert!(!matches!(
            SendError::HttpStatus(500).verdict(),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn only_documented_errcodes_are_known() {
        for code in [
            0, -1, 130101, 410100, 310000, 300001, 400102, 430103, 460101, 40035, 400105,
        ] {
            assert!(is_known_errcode(code), "{code}");
        }
        for code in [1, 999_999, 430_105, i64::MIN] {
            assert!(!is_known_errcode(code), "{code}");
        }
    }

    #[test]
    fn every_errcode_is_in_the_table_once() {
        let mut codes: Vec<i64> = ERRCODES.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ERRCODES.len());
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
        assert!(
            matches!(
                err.verdict(),
                Verdict::Failed {
                    retry: Retry::Later,
                    ..
                }
            ),
            "not followed, not retried at once"
        );
        assert_eq!(
            SendError::HttpStatus(502).to_string(),
            "DingTalk answered HTTP 502"
        );
    }

    /// What the kit will do, and the status code a sender gets when it is
    /// the event's last attempt.
    fn next_and_status(err: &SendError) -> (&'static str, u16) {
        let verdict = err.verdict();
        let next = match &verdict {
            Verdict::Refused { .. } => "give up",
            Verdict::Throttled { .. } => "hold",
            Verdict::Failed {
                retry: Retry::Soon, ..
            } => "retry",
            Verdict::Failed {
                retry: Retry::Later,
                ..
            } => "later",
            Verdict::Delivered => "done",
        };
        let status = match verdict {
            Verdict::Refused { .. } => 400,
            Verdict::Throttled { .. } => 429,
            Verdict::Failed { kind, .. } => match kind {
                Unavailable::BadGateway => 502,
                Unavailable::ServiceUnavailable => 503,
                Unavailable::GatewayTimeout => 504,
            },
            Verdict::Delivered => 200,
        };
        (next, status)
    }

    #[test]
    fn the_next_step_and_the_answer_follow_the_failure() {
        let cases = [
            (SendError::HttpStatus(500), "retry", 503_u16),
            (SendError::HttpStatus(502), "retry", 503),
            (SendError::HttpStatus(404), "later", 502),
            (
                SendError::HttpThrottled {
                    retry_after: Some(Duration::from_secs(30)),
                },
                "hold",
                429,
            ),
            (
                SendError::TooFast {
                    errcode: 410_100,
                    errmsg: "too fast".into(),
                },
                "hold",
                429,
            ),
            (SendError::Timeout(Duration::from_secs(1)), "retry", 504),
            (SendError::Unreachable("refused".into()), "retry", 503),
            (SendError::Broken("reset".into()), "retry", 503),
            (SendError::BadAnswer("html".into()), "retry", 502),
        ];
        for (err, next, status) in cases {
            assert_eq!(next_and_status(&err), (next, status), "{err}");
        }
        assert!(matches!(
            SendError::HttpThrottled { retry_after: None }.verdict(),
            Verdict::Throttled {
                hold: Some(GATEWAY_HOLD),
                ..
            }
        ));
    }

    #[test]
    fn openapi_codes_are_in_the_same_table() {
        let app = |status: u16, code: &str| SendError::App {
            status,
            code: code.into(),
            message: "m".into(),
        };
        assert!(app(401, "InvalidAuthentication").is_token_invalid());
        assert!(app(401, "somethingNew").is_token_invalid());
        assert!(!app(400, "invalidParameter").is_token_invalid());
        let cases = [
            (app(400, "invalidParameter"), "give up", 400_u16),
            (app(400, "invalidParameter.msgParam"), "give up", 400),
            (
                app(403, "Forbidden.AccessDenied.QpsLimitForApi"),
                "hold",
                429,
            ),
            (app(429, "anything"), "hold", 429),
            (app(500, "InternalError"), "retry", 503),
            (app(503, "ServiceUnavailable"), "retry", 503),
            (
                app(403, "Forbidden.AccessDenied.RobotNotInGroup"),
                "give up",
                400,
            ),
            (app(401, "InvalidAuthentication"), "give up", 400),
        ];
        for (err, next, status) in cases {
            assert_eq!(next_and_status(&err), (next, status), "{err}");
        }
        let blame = |err: SendError| match err.verdict() {
            Verdict::Refused { blame, .. } => blame,
            other => panic!("{other:?}"),
        };
        assert_eq!(blame(app(400, "invalidParameter")), Blame::Message);
        assert_eq!(blame(app(404, "resource.not.found")), Blame::Destination);
        let bad = SendError::AppCredentials {
            app: "oncall".into(),
            status: 400,
            code: "invalidClientIdOrSecret".into(),
            message: "m".into(),
        };
        assert!(bad.to_string().contains("app `oncall`"), "{bad}");
        assert_eq!(blame(bad), Blame::Destination);
    }

    #[test]
    fn only_a_send_that_may_have_arrived_spends_budget() {
        let reached = |err: SendError| match err.verdict() {
            Verdict::Failed { reached, .. } => reached,
            other => panic!("{other:?}"),
        };
        assert!(!reached(SendError::Unreachable(
            "connection refused".into()
        )));
        assert!(reached(SendError::Timeout(Duration::from_secs(1))));
        assert!(reached(SendError::Broken("reset by peer".into())));
        assert!(reached(SendError::HttpStatus(503)));
    }
}
