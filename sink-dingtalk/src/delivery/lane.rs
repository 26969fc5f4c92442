//! One robot's way out: its webhook, its budget, its outbox and what
//! DingTalk last said; and how the events of one request reach it, in
//! order. An event is posted while the budget allows and nothing is queued
//! before it; otherwise it joins the outbox (durably, answered 200) and the
//! flusher sends it. With digests off, it waits for a slot inside the
//! request's deadline, or is answered 429.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_sdk::store::{Passage, Pushed};
use connector_sdk::{Outcome, StoreError, Unavailable};
use serde_json::{Value, json};

use super::budget::{Budget, WINDOW};
use super::deadline::Deadline;
use super::outbox::{Entry, Outbox};
use crate::config::DigestSettings;
use crate::message::Message;
use crate::message::digest::Summary;
use crate::robot::{Next, Robot, SendError};
use crate::telemetry;

/// One event on its way to a robot.
#[derive(Debug)]
pub struct Work {
    /// Its position in the request.
    pub index: usize,
    /// The chat group it is for.
    pub group: Arc<str>,
    /// The message to post.
    pub message: Message,
    /// The event's `id`.
    pub id: String,
    /// The event's `source`.
    pub source: String,
    /// The event's `time`, in milliseconds since the epoch.
    pub time_ms: Option<i64>,
    /// The event's full identity (`source`, `id`) in its chat group: the
    /// outbox queues it once under this key, whatever its content.
    pub queue_key: String,
}

/// What became of one event.
#[derive(Debug)]
pub struct Handled {
    /// Its position in the request.
    pub index: usize,
    /// The answer for it.
    pub outcome: Outcome,
    /// DingTalk's errcode for its last POST, if any.
    pub errcode: Option<i64>,
    /// True when it joined the outbox instead of being posted.
    pub queued: bool,
}

/// One robot and its state.
#[derive(Debug)]
pub struct Lane {
    /// The robot's first chat group: its name in metrics and logs.
    pub name: Arc<str>,
    /// Signs and posts.
    pub robot: Robot,
    /// Its send budget.
    pub budget: Budget,
    /// Its outbox, when digests are on.
    pub outbox: Option<Outbox>,
    /// How long to hold it after DingTalk throttled it.
    pub cooldown: Duration,
    /// How digests look and when the first goes.
    pub digest: DigestSettings,
    /// What an operator sees on `/status`.
    pub stats: Stats,
}

/// Counters and DingTalk's latest answers, for `/status`.
#[derive(Debug, Default)]
pub struct Stats {
    last_answer: Mutex<Option<LastAnswer>>,
    digests: AtomicU64,
    flushed: AtomicU64,
    refused: AtomicU64,
    last_refused: Mutex<Option<(String, String)>>,
}

#[derive(Debug, Clone)]
struct LastAnswer {
    errcode: Option<i64>,
    message: String,
    at: SystemTime,
}

impl Stats {
    /// Remembers DingTalk's answer to a POST.
    pub fn remember(&self, result: &Result<(), SendError>) {
        let answer = LastAnswer {
            errcode: result
                .as_ref()
                .map_or_else(SendError::errcode, |()| Some(0)),
            message: result
                .as_ref()
                .map_or_else(ToString::to_string, |()| "ok".to_owned()),
            at: SystemTime::now(),
        };
        *lock(&self.last_answer) = Some(answer);
    }

    /// A post from the outbox carried `events` events (a digest when more
    /// than one).
    pub fn flushed(&self, events: usize) {
        if events > 1 {
            self.digests.fetch_add(1, Ordering::Relaxed);
        }
        self.flushed
            .fetch_add(u64::try_from(events).unwrap_or(0), Ordering::Relaxed);
    }

    /// A queued event DingTalk refused on its own: it is dropped, loudly.
    pub fn refused(&self, event_id: &str, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_refused) = Some((event_id.to_owned(), reason.to_owned()));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Lane {
    /// Delivers one request's events for this robot, in order. Once one
    /// must be retried, the later ones are held back with it; once one is
    /// queued, the later ones queue behind it.
    pub async fn deliver(&self, works: Vec<Work>, deadline: Deadline) -> Vec<Handled> {
        let mut handled = Vec::with_capacity(works.len());
        let mut held_back: Option<Outcome> = None;
        let mut queue_rest = false;
        for work in works {
            let (outcome, errcode, queued) = match &held_back {
                Some(earlier) => (not_sent_after(earlier), None, false),
                None if queue_rest => (self.enqueue(&work).await, None, true),
                None => self.deliver_one(&work, &deadline).await,
            };
            queue_rest |= queued;
            if outcome.is_retryable() && held_back.is_none() {
                held_back = Some(outcome.clone());
            }
            handled.push(Handled {
                index: work.index,
                queued: queued && outcome == Outcome::Delivered,
                outcome,
                errcode,
            });
        }
        handled
    }

    /// Posts one event when it may go now, else queues it (or, with digests
    /// off, waits for a slot inside the deadline). Returns its outcome, the
    /// last errcode, and whether it was queued.
    async fn deliver_one(&self, work: &Work, deadline: &Deadline) -> (Outcome, Option<i64>, bool) {
        let queue = |outcome: Outcome| (outcome, None, true);
        let mut attempt: u32 = 0;
        let mut errcode = None;
        loop {
            if let Some(outbox) = &self.outbox {
                match outbox.len().await {
                    Ok(0) => {}
                    Ok(_) => return queue(self.enqueue(work).await),
                    Err(err) => return (store_unavailable(work, &err), errcode, false),
                }
            }
            let Some(timeout) = deadline.attempt_timeout() else {
                return match &self.outbox {
                    Some(_) => queue(self.enqueue(work).await),
                    None => (out_of_time(work), errcode, false),
                };
            };
            match self.budget.for_event().await {
                Err(err) => return (store_unavailable(work, &err), errcode, false),
                Ok(Passage::Open { .. }) => {}
                Ok(Passage::Wait(_) | Passage::Held(_)) if self.outbox.is_some() => {
                    return queue(self.enqueue(work).await);
                }
                Ok(Passage::Wait(wait)) if deadline.allows_wait(wait) => {
                    telemetry::pacing_wait(wait);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(Passage::Wait(wait)) => return (self.over_budget(work, wait), errcode, false),
                Ok(Passage::Held(held)) => return (self.held(work, held), errcode, false),
            }

            let sent_at = tokio::time::Instant::now();
            let result = self.robot.send(work.message.body.clone(), timeout).await;
            errcode = result
                .as_ref()
                .map_or_else(SendError::errcode, |()| Some(0));
            telemetry::request(sent_at.elapsed(), errcode);
            self.stats.remember(&result);
            let Err(err) = result else {
                return (Outcome::Delivered, errcode, false);
            };
            let reason = format!("event {}: chat group {}: {err}", work.id, work.group);
            match err.next() {
                Next::GiveUp | Next::Later => {
                    return (err.outcome(reason, self.cooldown), errcode, false);
                }
                Next::HoldRobot(asked) => {
                    let hold = self.hold_for(asked);
                    self.hold(hold, &err).await;
                    telemetry::throttled(&work.group, "dingtalk");
                    // DingTalk did not show it: queue it for after the hold.
                    return match &self.outbox {
                        Some(_) => (self.enqueue(work).await, errcode, true),
                        None => (err.outcome(reason, hold), errcode, false),
                    };
                }
                Next::Retry => {
                    attempt += 1;
                    let backoff = backoff(attempt);
                    if !deadline.allows_wait(backoff) {
                        return (err.outcome(reason, self.cooldown), errcode, false);
                    }
                    tracing::debug!(event_id = %work.id, chat_group = %work.group, attempt, %err, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Appends an event to the outbox: accepted (200) once durable.
    async fn enqueue(&self, work: &Work) -> Outcome {
        let Some(outbox) = &self.outbox else {
            return Outcome::unavailable(
                Unavailable::ServiceUnavailable,
                format!("event {}: chat group {}: no outbox", work.id, work.group),
            );
        };
        let queued_at_ms = now_ms();
        let entry = Entry {
            event_id: work.id.clone(),
            source: work.source.clone(),
            chat_group: work.group.to_string(),
            msgtype: work.message.msgtype.as_str().to_owned(),
            queued_at_ms,
            body: String::from_utf8_lossy(&work.message.body).into_owned(),
            summary: Summary::of(&work.message.body, work.time_ms.unwrap_or(queued_at_ms)),
        };
        match outbox.push(&entry, &work.queue_key).await {
            Ok(Pushed::Queued { .. }) => Outcome::Delivered,
            // Queued by an earlier delivery of the same event, which did not
            // get to answer: it is in the outbox, and there once.
            Ok(Pushed::Already) => Outcome::Delivered,
            Ok(Pushed::Full { len }) => {
                telemetry::throttled(&work.group, "outbox_full");
                Outcome::throttled(
                    WINDOW,
                    format!(
                        "event {}: chat group {}: its robot's outbox already holds {len} events (digest.max_queued); retry later",
                        work.id, work.group
                    ),
                )
            }
            Err(err) => store_unavailable(work, &err),
        }
    }

    /// How long to hold the robot: what DingTalk asked for, within reason,
    /// else the configured cool-down.
    pub fn hold_for(&self, asked: Option<Duration>) -> Duration {
        asked.map_or(self.cooldown, |asked| {
            asked.clamp(
                Duration::from_secs(1),
                self.cooldown.max(Duration::from_secs(1)),
            )
        })
    }

    /// Holds every post to the robot, and says so once, loudly.
    pub async fn hold(&self, hold: Duration, err: &SendError) {
        tracing::error!(
            robot = %self.name,
            url = %self.robot.webhook(),
            errcode = err.errcode(),
            hold_secs = hold.as_secs(),
            "DingTalk THROTTLED this robot (another sender may share it); holding all its messages"
        );
        if let Err(store) = self.budget.hold(hold).await {
            tracing::error!(robot = %self.name, %store, "cannot record the hold in the store");
        }
    }

    fn over_budget(&self, work: &Work, wait: Duration) -> Outcome {
        telemetry::throttled(&work.group, "budget");
        Outcome::throttled(
            wait,
            format!(
                "event {}: chat group {}: the robot's budget of {} messages a minute is used up; a slot frees in {}s",
                work.id,
                work.group,
                self.budget.per_minute(),
                wait.as_secs_f64().ceil()
            ),
        )
    }

    fn held(&self, work: &Work, held: Duration) -> Outcome {
        telemetry::throttled(&work.group, "cooldown");
        Outcome::throttled(
            held,
            format!(
                "event {}: chat group {}: DingTalk throttled this robot; it is held for another {}s",
                work.id,
                work.group,
                held.as_secs_f64().ceil()
            ),
        )
    }

    /// What an operator wants to know about this robot, without secrets.
    pub async fn status(&self, chat_groups: Vec<&str>) -> Value {
        let gate = self.budget.state().await;
        let last = lock(&self.stats.last_answer).clone();
        let outbox = match &self.outbox {
            None => json!({"enabled": false}),
            Some(outbox) => {
                let oldest = outbox.peek(1).await.ok().and_then(|head| {
                    head.first()
                        .and_then(|q| q.entry.as_ref())
                        .map(|e| (now_ms() - e.queued_at_ms).max(0) / 1_000)
                });
                let last_refused = lock(&self.stats.last_refused).clone();
                json!({
                    "enabled": true,
                    "queued": outbox.len().await.ok(),
                    "max_queued": outbox.max_queued(),
                    "oldest_queued_secs": oldest,
                    "digests_sent": self.stats.digests.load(Ordering::Relaxed),
                    "events_sent_from_outbox": self.stats.flushed.load(Ordering::Relaxed),
                    "refused": self.stats.refused.load(Ordering::Relaxed),
                    "last_refused": last_refused.map(|(id, reason)| json!({"event_id": id, "reason": reason})),
                })
            }
        };
        json!({
            "chat_groups": chat_groups,
            "url": self.robot.webhook().masked(),
            "signed": self.robot.is_signed(),
            "paced": self.budget.is_paced(),
            "per_minute": self.budget.per_minute(),
            "sent_in_window": gate.as_ref().ok().map(|g| g.used),
            "window_secs": WINDOW.as_secs(),
            "cooling_down_for_secs": gate.as_ref().ok().and_then(|g| g.held_for).map(|d| d.as_secs_f64().ceil()),
            "store_error": gate.as_ref().err().map(ToString::to_string),
            "last_errcode": last.as_ref().and_then(|a| a.errcode),
            "last_answer": last.as_ref().map(|a| a.message.clone()),
            "last_answer_unix_secs": last.as_ref().and_then(|a| a.at.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            "outbox": outbox,
        })
    }
}

fn store_unavailable(work: &Work, err: &StoreError) -> Outcome {
    // The store's watch says so once, at error; this is every event.
    tracing::debug!(event_id = %work.id, chat_group = %work.group, %err, "the store failed; answering retry-later");
    Outcome::unavailable(
        Unavailable::ServiceUnavailable,
        format!(
            "event {}: chat group {}: {err}; retry later",
            work.id, work.group
        ),
    )
}

fn out_of_time(work: &Work) -> Outcome {
    Outcome::unavailable(
        Unavailable::ServiceUnavailable,
        format!(
            "event {}: chat group {}: not sent: the request's time (delivery.deadline_ms) ran out before its turn; retry",
            work.id, work.group
        ),
    )
}

/// The outcome of an event held back because an earlier one to the same
/// robot must be retried: same class, so the sender retries them together.
fn not_sent_after(earlier: &Outcome) -> Outcome {
    let reason = format!(
        "not sent, to keep order behind an earlier event: {}",
        earlier.reason()
    );
    match earlier {
        Outcome::Throttled { retry_after, .. } => Outcome::throttled(*retry_after, reason),
        Outcome::Unavailable { kind, .. } => Outcome::unavailable(*kind, reason),
        Outcome::Delivered | Outcome::Rejected { .. } => {
            Outcome::unavailable(Unavailable::ServiceUnavailable, reason)
        }
    }
}

/// Full-jitter exponential backoff: 100 ms, 200 ms, 400 ms... capped at 1 s,
/// each scaled by a random factor in [0.5, 1) so retries do not synchronize.
fn backoff(attempt: u32) -> Duration {
    let base =
        Duration::from_millis(100).saturating_mul(1 << attempt.clamp(1, 5).saturating_sub(1));
    base.min(Duration::from_secs(1))
        .mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(
                first >= Duration::from_millis(50) && first < Duration::from_millis(100),
                "{first:?}"
            );
            let late = backoff(30);
            assert!(
                late >= Duration::from_millis(500) && late < Duration::from_secs(1),
                "{late:?}"
            );
        }
    }

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
}
