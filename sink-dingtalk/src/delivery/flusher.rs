//! The flusher: one task per robot with digests on, spending the robot's
//! budget on its outbox. A lone queued event goes out as its own message;
//! several go out merged into one markdown digest, as many as fit. The
//! first post of a storm waits `digest.linger_ms` for more to gather, and
//! later ones are spaced so the budget lasts (see [`flusher_pause`]).
//!
//! A digest DingTalk refuses for good is sent again as single messages; a
//! single message it refuses for good is dropped, loudly: an error line
//! with its event id and reason, a metric, a count on `/status`. Everything
//! else (throttles, failures, a store that does not answer) waits and tries
//! again: an accepted event leaves the outbox only once DingTalk has it.

use std::sync::Arc;
use std::time::Duration;

use connector_sdk::StoreError;
use connector_sdk::store::Passage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::flusher_pause;
use super::lane::Lane;
use super::outbox::{LEASE_TTL, Outbox, Queued};
use crate::message::digest::{self, Summary};
use crate::robot::{Next, SendError};
use crate::telemetry;

/// Queued events looked at for one digest at most. Under DingTalk's 20,000
/// bytes a digest holds 200 to 350 typical alert lines (up to about 1,200 of
/// the shortest), and a storm has 4 digest slots a window: fewer than the
/// 300-odd that fit would push a 1,000-alert storm's tail a window later.
/// Reading 500 entries is at most 10 MB (bodies are under 20 KB), briefly.
const MAX_PER_DIGEST: usize = 500;
/// The time one POST from the outbox may take.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pacing is looked at again at least this often, so a growing backlog
/// changes the plan.
const RECHECK: Duration = Duration::from_secs(1);
/// The longest wait between attempts after failures: shorter than the
/// lease ([`LEASE_TTL`]), so a flusher waiting out a failure keeps it.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const _: () = assert!(MAX_BACKOFF.as_secs() < LEASE_TTL.as_secs());
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

/// How long a flusher without the lease waits before asking again.
const LEASE_RETRY: Duration = Duration::from_secs(1);

/// Runs until `stop` is cancelled, as `holder` (this process's name for the
/// outbox's lease). Entries left in the outbox stay there for the next
/// start, or for another replica.
pub async fn run(lane: Arc<Lane>, holder: String, stop: CancellationToken) {
    let Some(outbox) = &lane.outbox else { return };
    // What a previous run left queued shows from the start.
    outbox.publish_len().await;
    let mut flusher = Flusher {
        lane: &lane,
        outbox,
        last_post: None,
        failures: 0,
        pending_pop: None,
        no_digests: false,
    };
    loop {
        let step = match outbox.lease(&holder).await {
            Ok(true) => flusher.step().await,
            // Another replica flushes this robot; ask again in a while.
            Ok(false) => Ok(Step::Sleep(LEASE_RETRY)),
            Err(err) => Err(err),
        };
        let step = match step {
            Ok(step) => step,
            Err(err) => {
                // The store's watch reports an outage once; this one is ours.
                tracing::warn!(robot = %lane.name, %err, "the outbox cannot be read; trying again");
                flusher.failed()
            }
        };
        let waited = match step {
            Step::Again => continue,
            Step::Sleep(wait) | Step::Backoff(wait) => {
                let wait = match step {
                    Step::Sleep(_) => wait.min(RECHECK),
                    _ => wait,
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => true,
                    () = stop.cancelled() => false,
                }
            }
            Step::Idle => {
                tokio::select! {
                    () = outbox.queued() => {
                        // Let a burst gather into the first digest.
                        tokio::select! {
                            () = tokio::time::sleep(lane.digest.linger) => true,
                            () = stop.cancelled() => false,
                        }
                    }
                    () = stop.cancelled() => false,
                }
            }
        };
        if !waited {
            return;
        }
    }
}

struct Flusher<'a> {
    lane: &'a Lane,
    outbox: &'a Outbox,
    last_post: Option<Instant>,
    /// Failed attempts in a row, for the backoff.
    failures: u32,
    /// A post DingTalk accepted whose entries are still to be removed (the
    /// store failed): removed before anything else is sent, or they would
    /// be sent again.
    pending_pop: Option<(u64, usize)>,
    /// DingTalk refused a digest of this robot for good (a keyword robot
    /// whose keyword a digest lacks, say): single messages from now on.
    no_digests: bool,
}

/// What one post carries.
struct Post {
    body: bytes::Bytes,
    /// Entries it carries, from the head.
    count: usize,
    /// The sequence number of the last of them.
    through: u64,
}

impl Flusher<'_> {
    async fn step(&mut self) -> Result<Step, StoreError> {
        if let Some((through, count)) = self.pending_pop {
            self.outbox.pop_through(through, count).await?;
            self.pending_pop = None;
        }
        let state = self.lane.budget.state().await?;
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
            self.last_post.map(|at| at.elapsed()),
            self.lane.budget.per_minute(),
            backlog_fits,
        );
        if self.lane.budget.is_paced() && !pause.is_zero() {
            return Ok(Step::Sleep(pause));
        }
        match self.lane.budget.for_flush().await? {
            Passage::Open { .. } => {}
            Passage::Wait(wait) | Passage::Held(wait) => return Ok(Step::Sleep(wait)),
        }
        self.post(&head, post).await
    }

    /// A single message, or a digest of as many entries as fit.
    fn plan(&self, head: &[Queued]) -> Post {
        let entries: Vec<_> = head.iter().map_while(|q| q.entry.as_ref()).collect();
        let single = Post {
            body: bytes::Bytes::from(entries[0].body.clone()),
            count: 1,
            through: head[0].seq,
        };
        if self.no_digests || entries.len() == 1 {
            return single;
        }
        let summaries: Vec<Summary> = entries.iter().map(|e| e.summary.clone()).collect();
        let seed = format!("{}/{}", self.lane.name, head[0].seq);
        match digest::pack(&summaries, self.lane.digest.timezone, &seed) {
            Some(digest) if digest.count > 1 => Post {
                body: digest.body,
                count: digest.count,
                through: head[digest.count - 1].seq,
            },
            _ => single,
        }
    }

    async fn post(&mut self, head: &[Queued], post: Post) -> Result<Step, StoreError> {
        let sent_at = Instant::now();
        let result = self.lane.robot.send(post.body, FLUSH_TIMEOUT).await;
        let errcode = result
            .as_ref()
            .map_or_else(SendError::errcode, |()| Some(0));
        telemetry::request(sent_at.elapsed(), errcode);
        self.lane.stats.remember(&result);
        self.last_post = Some(Instant::now());
        let Err(err) = result else {
            // Shown: whatever happens next, these entries must not be sent
            // again.
            self.lane.stats.flushed(post.count);
            telemetry::flushed(&self.lane.name, post.count);
            self.pending_pop = Some((post.through, post.count));
            self.outbox.pop_through(post.through, post.count).await?;
            self.pending_pop = None;
            self.failures = 0;
            tracing::info!(robot = %self.lane.name, events = post.count, "sent from the outbox");
            return Ok(Step::Again);
        };
        Ok(match err.next() {
            Next::GiveUp if !err.blames_the_message() => {
                // The robot refuses everything (its token, secret, IP
                // allow-list), a digest as any other: what is queued was
                // answered 200 and waits for the operator, never dropped,
                // and digests go on once the robot is fixed.
                tracing::error!(robot = %self.lane.name, queued_events = head.len(), %err, "DingTalk refuses this robot's messages; its outbox waits until the robot's settings are fixed");
                self.failed()
            }
            Next::GiveUp if post.count > 1 => {
                tracing::warn!(robot = %self.lane.name, events = post.count, %err, "DingTalk refused a digest; sending its events, and from now on every queued event, one by one");
                self.no_digests = true;
                Step::Again
            }
            Next::GiveUp => {
                let entry = head[0].entry.as_ref();
                let event_id = entry.map_or("?", |e| e.event_id.as_str());
                tracing::error!(
                    robot = %self.lane.name,
                    event_id,
                    source = entry.map_or("?", |e| e.source.as_str()),
                    chat_group = entry.map_or("?", |e| e.chat_group.as_str()),
                    reason = %err,
                    "DingTalk refused a queued event for good; it is dropped from the outbox"
                );
                self.lane.stats.refused(event_id, &err.to_string());
                telemetry::outbox_refused(&self.lane.name);
                self.outbox.pop_through(post.through, 1).await?;
                Step::Again
            }
            Next::HoldRobot(asked) => {
                let hold = self.lane.hold_for(asked);
                self.lane.hold(hold, &err).await;
                Step::Again
            }
            Next::Retry | Next::Later => {
                tracing::warn!(robot = %self.lane.name, events = post.count, %err, "sending from the outbox failed; trying again");
                self.failed()
            }
        })
    }

    /// An entry this version cannot read: dropped, loudly.
    async fn drop_unreadable(&mut self, seq: u64) -> Result<(), StoreError> {
        tracing::error!(robot = %self.lane.name, seq, "an outbox entry cannot be read (written by another version?); it is dropped");
        self.lane
            .stats
            .refused("?", "the queued entry cannot be read");
        telemetry::outbox_refused(&self.lane.name);
        self.outbox.pop_through(seq, 1).await
    }

    /// Backs off: 1 s, 2 s, 4 s... up to [`MAX_BACKOFF`].
    fn failed(&mut self) -> Step {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_secs(1 << self.failures.min(7).saturating_sub(1));
        Step::Backoff(wait.min(MAX_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_of_typical_alerts_is_bounded_by_its_bytes_not_by_what_is_looked_at() {
        // A storm has 4 digest slots a window; if fewer alerts were looked
        // at than fit, its tail would wait a whole window.
        let body = br#"{"msgtype":"text","text":{"content":"[FIRING] DiskFull on db-17: /var/lib is 97% full"}}"#;
        let summaries: Vec<Summary> = (0..MAX_PER_DIGEST)
            .map(|i| Summary::of(body, 1_700_000_000_000 + i64::try_from(i).unwrap()))
            .collect();
        let digest = digest::pack(&summaries, chrono_tz::Tz::UTC, "seed").expect("packs");
        assert!(
            digest.count > 250 && digest.count < MAX_PER_DIGEST,
            "{} in one digest",
            digest.count
        );
    }
}
