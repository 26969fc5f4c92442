//! What happens to a decoded batch, whichever door it came through: the
//! ledger takes out the events already accepted, the sink gets the rest,
//! the ledger remembers what the sink accepted, and the per-event outcomes
//! fold into the one answer the sender acts on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cloudevents::{AttributesReader, Event};
use futures_util::FutureExt;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::ledger::{Entry, Identity, Ledger};
use crate::metrics;
use crate::sink::{Outcome, Sink, Unavailable};
use crate::text::shorten;

/// The sink behind its ledger.
pub(crate) struct Dispatch<S> {
    sink: Arc<S>,
    ledger: Arc<Ledger>,
    /// The delivery tasks, which outlive a sender that hung up: shutdown
    /// waits for them before the sink and the store go away.
    deliveries: TaskTracker,
}

impl<S: Sink> Dispatch<S> {
    pub(crate) fn new(sink: Arc<S>, ledger: Arc<Ledger>, deliveries: TaskTracker) -> Self {
        Self {
            sink,
            ledger,
            deliveries,
        }
    }

    pub(crate) fn sink(&self) -> &S {
        &self.sink
    }

    /// Delivers a batch and answers for all of it. The work runs in the
    /// caller's task; if the sender hangs up (or its deadline cancels the
    /// call) before it is done, the rest runs as a task of its own (see
    /// [`Detachable`]), so an event the sink posted is still recorded in the
    /// ledger and the redelivery that follows is answered without a second
    /// post. A panic is answered 503, where panics unwind (a binary built
    /// with `panic = "abort"`, as sink-dingtalk's release is, ends instead).
    pub(crate) async fn deliver(self: &Arc<Self>, events: Vec<Event>) -> Outcome {
        let this = Arc::clone(self);
        let delivery = Detachable::new(
            async move { this.deliver_here(events).await },
            &self.deliveries,
        );
        match AssertUnwindSafe(delivery).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(
                    panic = panic_text(panic.as_ref()),
                    "handling a request failed: it panicked"
                );
                Outcome::unavailable(
                    Unavailable::ServiceUnavailable,
                    "handling the request failed; retry later",
                )
            }
        }
    }

    async fn deliver_here(&self, events: Vec<Event>) -> Outcome {
        if events.is_empty() {
            return Outcome::Delivered;
        }
        let identities: Vec<Identity> = events.iter().map(Identity::of).collect();
        let entries = match self.ledger.claim(&identities).await {
            Ok(entries) => entries,
            Err(err) => {
                // The store's health probe says so once, at error; this is every
                // request. The detail (a Redis host, say) stays in the log
                // and /status: any client reads the answer.
                tracing::debug!(%err, events = events.len(), "cannot consult the delivered-ledger; answering retry-later");
                return Outcome::unavailable(
                    Unavailable::ServiceUnavailable,
                    "the connector's store is unavailable; retry later",
                );
            }
        };

        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut fresh = Vec::new();
        let mut fresh_at = Vec::new();
        for (index, (event, entry)) in events.into_iter().zip(&entries).enumerate() {
            metrics::ledger(entry.label());
            match entry {
                Entry::Fresh => {
                    fresh_at.push(index);
                    fresh.push(event);
                }
                Entry::Done => {
                    tracing::debug!(event_id = %shorten(event.id(), 128), source = %shorten(event.source().as_str(), 128), "redelivered event already accepted; not handed to the sink");
                    outcomes[index] = Some(Outcome::Delivered);
                }
                Entry::Busy => {
                    outcomes[index] = Some(Outcome::unavailable(
                        Unavailable::ServiceUnavailable,
                        format!(
                            "event {} from {} is being handled by another request; retry later",
                            shorten(event.id(), 128),
                            shorten(event.source().as_str(), 128)
                        ),
                    ));
                }
                Entry::SameAs(_) => {}
            }
        }

        let handed = fresh.len();
        let answered = if fresh.is_empty() {
            Vec::new()
        } else {
            self.hand_over(fresh).await
        };
        let mut answered = answered.into_iter();
        let mut settled = Vec::with_capacity(handed);
        for index in fresh_at {
            // Fail closed: an outcome the sink never gave is not a delivery.
            let outcome = answered.next().unwrap_or_else(|| {
                Outcome::unavailable(
                    Unavailable::ServiceUnavailable,
                    "the sink gave no outcome for this event; retry later",
                )
            });
            settled.push((identities[index].clone(), outcome.is_accepted()));
            outcomes[index] = Some(outcome);
        }
        for (index, entry) in entries.iter().enumerate() {
            if let Entry::SameAs(first) = entry {
                outcomes[index] = outcomes[*first].clone();
            }
        }

        let answer = Outcome::most_retryable(outcomes.into_iter().map(|outcome| {
            outcome.unwrap_or_else(|| {
                Outcome::unavailable(Unavailable::ServiceUnavailable, "not handled; retry later")
            })
        }));
        // A retryable answer brings the batch back: the ledger must know what
        // was accepted before the sender acts on the answer.
        let retryable = answer.is_retryable();
        match self.ledger.settle(settled, retryable).await {
            Err(err) if !retryable => {
                // Fail closed: the records were awaited (the store is down)
                // and are not written; a 200 now would let a redelivery be
                // handed to the sink as new.
                tracing::debug!(%err, "cannot record accepted events in the delivered-ledger; answering retry-later");
                Outcome::unavailable(
                    Unavailable::ServiceUnavailable,
                    "the connector's store could not record the delivery; retry later",
                )
            }
            _ => answer,
        }
    }

    /// The sink's outcomes for `events`, in order. A panic in the sink gives
    /// none: the caller settles them as not delivered, so their claims are
    /// released and the redelivery reaches the sink again (otherwise every
    /// redelivery would be answered "busy" until a restart).
    async fn hand_over(&self, events: Vec<Event>) -> Vec<Outcome> {
        let handed = events.len();
        let answered = match AssertUnwindSafe(self.sink.arrived(events))
            .catch_unwind()
            .await
        {
            Ok(answered) => answered,
            Err(panic) => {
                tracing::error!(
                    handed,
                    panic = panic_text(panic.as_ref()),
                    "the sink panicked while handling events; they count as not delivered"
                );
                return Vec::new();
            }
        };
        if answered.len() != handed {
            tracing::error!(
                handed,
                answered = answered.len(),
                "the sink reported a different number of outcomes than events; the missing ones count as not delivered"
            );
        }
        answered
    }
}

/// What a panic said, when it said it as text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

/// A future that runs where it is awaited, and finishes as a task of
/// `tracker`'s if it is dropped before it is done (or before it is first
/// polled). Cheaper than spawning every delivery (a task, a wake-up and a
/// join each), with the same guarantee: a delivery runs to the end, and
/// shutdown (which waits for `tracker`) waits for it either way. One that
/// panics is dropped where it panicked.
pub(crate) struct Detachable<F: Future + Send + 'static> {
    future: Option<Pin<Box<F>>>,
    tracker: TaskTracker,
    /// The runtime it started on, which runs the rest: the one current
    /// where it is dropped may be another (or none).
    runtime: Option<tokio::runtime::Handle>,
    /// Counts this delivery in `tracker` while it runs here, so that
    /// `tracker.wait()` cannot end between the drop and the spawn.
    _running: TaskTrackerToken,
}

impl<F: Future + Send + 'static> Detachable<F> {
    pub(crate) fn new(future: F, tracker: &TaskTracker) -> Self {
        Self {
            future: Some(Box::pin(future)),
            tracker: tracker.clone(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            _running: tracker.token(),
        }
    }
}

impl<F: Future + Send + 'static> Future for Detachable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Out while it is polled: one that panics unwinds with it and is
        // dropped, not handed to a task (a panicked future cannot go on).
        let Some(mut future) = self.future.take() else {
            // Polled again after it was ready: a caller's bug, never ours.
            return Poll::Pending;
        };
        match future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(output),
            Poll::Pending => {
                self.future = Some(future);
                Poll::Pending
            }
        }
    }
}

impl<F: Future + Send + 'static> Drop for Detachable<F> {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        match &self.runtime {
            Some(runtime) => {
                self.tracker.spawn_on(
                    async move {
                        let _ = future.await;
                    },
                    runtime,
                );
            }
            // Made outside a runtime (a test's hand-polled future): nothing
            // can run the rest.
            None => tracing::warn!(
                "a delivery cut off before it finished was dropped: no runtime to finish it on"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts its steps: one before the pause, one after.
    async fn two_steps(steps: Arc<AtomicUsize>, pause: Arc<tokio::sync::Notify>) -> usize {
        steps.fetch_add(1, Ordering::SeqCst);
        pause.notified().await;
        steps.fetch_add(1, Ordering::SeqCst)
    }

    #[tokio::test]
    async fn awaited_to_the_end_it_runs_where_it_is_awaited() {
        let tracker = TaskTracker::new();
        let steps = Arc::new(AtomicUsize::new(0));
        let pause = Arc::new(tokio::sync::Notify::new());
        pause.notify_one();
        let done = Detachable::new(two_steps(Arc::clone(&steps), pause), &tracker).await;
        assert_eq!(done, 1);
        assert_eq!(steps.load(Ordering::SeqCst), 2);
        assert!(tracker.is_empty(), "no task was spawned");
    }

    #[tokio::test]
    async fn dropped_half_way_it_finishes_as_a_task_that_wait_waits_for() {
        let tracker = TaskTracker::new();
        let steps = Arc::new(AtomicUsize::new(0));
        let pause = Arc::new(tokio::sync::Notify::new());
        let delivery = Detachable::new(two_steps(Arc::clone(&steps), Arc::clone(&pause)), &tracker);
        // The caller gives up after the first step.
        let cut = tokio::time::timeout(Duration::from_millis(10), delivery).await;
        assert!(cut.is_err(), "it was still waiting");
        assert_eq!(steps.load(Ordering::SeqCst), 1);
        assert_eq!(tracker.len(), 1, "the rest runs as a tracked task");

        tracker.close();
        pause.notify_one();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("the detached rest finishes");
        assert_eq!(steps.load(Ordering::SeqCst), 2, "and ran to the end");
    }

    async fn panics() -> usize {
        panic!("broken")
    }

    #[tokio::test]
    async fn one_that_panics_is_dropped_not_handed_to_a_task() {
        let tracker = TaskTracker::new();
        let caught = AssertUnwindSafe(Detachable::new(panics(), &tracker))
            .catch_unwind()
            .await;
        assert!(caught.is_err());
        assert!(tracker.is_empty(), "nothing left to finish: it panicked");
    }

    #[tokio::test]
    async fn wait_counts_it_while_it_runs_where_it_is_awaited() {
        let tracker = TaskTracker::new();
        let pause = Arc::new(tokio::sync::Notify::new());
        let delivery = Detachable::new(
            two_steps(Arc::new(AtomicUsize::new(0)), Arc::clone(&pause)),
            &tracker,
        );
        tracker.close();
        assert_eq!(tracker.len(), 1);
        pause.notify_one();
        delivery.await;
        assert!(tracker.is_empty());
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("nothing left to wait for");
    }
}
