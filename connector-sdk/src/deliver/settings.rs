//! How the kit treats every destination of a sink: the deadline, the
//! cool-down after "too fast", the outboxes, and the names reasons quote.

use std::time::Duration;

use super::Deadline;

/// How the kit treats every destination of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The time one request has, waits and retries included (under the 5 s
    /// a Vanus trigger waits).
    pub deadline: Duration,
    /// How long to hold a destination that said "too fast" without saying
    /// for how long.
    pub cooldown: Duration,
    /// Queue what is past the budget (answered 200) and send it from an
    /// outbox; `None` answers 429 past the budget instead.
    pub outbox: Option<OutboxSettings>,
    /// The sink's names for its settings, quoted in reasons so an operator
    /// knows what to change.
    pub names: SettingNames,
}

/// How outboxes work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Entries an outbox holds at most; past it, 429.
    pub max_queued: u64,
    /// Of each destination's main window, the sends kept for the flusher,
    /// so a storm's first digest goes within seconds.
    pub reserved: u32,
    /// Once more than this many events for a pool arrive within
    /// `linger`, the rest of the burst waits for the digest, and while
    /// the storm goes on its digests are spaced (see [`STORM_SPACING`](super::STORM_SPACING));
    /// 0: never (every event on its own while the budget lasts).
    pub burst: u32,
    /// How long the first digest of a storm waits for more events (and
    /// the burst's window; a storm is over once quiet this long).
    pub linger: Duration,
}

/// The setting names that reasons quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingNames {
    /// The setting of [`OutboxSettings::max_queued`].
    pub max_queued: &'static str,
    /// The setting of [`Settings::deadline`].
    pub deadline: &'static str,
}

impl Default for SettingNames {
    fn default() -> Self {
        Self {
            max_queued: "max_queued",
            deadline: "deadline",
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(3),
            cooldown: Duration::from_secs(60),
            outbox: Some(OutboxSettings::default()),
            names: SettingNames::default(),
        }
    }
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            max_queued: 10_000,
            reserved: 4,
            burst: 0,
            linger: Duration::from_secs(1),
        }
    }
}

impl Settings {
    /// A deadline of [`Settings::deadline`] from now: one per request.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.deadline)
    }
}
