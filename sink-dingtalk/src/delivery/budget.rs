//! A robot's send budget, kept in a gate of the connector's store so it
//! holds across restarts (and, with a shared store, across replicas): never
//! more than `per_minute` posts in any window, part of it kept for digests,
//! and a hold while DingTalk throttles the robot. The hold is also kept in
//! memory: a store that cannot record it does not let this process post
//! into DingTalk's block.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use connector_sdk::store::{GateState, Passage};
use connector_sdk::{Store, StoreError};
use tokio::time::Instant;

/// DingTalk's minute, plus the longest a POST may take to arrive (a send is
/// recorded when it starts, and the first of a window may be slow to land
/// while a later one is quick), plus a second for the network's jitter.
pub const WINDOW: Duration = Duration::from_secs(66);

/// The longest hold this process keeps: longer ones (from a store written
/// by another configuration) end here; `delivery.cooldown_secs` is at most
/// a day.
const LONGEST_HOLD: Duration = Duration::from_secs(366 * 86_400);

/// One robot's budget.
#[derive(Debug)]
pub struct Budget {
    store: Store,
    gate: String,
    per_minute: u32,
    /// Sends of each window an arriving event may not use: the flusher's.
    reserved: u32,
    /// False for a stand-in without DingTalk's limit: only holds apply.
    paced: bool,
    /// The hold as this process knows it.
    local_hold: Mutex<Option<Instant>>,
}

impl Budget {
    /// The budget of the robot whose store key is `robot_key`.
    pub fn new(store: Store, robot_key: &str, per_minute: u32, reserved: u32, paced: bool) -> Self {
        Self {
            store,
            gate: format!("gate/{robot_key}"),
            per_minute,
            reserved: reserved.min(per_minute.saturating_sub(1)),
            paced,
            local_hold: Mutex::new(None),
        }
    }

    /// Takes up a hold a previous run recorded in the store.
    pub async fn restore(&self) -> Result<(), StoreError> {
        if let Some(held) = self.store.gate_state(&self.gate, WINDOW).await?.held_for {
            self.hold_locally(held);
        }
        Ok(())
    }

    fn hold_locally(&self, duration: Duration) {
        // A hold read from the store may be of any length: never past what
        // the clock can count (an overflow would panic).
        let now = Instant::now();
        let until = now
            .checked_add(duration)
            .unwrap_or_else(|| now + LONGEST_HOLD);
        let mut hold = self
            .local_hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *hold = Some(hold.map_or(until, |held| held.max(until)));
    }

    /// What is left of the hold this process knows of.
    fn local_hold(&self) -> Option<Duration> {
        let hold = *self
            .local_hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        hold.map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// The robot's messages a minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Whether the budget is enforced.
    pub fn is_paced(&self) -> bool {
        self.paced
    }

    /// May an arriving event be posted now? Recorded if so. The reserved
    /// part of the window is left to the flusher.
    pub async fn for_event(&self) -> Result<Passage, StoreError> {
        self.pass(self.per_minute - self.reserved).await
    }

    /// May the flusher post now? Recorded if so. It may use the whole budget.
    pub async fn for_flush(&self) -> Result<Passage, StoreError> {
        self.pass(self.per_minute).await
    }

    async fn pass(&self, limit: u32) -> Result<Passage, StoreError> {
        if let Some(held) = self.local_hold() {
            return Ok(Passage::Held(held));
        }
        if self.paced {
            return self.store.pass(&self.gate, limit, WINDOW).await;
        }
        // No budget: only a hold stops a post, and without other processes
        // sharing the store, this process knows every hold.
        if !self.store.is_shared() {
            return Ok(Passage::Open { used: 0 });
        }
        Ok(match self.state().await?.held_for {
            Some(held) => Passage::Held(held),
            None => Passage::Open { used: 0 },
        })
    }

    /// Holds every post to the robot for `duration`: in this process at
    /// once, and for every process sharing the store once it is recorded.
    pub async fn hold(&self, duration: Duration) -> Result<(), StoreError> {
        self.hold_locally(duration);
        self.store.hold(&self.gate, duration).await
    }

    /// The window and hold as they are now.
    pub async fn state(&self) -> Result<GateState, StoreError> {
        let mut state = self.store.gate_state(&self.gate, WINDOW).await?;
        state.held_for = state.held_for.max(self.local_hold());
        Ok(state)
    }
}

/// How long the flusher waits before its next post, so that a storm's
/// budget lasts. At least an even share of the window per post; and while
/// everything queued fits in the next digest, the posts left in this window
/// are spread until its oldest send leaves it, so a storm that goes on
/// still finds a slot for a summary within seconds. Nothing to wait for
/// before the first post, or without pacing.
pub fn flusher_pause(
    state: &GateState,
    since_last_post: Option<Duration>,
    per_minute: u32,
    backlog_fits_one_digest: bool,
) -> Duration {
    let Some(since) = since_last_post else {
        return Duration::ZERO;
    };
    let even = WINDOW / per_minute.max(1);
    let free = per_minute.saturating_sub(state.used);
    let stretch = match state.next_free_in {
        Some(next) if free > 0 && backlog_fits_one_digest => next / free,
        _ => Duration::ZERO,
    };
    even.max(stretch).saturating_sub(since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::store::Embedded;
    use std::sync::Arc;

    #[test]
    fn a_hold_of_any_length_holds_without_overflowing_the_clock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 1_000).expect("opens")));
        let budget = Budget::new(store, "robot", 20, 4, true);
        budget.hold_locally(Duration::MAX);
        assert!(
            budget
                .local_hold()
                .is_some_and(|left| left > Duration::from_secs(86_400))
        );
    }

    fn state(used: u32, next_free_secs: u64) -> GateState {
        GateState {
            used,
            next_free_in: Some(Duration::from_secs(next_free_secs)),
            held_for: None,
        }
    }

    #[test]
    fn the_first_post_of_a_storm_goes_at_once() {
        assert_eq!(
            flusher_pause(&state(16, 59), None, 20, true),
            Duration::ZERO
        );
    }

    #[test]
    fn the_last_slots_of_a_window_are_spread_until_it_frees() {
        // 17 used, 3 left, the oldest leaves in 60 s: one every 20 s.
        let pause = flusher_pause(&state(17, 60), Some(Duration::from_secs(1)), 20, true);
        assert_eq!(pause, Duration::from_secs(19));
        // The last one: the whole wait until the oldest leaves.
        let pause = flusher_pause(&state(19, 30), Some(Duration::ZERO), 20, true);
        assert_eq!(pause, Duration::from_secs(30));
    }

    #[test]
    fn a_backlog_larger_than_a_digest_goes_at_the_even_pace() {
        let pause = flusher_pause(&state(17, 60), Some(Duration::from_secs(1)), 20, false);
        assert_eq!(pause, WINDOW / 20 - Duration::from_secs(1));
    }

    #[test]
    fn never_faster_than_an_even_share_of_the_window() {
        let pause = flusher_pause(&state(2, 1), Some(Duration::ZERO), 20, true);
        assert_eq!(pause, WINDOW / 20);
        assert_eq!(
            flusher_pause(&state(2, 1), Some(Duration::from_secs(5)), 20, true),
            Duration::ZERO
        );
    }
}
