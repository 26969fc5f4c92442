//! The DingTalk sink's metrics, beside the runtime's `connector_*` ones.
//! Labels are bounded: configured chat group names, outcome classes,
//! DingTalk's errcodes. Never an event id, a URL or a secret.

use std::sync::Arc;
use std::time::Duration;

use connector_sdk::Outcome;
use metrics::SharedString;

/// Events handled, by `outcome` class and `chat_group` (`-` when the event
/// named no configured group).
pub const EVENTS: &str = "dingtalk_events_total";
/// DingTalk answers with an errcode, by `errcode` (0 is success).
pub const ERRCODES: &str = "dingtalk_errcodes_total";
/// Time for one POST to DingTalk, by `result` (answered, failed).
pub const REQUEST_SECONDS: &str = "dingtalk_request_duration_seconds";
/// Time spent waiting for a send slot, for sends that waited.
pub const PACING_WAIT_SECONDS: &str = "dingtalk_pacing_wait_seconds";
/// 429s, by `chat_group` and `cause` (budget, cooldown, dingtalk).
pub const THROTTLED: &str = "dingtalk_throttled_total";

/// Describes the metrics once, at start-up.
pub fn describe() {
    metrics::describe_counter!(EVENTS, "Events handled, by outcome and chat group");
    metrics::describe_counter!(ERRCODES, "DingTalk answers, by errcode");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time for one POST to DingTalk"
    );
    metrics::describe_histogram!(
        PACING_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "Time waited for a send slot"
    );
    metrics::describe_counter!(THROTTLED, "Events answered 429, by chat group and cause");
}

/// Every family with its series at zero for the labels known at start
/// (the configured chat groups), so a scrape before the first event
/// already sees them.
pub fn export_from_the_start<'a>(chat_groups: impl IntoIterator<Item = &'a str>) {
    for group in chat_groups {
        for outcome in ["delivered", "rejected", "throttled", "unavailable"] {
            metrics::counter!(EVENTS, "outcome" => outcome, "chat_group" => group.to_owned())
                .absolute(0);
        }
        for cause in ["budget", "cooldown", "dingtalk"] {
            metrics::counter!(THROTTLED, "chat_group" => group.to_owned(), "cause" => cause)
                .absolute(0);
        }
    }
    metrics::counter!(ERRCODES, "errcode" => "0").absolute(0);
    for result in ["answered", "failed"] {
        let _ = metrics::histogram!(REQUEST_SECONDS, "result" => result);
    }
    let _ = metrics::histogram!(PACING_WAIT_SECONDS);
}

/// One event's outcome.
pub fn outcome(chat_group: Option<&Arc<str>>, outcome: &Outcome) {
    let group = chat_group.map_or(SharedString::const_str("-"), |g| {
        SharedString::from(Arc::clone(g))
    });
    metrics::counter!(EVENTS, "outcome" => outcome.class(), "chat_group" => group).increment(1);
}

/// One POST to DingTalk and its errcode, if it answered with one.
pub fn request(elapsed: Duration, errcode: Option<i64>) {
    let result = if errcode.is_some() {
        "answered"
    } else {
        "failed"
    };
    metrics::histogram!(REQUEST_SECONDS, "result" => result).record(elapsed.as_secs_f64());
    if let Some(code) = errcode {
        // Success is by far the most common answer: no formatting for it.
        let code = match code {
            0 => SharedString::const_str("0"),
            other => SharedString::from_owned(other.to_string()),
        };
        metrics::counter!(ERRCODES, "errcode" => code).increment(1);
    }
}

/// A wait for a send slot.
pub fn pacing_wait(waited: Duration) {
    metrics::histogram!(PACING_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// A 429 and why.
pub fn throttled(chat_group: &str, cause: &'static str) {
    metrics::counter!(THROTTLED, "chat_group" => chat_group.to_owned(), "cause" => cause)
        .increment(1);
}
