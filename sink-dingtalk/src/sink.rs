//! The DingTalk sink on the connector runtime: each event of a request is
//! routed to its chat group and built into a message (by a template, or
//! from its own data), then handed to the delivery kit, which sends it
//! through the group's robots or queues it for a digest. [`Sink::initialize`]
//! reads the config into a [`Plan`] and starts the kit's flushers on the
//! runtime's task tracker; `/status` shows each robot and outbox.

use std::sync::{Arc, PoisonError, RwLock};

use connector_sdk::cloudevents::{AttributesReader, Event};
use connector_sdk::deliver::{Delivery, Parcel, Receipt, Status};
use connector_sdk::{BoxError, Context, Outcome, Sink, Store, Unavailable, async_trait, shorten};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::app::{MAX_USERS_PER_CALL, People, parse_users, users_of};
use crate::config::DingTalkConfig;
use crate::destination::Bot;
use crate::message::MsgType;
use crate::message::digest::Summary;
use crate::metrics;
use crate::plan::Plan;
use crate::robot::Post;
use crate::route::{asked_group, chat_groups, more_retry_worthy};
use crate::wire::{Live, wire};

pub use crate::route::CHAT_GROUP_EXTENSION;

/// How much of an event id or source a reason or a log line quotes: they
/// come from the sender and may be of any length.
const ID_BYTES: usize = 128;

/// Events of one request logged at info when they are rejected before
/// sending; the rest are logged at debug, and counted in one info line, so
/// a batch of 50,000 invalid events is not 50,000 info lines.
const REJECTIONS_LOGGED: usize = 10;

/// The DingTalk sink.
#[derive(Debug)]
pub struct DingTalkSink {
    delivery: Delivery<Bot>,
    /// What a live reload swaps whole: a request finishes on the one it
    /// started with.
    live: RwLock<Arc<Live>>,
    store: Store,
}

/// An event that can never be sent: why, and its chat group when that is a
/// configured one.
struct Unsendable {
    group: Option<Arc<str>>,
    outcome: Outcome,
}

/// What the log line of a handed-over event says of it.
struct Handed {
    index: usize,
    group: Arc<str>,
    msgtype: MsgType,
}

impl DingTalkSink {
    /// Builds the sink from its plan, with its state in `store` (what a
    /// previous run queued included). Nothing runs in the background until
    /// [`DingTalkSink::start`].
    pub async fn new(plan: Plan, store: Store) -> Result<Self, BoxError> {
        let (routes, wired) = wire(&plan, &store)?;
        let delivery = Delivery::new(store.clone(), plan.settings.clone(), routes).await?;
        let live = Live::of(plan, &delivery, wired)?;
        Ok(Self {
            delivery,
            live: RwLock::new(Arc::new(live)),
            store,
        })
    }

    /// Applies a new plan while events flow (a live reload): the kit's
    /// routing is renewed (robots kept by key with their budgets and
    /// outboxes, new ones added, removed ones flushed to the end), then the
    /// templates, default chat group and app groups are swapped.
    pub async fn renew(&self, plan: Plan) -> Result<(), BoxError> {
        if plan.settings != *self.delivery.settings() {
            tracing::warn!(
                "delivery settings (delivery.*, outbox) changed; they take effect after a restart"
            );
        }
        let (routes, wired) = wire(&plan, &self.store)?;
        self.delivery.renew(routes).await?;
        let live = Live::of(plan, &self.delivery, wired)?;
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
        Ok(())
    }

    fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts the flushers on `context`'s task tracker, and shows every
    /// metric series known at start.
    pub fn start(&self, context: &Context) {
        metrics::export_from_the_start(self.delivery.targets().iter().map(AsRef::as_ref));
        self.delivery.start(context);
        let timeout = self.delivery.settings().deadline;
        for app in &self.live().apps {
            let app = Arc::clone(app);
            context
                .tasks()
                .spawn(async move { app.warm_up(timeout).await });
        }
    }

    /// Delivers a batch and reports each event's outcome, in order.
    pub async fn deliver(&self, events: Vec<Event>) -> Vec<Outcome> {
        let started = Instant::now();
        let deadline = self.delivery.settings().deadline();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut parcels = Vec::with_capacity(events.len());
        let mut handed = Vec::with_capacity(events.len());
        let mut rejected = 0;
        for (index, event) in events.iter().enumerate() {
            match self.prepare(event) {
                Ok(prepared) => {
                    for (parcel, msgtype) in prepared {
                        handed.push(Handed {
                            index,
                            group: Arc::clone(&parcel.target),
                            msgtype,
                        });
                        parcels.push(parcel);
                    }
                }
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
        let receipts = self.delivery.deliver(parcels, deadline).await;
        for (handed, receipt) in handed.into_iter().zip(receipts) {
            log_handled(&events[handed.index], &handed, &receipt, started);
            // An event of several parcels (chat groups, one-to-one calls):
            // the most retry-worthy of their outcomes.
            let slot = &mut outcomes[handed.index];
            if slot
                .as_ref()
                .is_none_or(|earlier| more_retry_worthy(&receipt.outcome, earlier))
            {
                *slot = Some(receipt.outcome);
            }
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

    /// Routes and builds one event for each of its chat groups, or says
    /// why it can never be sent (to any of them: nothing is sent). Sent to
    /// several, each group's parcels are remembered, so a redelivery after
    /// a partial failure posts only to the groups that did not get it.
    fn prepare(&self, event: &Event) -> Result<Vec<(Parcel<Post>, MsgType)>, Unsendable> {
        let live = self.live();
        let reject = |reason: String| Unsendable {
            group: None,
            outcome: Outcome::rejected(format!(
                "event {}: {reason}",
                shorten(event.id(), ID_BYTES)
            )),
        };
        let routed = |name: &str| {
            let group = self.delivery.target(name)?;
            (!live.one_to_one.contains(&group)).then_some(group)
        };
        let asked = asked_group(event);
        let asked = asked.as_deref().unwrap_or(&live.default_group);
        let targets = self.delivery.targets();
        let configured = || {
            targets
                .iter()
                .map(AsRef::as_ref)
                .filter(|t| !live.one_to_one.contains(*t))
        };
        let groups = chat_groups(asked, routed, configured).map_err(reject)?;
        let fan_out = groups.len() > 1;
        if fan_out && users_of(event).is_ok_and(|users| users.is_some()) {
            return Err(reject(
                "xvusers takes one chat group; xvchatgroup names several".into(),
            ));
        }
        let mut prepared = Vec::new();
        for group in groups {
            let (parcels, msgtype) = self.prepare_for(&live, event, group)?;
            prepared.extend(
                parcels
                    .into_iter()
                    .map(|parcel| (if fan_out { parcel.remembered() } else { parcel }, msgtype)),
            );
        }
        Ok(prepared)
    }

    /// Builds one event for `group`, or says why it can never be sent.
    fn prepare_for(
        &self,
        live: &Live,
        event: &Event,
        group: Arc<str>,
    ) -> Result<(Vec<Parcel<Post>>, MsgType), Unsendable> {
        let reject = |reason: String| {
            Outcome::rejected(format!("event {}: {reason}", shorten(event.id(), ID_BYTES)))
        };
        let (message, mut meta) =
            live.templates
                .prepare(event, &group)
                .map_err(|err| Unsendable {
                    group: Some(Arc::clone(&group)),
                    outcome: reject(err.to_string()),
                })?;
        let msgtype = message.msgtype;
        let at_ms = event
            .time()
            .map_or_else(connector_sdk::deliver::now_ms, |t| t.timestamp_millis());
        // What a digest shows of it, worked out once, kept with it.
        let rule_users = meta.users.take();
        let summary = Summary::of_json(&message.json, at_ms).with(meta);
        let post = Post {
            msgtype: msgtype.as_str().to_owned(),
            body: message.body,
            at_ms,
            summary: Some(summary),
            to: None,
        };
        let unsendable = |reason: String| Unsendable {
            group: Some(Arc::clone(&group)),
            outcome: reject(reason),
        };
        let users = users_of(event).map_err(&unsendable)?;
        let Some(one_to_one) = live.app_groups.get(&group) else {
            if users.is_some() {
                return Err(unsendable(format!(
                    "xvusers needs a chat group of an app robot; `{group}` is served by webhook robots"
                )));
            }
            let parcel = Parcel::new(group, event.id(), event.source().as_str(), post);
            return Ok((vec![parcel], msgtype));
        };
        if let Err(err) = crate::app::message::of(&post) {
            return Err(unsendable(format!("chat group `{group}`: {err}")));
        }
        // `xvusers`, else what the event's template rule says (a rule may
        // match webhook groups too: there its `users` does not apply).
        let users = match users {
            Some(users) => Some(users),
            None => rule_users
                .map(|text| parse_users(&text, "the template's users"))
                .transpose()
                .map_err(&unsendable)?,
        };
        let Some(users) = users else {
            let parcel = Parcel::new(group, event.id(), event.source().as_str(), post);
            return Ok((vec![parcel], msgtype));
        };
        // One parcel per call of at most 20 users, each remembered once
        // sent; who got each is recorded per user by the destination.
        let parcels = users
            .chunks(MAX_USERS_PER_CALL)
            .enumerate()
            .map(|(call, users)| {
                let source = event.source().as_str();
                let mut post = post.clone();
                post.to = Some(People::new(users.to_vec(), source, event.id(), call));
                let id = format!("{}#users-{}", event.id(), call + 1);
                Parcel::new(Arc::clone(one_to_one), id, source, post).remembered()
            })
            .collect();
        Ok((parcels, msgtype))
    }

    /// Every robot with its chat groups, budget, outbox and DingTalk's latest
    /// answer, and each pool of several robots; URLs masked.
    pub async fn status_view(&self) -> Value {
        let live = self.live();
        let mut view = status_view(&self.delivery.status().await, &live.default_group);
        view["proxies"] = live.proxies.clone();
        view
    }
}

#[async_trait]
impl Sink for DingTalkSink {
    type Config = DingTalkConfig;

    fn name() -> &'static str {
        "sink-dingtalk"
    }

    async fn initialize(config: DingTalkConfig, context: Context) -> Result<Self, BoxError> {
        metrics::describe();
        let sink = Self::new(plan_of(&config)?, context.store().clone()).await?;
        sink.start(&context);
        Ok(sink)
    }

    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
        self.deliver(events).await
    }

    async fn status(&self) -> Option<Value> {
        Some(self.status_view().await)
    }

    async fn reload(&self, config: DingTalkConfig) -> Result<(), BoxError> {
        self.renew(plan_of(&config)?).await
    }
}

/// The plan of a validated config, or every problem in one line.
fn plan_of(config: &DingTalkConfig) -> Result<Plan, BoxError> {
    Plan::build(config).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        problems.join("; ").into()
    })
}

/// The kit's status in the sink's words: robots and chat groups. A robot
/// alone in its chat groups shows its outbox with it; a pool of several
/// robots is listed under `pools`.
fn status_view(status: &Status, default_group: &str) -> Value {
    let outbox_view = |outbox: &connector_sdk::deliver::OutboxStatus| {
        json!({
            "enabled": true,
            "chat_groups": outbox.targets,
            "queued": outbox.queued,
            "max_queued": outbox.max_queued,
            "oldest_queued_secs": outbox.oldest_queued_secs,
            "digests_sent": outbox.digests_sent,
            "events_sent_from_outbox": outbox.events_sent,
            "refused": outbox.refused,
            "last_refused": outbox.last_refused.as_ref().map(|(id, reason)| json!({"event_id": id, "reason": reason})),
        })
    };
    let robots: Vec<Value> = status
        .destinations
        .iter()
        .map(|robot| {
            let mut chat_groups = robot.targets.clone();
            chat_groups.sort_unstable();
            let own = status
                .outboxes
                .iter()
                .find(|outbox| outbox.destinations == [robot.key.as_str()]);
            let last = robot.last_answer.as_ref();
            json!({
                "name": robot.name,
                "chat_groups": chat_groups,
                "url": robot.describe["url"],
                "app": robot.describe.get("app"),
                "signed": robot.describe["signed"],
                "keywords": robot.describe["keywords"],
                "paced": robot.paced,
                "per_minute": robot.limit,
                "sent_in_window": robot.sent_in_window,
                "window_secs": robot.window_secs,
                "cooling_down_for_secs": robot.held_for_secs,
                "refusing": robot.refusing,
                "store_error": robot.store_error,
                "last_errcode": last.and_then(|a| a.code),
                "last_answer": last.map(|a| a.reason.clone()),
                "last_answer_unix_secs": last.and_then(|a| a.unix_secs),
                "outbox": own.map_or_else(|| json!({"enabled": status.outboxes.iter().any(|o| o.destinations.contains(&robot.key))}), outbox_view),
            })
        })
        .collect();
    let pools: Vec<Value> = status
        .outboxes
        .iter()
        .filter(|outbox| outbox.destinations.len() > 1)
        .map(|outbox| {
            json!({
                "chat_groups": outbox.targets,
                "robots": outbox.destination_names,
                "outbox": outbox_view(outbox),
            })
        })
        .collect();
    json!({
        "default_chat_group": default_group,
        "robots": robots,
        "pools": pools,
    })
}

fn log_handled(event: &Event, handed: &Handed, receipt: &Receipt, started: Instant) {
    let outcome = &receipt.outcome;
    let class = outcome.class();
    metrics::outcome(Some(&handed.group), class);
    tracing::info!(
        event_id = %shorten(event.id(), ID_BYTES),
        source = %shorten(event.source(), ID_BYTES),
        chat_group = %handed.group,
        msgtype = %handed.msgtype,
        outcome = class,
        errcode = receipt.code,
        latency_ms = started.elapsed().as_millis() as u64,
        reason = (!outcome.is_accepted()).then(|| outcome.reason()),
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
    metrics::outcome(group, outcome.class());
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
