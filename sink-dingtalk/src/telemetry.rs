//! The DingTalk sink's metrics, beside the runtime's `connector_*` ones.
//! Labels are bounded: configured chat group names, outcome classes,
//! DingTalk's errcodes. Never an event id, a URL or a secret.

use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;

/// Events handled, by `outcome` (delivered, queued, rejected, throttled,
/// unavailable) and `chat_group` (`-` when the event named no configured
/// group).
pub const EVENTS: &str = "dingtalk_events_total";
/// DingTalk answers with an errcode, by `errcode` (0 is success).
pub const ERRCODES: &str = "dingtalk_errcodes_total";
/// Time for one POST to DingTalk, by `result` (answered, failed).
pub const REQUEST_SECONDS: &str = "dingtalk_request_duration_seconds";
/// Time spent waiting for a send slot, for sends that waited.
pub const PACING_WAIT_SECONDS: &str = "dingtalk_pacing_wait_seconds";
/// Throttles, by `chat_group` and `cause`: `budget`, `cooldown` and
/// `outbox_full` were answered 429; `dingtalk` is DingTalk saying "too
/// fast" (with digests on, that event waits in the outbox instead).
pub const THROTTLED: &str = "dingtalk_throttled_total";
/// Events in a robot's outbox, by `robot` (its first chat group).
pub const OUTBOX_QUEUED: &str = "dingtalk_outbox_queued";
/// Events that left an outbox, by `robot` and `result` (sent, refused).
pub const OUTBOX_EVENTS: &str = "dingtalk_outbox_events_total";
/// Digests posted (two or more events merged), by `robot`.
pub const DIGESTS: &str = "dingtalk_digests_total";

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
    metrics::describe_counter!(THROTTLED, "Throttled events, by chat group and cause");
    metrics::describe_gauge!(OUTBOX_QUEUED, "Events waiting in a robot's outbox");
    metrics::describe_counter!(
        OUTBOX_EVENTS,
        "Events that left a robot's outbox, by result (sent, refused)"
    );
    metrics::describe_counter!(DIGESTS, "Digests posted, by robot");
}

/// Every family with its series at zero for the labels known at start
/// (the configured chat groups and robots), so a scrape before the first
/// event already sees them.
pub fn export_from_the_start<'a>(
    chat_groups: impl IntoIterator<Item = &'a str>,
    robots: impl IntoIterator<Item = &'a str>,
) {
    for group in chat_groups {
        for outcome in [
            "delivered",
            "queued",
            "rejected",
            "throttled",
            "unavailable",
        ] {
            metrics::counter!(EVENTS, "outcome" => outcome, "chat_group" => group.to_owned())
                .absolute(0);
        }
        for cause in ["budget", "cooldown", "dingtalk", "outbox_full"] {
            metrics::counter!(THROTTLED, "chat_group" => group.to_owned(), "cause" => cause)
                .absolute(0);
        }
    }
    // The outbox gauge is set by each outbox from its length.
    for robot in robots {
        for result in ["sent", "refused"] {
            metrics::counter!(OUTBOX_EVENTS, "robot" => robot.to_owned(), "result" => result)
                .absolute(0);
        }
        metrics::counter!(DIGESTS, "robot" => robot.to_owned()).absolute(0);
    }
    metrics::counter!(ERRCODES, "errcode" => "0").absolute(0);
    for result in ["answered", "failed"] {
        let _ = metrics::histogram!(REQUEST_SECONDS, "result" => result);
    }
    let _ = metrics::histogram!(PACING_WAIT_SECONDS);
}

/// One event's outcome class.
pub fn outcome(chat_group: Option<&Arc<str>>, class: &'static str) {
    let group = chat_group.map_or(SharedString::const_str("-"), |g| {
        SharedString::from(Arc::clone(g))
    });
    metrics::counter!(EVENTS, "outcome" => class, "chat_group" => group).increment(1);
}

/// A robot's outbox holds `len` events.
pub fn outbox_queued(robot: &Arc<str>, len: u64) {
    metrics::gauge!(OUTBOX_QUEUED, "robot" => SharedString::from(Arc::clone(robot)))
        .set(len as f64);
}

/// A post from the outbox carried `events` events.
pub fn flushed(robot: &Arc<str>, events: usize) {
    let robot = SharedString::from(Arc::clone(robot));
    metrics::counter!(OUTBOX_EVENTS, "robot" => robot.clone(), "result" => "sent")
        .increment(events as u64);
    if events > 1 {
        metrics::counter!(DIGESTS, "robot" => robot).increment(1);
    }
}

/// A queued event DingTalk refused for good.
pub fn outbox_refused(robot: &Arc<str>) {
    let robot = SharedString::from(Arc::clone(robot));
    metrics::counter!(OUTBOX_EVENTS, "robot" => robot, "result" => "refused").increment(1);
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
            known if crate::robot::is_known_errcode(known) => {
                SharedString::from_owned(known.to_string())
            }
            _ => SharedString::const_str("other"),
        };
        metrics::counter!(ERRCODES, "errcode" => code).increment(1);
    }
}

/// A wait for a send slot.
pub fn pacing_wait(waited: Duration) {
    metrics::histogram!(PACING_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// A throttled event and why.
pub fn throttled(chat_group: &str, cause: &'static str) {
    metrics::counter!(THROTTLED, "chat_group" => chat_group.to_owned(), "cause" => cause)
        .increment(1);
}
