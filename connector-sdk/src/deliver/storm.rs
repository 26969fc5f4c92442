//! When a storm starts: a pool counts the events arriving for it, and once
//! more than [`OutboxSettings::burst`](super::OutboxSettings::burst) arrive
//! within the linger, the rest of that burst is queued for the digest
//! instead of each going out on its own (a notification on every phone of
//! the group, each). A quiet target's single event still goes at once.
//!
//! Arrivals are counted in this process's memory: with replicas behind a
//! load balancer each counts its share (the budget in the store still
//! bounds what all of them send).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::pool::lock;

/// One pool's recent arrivals.
#[derive(Debug)]
pub(crate) struct Storm {
    /// Past this many arrivals within `linger`, the rest queue; 0: never.
    burst: u32,
    linger: Duration,
    /// The latest `burst + 1` arrivals (at least the latest one), oldest first.
    recent: Mutex<VecDeque<Instant>>,
}

impl Storm {
    pub(crate) fn new(burst: u32, linger: Duration) -> Self {
        Self {
            burst,
            linger,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// True when a storm makes the pool queue its arrivals: `burst` is set.
    pub(crate) fn is_on(&self) -> bool {
        self.burst > 0
    }

    /// Records an arrival now; true when it is past the burst: more than
    /// `burst` arrived within the linger, this one included.
    pub(crate) fn arrive(&self) -> bool {
        let now = Instant::now();
        let keep = usize::try_from(self.burst)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut recent = lock(&self.recent);
        recent.push_back(now);
        while recent.len() > keep {
            recent.pop_front();
        }
        self.burst > 0
            && recent.len() == keep
            && recent
                .front()
                .is_some_and(|first| now.saturating_duration_since(*first) <= self.linger)
    }

    /// How long since the latest arrival; `None` before the first.
    pub(crate) fn quiet_for(&self) -> Option<Duration> {
        lock(&self.recent).back().map(Instant::elapsed)
    }

    /// How long the flusher waits before the next digest of a storm that
    /// goes on, after its last send `since` ago: until the storm has been
    /// quiet for the linger, or [`STORM_SPACING`] since the last send,
    /// whichever comes first. Zero when the burst rule is off, nothing was
    /// sent yet (a storm's first digest goes after the linger), or the
    /// backlog outgrows one digest (then the budget's pace applies).
    pub(crate) fn digest_wait(
        &self,
        since_last_post: Option<Duration>,
        backlog_fits: bool,
    ) -> Duration {
        let Some(since) = since_last_post else {
            return Duration::ZERO;
        };
        if !self.is_on() || !backlog_fits || since >= STORM_SPACING {
            return Duration::ZERO;
        }
        match self.quiet_for() {
            Some(quiet) if quiet < self.linger => (self.linger - quiet).min(STORM_SPACING - since),
            _ => Duration::ZERO,
        }
    }
}

/// While a storm goes on, its digests are at least this far apart (unless
/// its backlog outgrows one digest): five a minute at most, each saying
/// what happened since the last.
pub const STORM_SPACING: Duration = Duration::from_secs(12);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn past_the_burst_within_the_linger_the_rest_queue() {
        let storm = Storm::new(3, Duration::from_secs(1));
        let arrivals: Vec<bool> = (0..5).map(|_| storm.arrive()).collect();
        assert_eq!(arrivals, [false, false, false, true, true]);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // A quiet second later: one on its own again.
        assert!(!storm.arrive());
        let off = Storm::new(0, Duration::from_secs(1));
        assert!((0..10).all(|_| !off.arrive()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_that_goes_on_waits_for_quiet_or_the_spacing() {
        let linger = Duration::from_secs(1);
        let storm = Storm::new(3, linger);
        storm.arrive();
        let since = Some(Duration::from_secs(2));
        assert_eq!(
            storm.digest_wait(None, true),
            Duration::ZERO,
            "the first goes"
        );
        assert_eq!(storm.digest_wait(since, true), linger);
        assert_eq!(
            storm.digest_wait(since, false),
            Duration::ZERO,
            "a backlog goes"
        );
        assert_eq!(
            storm.digest_wait(Some(STORM_SPACING - Duration::from_millis(300)), true),
            Duration::from_millis(300)
        );
        tokio::time::sleep(linger).await;
        assert_eq!(
            storm.digest_wait(since, true),
            Duration::ZERO,
            "quiet: it goes"
        );
    }
}
