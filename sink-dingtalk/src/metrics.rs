//! The DingTalk sink's own metrics, beside the runtime's and the delivery
//! kit's `connector_*` ones: events by chat group and outcome, and
//! DingTalk's errcodes. Labels are bounded: configured chat group names,
//! outcome classes, the errcodes of DingTalk's table. Never an event id, a
//! URL or a secret.

use std::sync::{Arc, LazyLock};

use connector_sdk::Memo;
use metrics::{Counter, SharedString};

use crate::robot::is_known_errcode;

/// Events handled, by `outcome` (delivered, queued, rejected, throttled,
/// unavailable) and `chat_group` (`-` when the event named no configured
/// group).
pub const EVENTS: &str = "dingtalk_events_total";
/// DingTalk answers with an errcode, by `errcode` (0 is success; `other`
/// for a code not in the table).
pub const ERRCODES: &str = "dingtalk_errcodes_total";

/// Describes the metrics once, at start-up.
pub fn describe() {
    metrics::describe_counter!(EVENTS, "Events handled, by outcome and chat group");
    metrics::describe_counter!(ERRCODES, "DingTalk answers, by errcode");
}

/// Every series at zero for the chat groups known at start, so a scrape
/// before the first event already sees them.
pub fn export_from_the_start<'a>(chat_groups: impl IntoIterator<Item = &'a str>) {
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
    }
    metrics::counter!(ERRCODES, "errcode" => "0").absolute(0);
}

/// A chat group (none: the event named no configured one) and an outcome class.
type GroupOutcome = (Option<Arc<str>>, &'static str);

/// One event's outcome class. The handles are kept per configured chat
/// group ever seen: one that a reload removed keeps its handle (and the
/// recorder its series, as it would without the memo) until the process
/// ends, so they are bounded by the groups configured over its life.
pub fn outcome(chat_group: Option<&Arc<str>>, class: &'static str) {
    static EVENT_OUTCOMES: LazyLock<Memo<GroupOutcome, Counter>> = LazyLock::new(|| {
        Memo::new(|(group, class)| {
            let group = group.as_ref().map_or(SharedString::const_str("-"), |g| {
                SharedString::from(Arc::clone(g))
            });
            metrics::counter!(EVENTS, "outcome" => *class, "chat_group" => group)
        })
    });
    EVENT_OUTCOMES
        .get(&(chat_group.cloned(), class))
        .increment(1);
}

/// DingTalk's errcode for one POST, if it answered with one.
pub fn errcode(code: Option<i64>) {
    /// Every code not in DingTalk's table counts as one: `other`.
    const OTHER: i64 = i64::MIN;
    static ERRCODE_COUNTS: LazyLock<Memo<i64, Counter>> = LazyLock::new(|| {
        Memo::new(|&code| {
            let code = match code {
                0 => SharedString::const_str("0"),
                OTHER => SharedString::const_str("other"),
                known => SharedString::from_owned(known.to_string()),
            };
            metrics::counter!(ERRCODES, "errcode" => code)
        })
    });
    let Some(code) = code else { return };
    let key = if code == 0 || is_known_errcode(code) {
        code
    } else {
        OTHER
    };
    ERRCODE_COUNTS.get(&key).increment(1);
}
