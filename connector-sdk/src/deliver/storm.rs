//! When a storm starts: a pool counts the events arriving for it, and once
//! more than [`OutboxSettings::burst`](super::OutboxSettings::burst) arrive
//! within the linger, the rest of that burst is queued for the digest
//! instead of each going out on its own (a notification on every phone of
//! the group, each). A quiet target's single event still goes at once.
//!
//! Arrivals are counted in this process's memory: with replicas behind a
//! load balancer each counts its share (the budget in the store still
//! bounds what all of them send). An event arriving again while it is among
//! the recent ones (a trigger retrying it) is not counted twice: a retry is
//! not a storm.

use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// One pool's recent arrivals.
#[derive(Debug)]
pub(crate) struct Storm {
    /// Past this many arrivals within `linger`, the rest queue; 0: never.
    burst: u32,
    linger: Duration,
    /// The latest `burst + 1` arrivals (at least the latest one), oldest
    /// first: when, and a hash of the event's identity.
    recent: Mutex<VecDeque<(Instant, u64)>>,
    /// When the current run of arrivals began: the first after a quiet
    /// linger.
    began: Mutex<Option<Instant>>,
}

impl Storm {
    pub(crate) fn new(burst: u32, linger: Duration) -> Self {
        Self {
            burst,
            linger,
            recent: Mutex::new(VecDeque::new()),
            began: Mutex::new(None),
        }
    }

    /// True when a storm makes the pool queue its arrivals: `burst` is set.
    pub(crate) fn is_on(&self) -> bool {
        self.burst > 0
    }

    /// Records the arrival of the event `identity` (its source, id and
    /// target)
    /// now; true when it is past the burst: more than `burst` distinct
    /// events arrived within the linger, this one included.
    pub(crate) fn arrive(&self, identity: &[&str]) -> bool {
        let now = Instant::now();
        let hash = {
            let mut hasher = DefaultHasher::new();
            identity.hash(&mut hasher);
            hasher.finish()
        };
        let keep = usize::try_from(self.burst)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let quiet = recent
            .iter()
            .map(|(when, _)| now.saturating_duration_since(*when))
            .min();
        if quiet.is_none_or(|quiet| quiet > self.linger) {
            *self.began.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
        if let Some(seen) = recent.iter_mut().find(|(_, seen)| *seen == hash) {
            // A retry: the storm's state as it is, counted once.
            seen.0 = now;
        } else {
            recent.push_back((now, hash));
            while recent.len() > keep {
                recent.pop_front();
            }
        }
        self.burst > 0
            && recent.len() == keep
            && recent
                .iter()
                .all(|(when, _)| now.saturating_duration_since(*when) <= self.linger)
    }

    /// How long since the latest arrival; `None` before the first.
    pub(crate) fn quiet_for(&self) -> Option<Duration> {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(when, _)| when.elapsed())
            .min()
    }

    /// How long the flusher waits before the next digest of a storm that
    /// goes on: until the storm has been quiet for the linger, or
    /// [`STORM_SPACING`] has passed since the later of the flusher's last
    /// send (`since_last_post` ago) and the storm's start, whichever comes
    /// first; so a storm's first digest, too, says what happened while it
    /// went on, not its first second. Zero when the burst rule is off or the
    /// backlog outgrows one digest (then the budget's pace applies).
    pub(crate) fn digest_wait(
        &self,
        since_last_post: Option<Duration>,
        backlog_fits: bool,
    ) -> Duration {
        if !self.is_on() || !backlog_fits {
            return Duration::ZERO;
        }
        let since_began = self
            .began
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|at| at.elapsed());
        let since = match (since_last_post, since_began) {
            (Some(post), Some(began)) => post.min(began),
            (post, began) => post.or(began).unwrap_or(Duration::ZERO),
        };
        if since >= STORM_SPACING {
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
        let arrivals: Vec<bool> = (0..5).map(|i| storm.arrive(&[&format!("e{i}")])).collect();
        assert_eq!(arrivals, [false, false, false, true, true]);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // A quiet second later: one on its own again.
        assert!(!storm.arrive(&["e5"]));
        let off = Storm::new(0, Duration::from_secs(1));
        assert!((0..10).all(|i| !off.arrive(&[&format!("e{i}")])));
    }

    #[tokio::test(start_paused = true)]
    async fn one_event_retried_again_and_again_is_not_a_storm() {
        let storm = Storm::new(3, Duration::from_secs(1));
        assert!((0..10).all(|_| !storm.arrive(&["retried"])));
        assert!(!storm.arrive(&["other"]));
        assert!(!storm.arrive(&["third"]));
        assert!(storm.arrive(&["fourth"]), "four distinct events are");
        assert!(
            storm.arrive(&["retried"]),
            "and a retry during a storm queues too"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_that_goes_on_waits_for_quiet_or_the_spacing() {
        let linger = Duration::from_secs(1);
        let storm = Storm::new(3, linger);
        storm.arrive(&["e0"]);
        assert_eq!(
            storm.digest_wait(None, true),
            linger,
            "the first waits for quiet too"
        );
        assert_eq!(
            storm.digest_wait(Some(Duration::from_secs(60)), true),
            linger,
            "a post long ago does not count: the storm just began"
        );
        assert_eq!(
            storm.digest_wait(None, false),
            Duration::ZERO,
            "a backlog goes"
        );
        // Arrivals every half second: never quiet; the spacing since the
        // storm began bounds the wait.
        for i in 1..=23 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            storm.arrive(&[&format!("e{i}")]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            storm.digest_wait(None, true),
            Duration::from_millis(300),
            "12 s after it began"
        );
        assert_eq!(
            storm.digest_wait(Some(Duration::from_secs(2)), true),
            Duration::from_millis(800),
            "until quiet, within 12 s of the last post"
        );
        tokio::time::sleep(linger).await;
        assert_eq!(
            storm.digest_wait(Some(Duration::from_secs(2)), true),
            Duration::ZERO,
            "quiet: it goes"
        );
    }
}
