//! The flusher: one task per pool with an outbox, spending the pool's
//! budget on it. A lone queued event goes out as its own message; several
//! go out merged into one digest (when the destination makes digests), as
//! many as fit. The first send of a storm waits the linger for more to
//! gather, and later ones are spaced so the budget lasts (see
//! [`flusher_pause`]); while the storm goes on, until it is quiet for the
//! linger or [`super::STORM_SPACING`] has passed (see [`super::storm`]).
//!
//! A digest refused for the message's sake is sent again as single
//! messages; a single message refused for good is dropped, loudly: an error
//! line with its event id and reason, a metric, a count on `/status`. A
//! refusal of the destination's own (its token, its signature) drops
//! nothing: what is queued was answered 200 and waits for the operator,
//! while the pool's other destinations carry on. Everything else
//! (throttles, failures, a store that does not answer) waits and tries
//! again: an accepted event leaves the outbox only once a destination has
//! it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::BETWEEN_FLUSHES;
use super::budget::flusher_pause;
use super::destination::{Blame, Destination, Verdict};
use super::metrics;
use super::outbox::{LEASE_TTL, Outbox, Queued};
use super::pool::{For, Pick, Pool};
use crate::store::StoreError;

/// Queued events offered to one digest at most. A digest that groups
/// similar events holds about a thousand alerts of a few kinds under
/// DingTalk's 20,000 bytes, and a storm's digests are spaced
/// ([`super::STORM_SPACING`]): fewer offered than fit would push a
/// 1,000-alert storm's tail to a later digest. Reading 1,000 entries is at
/// most 20 MB (payloads are under 20 KB), briefly; typical alerts, 1 MB.
pub const MAX_PER_DIGEST: usize = 1_000;
/// The time one send from the outbox may take.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pacing is looked at again at least this often, so a growing backlog
/// changes the plan.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a flusher without the lease waits before asking again.
const LEASE_RETRY: Duration = Duration::from_secs(1);
const _: () = assert!(BETWEEN_FLUSHES.cap.as_secs() < LEASE_TTL.as_secs());
const _: () = assert!(FLUSH_TIMEOUT.as_secs() < LEASE_TTL.as_secs());

/// What the flusher does next.
#[derive(Debug)]
enum Step {
    /// The outbox is empty: wait for an event.
    Idle,
    /// Look again after this long (at most [`RECHECK`]: the budget may
    /// free sooner than it said, as when a test moves the store's clock).
    Sleep(Duration),
    /// Failures in a row: wait this long before the next attempt.
    Backoff(Duration),
    /// Go on at once.
    Again,
}

/// Runs until `stop` is cancelled, as `holder` (this process's name for the
/// outbox's lease). Entries left in the outbox stay there for the next
/// start, or for another replica.
pub(crate) async fn run<D: Destination>(
    pool: Arc<Pool<D>>,
    holder: String,
    stop: CancellationToken,
) {
    let Some(outbox) = &pool.outbox else { return };
    // What a previous run left queued shows from the start.
    outbox.publish_len().await;
    let mut flusher = Flusher {
        pool: &pool,
        outbox,
        last_post: None,
        failures: 0,
        pending_pop: None,
        no_digests: false,
    };
    let linger = pool
        .settings
        .outbox
        .as_ref()
        .map_or(Duration::ZERO, |o| o.linger);
    loop {
        let step = match outbox.lease(&holder).await {
            Ok(true) => flusher.step().await,
            // Another replica flushes this outbox; ask again in a while.
            Ok(false) => Ok(Step::Sleep(LEASE_RETRY)),
            Err(err) => Err(err),
        };
        let step = step.unwrap_or_else(|err| {
            // The store's probe reports an outage once; this one is ours.
            tracing::warn!(outbox = %pool.name, %err, "the outbox cannot be read; trying again");
            flusher.failed()
        });
        let wait = match step {
            Step::Again => continue,
            Step::Sleep(wait) => wait.min(RECHECK),
            Step::Backoff(wait) => wait,
            Step::Idle => {
                tokio::select! {
                    () = outbox.queued() => linger,
                    () = stop.cancelled() => return,
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

struct Flusher<'a, D: Destination> {
    pool: &'a Pool<D>,
    outbox: &'a Outbox<D::Payload>,
    last_post: Option<Instant>,
    /// Failed attempts in a row, for the backoff.
    failures: u32,
    /// A send the destination accepted whose entries are still to be
    /// removed (the store failed): removed before anything else is sent, or
    /// they would be sent again.
    pending_pop: Option<(u64, usize)>,
    /// A digest of this pool was refused for the message's sake (a keyword
    /// robot whose keyword a digest lacks, say): single messages from now on.
    no_digests: bool,
}

/// What one send carries.
struct Post<P> {
    payload: P,
    /// Entries it carries, from the head.
    count: usize,
    /// The sequence number of the last of them.
    through: u64,
}

impl<D: Destination> Flusher<'_, D> {
    async fn step(&mut self) -> Result<Step, StoreError> {
        if let Some((through, count)) = self.pending_pop {
            self.outbox.pop_through(through, count).await?;
            self.pending_pop = None;
        }
        let (state, main) = self.pool.state().await?;
        if let Some(held) = state.held_for {
            return Ok(Step::Sleep(held));
        }
        let head = self.outbox.peek(MAX_PER_DIGEST).await?;
        let Some(first) = head.first() else {
            return Ok(Step::Idle);
        };
        if first.entry.is_none() {
            self.drop_unreadable(first.seq).await?;
            return Ok(Step::Again);
        }
        let post = self.plan(&head);
        let backlog_fits = post.count == head.len() && head.len() < MAX_PER_DIGEST;
        let pause = flusher_pause(
            &state,
            main,
            self.last_post.map(|at| at.elapsed()),
            backlog_fits,
        );
        if self.pool.is_paced() && !pause.is_zero() {
            return Ok(Step::Sleep(pause));
        }
        // While a storm goes on, its digests are spaced: fewer, fuller ones.
        let storm_wait = self
            .pool
            .storm
            .digest_wait(self.last_post.map(|at| at.elapsed()), backlog_fits);
        if !storm_wait.is_zero() {
            return Ok(Step::Sleep(storm_wait));
        }
        let endpoint = match self.pool.pick(For::Flush).await? {
            Pick::Open(endpoint) => endpoint,
            Pick::Wait(wait) | Pick::Held(wait) => return Ok(Step::Sleep(wait)),
        };
        let answer = endpoint.send(&post.payload, FLUSH_TIMEOUT).await;
        self.last_post = Some(Instant::now());
        let pool = &self.pool.name;
        Ok(match answer.verdict {
            Verdict::Delivered => {
                // Shown: whatever happens next, these entries must not be
                // sent again.
                self.pool.stats.flushed(post.count);
                metrics::flushed(pool, post.count);
                self.pending_pop = Some((post.through, post.count));
                self.outbox.pop_through(post.through, post.count).await?;
                self.pending_pop = None;
                self.failures = 0;
                tracing::info!(outbox = %pool, destination = %endpoint.name, events = post.count, "sent from the outbox");
                Step::Again
            }
            Verdict::Refused {
                blame: Blame::Destination,
                reason,
            } => {
                if self.pool.has_another(&endpoint) {
                    tracing::error!(outbox = %pool, destination = %endpoint.name, %reason, "a destination refuses this outbox's messages; the others of its pool carry on");
                    Step::Again
                } else {
                    tracing::error!(outbox = %pool, destination = %endpoint.name, queued_events = head.len(), %reason, "the destination refuses this outbox's messages; it waits until the destination's settings are fixed");
                    self.failed()
                }
            }
            Verdict::Refused { reason, .. } if post.count > 1 => {
                tracing::warn!(outbox = %pool, events = post.count, %reason, "a digest was refused; sending its events, and from now on every queued event, one by one");
                self.no_digests = true;
                Step::Again
            }
            Verdict::Refused { reason, .. } => {
                let entry = head[0].entry.as_ref();
                let event_id = entry.map_or("?", |e| e.event_id.as_str());
                tracing::error!(
                    outbox = %pool,
                    event_id,
                    source = entry.map_or("?", |e| e.source.as_str()),
                    target = entry.map_or("?", |e| e.target.as_str()),
                    %reason,
                    "a queued event was refused for good; it is dropped from the outbox"
                );
                self.pool.stats.refused(event_id, &reason);
                metrics::outbox_refused(pool);
                self.outbox.pop_through(post.through, 1).await?;
                Step::Again
            }
            // The endpoint holds itself; the next step waits or moves on.
            Verdict::Throttled { .. } => Step::Again,
            Verdict::Failed { reason, .. } => {
                tracing::warn!(outbox = %pool, destination = %endpoint.name, events = post.count, %reason, "sending from the outbox failed; trying again");
                self.failed()
            }
        })
    }

    /// A single message, or a digest of as many entries as fit.
    fn plan(&self, head: &[Queued<D::Payload>]) -> Post<D::Payload> {
        let payloads: Vec<&D::Payload> = head
            .iter()
            .map_while(|q| q.entry.as_ref().map(|e| &e.payload))
            .collect();
        let single = Post {
            payload: payloads[0].clone(),
            count: 1,
            through: head[0].seq,
        };
        if self.no_digests || payloads.len() == 1 {
            return single;
        }
        let seed = format!("{}/{}", self.pool.name, head[0].seq);
        match self.pool.digest(&payloads, &seed) {
            Some(digest) if digest.count > 1 && digest.count <= payloads.len() => Post {
                payload: digest.payload,
                count: digest.count,
                through: head[digest.count - 1].seq,
            },
            _ => single,
        }
    }

    /// An entry this version cannot read: dropped, loudly.
    async fn drop_unreadable(&mut self, seq: u64) -> Result<(), StoreError> {
        tracing::error!(outbox = %self.pool.name, seq, "an outbox entry cannot be read (written by another version?); it is dropped");
        self.pool
            .stats
            .refused("?", "the queued entry cannot be read");
        metrics::outbox_refused(&self.pool.name);
        self.outbox.pop_through(seq, 1).await
    }

    /// Backs off: 1 s, 2 s, 4 s... up to 10 s.
    fn failed(&mut self) -> Step {
        self.failures = self.failures.saturating_add(1);
        Step::Backoff(BETWEEN_FLUSHES.after(self.failures))
    }
}
