//! The DingTalk sink: routes each event to its chat group's robot, builds
//! the message, waits for a send slot, sends with retries inside the
//! request's time budget, and reports one outcome per event.
//!
//! Events for different robots go out concurrently; events for one robot
//! keep their order, and once one of them must be retried the rest of that
//! robot's events are not sent but retried with it (their `msgUuid` makes
//! the resend of any already delivered one harmless).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::cloudevents::{AttributesReader, Event};
use connector_sdk::{BoxError, Outcome, Sink, Unavailable, async_trait, shorten};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{DeliveryConfig, DingTalkConfig, webhook_url};
use crate::message::{self, Message};
use crate::pacing::{Busy, Pacer};
use crate::robot::{Robot, SendError, http_client};
use crate::telemetry;

/// The extension naming the chat group.
pub const CHAT_GROUP_EXTENSION: &str = "xvchatgroup";

/// Time kept back from the pacing wait so the send itself still fits.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// How much of an event id a reason or a log line quotes: ids come from
/// the sender and may be of any length.
const ID_BYTES: usize = 128;

/// Events of one request logged at info when they are rejected before
/// sending; the rest are logged at debug, and counted in one info line, so
/// a batch of 50,000 invalid events is not 50,000 info lines.
const REJECTIONS_LOGGED: usize = 10;

/// A robot and its send budget; chat groups sharing a webhook share this.
#[derive(Debug)]
struct PacedRobot {
    robot: Robot,
    pacer: Pacer,
    per_minute: u32,
    last_answer: Mutex<Option<LastAnswer>>,
}

/// DingTalk's latest verdict on a robot, for the status view.
#[derive(Debug, Clone)]
struct LastAnswer {
    errcode: Option<i64>,
    message: String,
    at: SystemTime,
}

impl PacedRobot {
    fn new(robot: Robot, per_minute: u32, paced: bool) -> Self {
        Self {
            robot,
            pacer: if paced {
                Pacer::new(per_minute)
            } else {
                Pacer::unlimited()
            },
            per_minute,
            last_answer: Mutex::new(None),
        }
    }

    fn remember(&self, result: &Result<(), SendError>) {
        let answer = LastAnswer {
            errcode: result
                .as_ref()
                .map_or_else(SendError::errcode, |()| Some(0)),
            message: result
                .as_ref()
                .map_or_else(ToString::to_string, |()| "ok".to_owned()),
            at: SystemTime::now(),
        };
        *self
            .last_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(answer);
    }

    /// What an operator wants to know about this robot, without secrets.
    fn status(&self, chat_groups: Vec<&str>) -> Value {
        let now = Instant::now();
        let (used, cooling_until) = self.pacer.snapshot(now);
        let last = self
            .last_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        json!({
            "chat_groups": chat_groups,
            "url": self.robot.display_url(),
            "signed": self.robot.is_signed(),
            "paced": self.pacer.is_paced(),
            "per_minute": self.per_minute,
            "sent_in_window": used,
            "window_secs": crate::pacing::WINDOW.as_secs(),
            "cooling_down_for_secs": cooling_until.map(|until| (until - now).as_secs_f64().ceil()),
            "last_errcode": last.as_ref().and_then(|a| a.errcode),
            "last_answer": last.as_ref().map(|a| a.message.clone()),
            "last_answer_unix_secs": last.as_ref().and_then(|a| a.at.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        })
    }
}

/// The DingTalk sink.
#[derive(Debug)]
pub struct DingTalkSink {
    /// Chat group names are shared (`Arc<str>`): every event and metric label
    /// refers to them without copying.
    groups: HashMap<Arc<str>, Arc<PacedRobot>>,
    /// Each robot once, in config order (for the status view).
    robots: Vec<Arc<PacedRobot>>,
    default_group: Arc<str>,
    delivery: DeliveryConfig,
}

/// An event that can never be sent: why, and its chat group when that is a
/// configured one.
struct Unsendable {
    group: Option<Arc<str>>,
    outcome: Outcome,
}

/// One event's way out: what to send, to whom, and how to report it.
struct Work {
    index: usize,
    robot: Arc<PacedRobot>,
    group: Arc<str>,
    message: Message,
    id: String,
    source: String,
}

impl DingTalkSink {
    /// Builds the sink from a validated configuration.
    pub fn new(config: DingTalkConfig) -> Result<Self, BoxError> {
        let client = http_client(config.delivery.connect_timeout())?;
        let default_group = config
            .default_group()
            .ok_or("bot.webhooks is empty; configure at least one chat group")?
            .to_owned();
        let mut robots_by_url: HashMap<String, Arc<PacedRobot>> = HashMap::new();
        let mut robots = Vec::new();
        let mut groups = HashMap::new();
        for webhook in config.bot.webhooks {
            let robot = match robots_by_url.get(&webhook.url) {
                Some(robot) => Arc::clone(robot),
                None => {
                    let url = webhook_url(&webhook.url).map_err(|reason| {
                        format!("bot.webhooks ({}).url {reason}", webhook.chat_group)
                    })?;
                    if !webhook.paced {
                        tracing::warn!(
                            chat_group = %webhook.chat_group,
                            "pacing is OFF for this robot (paced: false); real DingTalk blocks a robot for 10 minutes above 20 messages a minute"
                        );
                    }
                    let robot = Robot::new(url, webhook.signature.clone(), client.clone());
                    let robot = Arc::new(PacedRobot::new(robot, webhook.per_minute, webhook.paced));
                    robots_by_url.insert(webhook.url.clone(), Arc::clone(&robot));
                    robots.push(Arc::clone(&robot));
                    robot
                }
            };
            tracing::info!(
                chat_group = %webhook.chat_group,
                url = %robot.robot.display_url(),
                signed = robot.robot.is_signed(),
                per_minute = robot.per_minute,
                "chat group configured"
            );
            groups.insert(Arc::from(webhook.chat_group), robot);
        }
        Ok(Self {
            groups,
            robots,
            default_group: default_group.into(),
            delivery: config.delivery,
        })
    }

    /// Every robot with its chat groups, budget, cool-down and DingTalk's
    /// latest answer; URLs masked.
    pub fn status_view(&self) -> Value {
        let robots: Vec<Value> = self
            .robots
            .iter()
            .map(|robot| {
                let mut groups: Vec<&str> = self
                    .groups
                    .iter()
                    .filter(|(_, r)| Arc::ptr_eq(r, robot))
                    .map(|(group, _)| group.as_ref())
                    .collect();
                groups.sort_unstable();
                robot.status(groups)
            })
            .collect();
        json!({
            "default_chat_group": self.default_group.as_ref(),
            "robots": robots,
        })
    }

    /// Delivers a batch and reports each event's outcome, in order.
    pub async fn deliver(&self, events: Vec<Event>) -> Vec<Outcome> {
        let started = Instant::now();
        let deadline = started + self.delivery.deadline();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        // One queue per robot, in arrival order.
        let mut queues: Vec<Vec<Work>> = Vec::new();
        let mut rejected = 0;

        for (index, event) in events.into_iter().enumerate() {
            match self.prepare(index, &event) {
                Ok(work) => match queues
                    .iter_mut()
                    .find(|queue| Arc::ptr_eq(&queue[0].robot, &work.robot))
                {
                    Some(queue) => queue.push(work),
                    None => queues.push(vec![work]),
                },
                Err(Unsendable { group, outcome }) => {
                    rejected += 1;
                    let at_info = rejected <= REJECTIONS_LOGGED;
                    log_unsendable(&event, group.as_ref(), &outcome, started, at_info);
                    outcomes[index] = Some(outcome);
                }
            }
        }
        if rejected > REJECTIONS_LOGGED {
            tracing::info!(
                rejected,
                logged = REJECTIONS_LOGGED,
                "rejected more events of one request before sending; the others are logged at debug"
            );
        }

        let delivered = join_all(
            queues
                .into_iter()
                .map(|queue| self.deliver_in_order(queue, deadline, started)),
        )
        .await;
        for (index, outcome) in delivered.into_iter().flatten() {
            outcomes[index] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Delivered))
            .collect()
    }

    /// Routes and builds one event, or says why it can never be sent (with
    /// the chat group, when it is a configured one).
    fn prepare(&self, index: usize, event: &Event) -> Result<Work, Unsendable> {
        let id = shorten(event.id(), ID_BYTES);
        let reject = |reason: String| Outcome::rejected(format!("event {id}: {reason}"));
        let asked = match event.extension(CHAT_GROUP_EXTENSION) {
            None => None,
            Some(ExtensionValue::String(group)) => Some(Cow::Borrowed(group.as_str())),
            Some(other) => Some(Cow::Owned(other.to_string())),
        };
        let asked = asked.as_deref().unwrap_or(&self.default_group);
        let (group, robot) = self.groups.get_key_value(asked).ok_or_else(|| {
            let group = shorten(asked, ID_BYTES);
            let mut known: Vec<_> = self.groups.keys().map(AsRef::as_ref).collect();
            known.sort_unstable();
            let reason = format!(
                "xvchatgroup `{group}` is not configured; configured chat groups: {}",
                known.join(", ")
            );
            Unsendable {
                group: None,
                outcome: reject(reason),
            }
        })?;
        let group = Arc::clone(group);
        let message = message::build(event, &group).map_err(|err| Unsendable {
            group: Some(Arc::clone(&group)),
            outcome: reject(err.to_string()),
        })?;
        Ok(Work {
            index,
            robot: Arc::clone(robot),
            group,
            message,
            id: id.into_owned(),
            source: shorten(event.source(), ID_BYTES).into_owned(),
        })
    }

    async fn deliver_in_order(
        &self,
        queue: Vec<Work>,
        deadline: Instant,
        started: Instant,
    ) -> Vec<(usize, Outcome)> {
        let mut results = Vec::with_capacity(queue.len());
        let mut held_back: Option<Outcome> = None;
        for work in queue {
            let (outcome, errcode) = match &held_back {
                Some(earlier) => (not_sent_after(earlier), None),
                None => self.send(&work, deadline).await,
            };
            if outcome.is_retryable() && held_back.is_none() {
                held_back = Some(outcome.clone());
            }
            log_work(&work, &outcome, errcode, started);
            results.push((work.index, outcome));
        }
        results
    }

    /// Sends one message: waits for a slot, retries transient failures with
    /// jittered exponential backoff while the deadline allows.
    async fn send(&self, work: &Work, deadline: Instant) -> (Outcome, Option<i64>) {
        let robot = &work.robot;
        let group = &work.group;
        let mut attempt: u32 = 0;
        loop {
            let now = Instant::now();
            let max_wait = deadline
                .saturating_duration_since(now)
                .saturating_sub(MIN_ATTEMPT);
            let slot = match robot.pacer.reserve(now, max_wait) {
                Ok(slot) => slot,
                Err(busy) => return (throttled_by_pacer(work, busy, robot.per_minute), None),
            };
            if slot > now {
                telemetry::pacing_wait(slot - now);
                tokio::time::sleep_until(slot).await;
            }

            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_ATTEMPT);
            let sent_at = Instant::now();
            let result = robot.robot.send(work.message.body.clone(), timeout).await;
            let errcode = match &result {
                Ok(()) => Some(0),
                Err(err) => err.errcode(),
            };
            telemetry::request(sent_at.elapsed(), errcode);
            robot.remember(&result);
            let Err(err) = result else {
                return (Outcome::Delivered, errcode);
            };
            let cooldown = self.delivery.cooldown();
            if let SendError::TooFast { .. } = err {
                telemetry::throttled(group, "dingtalk");
                if robot.pacer.cool_down(Instant::now(), cooldown) {
                    tracing::error!(
                        chat_group = %group,
                        url = %robot.robot.display_url(),
                        errcode,
                        cooldown_secs = cooldown.as_secs(),
                        "DingTalk THROTTLED this robot (another sender may share it); holding all its messages for the cool-down"
                    );
                }
                return (failure_outcome(work, &err, cooldown), errcode);
            }
            attempt += 1;
            let backoff = backoff(attempt);
            if !err.is_transient() || Instant::now() + backoff + MIN_ATTEMPT > deadline {
                return (failure_outcome(work, &err, cooldown), errcode);
            }
            tracing::debug!(event_id = %work.id, chat_group = %group, attempt, %err, ?backoff, "retrying");
            tokio::time::sleep(backoff).await;
        }
    }
}

#[async_trait]
impl Sink for DingTalkSink {
    type Config = DingTalkConfig;

    fn name() -> &'static str {
        "sink-dingtalk"
    }

    async fn initialize(config: DingTalkConfig) -> Result<Self, BoxError> {
        telemetry::describe();
        let sink = Self::new(config)?;
        telemetry::export_from_the_start(sink.groups.keys().map(AsRef::as_ref));
        Ok(sink)
    }

    async fn arrived(&self, events: Vec<Event>) -> Outcome {
        let outcomes = self.deliver(events).await;
        Outcome::most_retryable(outcomes)
    }

    fn status(&self) -> Option<Value> {
        Some(self.status_view())
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

fn throttled_by_pacer(work: &Work, busy: Busy, per_minute: u32) -> Outcome {
    let wait = busy.retry_after();
    let cause = match busy {
        Busy::Budget(_) => "budget",
        Busy::CoolingDown(_) => "cooldown",
    };
    telemetry::throttled(&work.group, cause);
    let reason = match busy {
        Busy::Budget(_) => format!(
            "event {}: chat group {}: the robot's budget of {per_minute} messages a minute is used up; a slot frees in {}s",
            work.id,
            work.group,
            wait.as_secs_f64().ceil()
        ),
        Busy::CoolingDown(_) => format!(
            "event {}: chat group {}: DingTalk throttled this robot; it is held for another {}s",
            work.id,
            work.group,
            wait.as_secs_f64().ceil()
        ),
    };
    Outcome::throttled(wait, reason)
}

/// The outcome of a failed send; `cooldown` is how long a throttled robot is held.
fn failure_outcome(work: &Work, err: &SendError, cooldown: Duration) -> Outcome {
    let reason = format!("event {}: chat group {}: {err}", work.id, work.group);
    match err {
        SendError::Refused { .. } => Outcome::rejected(reason),
        SendError::TooFast { .. } => Outcome::throttled(
            cooldown,
            format!("{reason}; holding the robot for {}s", cooldown.as_secs()),
        ),
        SendError::Timeout(_) => Outcome::unavailable(Unavailable::GatewayTimeout, reason),
        SendError::BadAnswer(_) => Outcome::unavailable(Unavailable::BadGateway, reason),
        SendError::HttpStatus(status) if *status >= 500 || *status == 429 => {
            Outcome::unavailable(Unavailable::ServiceUnavailable, reason)
        }
        SendError::HttpStatus(_) => Outcome::unavailable(Unavailable::BadGateway, reason),
        SendError::Busy { .. } | SendError::Unreachable(_) => {
            Outcome::unavailable(Unavailable::ServiceUnavailable, reason)
        }
    }
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

fn log_work(work: &Work, outcome: &Outcome, errcode: Option<i64>, started: Instant) {
    telemetry::outcome(Some(&work.group), outcome);
    tracing::info!(
        event_id = %work.id,
        source = %work.source,
        chat_group = %work.group,
        msgtype = %work.message.msgtype,
        outcome = outcome.class(),
        errcode,
        latency_ms = started.elapsed().as_millis() as u64,
        reason = (!matches!(outcome, Outcome::Delivered)).then(|| outcome.reason()),
        "event handled"
    );
}

fn log_unsendable(
    event: &Event,
    group: Option<&Arc<str>>,
    outcome: &Outcome,
    started: Instant,
    at_info: bool,
) {
    telemetry::outcome(group, outcome);
    let event_id = shorten(event.id(), ID_BYTES);
    let source = shorten(event.source(), ID_BYTES);
    let chat_group = group.map(AsRef::<str>::as_ref);
    let latency_ms = started.elapsed().as_millis() as u64;
    if at_info {
        tracing::info!(%event_id, %source, chat_group, outcome = outcome.class(), latency_ms, reason = outcome.reason(), "event handled");
    } else {
        tracing::debug!(%event_id, %source, chat_group, outcome = outcome.class(), latency_ms, reason = outcome.reason(), "event handled");
    }
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
