//! What happens to a decoded batch, whichever door it came through: the
//! ledger takes out the events already accepted, the sink gets the rest,
//! the ledger remembers what the sink accepted, and the per-event outcomes
//! fold into the one answer the sender acts on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use cloudevents::{AttributesReader, Event};
use futures_util::FutureExt;
use tokio_util::task::TaskTracker;

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

    /// Delivers a batch and answers for all of it. The work runs as a task
    /// of its own: if the sender hangs up (or its deadline cancels the
    /// call) after the sink posted an event, the ledger still records it,
    /// so the redelivery that follows is answered without a second post.
    pub(crate) async fn deliver(self: &Arc<Self>, events: Vec<Event>) -> Outcome {
        let this = Arc::clone(self);
        let delivery = self
            .deliveries
            .spawn(async move { this.deliver_here(events).await });
        match delivery.await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(%err, "handling a request failed");
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
        let Ok(answered) = AssertUnwindSafe(self.sink.arrived(events))
            .catch_unwind()
            .await
        else {
            tracing::error!(
                handed,
                "the sink panicked while handling events; they count as not delivered"
            );
            return Vec::new();
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
