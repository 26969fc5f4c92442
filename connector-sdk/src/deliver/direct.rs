//! How the parcels of one request reach one pool, in order. A parcel is
//! sent while a destination of the pool has budget and nothing is queued
//! before it; otherwise it joins the pool's outbox (durably, answered 200)
//! and the flusher sends it. Without an outbox, it waits for a slot inside
//! the request's deadline, or is answered 429.

use std::time::Duration;

use super::backoff::WITHIN_A_REQUEST;
use super::deadline::Deadline;
use super::destination::{Blame, Destination, Retry, Verdict};
use super::outbox::Entry;
use super::pool::{For, Pick, Pool};
use super::{Parcel, Receipt, metrics, now_ms};
use crate::sink::{Outcome, Unavailable};
use crate::store::{Pushed, Store, StoreError};
use crate::text::shorten;

/// How much of an event id or source a reason or a log line quotes: they
/// come from the sender and may be of any length.
pub(crate) const ID_BYTES: usize = 128;

/// How long a remembered parcel is remembered: as long as a Vanus trigger
/// redelivers.
const REMEMBERED: Duration = Duration::from_secs(86_400);

/// The store key recording that `parcel` was sent.
fn sent_key<P>(parcel: &Parcel<P>) -> String {
    format!("sent/{}", parcel.queue_key())
}

/// How long a sender is asked to wait when an outbox is full: about the
/// time its destinations need to send some of it.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One parcel on its way, with what the kit derives from it once.
pub(crate) struct Work<P> {
    pub parcel: Parcel<P>,
    /// "event ID: target T", the start of every reason about it.
    pub context: String,
}

impl<P> Work<P> {
    pub(crate) fn new(parcel: Parcel<P>) -> Self {
        let context = format!(
            "event {}: {}",
            shorten(&parcel.event_id, ID_BYTES),
            parcel.target
        );
        Self { parcel, context }
    }
}

impl<D: Destination> Pool<D> {
    /// Delivers one request's parcels for this pool, in order. Once one
    /// must be retried, the later ones are held back with it; once one is
    /// queued, the later ones queue behind it.
    pub(crate) async fn deliver(
        &self,
        works: Vec<Work<D::Payload>>,
        deadline: Deadline,
        store: &Store,
    ) -> Vec<Receipt> {
        let mut receipts = Vec::with_capacity(works.len());
        let mut held_back: Option<Outcome> = None;
        let mut queue_rest = false;
        for work in works {
            let sent_key = work.parcel.remember.then(|| sent_key(&work.parcel));
            if let Some(key) = &sent_key {
                match store.get(key).await {
                    Ok(Some(_)) => {
                        // Sent by an earlier delivery of the same event.
                        receipts.push(Receipt::new(Outcome::Delivered));
                        continue;
                    }
                    Ok(None) => {}
                    Err(err) => {
                        let outcome = store_unavailable(&work, &err);
                        held_back.get_or_insert_with(|| outcome.clone());
                        receipts.push(Receipt::new(outcome));
                        continue;
                    }
                }
            }
            // Past a burst, the rest of a storm waits for the digest.
            let parcel = &work.parcel;
            let identity = [&*parcel.source, &*parcel.event_id, &*parcel.target];
            let past_burst = self.storm.arrive(&identity) && self.outbox.is_some();
            let receipt = match &held_back {
                Some(earlier) => Receipt::new(not_sent_after(earlier)),
                None if queue_rest || past_burst => self.enqueue(&work).await,
                None => self.deliver_one(&work, &deadline).await,
            };
            if let Some(key) = &sent_key
                && receipt.outcome == Outcome::Delivered
                && let Err(err) = store.put(key, Vec::new(), REMEMBERED).await
            {
                tracing::error!(event_id = %shorten(&work.parcel.event_id, ID_BYTES), target = %work.parcel.target, %err, "cannot remember a sent parcel; a redelivery of its event may send it again");
            }
            queue_rest |= receipt.queued;
            if receipt.outcome.is_retryable() && held_back.is_none() {
                held_back = Some(receipt.outcome.clone());
            }
            receipts.push(receipt);
        }
        receipts
    }

    /// Sends one parcel when a slot is free now, else queues it (or,
    /// without an outbox, waits for a slot inside the deadline).
    async fn deliver_one(&self, work: &Work<D::Payload>, deadline: &Deadline) -> Receipt {
        let target = &work.parcel.target;
        let mut failures: u32 = 0;
        let mut code = None;
        loop {
            if let Some(outbox) = &self.outbox {
                match outbox.len().await {
                    Ok(0) => {}
                    Ok(_) => return self.enqueue(work).await,
                    Err(err) => return Receipt::new(store_unavailable(work, &err)),
                }
            }
            let Some(timeout) = deadline.attempt_timeout() else {
                return match &self.outbox {
                    Some(_) => self.enqueue(work).await,
                    None => {
                        Receipt::with_code(out_of_time(work, self.settings.names.deadline), code)
                    }
                };
            };
            let endpoint = match self.pick(For::Event).await {
                Err(err) => return Receipt::new(store_unavailable(work, &err)),
                Ok(Pick::Open(endpoint)) => endpoint,
                Ok(Pick::Wait(_) | Pick::Held(_)) if self.outbox.is_some() => {
                    return self.enqueue(work).await;
                }
                Ok(Pick::Wait(wait)) if deadline.allows_wait(wait) => {
                    metrics::pacing_wait(wait);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(Pick::Wait(wait)) => {
                    return Receipt::with_code(self.over_budget(work, wait), code);
                }
                Ok(Pick::Held(held)) => return Receipt::with_code(held_outcome(work, held), code),
            };

            let answer = endpoint.send(&work.parcel.payload, timeout).await;
            code = answer.code;
            let verdict = answer.verdict;
            let last_try = |verdict: &Verdict| {
                let hold = endpoint.hold_for(match verdict {
                    Verdict::Throttled { hold, .. } => *hold,
                    _ => None,
                });
                Receipt::with_code(verdict.outcome(&work.context, hold), code)
            };
            match &verdict {
                Verdict::Delivered => return Receipt::with_code(Outcome::Delivered, code),
                Verdict::Refused {
                    blame: Blame::Message,
                    ..
                }
                | Verdict::Failed {
                    retry: Retry::Later,
                    ..
                } => return last_try(&verdict),
                Verdict::Refused {
                    blame: Blame::Destination,
                    reason,
                } => {
                    if self.has_another(&endpoint) {
                        tracing::warn!(destination = %endpoint.name, %reason, "a destination refuses for a reason of its own; trying another of the pool");
                        continue;
                    }
                    return last_try(&verdict);
                }
                Verdict::Throttled { .. } => {
                    metrics::throttled(target, "destination");
                    if self.has_another(&endpoint) {
                        continue;
                    }
                    // Not shown: queued for after the hold, or answered 429.
                    return match &self.outbox {
                        Some(_) => {
                            let mut queued = self.enqueue(work).await;
                            queued.code = code;
                            queued
                        }
                        None => last_try(&verdict),
                    };
                }
                Verdict::Failed {
                    retry: Retry::Soon,
                    reason,
                    ..
                } => {
                    failures += 1;
                    let backoff = WITHIN_A_REQUEST.after(failures);
                    if !deadline.allows_wait(backoff) {
                        return last_try(&verdict);
                    }
                    tracing::debug!(event_id = %shorten(&work.parcel.event_id, ID_BYTES), %target, failures, %reason, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Appends a parcel to the outbox: accepted (200) once durable.
    pub(crate) async fn enqueue(&self, work: &Work<D::Payload>) -> Receipt {
        let Some(outbox) = &self.outbox else {
            return Receipt::new(Outcome::unavailable(
                Unavailable::ServiceUnavailable,
                format!("{}: no outbox", work.context),
            ));
        };
        let parcel = &work.parcel;
        let entry = Entry {
            event_id: shorten(&parcel.event_id, ID_BYTES).into_owned(),
            source: shorten(&parcel.source, ID_BYTES).into_owned(),
            target: parcel.target.to_string(),
            queued_at_ms: now_ms(),
            payload: parcel.payload.clone(),
        };
        let outcome = match outbox.push(&entry, &parcel.queue_key()).await {
            // Queued now, or by an earlier delivery of the same event which
            // did not get to answer: it is in the outbox, and there once.
            Ok(Pushed::Queued { .. } | Pushed::Already) => {
                return Receipt {
                    outcome: Outcome::Queued,
                    code: None,
                    queued: true,
                };
            }
            Ok(Pushed::Full { len }) => {
                metrics::throttled(&parcel.target, "outbox_full");
                Outcome::throttled(
                    FULL_RETRY_AFTER,
                    format!(
                        "{}: its outbox already holds {len} events ({}); retry later",
                        work.context, self.settings.names.max_queued
                    ),
                )
            }
            Err(err) => store_unavailable(work, &err),
        };
        Receipt::new(outcome)
    }

    fn over_budget(&self, work: &Work<D::Payload>, wait: Duration) -> Outcome {
        metrics::throttled(&work.parcel.target, "budget");
        let main = self
            .members
            .first()
            .map(|m| m.budget.main())
            .unwrap_or(crate::store::Window::new(0, Duration::ZERO));
        Outcome::throttled(
            wait,
            format!(
                "{}: the budget of {} messages {} is used up; a slot frees in {}s",
                work.context,
                main.limit,
                per_phrase(main.per),
                wait.as_secs_f64().ceil()
            ),
        )
    }
}

fn held_outcome<P>(work: &Work<P>, held: Duration) -> Outcome {
    metrics::throttled(&work.parcel.target, "cooldown");
    Outcome::throttled(
        held,
        format!(
            "{}: the destination throttled us; it is held for another {}s",
            work.context,
            held.as_secs_f64().ceil()
        ),
    )
}

fn store_unavailable<P>(work: &Work<P>, err: &StoreError) -> Outcome {
    // The store's health probe says so once; this is every event.
    tracing::debug!(event_id = %shorten(&work.parcel.event_id, ID_BYTES), target = %work.parcel.target, %err, "the store failed; answering retry-later");
    Outcome::unavailable(
        Unavailable::ServiceUnavailable,
        format!("{}: {err}; retry later", work.context),
    )
}

/// "a minute" for a minute (and DingTalk's minute with its margins), "a
/// second", else "per N s".
fn per_phrase(per: Duration) -> String {
    match per.as_secs() {
        1 => "a second".to_owned(),
        60..=70 => "a minute".to_owned(),
        secs => format!("per {secs} s"),
    }
}

fn out_of_time<P>(work: &Work<P>, deadline_setting: &str) -> Outcome {
    Outcome::unavailable(
        Unavailable::ServiceUnavailable,
        format!(
            "{}: not sent: the request's time ({deadline_setting}) ran out before its turn; retry",
            work.context
        ),
    )
}

/// The outcome of a parcel held back because an earlier one to the same
/// pool must be retried: same class, so the sender retries them together.
fn not_sent_after(earlier: &Outcome) -> Outcome {
    let reason = format!(
        "not sent, to keep order behind an earlier event: {}",
        earlier.reason()
    );
    match earlier {
        Outcome::Throttled { retry_after, .. } => Outcome::throttled(*retry_after, reason),
        Outcome::Unavailable { kind, .. } => Outcome::unavailable(*kind, reason),
        Outcome::Delivered | Outcome::Queued | Outcome::Rejected { .. } => {
            Outcome::unavailable(Unavailable::ServiceUnavailable, reason)
        }
    }
}

impl Receipt {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            code: None,
            queued: false,
        }
    }

    fn with_code(outcome: Outcome, code: Option<i64>) -> Self {
        Self {
            outcome,
            code,
            queued: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_events_keep_the_retryable_class() {
        let earlier = Outcome::throttled(Duration::from_secs(7), "budget");
        let held = not_sent_after(&earlier);
        assert!(
            matches!(held, Outcome::Throttled { retry_after, .. } if retry_after == Duration::from_secs(7))
        );
        let earlier = Outcome::unavailable(Unavailable::GatewayTimeout, "slow");
        assert!(matches!(
            not_sent_after(&earlier),
            Outcome::Unavailable {
                kind: Unavailable::GatewayTimeout,
                ..
            }
        ));
    }

    #[test]
    fn the_context_quotes_a_long_id_shortened() {
        let parcel = Parcel::new("ops", "x".repeat(1_000), "src", ());
        let work = Work::new(parcel);
        assert!(
            work.context.len() < 200 && work.context.ends_with(": ops"),
            "{}",
            work.context
        );
    }
}
