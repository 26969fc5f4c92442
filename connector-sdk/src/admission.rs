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
//! - A deadline: the body must arrive within `body_read_timeout`.
//! - Room for what the body becomes: once it is read, and before it is
//!   decoded, the memory its decoded form will take (`decoded.rs`) is
//!   reserved too, so a small body that decodes into a huge one (4 MiB of
//!   `[0,0,…]`) is refused instead of decoded.
//!
//! Past any of them the request is refused at once with a [`Refusal`] that
//! says which, and the sender retries later (or, for a body over
//! `max_body_bytes`, never). While refusals go on for longer than a moment,
//! `/readyz` answers 503 so a load balancer routes elsewhere.

use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Bytes;
use bytes::BytesMut;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::metrics;

/// How long admission must stay saturated before `/readyz` says so: a
/// burst that fills every slot for a few milliseconds is not a reason to
/// be taken out of a load balancer.
pub(crate) const SATURATED_AFTER: Duration = Duration::from_secs(1);

/// The length of a gRPC message prefix: a compression flag and a 4-byte length.
const GRPC_PREFIX: usize = 5;

/// Why a request was refused before it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The declared or actual body is over `max_body_bytes`.
    TooLarge { limit: usize },
    /// The body and what it decodes into could never fit the memory budget.
    TooLargeDecoded { estimate: usize, budget: usize },
    /// Every slot is taken.
    OverCapacity { max_in_flight: usize },
    /// The memory budget has no room for the body.
    OverBudget { budget: usize },
    /// The body did not arrive in time.
    SlowBody { timeout: Duration },
    /// The body could not be read (the client broke off, bad chunking).
    BrokenBody { reason: String },
    /// A gRPC request body that is not one gRPC message.
    Malformed { reason: String },
}

impl Refusal {
    /// The class of the outcome it stands for, as [`crate::Outcome::class`] names
    /// it for metrics: no room is `unavailable` (retry later), the rest is
    /// `rejected`.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Refusal::OverCapacity { .. } | Refusal::OverBudget { .. } => "unavailable",
            Refusal::TooLarge { .. }
            | Refusal::TooLargeDecoded { .. }
            | Refusal::SlowBody { .. }
            | Refusal::BrokenBody { .. }
            | Refusal::Malformed { .. } => "rejected",
        }
    }

    /// A short name for the metric label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } | Refusal::TooLargeDecoded { .. } => "too_large",
            Refusal::OverCapacity { .. } => "over_capacity",
            Refusal::OverBudget { .. } => "over_budget",
            Refusal::SlowBody { .. } => "slow_body",
            Refusal::BrokenBody { .. } => "broken_body",
            Refusal::Malformed { .. } => "malformed",
        }
    }

    /// One line for the sender: what happened and what to do.
    pub(crate) fn reason(&self) -> String {
        match self {
            Refusal::TooLarge { limit } => format!(
                "the request body is over {limit} bytes (max_body_bytes); send smaller batches"
            ),
            Refusal::TooLargeDecoded { estimate, budget } => format!(
                "the request would take about {estimate} bytes of memory once decoded, more than the memory budget of {budget} bytes (max_buffered_bytes); send fewer or larger values (many small JSON values or attributes cost far more decoded than sent)"
            ),
            Refusal::OverCapacity { max_in_flight } => {
                format!("over capacity: {max_in_flight} requests already in flight; retry later")
            }
            Refusal::OverBudget { budget } => format!(
                "over capacity: the requests being handled already fill the memory budget of {budget} bytes (max_buffered_bytes); retry later"
            ),
            Refusal::SlowBody { timeout } => format!(
                "the request body did not arrive within {} ms (body_read_timeout_ms); send it faster",
                timeout.as_millis()
            ),
            Refusal::BrokenBody { reason } => format!("cannot read the request body: {reason}"),
            Refusal::Malformed { reason } => {
                format!("the request is not one gRPC message: {reason}")
            }
        }
    }
}

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

    /// Reads a whole body, at most `max_body_bytes`, within the body read
    /// timeout, growing `ticket`'s reservation for what was not declared.
    pub(crate) async fn read_body<B>(&self, ticket: &mut Ticket, body: B) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let limit = self.0.max_body_bytes;
        let read = async {
            let mut body = pin!(body);
            let mut buffer = BytesMut::with_capacity(ticket.reserved);
            while let Some(data) = next_data(&mut body).await? {
                let total = buffer.len() + data.len();
                if total > limit {
                    return Err(Refusal::TooLarge { limit });
                }
                ticket.cover(total)?;
                buffer.extend_from_slice(&data);
            }
            Ok(buffer.freeze())
        };
        self.within_read_timeout(read).await
    }

    /// Reads the one length-prefixed message of a unary gRPC request body:
    /// the length in its prefix is checked and reserved before the message
    /// is read, so decoding never starts on a request that cannot be
    /// admitted. Returns the prefix and the message, as tonic reads them.
    pub(crate) async fn read_grpc_message<B>(
        &self,
        ticket: &mut Ticket,
        body: B,
    ) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let limit = self.0.max_body_bytes;
        let read = async {
            let mut body = pin!(body);
            let mut buffer = BytesMut::with_capacity(GRPC_PREFIX);
            let mut whole: Option<usize> = None;
            while let Some(data) = next_data(&mut body).await? {
                let total = buffer.len() + data.len();
                if whole.is_none() && total >= GRPC_PREFIX {
                    let prefix: Vec<u8> = buffer
                        .iter()
                        .chain(&data)
                        .take(GRPC_PREFIX)
                        .copied()
                        .collect();
                    let length = GRPC_PREFIX + grpc_message_length(&prefix, limit)?;
                    ticket.cover(length)?;
                    buffer.reserve(length.saturating_sub(buffer.len()));
                    whole = Some(length);
                }
                match whole {
                    Some(whole) if total > whole => {
                        return Err(malformed(format!(
                            "more than one message, or bytes after it ({total} bytes sent for a {whole}-byte message)"
                        )));
                    }
                    Some(_) => {}
                    None => ticket.cover(total)?,
                }
                buffer.extend_from_slice(&data);
                if whole == Some(buffer.len()) {
                    // The whole message: a unary call carries no more.
                    return Ok(buffer.freeze());
                }
            }
            Err(malformed(match whole {
                None if buffer.is_empty() => "the request has no message".to_owned(),
                None => "the request ended inside the 5-byte message prefix".to_owned(),
                Some(whole) => format!(
                    "the request ended after {} of the message's {whole} bytes",
                    buffer.len()
                ),
            }))
        };
        self.within_read_timeout(read).await
    }

    async fn within_read_timeout(
        &self,
        read: impl Future<Output = Result<Bytes, Refusal>>,
    ) -> Result<Bytes, Refusal> {
        let timeout = self.0.body_read_timeout;
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(Refusal::SlowBody { timeout }))
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

/// The next data frame of a body (trailers skipped); `None` at its end.
async fn next_data<B>(body: &mut Pin<&mut B>) -> Result<Option<Bytes>, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| broken(&err))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The length a gRPC message prefix declares, when the message may be read.
fn grpc_message_length(prefix: &[u8], limit: usize) -> Result<usize, Refusal> {
    let [flag, a, b, c, d] = prefix else {
        return Err(malformed("a message prefix is 5 bytes".to_owned()));
    };
    if *flag > 1 {
        return Err(malformed(format!(
            "the compression flag is {flag}; it must be 0 or 1"
        )));
    }
    let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if length > limit {
        return Err(Refusal::TooLarge { limit });
    }
    Ok(length)
}

fn broken(err: &impl std::fmt::Display) -> Refusal {
    Refusal::BrokenBody {
        reason: err.to_string(),
    }
}

fn malformed(reason: String) -> Refusal {
    Refusal::Malformed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    fn limits(max_in_flight: usize, max_body_bytes: usize, max_buffered_bytes: usize) -> Limits {
        Limits {
            max_in_flight,
            max_body_bytes,
            max_buffered_bytes,
            body_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        }
    }

    /// A body sent in the given chunks, then ended.
    fn chunked(
        chunks: Vec<&'static [u8]>,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin>
    {
        StreamBody::new(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
        ))
    }

    /// A body that sends `first` and then nothing, forever.
    fn stalled(
        first: &'static [u8],
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin>
    {
        use futures_util::StreamExt;
        StreamBody::new(
            futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(first)))])
                .chain(futures_util::stream::pending()),
        )
    }

    fn grpc_frame(message: &[u8]) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        framed
    }

    #[test]
    fn a_refusal_is_counted_as_the_class_of_its_answer() {
        let refusals = [
            Refusal::TooLarge { limit: 1 },
            Refusal::TooLargeDecoded {
                estimate: 2,
                budget: 1,
            },
            Refusal::OverCapacity { max_in_flight: 1 },
            Refusal::OverBudget { budget: 1 },
            Refusal::SlowBody {
                timeout: Duration::from_secs(1),
            },
            Refusal::BrokenBody { reason: "x".into() },
            Refusal::Malformed { reason: "x".into() },
        ];
        for refusal in refusals {
            let status = crate::status::http_refusal(&refusal).status();
            let retry_later = status == axum::http::StatusCode::SERVICE_UNAVAILABLE;
            let expected = if retry_later {
                "unavailable"
            } else {
                "rejected"
            };
            assert_eq!(refusal.class(), expected, "{refusal:?}: {status}");
        }
    }

    #[test]
    fn admits_up_to_the_bound_then_refuses_until_a_slot_returns() {
        let admission = Admission::new(&limits(2, 100, 1000));
        let first = admission.admit(None).expect("first");
        let _second = admission.admit(None).expect("second");
        let refused = admission.admit(None).expect_err("third is over capacity");
        assert_eq!(refused, Refusal::OverCapacity { max_in_flight: 2 });
        assert_eq!(refused.class(), "unavailable");
        assert_eq!(
            crate::status::http_refusal(&refused).status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        drop(first);
        assert!(admission.admit(None).is_ok());
    }

    #[test]
    fn a_declared_length_is_checked_and_reserved_before_reading() {
        let admission = Admission::new(&limits(10, 100, 150));
        assert_eq!(
            admission.admit(Some(101)).expect_err("too large"),
            Refusal::TooLarge { limit: 100 }
        );
        let held = admission.admit(Some(100)).expect("fits");
        assert_eq!(admission.buffered(), 100);
        assert_eq!(
            admission.admit(Some(60)).expect_err("no room"),
            Refusal::OverBudget { budget: 150 }
        );
        let small = admission.admit(Some(50)).expect("still room for 50");
        drop(held);
        drop(small);
        assert_eq!(admission.buffered(), 0, "memory comes back with the ticket");
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_reserves_as_it_arrives() {
        let admission = Admission::new(&limits(10, 100, 100));
        let mut ticket = admission.admit(None).expect("admitted");
        let body = admission
            .read_body(&mut ticket, chunked(vec![b"hello ", b"world"]))
            .await
            .expect("read");
        assert_eq!(&body[..], b"hello world");
        assert_eq!(admission.buffered(), 11);

        let mut other = admission.admit(None).expect("admitted");
        let refused = admission
            .read_body(&mut other, Full::new(Bytes::from(vec![b'x'; 95])))
            .await
            .expect_err("no room left");
        assert_eq!(refused, Refusal::OverBudget { budget: 100 });

        let mut big = admission.admit(None).expect("admitted");
        drop(ticket);
        let refused = admission
            .read_body(&mut big, Full::new(Bytes::from(vec![b'x'; 101])))
            .await
            .expect_err("over the body limit");
        assert_eq!(refused, Refusal::TooLarge { limit: 100 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_refused_at_the_read_timeout() {
        let admission = Admission::new(&limits(10, 100, 100));
        let mut ticket = admission.admit(Some(10)).expect("admitted");
        let refused = admission
            .read_body(&mut ticket, stalled(b"x"))
            .await
            .expect_err("too slow");
        assert_eq!(
            refused,
            Refusal::SlowBody {
                timeout: Duration::from_secs(1)
            }
        );
        assert!(refused.reason().contains("body_read_timeout_ms"));
    }

    #[tokio::test]
    async fn a_grpc_message_is_reserved_from_its_prefix() {
        let admission = Admission::new(&limits(10, 100, 100));
        let framed = grpc_frame(b"payload");
        let mut ticket = admission.admit(None).expect("admitted");
        let (head, tail) = framed.split_at(3);
        let body = StreamBody::new(futures_util::stream::iter([
            Ok::<_, std::io::Error>(Frame::data(Bytes::copy_from_slice(head))),
            Ok(Frame::data(Bytes::copy_from_slice(tail))),
        ]));
        let message = admission
            .read_grpc_message(&mut ticket, body)
            .await
            .expect("one message");
        assert_eq!(&message[..], &framed[..]);
        assert_eq!(admission.buffered(), framed.len());
    }

    #[tokio::test]
    async fn a_grpc_prefix_over_the_limit_is_refused_before_the_message() {
        let admission = Admission::new(&limits(10, 100, 1000));
        let mut prefix = vec![0];
        prefix.extend_from_slice(&4_000_000_u32.to_be_bytes());
        let mut ticket = admission.admit(None).expect("admitted");
        let body = StreamBody::new(
            futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(Bytes::from(prefix)))])
                .chain(futures_util::stream::pending()),
        );
        use futures_util::StreamExt;
        let refused = admission.read_grpc_message(&mut ticket, body).await;
        assert_eq!(refused, Err(Refusal::TooLarge { limit: 100 }));
    }

    #[tokio::test]
    async fn malformed_grpc_bodies_are_named() {
        let admission = Admission::new(&limits(10, 100, 1000));
        let cases: [(Vec<u8>, &str); 4] = [
            (vec![], "no message"),
            (vec![0, 0], "inside the 5-byte message prefix"),
            (
                vec![0, 0, 0, 0, 9, 1, 2],
                "after 7 of the message's 14 bytes",
            ),
            (
                [grpc_frame(b"a"), grpc_frame(b"b")].concat(),
                "more than one message",
            ),
        ];
        for (bytes, expected) in cases {
            let mut ticket = admission.admit(None).expect("admitted");
            let refused = admission
                .read_grpc_message(&mut ticket, Full::new(Bytes::from(bytes)))
                .await
                .expect_err("malformed");
            assert!(refused.reason().contains(expected), "{refused:?}");
        }
        let mut ticket = admission.admit(None).expect("admitted");
        let refused = admission
            .read_grpc_message(&mut ticket, Full::new(Bytes::from_static(&[7, 0, 0, 0, 0])))
            .await
            .expect_err("bad flag");
        assert!(refused.reason().contains("compression flag"), "{refused:?}");
    }

    #[test]
    fn what_a_body_decodes_into_is_charged_before_decoding() {
        let admission = Admission::new(&limits(10, 100, 300));
        let mut first = admission.admit(Some(100)).expect("admitted");
        first.charge_decoded(100).expect("200 of 300");
        let mut second = admission.admit(Some(50)).expect("admitted");
        assert_eq!(
            second.charge_decoded(100),
            Err(Refusal::OverBudget { budget: 300 }),
            "not now"
        );
        assert_eq!(
            second.charge_decoded(1_000),
            Err(Refusal::TooLargeDecoded {
                estimate: 1_050,
                budget: 300
            }),
            "not ever"
        );
        drop(first);
        second.charge_decoded(100).expect("room again");
        assert_eq!(admission.buffered(), 150);
    }

    #[tokio::test(start_paused = true)]
    async fn saturation_starts_when_the_last_slot_goes_and_ends_when_one_returns() {
        let admission = Admission::new(&limits(1, 100, 100));
        assert_eq!(admission.saturated_for(), None);
        let only = admission.admit(None).expect("admitted");
        assert!(
            admission
                .saturated_for()
                .is_some_and(|d| d < SATURATED_AFTER),
            "saturated, but not for longer than a moment yet"
        );
        drop(only);
        assert_eq!(admission.saturated_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_for_memory_saturate_until_they_stop_for_a_moment() {
        let admission = Admission::new(&limits(10, 100, 100));
        let held = admission.admit(Some(100)).expect("admitted");
        assert_eq!(
            admission.saturated_for(),
            None,
            "full, but nobody refused yet"
        );
        for _ in 0..3 {
            admission.admit(Some(1)).expect_err("no room");
            tokio::time::sleep(SATURATED_AFTER / 2).await;
        }
        assert!(
            admission
                .saturated_for()
                .is_some_and(|d| d >= SATURATED_AFTER),
            "refused again and again: saturated for more than a moment"
        );
        drop(held);
        tokio::time::sleep(SATURATED_AFTER).await;
        assert_eq!(admission.saturated_for(), None, "no refusal for a moment");
    }
}
