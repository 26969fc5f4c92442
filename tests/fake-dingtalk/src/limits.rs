//! DingTalk's per-robot rate limit: at most N accepted messages in any
//! sliding 60-second window; a send that would exceed it is refused with
//! errcode 410100 and blocks the robot for a while (10 minutes on the real
//! service), during which every request is refused the same way.
//!
//! Times are [`tokio::time::Instant`]s so a paused tokio clock drives them.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Length of the sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The rate-limit state of one robot.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    block_for: Duration,
    window: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// A send refused because the robot is over its limit or blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// When the robot accepts messages again.
    pub until: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` sends per window, blocking for
    /// `block_for` once exceeded.
    pub fn new(per_minute: u32, block_for: Duration) -> Self {
        RateLimiter {
            per_minute,
            block_for,
            window: VecDeque::new(),
            blocked_until: None,
        }
    }

    /// `Err` while the robot is blocked at `now`; clears an expired block.
    pub fn check_blocked(&mut self, now: Instant) -> Result<(), Throttled> {
        match self.blocked_until {
            Some(until) if now < until => Err(Throttled { until }),
            Some(_) => {
                self.blocked_until = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records one accepted send at `now`, or refuses it — and starts the
    /// block — when the window is already full.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Throttled> {
        self.check_blocked(now)?;
        while let Some(&oldest) = self.window.front() {
            if now.saturating_duration_since(oldest) >= WINDOW {
                self.window.pop_front();
            } else {
                break;
            }
        }
        if self.window.len() >= self.per_minute as usize {
            let until = now + self.block_for;
            self.blocked_until = Some(until);
            self.window.clear();
            return Err(Throttled { until });
        }
        self.window.push_back(now);
        Ok(())
    }

    /// Accepted sends in the window ending at `now`.
    #[cfg(test)]
    pub fn in_window(&self, now: Instant) -> usize {
        self.window
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < WINDOW)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn twenty_per_minute_then_blocked_for_ten_minutes() {
        let mut rl = RateLimiter::new(20, Duration::from_secs(600));
        for _ in 0..20 {
            assert!(rl.try_acquire(Instant::now()).is_ok());
            advance(Duration::from_secs(1)).await;
        }
        assert_eq!(rl.in_window(Instant::now()), 20);
        let err = rl.try_acquire(Instant::now()).unwrap_err();
        assert_eq!(err.until, Instant::now() + Duration::from_secs(600));

        // Even after the window has drained, the block holds.
        advance(Duration::from_secs(120)).await;
        assert!(rl.check_blocked(Instant::now()).is_err());
        assert!(rl.try_acquire(Instant::now()).is_err());
        advance(Duration::from_secs(479)).await;
        assert!(rl.try_acquire(Instant::now()).is_err());
        advance(Duration::from_secs(1)).await;
        assert!(rl.check_blocked(Instant::now()).is_ok());
        assert!(rl.try_acquire(Instant::now()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides() {
        let mut rl = RateLimiter::new(2, Duration::from_secs(600));
        assert!(rl.try_acquire(Instant::now()).is_ok());
        advance(Duration::from_secs(30)).await;
        assert!(rl.try_acquire(Instant::now()).is_ok());
        advance(Duration::from_secs(30)).await;
        // The first send is now exactly 60 s old: out of the window.
        assert_eq!(rl.in_window(Instant::now()), 1);
        assert!(rl.try_acquire(Instant::now()).is_ok());
        advance(Duration::from_secs(29)).await;
        assert!(rl.try_acquire(Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_per_minute_blocks_at_once() {
        let mut rl = RateLimiter::new(0, Duration::from_millis(50));
        assert!(rl.try_acquire(Instant::now()).is_err());
        advance(Duration::from_millis(50)).await;
        assert!(rl.try_acquire(Instant::now()).is_err());
    }
}
