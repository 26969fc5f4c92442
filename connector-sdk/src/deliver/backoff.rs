//! The one backoff of the kit: exponential, capped, optionally jittered.
//! A request retrying within its deadline backs off in milliseconds; a
//! flusher after failures in a row, in seconds.

use std::time::Duration;

/// How long to wait before attempt `n + 1` after `n` failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// Scale each wait by a random factor in [0.5, 1), so that retries of
    /// many senders do not synchronize.
    pub jitter: bool,
}

/// A request's retries: 100 ms, 200 ms, 400 ms... up to 1 s, jittered.
pub(crate) const WITHIN_A_REQUEST: Backoff = Backoff {
    first: Duration::from_millis(100),
    cap: Duration::from_secs(1),
    jitter: true,
};

/// A flusher's attempts after failures: 1 s, 2 s, 4 s... up to 10 s.
pub(crate) const BETWEEN_FLUSHES: Backoff = Backoff {
    first: Duration::from_secs(1),
    cap: Duration::from_secs(10),
    jitter: false,
};

impl Backoff {
    /// The wait after `failures` failures in a row (at least one).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.clamp(1, 16) - 1;
        let wait = self.first.saturating_mul(1 << doublings).min(self.cap);
        if self.jitter {
            wait.mul_f64(0.5 + fastrand::f64() / 2.0)
        } else {
            wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_backoff_grows_is_capped_and_jittered() {
        for _ in 0..50 {
            let first = WITHIN_A_REQUEST.after(1);
            assert!(
                first >= Duration::from_millis(50) && first < Duration::from_millis(100),
                "{first:?}"
            );
            let late = WITHIN_A_REQUEST.after(30);
            assert!(
                late >= Duration::from_millis(500) && late < Duration::from_secs(1),
                "{late:?}"
            );
        }
    }

    #[test]
    fn a_flushers_backoff_doubles_up_to_its_cap() {
        let waits: Vec<u64> = (1..=6)
            .map(|n| BETWEEN_FLUSHES.after(n).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(BETWEEN_FLUSHES.after(u32::MAX), Duration::from_secs(10));
        assert_eq!(BETWEEN_FLUSHES.after(0), Duration::from_secs(1));
    }
}
