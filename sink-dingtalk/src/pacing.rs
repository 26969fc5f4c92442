//! Per-robot send budget. DingTalk allows 20 messages a minute per robot and
//! blocks a robot for 10 minutes after a 21st, so the sink never sends more
//! than the budget in any sliding window, and after a throttle answer it
//! holds the robot for a cool-down.
//!
//! A send reserves a slot: the earliest instant at which sending keeps every
//! window within budget. Slots are handed out in order, so waiting senders
//! are served first come, first served. A caller that cannot wait that long
//! gets the wait instead, to answer 429 with `Retry-After`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// DingTalk's minute plus a margin: network jitter can make two sends
/// exactly a minute apart arrive a little less than a minute apart.
pub const WINDOW: Duration = Duration::from_secs(61);

/// Why no slot is available within the caller's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The budget is used up; a slot frees after the given wait.
    Budget(Duration),
    /// The robot is cooling down after a throttle answer, for the given wait.
    CoolingDown(Duration),
}

impl Busy {
    /// How long until a send could go out.
    pub fn retry_after(self) -> Duration {
        match self {
            Busy::Budget(wait) | Busy::CoolingDown(wait) => wait,
        }
    }
}

/// The budget of one robot (shared by every chat group that uses it).
#[derive(Debug)]
pub struct Pacer {
    /// `None`: pacing is off for this robot (benchmarks against a stand-in).
    per_window: Option<usize>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Reserved send instants within the last window, oldest first.
    slots: VecDeque<Instant>,
    /// No sends before this instant (DingTalk is blocking the robot).
    cooling_until: Option<Instant>,
}

impl Pacer {
    /// A budget of `per_minute` sends per [`WINDOW`].
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_window: Some(usize::try_from(per_minute.max(1)).unwrap_or(usize::MAX)),
            state: Mutex::new(State::default()),
        }
    }

    /// No budget at all, only cool-downs: for a stand-in that has no limit.
    pub fn unlimited() -> Self {
        Self {
            per_window: None,
            state: Mutex::new(State::default()),
        }
    }

    /// False for [`Pacer::unlimited`].
    pub fn is_paced(&self) -> bool {
        self.per_window.is_some()
    }

    /// Reserves the earliest slot no later than `now + max_wait`. Returns the
    /// instant to send at, or why not and for how long.
    pub fn reserve(&self, now: Instant, max_wait: Duration) -> Result<Instant, Busy> {
        let mut state = self.lock();
        if let Some(until) = state.cooling_until {
            if until > now {
                return Err(Busy::CoolingDown(until - now));
            }
            state.cooling_until = None;
        }
        let Some(per_window) = self.per_window else {
            return Ok(now);
        };
        while state
            .slots
            .front()
            .is_some_and(|&slot| slot + WINDOW <= now)
        {
            state.slots.pop_front();
        }
        // Never before an already reserved slot: first come, first served.
        let mut slot = state.slots.back().map_or(now, |&last| last.max(now));
        if state.slots.len() >= per_window {
            // The window ending at the new slot must not hold the budget's
            // worth of slots already: wait for the nth latest to leave it.
            let nth_latest = state.slots[state.slots.len() - per_window];
            slot = slot.max(nth_latest + WINDOW);
        }
        if slot - now > max_wait {
            return Err(Busy::Budget(slot - now));
        }
        state.slots.push_back(slot);
        Ok(slot)
    }

    /// Holds the robot until `now + cooldown`. Returns true when this starts
    /// a new cool-down (so the caller logs it once).
    pub fn cool_down(&self, now: Instant, cooldown: Duration) -> bool {
        let mut state = self.lock();
        let until = now + cooldown;
        let is_new = state.cooling_until.is_none_or(|current| current <= now);
        if state.cooling_until.is_none_or(|current| current < until) {
            state.cooling_until = Some(until);
        }
        is_new
    }

    /// Sends reserved in the window ending at `now`, and the end of any cool-down.
    pub fn snapshot(&self, now: Instant) -> (usize, Option<Instant>) {
        let state = self.lock();
        let used = state
            .slots
            .iter()
            .filter(|&&slot| slot + WINDOW > now && slot <= now)
            .count();
        (used, state.cooling_until.filter(|&until| until > now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update
        // is a single push or assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[test]
    fn within_budget_sends_at_once() {
        let pacer = Pacer::new(3);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(pacer.reserve(now, NO_WAIT), Ok(now));
        }
        assert_eq!(pacer.reserve(now, NO_WAIT), Err(Busy::Budget(WINDOW)));
    }

    #[test]
    fn a_waiting_sender_gets_the_slot_when_the_window_slides() {
        let pacer = Pacer::new(2);
        let t0 = Instant::now();
        pacer.reserve(t0, NO_WAIT).expect("slot 1");
        pacer
            .reserve(t0 + Duration::from_secs(10), NO_WAIT)
            .expect("slot 2");
        // At t0+59 s the first slot frees at t0+61 s: a 2 s wait.
        let now = t0 + Duration::from_secs(59);
        assert_eq!(
            pacer.reserve(now, Duration::from_secs(1)),
            Err(Busy::Budget(Duration::from_secs(2)))
        );
        assert_eq!(pacer.reserve(now, Duration::from_secs(3)), Ok(t0 + WINDOW));
        // The next one must wait for the second slot to leave the window.
        assert_eq!(
            pacer.reserve(now, Duration::from_secs(60)),
            Ok(t0 + Duration::from_secs(10) + WINDOW)
        );
    }

    #[test]
    fn no_window_ever_holds_more_than_the_budget() {
        let pacer = Pacer::new(20);
        let start = Instant::now();
        let mut sent = Vec::new();
        // 200 attempts, one every 700 ms, each willing to wait 3 s.
        for i in 0..200u64 {
            let now = start + Duration::from_millis(700 * i);
            if let Ok(slot) = pacer.reserve(now, Duration::from_secs(3)) {
                sent.push(slot);
            }
        }
        for (i, &first) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|&&s| s < first + WINDOW)
                .count();
            assert!(
                in_window <= 20,
                "{in_window} sends within one window starting at send {i}"
            );
        }
        assert!(
            sent.len() >= 40,
            "the budget is used, not wasted: {}",
            sent.len()
        );
    }

    #[test]
    fn unlimited_never_waits_and_keeps_no_slots() {
        let pacer = Pacer::unlimited();
        let now = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(pacer.reserve(now, NO_WAIT), Ok(now));
        }
        assert_eq!(pacer.snapshot(now), (0, None));
        pacer.cool_down(now, Duration::from_secs(1));
        assert!(
            pacer.reserve(now, NO_WAIT).is_err(),
            "cool-downs still apply"
        );
    }

    #[test]
    fn cooling_down_refuses_until_it_ends_and_reports_once() {
        let pacer = Pacer::new(20);
        let now = Instant::now();
        assert!(pacer.cool_down(now, Duration::from_secs(600)));
        assert!(
            !pacer.cool_down(now + Duration::from_secs(1), Duration::from_secs(600)),
            "already cooling"
        );
        let later = now + Duration::from_secs(100);
        assert_eq!(
            pacer.reserve(later, Duration::from_secs(3)),
            Err(Busy::CoolingDown(Duration::from_secs(501)))
        );
        let after = now + Duration::from_secs(602);
        assert_eq!(pacer.reserve(after, NO_WAIT), Ok(after));
        assert_eq!(pacer.snapshot(after), (1, None));
    }
}
