//! A destination's send budget, kept in a gate of the connector's store so
//! it holds across restarts (and, with a shared store, across replicas):
//! never more sends than its windows allow, part of the main window kept for
//! digests, and a
//! hold while the destination throttles it. The hold is also kept in
//! memory: a store that cannot record it does not let this process send
//! into the destination's block.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{GateState, Passage, Store, StoreError, Window};

/// The longest hold this process keeps: longer ones (from a store written
/// by another configuration) end here.
const LONGEST_HOLD: Duration = Duration::from_secs(366 * 86_400);

/// One destination's budget.
#[derive(Debug)]
pub(crate) struct Budget {
    store: Store,
    gate: String,
    /// What the destination allows: the flusher may use all of it.
    windows: Vec<Window>,
    /// What an arriving event may use: the main window less the sends
    /// reserved for digests.
    direct: Vec<Window>,
    /// False for a stand-in without limits: only holds apply.
    paced: bool,
    /// A gate shared with other destinations, and its windows: a send
    /// needs room there too.
    shared: Option<(String, Vec<Window>)>,
    /// The hold as this process knows it.
    local_hold: Mutex<Option<Instant>>,
}

impl Budget {
    /// The budget of the destination whose store key is `key`: `windows`,
    /// of which the main (first) one keeps `reserved` sends for the
    /// flusher.
    pub(crate) fn new(
        store: Store,
        key: &str,
        windows: &[Window],
        paced: bool,
        reserved: u32,
    ) -> Self {
        let mut direct = windows.to_vec();
        if let Some(main) = direct.first_mut() {
            main.limit -= reserved.min(main.limit.saturating_sub(1));
        }
        Self {
            store,
            gate: format!("gate/{key}"),
            windows: windows.to_vec(),
            direct,
            paced,
            shared: None,
            local_hold: Mutex::new(None),
        }
    }

    /// This budget, counted also against `shared` (see
    /// [`super::SharedBudget`]).
    pub(crate) fn sharing(mut self, shared: Option<super::SharedBudget>) -> Self {
        self.shared = shared.map(|s| (format!("gate/shared/{}", s.key), s.windows));
        self
    }

    /// Takes up a hold a previous run recorded in the store.
    pub(crate) async fn restore(&self) -> Result<(), StoreError> {
        if let Some(held) = self
            .store
            .gate_state(&self.gate, self.main().per)
            .await?
            .held_for
        {
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
    pub(crate) fn local_hold(&self) -> Option<Duration> {
        let hold = *self
            .local_hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        hold.map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// The main window: what `/status` counts and the flusher paces by.
    pub(crate) fn main(&self) -> Window {
        self.windows
            .first()
            .copied()
            .unwrap_or(Window::new(1, Duration::from_secs(60)))
    }

    /// Whether the budget is enforced.
    pub(crate) fn is_paced(&self) -> bool {
        self.paced
    }

    /// May an arriving event be sent now? Recorded if so. The reserved
    /// part of the main window is left to the flusher.
    pub(crate) async fn for_event(&self) -> Result<Passage, StoreError> {
        self.pass(&self.direct).await
    }

    /// May the flusher send now? Recorded if so. It may use the whole budget.
    pub(crate) async fn for_flush(&self) -> Result<Passage, StoreError> {
        self.pass(&self.windows).await
    }

    async fn pass(&self, windows: &[Window]) -> Result<Passage, StoreError> {
        if let Some(held) = self.local_hold() {
            return Ok(Passage::Held(held));
        }
        if self.paced {
            let own = self.store.pass_windows(&self.gate, windows).await?;
            let Some((gate, shared)) = &self.shared else {
                return Ok(own);
            };
            if !matches!(own, Passage::Open { .. }) {
                return Ok(own);
            }
            return match self.store.pass_windows(gate, shared).await {
                Ok(Passage::Open { .. }) => Ok(own),
                // No room in the shared budget: this send is not made, so
                // its own slot goes back.
                Ok(refused) => {
                    self.store.refund(&self.gate).await?;
                    Ok(refused)
                }
                Err(err) => {
                    let _ = self.store.refund(&self.gate).await;
                    Err(err)
                }
            };
        }
        // No budget: only a hold stops a send, and without other processes
        // sharing the store, this process knows every hold.
        if !self.store.is_shared() {
            return Ok(Passage::Open { used: 0 });
        }
        Ok(match self.state().await?.held_for {
            Some(held) => Passage::Held(held),
            None => Passage::Open { used: 0 },
        })
    }

    /// Gives back the send just recorded: it never reached the destination.
    pub(crate) async fn refund(&self) -> Result<(), StoreError> {
        if !self.paced {
            return Ok(());
        }
        if let Some((gate, _)) = &self.shared {
            self.store.refund(gate).await?;
        }
        self.store.refund(&self.gate).await
    }

    /// Holds every send to the destination for `duration`: in this process
    /// at once, and for every process sharing the store once it is recorded.
    pub(crate) async fn hold(&self, duration: Duration) -> Result<(), StoreError> {
        self.hold_locally(duration);
        self.store.hold(&self.gate, duration).await
    }

    /// The main window and the hold as they are now.
    pub(crate) async fn state(&self) -> Result<GateState, StoreError> {
        let mut state = self.store.gate_state(&self.gate, self.main().per).await?;
        state.held_for = state.held_for.max(self.local_hold());
        Ok(state)
    }
}

/// How long the flusher waits before its next send, so that a storm's
/// budget lasts. At least an even share of the main window per send; and
/// while everything queued fits in the next digest, the sends left in this
/// window are spread until its oldest send leaves it, so a storm that goes
/// on still finds a slot for a summary within seconds. Nothing to wait for
/// before the first send. `state` is the main window's (`main`); for a pool
/// of destinations, their sum.
pub(crate) fn flusher_pause(
    state: &GateState,
    main: Window,
    since_last_post: Option<Duration>,
    backlog_fits_one_digest: bool,
) -> Duration {
    let Some(since) = since_last_post else {
        return Duration::ZERO;
    };
    let even = main.per / main.limit.max(1);
    let free = main.limit.saturating_sub(state.used);
    let stretch = match state.next_free_in {
        Some(next) if free > 0 && backlog_fits_one_digest => next / free,
        _ => Duration::ZERO,
    };
    even.max(stretch).saturating_sub(since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Embedded;
    use std::sync::Arc;

    /// DingTalk's robot: 20 in its minute and the margins.
    const ROBOT: Window = Window::new(20, Duration::from_secs(66));
    const WINDOW: Duration = ROBOT.per;

    #[test]
    fn a_hold_of_any_length_holds_without_overflowing_the_clock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 1_000).expect("opens")));
        let budget = Budget::new(store, "robot", &[ROBOT], true, 4);
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
            flusher_pause(&state(16, 59), ROBOT, None, true),
            Duration::ZERO
        );
    }

    #[test]
    fn the_last_slots_of_a_window_are_spread_until_it_frees() {
        // 17 used, 3 left, the oldest leaves in 60 s: one every 20 s.
        let pause = flusher_pause(&state(17, 60), ROBOT, Some(Duration::from_secs(1)), true);
        assert_eq!(pause, Duration::from_secs(19));
        // The last one: the whole wait until the oldest leaves.
        let pause = flusher_pause(&state(19, 30), ROBOT, Some(Duration::ZERO), true);
        assert_eq!(pause, Duration::from_secs(30));
    }

    #[test]
    fn a_backlog_larger_than_a_digest_goes_at_the_even_pace() {
        let pause = flusher_pause(&state(17, 60), ROBOT, Some(Duration::from_secs(1)), false);
        assert_eq!(pause, WINDOW / 20 - Duration::from_secs(1));
    }

    #[test]
    fn never_faster_than_an_even_share_of_the_window() {
        let pause = flusher_pause(&state(2, 1), ROBOT, Some(Duration::ZERO), true);
        assert_eq!(pause, WINDOW / 20);
        assert_eq!(
            flusher_pause(&state(2, 1), ROBOT, Some(Duration::from_secs(5)), true),
            Duration::ZERO
        );
    }
}

#[cfg(test)]
mod shared {
    use super::*;
    use crate::deliver::SharedBudget;
    use crate::store::Embedded;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_shared_budget_bounds_its_destinations_together_and_gives_back_what_it_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 1_000).expect("opens")));
        let own = [Window::new(20, Duration::from_secs(60))];
        let app = || {
            Some(SharedBudget {
                key: "app".into(),
                windows: vec![Window::new(3, Duration::from_secs(60))],
            })
        };
        let one = Budget::new(store.clone(), "one", &own, true, 0).sharing(app());
        let two = Budget::new(store.clone(), "two", &own, true, 0).sharing(app());
        let mut open = 0;
        for budget in [&one, &two, &one, &two, &one] {
            if matches!(budget.for_event().await, Ok(Passage::Open { .. })) {
                open += 1;
            }
        }
        assert_eq!(open, 3, "three sends over both");
        // The refused ones gave their own slots back.
        assert_eq!(one.state().await.expect("state").used, 2);
        assert_eq!(two.state().await.expect("state").used, 1);
        let alone = Budget::new(store, "three", &own, true, 0);
        assert!(
            matches!(alone.for_event().await, Ok(Passage::Open { .. })),
            "a destination not sharing it is not bound"
        );
    }
}
