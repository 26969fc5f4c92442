//! The kit's metrics: the same names for every sink built on it, beside the
//! runtime's `connector_*` ones. Labels are bounded: configured target
//! names (an outbox is named after its first target), verdict classes,
//! causes. Never an event id, an address or a secret.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use metrics::{Histogram, SharedString};

use crate::metrics::Memo;

/// Time for one send to a destination, by `result`: the verdict's class
/// (delivered, refused, throttled, failed).
pub const SEND_SECONDS: &str = "connector_send_duration_seconds";
/// Time an event waited for a send slot, for events that waited.
pub const PACING_WAIT_SECONDS: &str = "connector_pacing_wait_seconds";
/// Throttled events, by `target` and `cause`: `budget`, `cooldown` and
/// `outbox_full` were answered 429; `destination` is the destination
/// saying "too fast" (with an outbox, that event waits there instead).
pub const THROTTLED: &str = "connector_throttled_total";
/// Events in an outbox, by `outbox` (its first target).
pub const OUTBOX_QUEUED: &str = "connector_outbox_queued";
/// Events that left an outbox, by `outbox` and `result` (sent, refused).
pub const OUTBOX_EVENTS: &str = "connector_outbox_events_total";
/// Digests sent (two or more events merged), by `outbox`.
pub const DIGESTS: &str = "connector_digests_total";

/// The causes of [`THROTTLED`].
pub(crate) const THROTTLE_CAUSES: [&str; 4] = ["budget", "cooldown", "destination", "outbox_full"];

/// Describes the metrics; idempotent.
pub(crate) fn describe() {
    metrics::describe_histogram!(
        SEND_SECONDS,
        metrics::Unit::Seconds,
        "Time for one send to a destination, by verdict"
    );
    metrics::describe_histogram!(
        PACING_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "Time an event waited for a send slot"
    );
    metrics::describe_counter!(THROTTLED, "Throttled events, by target and cause");
    metrics::describe_gauge!(OUTBOX_QUEUED, "Events waiting in an outbox");
    metrics::describe_counter!(
        OUTBOX_EVENTS,
        "Events that left an outbox, by result (sent, refused)"
    );
    metrics::describe_counter!(DIGESTS, "Digests sent, by outbox");
}

/// Every series known at start at zero, so a scrape before the first event
/// already sees them.
pub(crate) fn export_from_the_start<'a>(
    targets: impl IntoIterator<Item = &'a str>,
    outboxes: impl IntoIterator<Item = &'a str>,
) {
    for target in targets {
        for cause in THROTTLE_CAUSES {
            metrics::counter!(THROTTLED, "target" => target.to_owned(), "cause" => cause)
                .absolute(0);
        }
    }
    for outbox in outboxes {
        for result in ["sent", "refused"] {
            metrics::counter!(OUTBOX_EVENTS, "outbox" => outbox.to_owned(), "result" => result)
                .absolute(0);
        }
        metrics::counter!(DIGESTS, "outbox" => outbox.to_owned()).absolute(0);
    }
    for result in ["delivered", "refused", "throttled", "failed"] {
        let _ = metrics::histogram!(SEND_SECONDS, "result" => result);
    }
    let _ = metrics::histogram!(PACING_WAIT_SECONDS);
}

static SENDS: LazyLock<Memo<&'static str, Histogram>> =
    LazyLock::new(|| Memo::new(|&result| metrics::histogram!(SEND_SECONDS, "result" => result)));

/// One send and its verdict's class.
pub(crate) fn sent(elapsed: Duration, class: &'static str) {
    SENDS.get(&class).record(elapsed.as_secs_f64());
}

/// A wait for a send slot.
pub(crate) fn pacing_wait(waited: Duration) {
    metrics::histogram!(PACING_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// A throttled event and why.
pub(crate) fn throttled(target: &Arc<str>, cause: &'static str) {
    metrics::counter!(THROTTLED, "target" => SharedString::from(Arc::clone(target)), "cause" => cause)
        .increment(1);
}

/// An outbox holds `len` events.
pub(crate) fn outbox_queued(outbox: &Arc<str>, len: u64) {
    metrics::gauge!(OUTBOX_QUEUED, "outbox" => SharedString::from(Arc::clone(outbox)))
        .set(len as f64);
}

/// A send from an outbox carried `events` events.
pub(crate) fn flushed(outbox: &Arc<str>, events: usize) {
    let outbox = SharedString::from(Arc::clone(outbox));
    metrics::counter!(OUTBOX_EVENTS, "outbox" => outbox.clone(), "result" => "sent")
        .increment(events as u64);
    if events > 1 {
        metrics::counter!(DIGESTS, "outbox" => outbox).increment(1);
    }
}

/// A queued event its destination refused for good.
pub(crate) fn outbox_refused(outbox: &Arc<str>) {
    let outbox = SharedString::from(Arc::clone(outbox));
    metrics::counter!(OUTBOX_EVENTS, "outbox" => outbox, "result" => "refused").increment(1);
}
