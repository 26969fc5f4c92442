//! A bound on the requests handled at once, shared by HTTP and gRPC. Past
//! it a request is answered 503 at once instead of queueing (and holding
//! its body in memory), so a flood cannot exhaust memory and the sender
//! retries later.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sink::{Outcome, Unavailable};

/// Hands out one permit per request being handled.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Admission {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        let max = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A permit held until the request is answered, or the 503 to answer.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, Outcome> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            Outcome::unavailable(
                Unavailable::ServiceUnavailable,
                format!(
                    "over capacity: {} requests already in flight; retry later",
                    self.max
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_bound_then_refuses_until_a_permit_returns() {
        let admission = Admission::new(2);
        let first = admission.admit().expect("first");
        let _second = admission.admit().expect("second");
        let refused = admission.admit().expect_err("third is over capacity");
        assert!(matches!(
            refused,
            Outcome::Unavailable {
                kind: Unavailable::ServiceUnavailable,
                ..
            }
        ));
        drop(first);
        assert!(admission.admit().is_ok());
    }
}
