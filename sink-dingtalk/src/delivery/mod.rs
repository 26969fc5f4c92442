//! Delivery: each event of a request routed to its chat group's robot and
//! built into a message, then handed to that robot's `Lane`. Robots are
//! served concurrently; one robot's events keep their order. Every event
//! gets an outcome, and one never filled in counts as not delivered.
//!
//! - `lane`: one robot's direct path (post now, or queue);
//! - `budget`: its send budget in the store's gate, and the flusher's pace;
//! - `outbox`: its durable queue of accepted events;
//! - `flusher`: the task that empties the outbox, alone or in digests;
//! - `deadline`: the time one request has.

mod budget;
mod deadline;
mod flusher;
mod lane;
mod outbox;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::cloudevents::{AttributesReader, Event};
use connector_sdk::{BoxError, Outcome, Store, Unavailable, shorten};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use budget::Budget;
pub use budget::WINDOW;
use deadline::Deadline;
use lane::{Handled, Lane, Stats, Work};
use outbox::Outbox;

use crate::config::DingTalkConfig;
use crate::message;
use crate::robot::{Robot, http_client};
use crate::telemetry;
use crate::template::Templates;
use crate::webhook::RobotId;

/// The extension naming the chat group.
pub const CHAT_GROUP_EXTENSION: &str = "xvchatgroup";

/// How much of an event id or source a reason or a log line quotes: they
/// come from the sender and may be of any length.
const ID_BYTES: usize = 128;

/// Events of one request logged at info when they are rejected before
/// sending; the rest are logged at debug, and counted in one info line, so
/// a batch of 50,000 invalid events is not 50,000 info lines.
const REJECTIONS_LOGGED: usize = 10;

/// Every chat group, its robot, and the robots' flushers.
#[derive(Debug)]
pub struct Delivery {
    /// Chat group names are shared (`Arc<str>`): every event and metric
    /// label refers to them without copying.
    groups: HashMap<Arc<str>, Arc<Lane>>,
    /// Each robot once, in config order, with its chat groups.
    lanes: Vec<(Arc<Lane>, Vec<Arc<str>>)>,
    default_group: Arc<str>,
    /// How events become messages (none: their own data is the message).
    templates: Templates,
    deadline: Duration,
    stop: CancellationToken,
    flushers: Mutex<Vec<JoinHandle<()>>>,
}

/// An event that can never be sent: why, and its chat group when that is a
/// configured one.
struct Unsendable {
    group: Option<Arc<str>>,
    outcome: Outcome,
}

impl Delivery {
    /// Builds every robot from a validated configuration, with its state in
    /// `store` (what a previous run queued included). Flushers do not run
    /// until [`Delivery::start_flushers`].
    pub async fn new(config: DingTalkConfig, store: Store) -> Result<Self, BoxError> {
        let client = http_client(config.delivery.connect_timeout())?;
        let templates = Templates::compile(&config.templates, &config.templates_timezone).map_err(
            |problems| {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                problems.join("; ")
            },
        )?;
        let digest = config.digest_settings();
        let default_group: Arc<str> = config
            .default_group()
            .ok_or("bot.webhooks is empty; configure at least one chat group")?
            .into();
        let reserved = if config.digest.enabled {
            config.digest.reserved
        } else {
            0
        };
        let mut by_robot: HashMap<RobotId, usize> = HashMap::new();
        let mut lanes: Vec<(Arc<Lane>, Vec<Arc<str>>)> = Vec::new();
        let mut groups = HashMap::new();
        for (i, webhook) in config.bot.webhooks.into_iter().enumerate() {
            let url = webhook
                .url
                .webhook()
                .map_err(|reason| format!("bot.webhooks.{i}.url {reason}"))?
                .clone();
            let group: Arc<str> = Arc::from(webhook.chat_group);
            let at = match by_robot.get(url.robot()) {
                Some(&at) => at,
                None => {
                    if !webhook.paced {
                        tracing::warn!(chat_group = %group, "pacing is OFF for this robot (paced: false); real DingTalk blocks a robot for 10 minutes above 20 messages a minute");
                    }
                    let key = url.robot().key();
                    let outbox = if config.digest.enabled {
                        Some(
                            Outbox::open(
                                store.clone(),
                                &key,
                                config.digest.max_queued,
                                Arc::clone(&group),
                            )
                            .await?,
                        )
                    } else {
                        None
                    };
                    let budget = Budget::new(
                        store.clone(),
                        &key,
                        webhook.per_minute,
                        reserved,
                        webhook.paced,
                    );
                    if !store.is_shared() {
                        // A hold from before a restart still holds.
                        budget.restore().await?;
                    }
                    by_robot.insert(url.robot().clone(), lanes.len());
                    let lane = Lane {
                        name: Arc::clone(&group),
                        robot: Robot::new(url, webhook.signature.clone(), client.clone()),
                        budget,
                        outbox,
                        cooldown: config.delivery.cooldown(),
                        digest: digest.clone(),
                        stats: Stats::default(),
                    };
                    lanes.push((Arc::new(lane), Vec::new()));
                    lanes.len() - 1
                }
            };
            let (lane, lane_groups) = &mut lanes[at];
            tracing::info!(
                chat_group = %group,
                url = %lane.robot.webhook(),
                signed = lane.robot.is_signed(),
                per_minute = lane.budget.per_minute(),
                "chat group configured"
            );
            lane_groups.push(Arc::clone(&group));
            groups.insert(group, Arc::clone(lane));
        }
        Ok(Self {
            groups,
            lanes,
            default_group,
            templates,
            deadline: config.delivery.deadline(),
            stop: CancellationToken::new(),
            flushers: Mutex::new(Vec::new()),
        })
    }

    /// Starts one flusher per robot with an outbox; it first sends what a
    /// previous run left queued. With a shared store, the flusher of one
    /// replica at a time works on a robot's outbox.
    pub fn start_flushers(&self) {
        let holder = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            fastrand::u32(..)
        );
        let mut flushers = self.flushers.lock().unwrap_or_else(PoisonError::into_inner);
        for (lane, _) in &self.lanes {
            if lane.outbox.is_some() {
                flushers.push(tokio::spawn(flusher::run(
                    Arc::clone(lane),
                    holder.clone(),
                    self.stop.child_token(),
                )));
            }
        }
    }

    /// Puts every metric series known at start (the chat groups' and the
    /// robots') at zero, so a scrape before the first event sees them. An
    /// outbox's gauge is its length, set by its flusher as it starts.
    pub fn export_metrics_from_the_start(&self) {
        telemetry::export_from_the_start(
            self.groups.keys().map(AsRef::as_ref),
            self.lanes.iter().map(|(lane, _)| lane.name.as_ref()),
        );
        for (lane, _) in &self.lanes {
            if lane.outbox.is_none() {
                telemetry::outbox_queued(&lane.name, 0);
            }
        }
    }

    /// Stops the flushers, letting a POST in progress finish. What is
    /// queued stays in the store for the next start.
    pub async fn stop_flushers(&self) {
        self.stop.cancel();
        let flushers =
            std::mem::take(&mut *self.flushers.lock().unwrap_or_else(PoisonError::into_inner));
        let aborts: Vec<_> = flushers.iter().map(JoinHandle::abort_handle).collect();
        let bound = flusher::FLUSH_TIMEOUT + Duration::from_secs(1);
        if tokio::time::timeout(bound, join_all(flushers))
            .await
            .is_err()
        {
            // Stopped here, so none posts after the store has closed.
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
            tracing::warn!(
                "a flusher did not stop in time and was cut off; its last post may be sent again after a restart"
            );
        }
    }

    /// Delivers a batch and reports each event's outcome, in order.
    pub async fn deliver(&self, events: Vec<Event>) -> Vec<Outcome> {
        let started = Instant::now();
        let deadline = Deadline::after(self.deadline);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        // One queue per robot, in arrival order.
        let mut queues: Vec<(Arc<Lane>, Vec<Work>)> = Vec::new();
        let mut rejected = 0;
        for (index, event) in events.iter().enumerate() {
            match self.prepare(index, event) {
                Ok((lane, work)) => match queues.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &lane)) {
                    Some((_, queue)) => queue.push(work),
                    None => queues.push((lane, vec![work])),
                },
                Err(Unsendable { group, outcome }) => {
                    rejected += 1;
                    let at_info = rejected <= REJECTIONS_LOGGED;
                    log_unsendable(event, group.as_ref(), &outcome, started, at_info);
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
        let handled = join_all(queues.into_iter().map(|(lane, works)| async move {
            let meta: Vec<_> = works
                .iter()
                .map(|w| (Arc::clone(&w.group), w.message.msgtype))
                .collect();
            let handled = lane.deliver(works, deadline).await;
            handled.into_iter().zip(meta).collect::<Vec<_>>()
        }))
        .await;
        for (handled, (group, msgtype)) in handled.into_iter().flatten() {
            let event = &events[handled.index];
            log_handled(event, &group, msgtype, &handled, started);
            outcomes[handled.index] = Some(handled.outcome);
        }
        // Fail closed: an outcome never filled in is not a delivery.
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Outcome::unavailable(
                        Unavailable::ServiceUnavailable,
                        "the event was not handled; retry later",
                    )
                })
            })
            .collect()
    }

    /// Routes and builds one event, or says why it can never be sent.
    fn prepare(&self, index: usize, event: &Event) -> Result<(Arc<Lane>, Work), Unsendable> {
        let id = shorten(event.id(), ID_BYTES);
        let reject = |reason: String| Outcome::rejected(format!("event {id}: {reason}"));
        let asked = asked_group(event);
        let asked = asked.as_deref().unwrap_or(&self.default_group);
        let (group, lane) = self.groups.get_key_value(asked).ok_or_else(|| Unsendable {
            group: None,
            outcome: reject(not_configured(asked, self.groups.keys().map(AsRef::as_ref))),
        })?;
        let message = self
            .templates
            .message_for(event, group)
            .map_err(|err| Unsendable {
                group: Some(Arc::clone(group)),
                outcome: reject(err.to_string()),
            })?;
        Ok((
            Arc::clone(lane),
            Work {
                index,
                group: Arc::clone(group),
                message,
                id: id.into_owned(),
                source: shorten(event.source(), ID_BYTES).into_owned(),
                time_ms: event.time().map(|t| t.timestamp_millis()),
                queue_key: message::msg_uuid(&event.source().to_string(), event.id(), group, b""),
            },
        ))
    }

    /// Every robot with its chat groups, budget, hold, outbox and DingTalk's
    /// latest answer; URLs masked.
    pub async fn status(&self) -> Value {
        let robots = join_all(self.lanes.iter().map(|(lane, groups)| {
            let mut names: Vec<&str> = groups.iter().map(AsRef::as_ref).collect();
            names.sort_unstable();
            lane.status(names)
        }))
        .await;
        json!({
            "default_chat_group": self.default_group.as_ref(),
            "robots": robots,
        })
    }
}

/// This machine's name (a pod's name in Kubernetes), for the flusher's lease.
/// The chat group `event` names in `xvchatgroup`, if any.
pub fn asked_group(event: &Event) -> Option<Cow<'_, str>> {
    match event.extension(CHAT_GROUP_EXTENSION)? {
        ExtensionValue::String(group) => Some(Cow::Borrowed(group.as_str())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Why an event asking for chat group `asked` cannot be sent.
pub fn not_configured<'a>(asked: &str, configured: impl Iterator<Item = &'a str>) -> String {
    let mut known: Vec<&str> = configured.collect();
    known.sort_unstable();
    format!(
        "xvchatgroup `{}` is not configured; configured chat groups: {}",
        shorten(asked, ID_BYTES),
        known.join(", ")
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sink".to_owned())
}

fn log_handled(
    event: &Event,
    group: &Arc<str>,
    msgtype: message::MsgType,
    handled: &Handled,
    started: Instant,
) {
    let outcome = &handled.outcome;
    let class = if handled.queued {
        "queued"
    } else {
        outcome.class()
    };
    telemetry::outcome(Some(group), class);
    tracing::info!(
        event_id = %shorten(event.id(), ID_BYTES),
        source = %shorten(event.source(), ID_BYTES),
        chat_group = %group,
        msgtype = %msgtype,
        outcome = class,
        errcode = handled.errcode,
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
    telemetry::outcome(group, outcome.class());
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
