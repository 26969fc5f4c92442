//! What a sink tells the kit about a destination: how to send one prepared
//! payload, what the answer means ([`Verdict`]), its budget, and, if it can,
//! how to merge queued payloads into one digest.
//!
//! A destination is one sending identity with its own limit: a DingTalk
//! robot, a Feishu bot, a Slack webhook. The kit never looks inside a
//! payload; it stores it (serde) while it waits in an outbox and hands it
//! back to [`Destination::send`] or [`Destination::digest`].

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sink::{Outcome, Unavailable};
use crate::store::Window;

/// A destination: one sending identity with its own budget.
///
/// ```
/// use std::time::Duration;
/// use connector_sdk::async_trait;
/// use connector_sdk::deliver::{Answer, Destination, Verdict};
/// use connector_sdk::store::Window;
///
/// struct Printer {
///     windows: [Window; 1],
/// }
///
/// #[async_trait]
/// impl Destination for Printer {
///     type Payload = String;
///     fn key(&self) -> &str {
///         "printer"
///     }
///     fn windows(&self) -> &[Window] {
///         &self.windows
///     }
///     async fn send(&self, payload: &String, _timeout: Duration) -> Answer {
///         println!("{payload}");
///         Answer::from(Verdict::Delivered)
///     }
/// }
///
/// let printer = Printer { windows: [Window::new(20, Duration::from_secs(60))] };
/// assert_eq!(printer.key(), "printer");
/// ```
#[async_trait]
pub trait Destination: Send + Sync + 'static {
    /// What one event becomes for this destination, ready to send (a JSON
    /// body, say). Kept in the store while it waits in an outbox, so it
    /// must survive a serde round trip.
    type Payload: Clone + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// A stable name for the store, the same in every replica and after a
    /// restart, and safe to show (a hash of the address, not the address:
    /// it may carry a token). Two destinations with one key are one.
    fn key(&self) -> &str;

    /// How logs and `/status` name it: a name the operator gave, or the
    /// key. Never a secret.
    fn name(&self) -> &str {
        self.key()
    }

    /// Its budget: at most `limit` sends in any `per`, for each window; the
    /// first is the main one (digest slots are reserved in it, `/status`
    /// counts it). DingTalk's robot: 20 per 66 s (its minute, with margin);
    /// Feishu's bot: 100 per 60 s and 5 per 1 s.
    fn windows(&self) -> &[Window];

    /// False for a stand-in without limits (a benchmark's): only holds stop
    /// a send. True by default.
    fn paced(&self) -> bool {
        true
    }

    /// A budget this destination shares with others on top of its own: a
    /// store key and its windows (an app's rate over all its
    /// conversations, say). A send needs room in both. None by default.
    fn shared_budget(&self) -> Option<SharedBudget> {
        None
    }

    /// Sends one payload and says what the answer means. Must return within
    /// `timeout` (give the HTTP request that timeout).
    async fn send(&self, payload: &Self::Payload, timeout: Duration) -> Answer;

    /// Merges the oldest of `queued` into one payload, as many as fit, or
    /// `None` when this destination has no digests (each is then sent on its
    /// own). A digest must carry at least two. Called with payloads oldest
    /// first; `seed` is unique per digest (for an idempotency key).
    fn digest(&self, queued: &[&Self::Payload], seed: &str) -> Option<Digest<Self::Payload>> {
        let _ = (queued, seed);
        None
    }

    /// What `/status` shows of it beside the kit's own view: its address
    /// with the secrets masked, whether it signs. Never a secret.
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Takes the settings of `newer`, a destination of the same key that a
    /// live reload built ([`Delivery::renew`](super::Delivery::renew)): a
    /// changed secret, say, so that what is queued is sent with it too.
    /// This endpoint keeps its budget and state. The default keeps the old
    /// settings.
    fn adopt(&self, newer: Self)
    where
        Self: Sized,
    {
        drop(newer);
    }
}

/// Several queued payloads merged into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest<P> {
    /// What to send.
    pub payload: P,
    /// How many of the queued payloads it carries, from the oldest.
    pub count: usize,
}

/// What a send's answer means, and the destination's own code for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What the kit does next.
    pub verdict: Verdict,
    /// The destination's answer code (DingTalk's `errcode`, Feishu's
    /// `code`), for logs and `/status`; `None` when it gave none.
    pub code: Option<i64>,
}

impl From<Verdict> for Answer {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            code: None,
        }
    }
}

/// The one decision a destination makes about an answer; the kit acts on it
/// the same way for every sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The destination has it.
    Delivered,
    /// Refused for good: sending it again can never help.
    Refused {
        /// Whose fault: the message's, or the destination's settings'.
        blame: Blame,
        /// What was wrong and what to check; one line, no secret.
        reason: String,
    },
    /// Too fast: the destination throttles this sender. The kit holds
    /// every send to it, for `hold` when it said, else the configured
    /// cool-down, and never retries at once.
    Throttled {
        /// How long the destination asked to wait, if it said.
        hold: Option<Duration>,
        /// What it said; one line.
        reason: String,
    },
    /// It failed; another attempt may succeed.
    Failed {
        /// Which status code a sender gets for it.
        kind: Unavailable,
        /// When to try again.
        retry: Retry,
        /// False when the request certainly never reached the destination
        /// (connection refused, no DNS answer, a failed TLS handshake):
        /// then it spends no budget.
        reached: bool,
        /// What happened; one line, no secret.
        reason: String,
    },
}

/// Whose fault a refusal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// This message (its content, size, shape, a keyword it lacks): the
    /// same message will never go. A queued one is dropped, loudly.
    Message,
    /// The destination's settings (its token, signature, IP allow-list):
    /// fixing them makes the same message go. A queued one waits, and in a
    /// pool the other destinations carry on.
    Destination,
}

/// When a failed send is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Transient: try again within the request's deadline, after a backoff.
    Soon,
    /// Retrying at once will not help (a wrong address, a gateway error):
    /// answer "retry later"; an operator must look.
    Later,
}

impl Verdict {
    /// What an HTTP answer means when it carries none of the destination's
    /// own (a gateway's or a proxy's answer, a body that is not the
    /// destination's JSON), by its status: 429 is a throttle, held for
    /// `hold` when known (its `Retry-After`); a 5xx a failure worth another
    /// attempt soon; a redirect (a webhook never redirects) or a 4xx (a
    /// wrong address) a failure an operator must look at, so not retried
    /// at once; a success without a readable answer a failure to retry.
    pub fn of_http_status(status: u16, hold: Option<Duration>, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let (kind, retry) = match status {
            429 => return Verdict::Throttled { hold, reason },
            300..=499 => (Unavailable::BadGateway, Retry::Later),
            500.. => (Unavailable::ServiceUnavailable, Retry::Soon),
            _ => (Unavailable::BadGateway, Retry::Soon),
        };
        Verdict::Failed {
            kind,
            retry,
            reached: true,
            reason,
        }
    }

    /// A request that got no answer, worth another attempt soon:
    /// `connected` false when it never reached the destination (connection
    /// refused, no DNS answer, a failed TLS handshake, a connect timeout),
    /// so it spent no budget; `timed_out` when the answer did not come in
    /// time.
    pub fn no_answer(connected: bool, timed_out: bool, reason: impl Into<String>) -> Self {
        let kind = if connected && timed_out {
            Unavailable::GatewayTimeout
        } else {
            Unavailable::ServiceUnavailable
        };
        Verdict::Failed {
            kind,
            retry: Retry::Soon,
            reached: connected,
            reason: reason.into(),
        }
    }

    /// The short class name of this verdict, for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Refused { .. } => "refused",
            Verdict::Throttled { .. } => "throttled",
            Verdict::Failed { .. } => "failed",
        }
    }

    /// What the destination said, or `"ok"`.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Delivered => "ok",
            Verdict::Refused { reason, .. }
            | Verdict::Throttled { reason, .. }
            | Verdict::Failed { reason, .. } => reason,
        }
    }

    /// The outcome a sender gets when this was the event's last attempt,
    /// with `context` (which event, which target) before the reason, and
    /// for a throttle how long the destination is held.
    pub(crate) fn outcome(&self, context: &str, hold: Duration) -> Outcome {
        let reason = format!("{context}: {}", self.reason());
        match self {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Refused { .. } => Outcome::rejected(reason),
            Verdict::Throttled { .. } => Outcome::throttled(
                hold,
                format!("{reason}; holding it for {}s", hold.as_secs()),
            ),
            Verdict::Failed { kind, .. } => Outcome::unavailable(*kind, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_status_without_the_destinations_answer_is_judged_by_its_class() {
        let hold = Some(Duration::from_secs(30));
        assert_eq!(
            Verdict::of_http_status(429, hold, "busy"),
            Verdict::Throttled {
                hold,
                reason: "busy".into()
            }
        );
        let failed = |status| match Verdict::of_http_status(status, None, "x") {
            Verdict::Failed {
                kind,
                retry,
                reached: true,
                ..
            } => (kind, retry),
            other => panic!("{status}: {other:?}"),
        };
        assert_eq!(failed(503), (Unavailable::ServiceUnavailable, Retry::Soon));
        assert_eq!(failed(404), (Unavailable::BadGateway, Retry::Later));
        assert_eq!(failed(302), (Unavailable::BadGateway, Retry::Later));
        assert_eq!(failed(200), (Unavailable::BadGateway, Retry::Soon));
    }

    #[test]
    fn no_answer_spends_no_budget_when_it_never_connected() {
        let judged = |connected, timed_out| match Verdict::no_answer(connected, timed_out, "x") {
            Verdict::Failed {
                kind,
                retry: Retry::Soon,
                reached,
                ..
            } => (kind, reached),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            judged(false, false),
            (Unavailable::ServiceUnavailable, false)
        );
        assert_eq!(
            judged(false, true),
            (Unavailable::ServiceUnavailable, false)
        );
        assert_eq!(judged(true, true), (Unavailable::GatewayTimeout, true));
        assert_eq!(judged(true, false), (Unavailable::ServiceUnavailable, true));
    }

    #[test]
    fn each_verdict_becomes_the_outcome_a_sender_acts_on() {
        let hold = Duration::from_secs(600);
        let refused = Verdict::Refused {
            blame: Blame::Message,
            reason: "too long".into(),
        };
        assert_eq!(
            refused.outcome("event e", hold),
            Outcome::rejected("event e: too long")
        );
        let throttled = Verdict::Throttled {
            hold: None,
            reason: "too fast".into(),
        };
        assert!(matches!(
            throttled.outcome("event e", hold),
            Outcome::Throttled { retry_after, reason } if retry_after == hold && reason.contains("600s")
        ));
        let failed = Verdict::Failed {
            kind: Unavailable::GatewayTimeout,
            retry: Retry::Soon,
            reached: true,
            reason: "slow".into(),
        };
        assert_eq!(
            failed.outcome("event e", hold),
            Outcome::unavailable(Unavailable::GatewayTimeout, "event e: slow")
        );
        assert_eq!(Verdict::Delivered.outcome("x", hold), Outcome::Delivered);
    }
}

/// A budget several destinations share, on top of each one's own: every
/// destination naming the same `key` counts against the same `windows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBudget {
    /// A stable name for the store, the same in every replica.
    pub key: String,
    /// Its sliding windows.
    pub windows: Vec<Window>,
}
