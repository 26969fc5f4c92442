//! The rule of a gate, free of storage: a log of recent send times (wall
//! clock, in milliseconds since the epoch, so it means the same after a
//! restart) and a hold. A backend loads the log, asks it, and saves it back
//! in one atomic step.

use std::time::Duration;

use super::{GateState, Passage, Window, millis};

/// One gate's recent sends and hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GateLog {
    /// No send passes before this instant (ms); 0 when not held.
    pub hold_until: u64,
    /// Send instants (ms) that may still be in a window, oldest first.
    pub sends: Vec<u64>,
}

impl GateLog {
    /// Records a send at `now` if the gate is not held and, in each of
    /// `windows`, fewer than its limit of sends fall in the window of its
    /// length ending at `now`. Waits as long as the slowest window says.
    pub fn pass(&mut self, now: u64, windows: &[Window]) -> Passage {
        let longest = windows.iter().map(|w| w.per).max().unwrap_or_default();
        self.forget(now, longest);
        if self.hold_until > now {
            return Passage::Held(Duration::from_millis(self.hold_until - now));
        }
        let mut wait = None::<Duration>;
        for window in windows {
            if let Some(frees_in) = self.frees_in(now, window) {
                wait = Some(wait.map_or(frees_in, |w| w.max(frees_in)));
            }
        }
        if let Some(wait) = wait {
            return Passage::Wait(wait);
        }
        // A clock that stepped back keeps the log sorted all the same.
        let at = self.sends.partition_point(|&t| t <= now);
        self.sends.insert(at, now);
        let used = windows
            .first()
            .map_or(self.sends.len(), |w| self.in_window(now, w.per));
        Passage::Open {
            used: u32::try_from(used).unwrap_or(u32::MAX),
        }
    }

    /// `None` when one more send fits in `window` at `now`; else how long
    /// until one does.
    fn frees_in(&self, now: u64, window: &Window) -> Option<Duration> {
        let limit = window.limit as usize;
        if limit == 0 {
            // Nothing ever passes: wait a whole window, and ask again.
            return Some(window.per);
        }
        let per = millis(window.per);
        let left = self
            .sends
            .partition_point(|&t| t.saturating_add(per) <= now);
        let in_window = &self.sends[left..];
        if in_window.len() < limit {
            return None;
        }
        // The window must shed sends until one fewer than `limit` remain:
        // the send at `len - limit` is the last of those to leave.
        let frees_at = in_window[in_window.len() - limit].saturating_add(per);
        Some(Duration::from_millis(frees_at.saturating_sub(now).max(1)))
    }

    /// Sends in the window of length `per` ending at `now`.
    fn in_window(&self, now: u64, per: Duration) -> usize {
        let per = millis(per);
        self.sends.len()
            - self
                .sends
                .partition_point(|&t| t.saturating_add(per) <= now)
    }

    /// Takes back the latest send: it never left (the connection was
    /// refused before a byte was written), so it spends no budget.
    pub fn refund(&mut self) {
        self.sends.pop();
    }

    /// Holds the gate for `duration` from `now`, unless held longer already.
    pub fn hold(&mut self, now: u64, duration: Duration) {
        let until = now.saturating_add(millis(duration));
        self.hold_until = self.hold_until.max(until);
    }

    /// The gate at `now`, over the `window` ending then.
    pub fn state(&self, now: u64, window: Duration) -> GateState {
        // The log is sorted: the sends still in the window are its tail.
        let window = millis(window);
        let left = self
            .sends
            .partition_point(|&t| t.saturating_add(window) <= now);
        let in_window = &self.sends[left..];
        GateState {
            used: u32::try_from(in_window.len()).unwrap_or(u32::MAX),
            next_free_in: in_window
                .first()
                .map(|&t| Duration::from_millis(t.saturating_add(window).saturating_sub(now))),
            held_for: (self.hold_until > now).then(|| Duration::from_millis(self.hold_until - now)),
        }
    }

    /// Drops the sends that left the window, and an expired hold.
    fn forget(&mut self, now: u64, window: Duration) {
        let window = millis(window);
        self.sends.retain(|&t| t.saturating_add(window) > now);
        if self.hold_until <= now {
            self.hold_until = 0;
        }
    }

    /// `hold_until` then each send, as little-endian u64s.
    pub fn encode(&self) -> Vec<u8> {
        std::iter::once(self.hold_until)
            .chain(self.sends.iter().copied())
            .flat_map(u64::to_le_bytes)
            .collect()
    }

    /// The inverse of [`GateLog::encode`]; an empty or torn value is an
    /// empty log.
    pub fn decode(bytes: &[u8]) -> Self {
        let mut words = bytes
            .chunks_exact(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        GateLog {
            hold_until: words.next().unwrap_or(0),
            sends: words.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn passes_up_to_the_limit_then_says_when_a_send_leaves_the_window() {
        let mut log = GateLog::default();
        for i in 0..3 {
            assert_eq!(
                log.pass(1_000 + i * 10, &[Window::new(3, MINUTE)]),
                Passage::Open {
                    used: u32::try_from(i + 1).unwrap()
                }
            );
        }
        assert_eq!(
            log.pass(2_000, &[Window::new(3, MINUTE)]),
            Passage::Wait(Duration::from_millis(59_000))
        );
        // A lower limit on the same log waits for more sends to leave.
        assert_eq!(
            log.pass(2_000, &[Window::new(2, MINUTE)]),
            Passage::Wait(Duration::from_millis(59_010))
        );
        // The first send leaves the window exactly a window later.
        assert_eq!(
            log.pass(61_000, &[Window::new(3, MINUTE)]),
            Passage::Open { used: 3 }
        );
    }

    #[test]
    fn a_limit_of_zero_lets_nothing_through_without_failing() {
        let mut log = GateLog::default();
        assert_eq!(
            log.pass(0, &[Window::new(0, MINUTE)]),
            Passage::Wait(MINUTE)
        );
        assert!(log.sends.is_empty());
    }

    #[test]
    fn a_hold_refuses_every_send_until_it_ends_and_the_longest_wins() {
        let mut log = GateLog::default();
        log.hold(0, Duration::from_secs(600));
        log.hold(0, Duration::from_secs(10));
        assert_eq!(
            log.pass(1_000, &[Window::new(20, MINUTE)]),
            Passage::Held(Duration::from_millis(599_000))
        );
        assert_eq!(
            log.pass(600_000, &[Window::new(20, MINUTE)]),
            Passage::Open { used: 1 }
        );
        assert_eq!(log.hold_until, 0, "an expired hold is forgotten");
    }

    #[test]
    fn state_counts_the_window_without_changing_it() {
        let mut log = GateLog::default();
        log.pass(0, &[Window::new(5, MINUTE)]);
        log.pass(30_000, &[Window::new(5, MINUTE)]);
        log.hold(30_000, Duration::from_secs(5));
        let state = log.state(31_000, MINUTE);
        assert_eq!(
            state,
            GateState {
                used: 2,
                next_free_in: Some(Duration::from_millis(29_000)),
                held_for: Some(Duration::from_millis(4_000)),
            }
        );
        assert_eq!(log.state(61_000, MINUTE).used, 1);
        assert_eq!(log.sends.len(), 2, "state does not forget");
    }

    #[test]
    fn a_clock_that_steps_back_keeps_sends_ordered() {
        let mut log = GateLog::default();
        log.pass(10_000, &[Window::new(5, MINUTE)]);
        log.pass(5_000, &[Window::new(5, MINUTE)]);
        assert_eq!(log.sends, [5_000, 10_000]);
    }

    #[test]
    fn the_longest_window_saturates_instead_of_overflowing() {
        // `Backend::pass` is public: any Duration may arrive.
        let mut log = GateLog::default();
        assert_eq!(
            log.pass(1_000, &[Window::new(1, Duration::MAX)]),
            Passage::Open { used: 1 }
        );
        let forever = Duration::from_millis(u64::MAX - 2_000);
        assert_eq!(
            log.pass(2_000, &[Window::new(1, Duration::MAX)]),
            Passage::Wait(forever)
        );
        let state = log.state(2_000, Duration::MAX);
        assert_eq!((state.used, state.next_free_in), (1, Some(forever)));
    }

    #[test]
    fn encoding_round_trips_and_junk_is_an_empty_log() {
        let log = GateLog {
            hold_until: 7,
            sends: vec![1, 2, 3],
        };
        assert_eq!(GateLog::decode(&log.encode()), log);
        assert_eq!(GateLog::decode(&[]), GateLog::default());
        assert_eq!(GateLog::decode(&[1, 2, 3]).sends, Vec::<u64>::new());
    }

    #[test]
    fn every_window_must_have_room_and_the_slowest_says_how_long_to_wait() {
        // Feishu's bot: 5 a second and 100 a minute, on one log.
        let windows = [
            Window::new(100, MINUTE),
            Window::new(5, Duration::from_secs(1)),
        ];
        let mut log = GateLog::default();
        for i in 0..5 {
            assert!(matches!(
                log.pass(1_000 + i, &windows),
                Passage::Open { .. }
            ));
        }
        assert_eq!(
            log.pass(1_500, &windows),
            Passage::Wait(Duration::from_millis(500)),
            "the second is full"
        );
        assert_eq!(log.pass(2_000, &windows), Passage::Open { used: 6 });
        // The minute fills: its wait is the longer one.
        let mut log = GateLog::default();
        for i in 0..100 {
            log.sends.push(i * 100);
        }
        assert_eq!(
            log.pass(30_000, &windows),
            Passage::Wait(Duration::from_millis(30_000))
        );
    }

    #[test]
    fn a_refund_takes_the_latest_send_back() {
        let one = [Window::new(1, MINUTE)];
        let mut log = GateLog::default();
        assert_eq!(log.pass(1_000, &one), Passage::Open { used: 1 });
        assert!(matches!(log.pass(2_000, &one), Passage::Wait(_)));
        log.refund();
        assert_eq!(log.pass(2_000, &one), Passage::Open { used: 1 });
        log.refund();
        log.refund();
        assert!(log.sends.is_empty(), "a refund of nothing changes nothing");
    }
}
