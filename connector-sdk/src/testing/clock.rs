//! A store clock a test moves on: gates and expiries that would take a
//! minute (or a day) to pass go by at once. Hand it to
//! [`TestServer::from_yaml_with_clock`](super::TestServer::from_yaml_with_clock).
//! Redis follows its own clock, whatever this one says.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{Clock, SystemClock, millis};

/// The wall clock moved forward by an offset a test can grow: it skips a
/// minute window without waiting for it.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicU64,
}

impl ShiftedClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(millis(by), Ordering::AcqRel);
    }

    /// How far ahead of the wall clock it is.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::Acquire))
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> u64 {
        SystemClock
            .now_ms()
            .saturating_add(self.offset_ms.load(Ordering::Acquire))
    }
}
