//! The time one request has: the sender waits a few seconds for its answer
//! (5 s for a Vanus trigger), so every wait and every send fits inside it,
//! with a reserve left to answer (and, with digests on, to queue what did
//! not go out).

use std::time::Duration;

use tokio::time::Instant;

/// The shortest send worth starting: below this it would time out before
/// the destination could answer.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// Kept back from every wait and send, to answer in time afterwards.
pub const ANSWER_RESERVE: Duration = Duration::from_millis(100);

/// When a request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
        }
    }

    /// Time left to spend on waits and sends, the answer's reserve excluded.
    fn usable(&self) -> Duration {
        self.at
            .saturating_duration_since(Instant::now())
            .saturating_sub(ANSWER_RESERVE)
    }

    /// The timeout of a send started now, or `None` when there is no longer
    /// time for one.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        Some(self.usable()).filter(|left| *left >= MIN_ATTEMPT)
    }

    /// True when waiting `wait` still leaves time for a send.
    pub fn allows_wait(&self, wait: Duration) -> bool {
        self.usable() >= wait + MIN_ATTEMPT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn attempts_and_waits_fit_inside_with_the_reserve_kept() {
        let deadline = Deadline::after(Duration::from_millis(1_000));
        assert_eq!(deadline.attempt_timeout(), Some(Duration::from_millis(900)));
        assert!(deadline.allows_wait(Duration::from_millis(650)));
        assert!(!deadline.allows_wait(Duration::from_millis(651)));

        tokio::time::advance(Duration::from_millis(650)).await;
        assert_eq!(deadline.attempt_timeout(), Some(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(deadline.attempt_timeout(), None, "no time left for a POST");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(deadline.attempt_timeout(), None);
        assert!(!deadline.allows_wait(Duration::ZERO));
    }
}
