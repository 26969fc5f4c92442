//! Admission: what a request must get before its body is read, shared by
//! HTTP and gRPC.
//!
//! - A slot: at most `max_in_flight` requests are handled at once.
//! - Room in the memory budget: the bytes of request bodies held at once
//!   never exceed `max_buffered_bytes`. A request's declared length (HTTP
//!   `Content-Length`, the gRPC message's length prefix) is reserved before
//!   its body is read, so a request that cannot fit is refused before it is
//!   uploaded (an `Expect: 100-continue` client never gets `100 Continue`);
//!   a body of unknown length reserves as it arrives.
//! - A deadline: the body must arrive within `body_read_timeout`
//!   (`body.rs` reads it).
//! - Room for what the body becomes: once it is read, and before it is
//!   decoded, the memory its decoded form will take (`decoded.rs`) is
//!   reserved too, so a small body that decodes into a huge one (4 MiB of
//!   `[0,0,…]`) is refused instead of decoded.
//!
//! Past any of them the request is refused at once with a [`Refusal`] that
//! says which, and the sender retries later (or, for a body over
//! `max_body_bytes`, never). While refusals go on for longer than a moment,
//! `/readyz` answers 503 so a load balancer routes elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use http_body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::refusal::Refusal;
use crate::config::Limits;
use crate::metrics;

mod body;
#[cfg(test)]
mod tests;

/// How long admission must stay saturated before `/readyz` says so: a
/// burst that fills every slot for a few milliseconds is not a reason to
/// be taken out of a load balancer.
pub(crate) const SATURATED_AFTER: Duration = Duration::from_secs(1);

/// Hands out slots and memory; cheap to clone into each server.
#[derive(Debug, Clone)]
pub(crate) struct Admission(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    max_body_bytes: usize,
    budget: usize,
    buffered: AtomicUsize,
    body_read_timeout: Duration,
    pressure: Mutex<Pressure>,
}

/// What `/readyz` needs to know about refusals.
#[derive(Debug, Default)]
struct Pressure {
    /// The latest refusal for want of a slot or memory.
    last_refusal: Option<Instant>,
    /// Since when admission is saturated: every slot taken, or a refusal
    /// within the last [`SATURATED_AFTER`].
    since: Option<Instant>,
}

/// What an admitted request holds until it is answered: its slot and its
/// share of the memory budget. Dropping it gives both back.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Admission,
    _permit: OwnedSemaphorePermit,
    reserved: usize,
}

/// An admitted HTTP request: its headers, its whole body, and the ticket
/// to hold until it is answered.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) ticket: Ticket,
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Self {
        let max_in_flight = limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self(Arc::new(Shared {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            max_body_bytes: limits.max_body_bytes,
            budget: limits.max_buffered_bytes,
            buffered: AtomicUsize::new(0),
            body_read_timeout: limits.body_read_timeout,
            pressure: Mutex::new(Pressure::default()),
        }))
    }

    /// A ticket for a request whose body declares `declared` bytes (`None`
    /// when unknown): its length is checked and reserved before anything is
    /// read.
    pub(crate) fn admit(&self, declared: Option<u64>) -> Result<Ticket, Refusal> {
        let shared = &self.0;
        if declared.is_some_and(|len| len > shared.max_body_bytes as u64) {
            return Err(Refusal::TooLarge {
                limit: shared.max_body_bytes,
            });
        }
        let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
            return Err(self.refused(Refusal::OverCapacity {
                max_in_flight: shared.max_in_flight,
            }));
        };
        metrics::in_flight(1.0);
        let mut ticket = Ticket {
            admission: self.clone(),
            _permit: permit,
            reserved: 0,
        };
        if let Some(len) = declared {
            // At most max_body_bytes, checked above: it fits in usize.
            ticket.cover(usize::try_from(len).unwrap_or(usize::MAX))?;
        }
        self.observe(0);
        Ok(ticket)
    }

    /// Admits an HTTP request and reads its body within the limits.
    pub(crate) async fn admit_http(
        &self,
        request: axum::extract::Request,
    ) -> Result<Admitted, Refusal> {
        let (parts, body) = request.into_parts();
        // hyper sets the exact size from Content-Length.
        let mut ticket = self.admit(body.size_hint().exact())?;
        let body = self.read_body(&mut ticket, body).await?;
        Ok(Admitted {
            headers: parts.headers,
            body,
            ticket,
        })
    }

    /// How long admission has been saturated (every slot taken, or requests
    /// refused since the last slot or memory came back); `None` when not.
    pub(crate) fn saturated_for(&self) -> Option<Duration> {
        self.observe(0).map(|since| since.elapsed())
    }

    /// Bytes of request bodies held right now.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.0.buffered.load(Ordering::Acquire)
    }

    fn refused(&self, refusal: Refusal) -> Refusal {
        self.pressure().last_refusal = Some(Instant::now());
        self.observe(0);
        refusal
    }

    /// Records when saturation began (or that it ended), with `returning`
    /// slots about to come back; the start time while saturated.
    fn observe(&self, returning: usize) -> Option<Instant> {
        let all_taken = self.0.permits.available_permits() + returning == 0;
        let mut pressure = self.pressure();
        let now = Instant::now();
        let refusing = pressure
            .last_refusal
            .is_some_and(|at| now.duration_since(at) < SATURATED_AFTER);
        if all_taken || refusing {
            Some(*pressure.since.get_or_insert(now))
        } else {
            pressure.since = None;
            None
        }
    }

    fn pressure(&self) -> std::sync::MutexGuard<'_, Pressure> {
        self.0
            .pressure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Ticket {
    /// Reserves `decoded` bytes more, for what the body becomes once
    /// decoded (`decoded.rs` estimates it), before it is decoded.
    pub(crate) fn charge_decoded(&mut self, decoded: usize) -> Result<(), Refusal> {
        let estimate = self.reserved.saturating_add(decoded);
        let budget = self.admission.0.budget;
        if estimate > budget {
            return Err(Refusal::TooLargeDecoded { estimate, budget });
        }
        self.cover(estimate)
    }

    /// Makes sure at least `bytes` are reserved for this request's body.
    fn cover(&mut self, bytes: usize) -> Result<(), Refusal> {
        let more = bytes.saturating_sub(self.reserved);
        if more == 0 {
            return Ok(());
        }
        let shared = &self.admission.0;
        let taken = shared
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more)
                    .filter(|total| *total <= shared.budget)
            });
        if taken.is_err() {
            return Err(self.admission.refused(Refusal::OverBudget {
                budget: shared.budget,
            }));
        }
        self.reserved += more;
        metrics::buffered_bytes(more as f64);
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let shared = &self.admission.0;
        shared.buffered.fetch_sub(self.reserved, Ordering::AcqRel);
        metrics::buffered_bytes(-(self.reserved as f64));
        metrics::in_flight(-1.0);
        // The permit returns right after this: count it as back.
        self.admission.observe(1);
    }
}
