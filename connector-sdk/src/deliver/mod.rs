//! The delivery kit: what every sink for a rate-limited webhook (a chat
//! robot, a bot, a hook) needs between "this event becomes this payload"
//! and "the destination has it", the same for every sink.
//!
//! A sink describes its destination with one trait, [`Destination`]: how to
//! send one prepared payload and what the answer means (one [`Verdict`]),
//! its budget as one or more sliding windows, and optionally how to merge
//! queued payloads into one digest. It routes each event to a *target* (a
//! chat group) served by one or more destinations (a *pool*: several robots
//! of one group, each with its own budget), and hands the kit one
//! [`Parcel`] per event and target. The kit does the rest:
//!
//! - **budgets** in gates of the connector's store, shared by every target
//!   and, with a shared store, every replica that uses the destination;
//!   part of each window kept for digests, and a burst limit;
//! - **holds** after "too fast", in the store and in memory;
//! - the request's **deadline**: every wait and send fits in it;
//! - a durable, bounded **outbox** per pool, with push-once (a redelivery
//!   is never queued twice), answered 200 once durable;
//! - a **flusher** per outbox, leased so one replica at a time sends it,
//!   spacing its sends so a storm's budget lasts, merging digests;
//! - one **backoff**, `/status` ([`Delivery::status`]) and metrics with
//!   the same names for every sink ([`metrics`]);
//! - **shutdown** through the sink's [`Context`]: the
//!   flushers stop when its shutdown token is cancelled, and the runtime
//!   waits for them before `destroy`.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use connector_sdk::deliver::{Answer, Delivery, Destination, Parcel, Route, Settings, Verdict};
//! # use connector_sdk::store::Window;
//! # use connector_sdk::{Context, async_trait};
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! # struct Body { text: String }
//! # struct Bot { key: String, windows: [Window; 1] }
//! # #[async_trait]
//! # impl Destination for Bot {
//! #     type Payload = Body;
//! #     fn key(&self) -> &str { &self.key }
//! #     fn windows(&self) -> &[Window] { &self.windows }
//! #     async fn send(&self, _: &Body, _: Duration) -> Answer { Answer::from(Verdict::Delivered) }
//! # }
//! # async fn example(context: Context, bot: Bot) -> Result<(), connector_sdk::deliver::StartError> {
//! let delivery = Delivery::new(
//!     context.store().clone(),
//!     Settings::default(),
//!     vec![Route::new("ops", vec![bot])],
//! )
//! .await?;
//! delivery.start(&context);
//! let parcel = Parcel::new("ops", "event-1", "my-source", Body { text: "hello".into() });
//! let receipts = delivery.deliver(vec![parcel], Settings::default().deadline()).await;
//! # let _ = receipts;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod budget;
mod deadline;
mod destination;
mod direct;
mod endpoint;
mod flusher;
pub mod metrics;
mod outbox;
mod parcel;
mod pool;
mod settings;
mod status;
mod storm;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use sha2::{Digest as _, Sha256};

pub use deadline::{ANSWER_RESERVE, Deadline, MIN_ATTEMPT};
pub use destination::{Answer, Blame, Destination, Digest, Retry, SharedBudget, Verdict};
pub use flusher::MAX_PER_DIGEST;
pub use outbox::Entry;
pub use parcel::{Parcel, Receipt, Route};
pub use settings::{OutboxSettings, SettingNames, Settings};
pub use status::{DestinationStatus, LastAnswer, OutboxStatus, Status};
pub use storm::STORM_SPACING;

use budget::Budget;
use direct::Work;
use endpoint::Endpoint;
use outbox::Outbox;
use pool::{Pool, lock};

use crate::sink::{Context, Outcome};
use crate::store::{Store, StoreError};
use crate::text::shorten;

/// Every target, its pool of destinations, and their outboxes' flushers.
pub struct Delivery<D: Destination> {
    /// Where remembered parcels are recorded.
    store: Store,
    targets: HashMap<Arc<str>, Arc<Pool<D>>>,
    pools: Vec<Arc<Pool<D>>>,
    endpoints: Vec<Arc<Endpoint<D>>>,
    settings: Arc<Settings>,
}

impl<D: Destination> std::fmt::Debug for Delivery<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut targets: Vec<&str> = self.targets().collect();
        targets.sort_unstable();
        f.debug_struct("Delivery")
            .field("targets", &targets)
            .field("destinations", &self.endpoints.len())
            .field("settings", &self.settings)
            .finish()
    }
}

/// A route names no destination, or names a target twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A target without destinations.
    #[error("target `{0}` has no destination; give it at least one")]
    NoDestination(String),
    /// A target routed twice.
    #[error("target `{0}` is routed twice; target names must be unique")]
    Twice(String),
}

/// An event names a target that is not routed: the sender's mistake, or a
/// route missing from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{asked}` is not configured; configured: {configured}")]
pub struct NotRouted {
    /// The name asked for, shortened.
    pub asked: String,
    /// Every routed target, sorted, comma-separated.
    pub configured: String,
}

/// The kit could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The routes are wrong.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The store did not answer (an outbox's length, a hold to restore).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<D: Destination> Delivery<D> {
    /// Builds every pool from `routes`, with the kit's state in `store`
    /// (what a previous run queued, and its holds, included). Nothing runs
    /// in the background until [`Delivery::start`].
    pub async fn new(
        store: Store,
        settings: Settings,
        routes: Vec<Route<D>>,
    ) -> Result<Self, StartError> {
        metrics::describe();
        let settings = Arc::new(settings);
        let reserved = settings.outbox.as_ref().map_or(0, |outbox| outbox.reserved);
        let mut endpoints: Vec<Arc<Endpoint<D>>> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut pools: Vec<Arc<Pool<D>>> = Vec::new();
        let mut pool_of_members: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut targets = HashMap::new();
        for route in routes {
            let target: Arc<str> = Arc::from(route.target);
            if targets.contains_key(&target) {
                return Err(RouteError::Twice(target.to_string()).into());
            }
            if route.destinations.is_empty() {
                return Err(RouteError::NoDestination(target.to_string()).into());
            }
            let mut members = Vec::new();
            for destination in route.destinations {
                let key = destination.key().to_owned();
                let at = match by_key.get(&key) {
                    Some(&at) => {
                        lock(&endpoints[at].targets).push(Arc::clone(&target));
                        at
                    }
                    None => {
                        if !destination.paced() {
                            tracing::warn!(target = %target, key, "pacing is OFF for this destination; a real one blocks a sender that goes over its limit");
                        }
                        let budget = Budget::new(
                            store.clone(),
                            &key,
                            destination.windows(),
                            destination.paced(),
                            reserved,
                        )
                        .sharing(destination.shared_budget());
                        if !store.is_shared() {
                            // A hold from before a restart still holds.
                            budget.restore().await?;
                        }
                        endpoints.push(Arc::new(Endpoint::new(
                            destination,
                            budget,
                            Arc::clone(&target),
                            settings.cooldown,
                        )));
                        by_key.insert(key, endpoints.len() - 1);
                        endpoints.len() - 1
                    }
                };
                if !members.contains(&at) {
                    members.push(at);
                }
            }
            let mut member_set = members.clone();
            member_set.sort_unstable();
            let pool = match pool_of_members.get(&member_set) {
                Some(&at) => {
                    lock(&pools[at].targets).push(Arc::clone(&target));
                    Arc::clone(&pools[at])
                }
                None => {
                    let keys: Vec<&str> = members
                        .iter()
                        .map(|&m| endpoints[m].destination.key())
                        .collect();
                    let outbox = match &settings.outbox {
                        Some(outbox) => Some(
                            Outbox::open(
                                store.clone(),
                                &pool_key(&keys),
                                outbox.max_queued,
                                Arc::clone(&target),
                            )
                            .await?,
                        ),
                        None => None,
                    };
                    let pool = Arc::new(Pool::new(
                        members.iter().map(|&m| Arc::clone(&endpoints[m])).collect(),
                        outbox,
                        Arc::clone(&target),
                        Arc::clone(&settings),
                    ));
                    pool_of_members.insert(member_set, pools.len());
                    pools.push(Arc::clone(&pool));
                    pool
                }
            };
            targets.insert(target, pool);
        }
        Ok(Self {
            store,
            targets,
            pools,
            endpoints,
            settings,
        })
    }

    /// Starts one flusher per outbox, on the context's task tracker; they
    /// stop when its shutdown token is cancelled. A flusher first sends
    /// what a previous run left queued; with a shared store, one replica's
    /// flusher at a time works on an outbox. Also puts every metric series
    /// known at start at zero.
    pub fn start(&self, context: &Context) {
        metrics::export_from_the_start(
            self.targets.keys().map(AsRef::as_ref),
            self.pools
                .iter()
                .filter(|pool| pool.outbox.is_some())
                .map(|pool| pool.name.as_ref()),
        );
        let holder = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            fastrand::u32(..)
        );
        for pool in &self.pools {
            if pool.outbox.is_some() {
                context.tasks().spawn(flusher::run(
                    Arc::clone(pool),
                    holder.clone(),
                    context.shutdown().child_token(),
                ));
            } else {
                metrics::outbox_queued(&pool.name, 0);
            }
        }
    }

    /// The kit's settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// True when `target` is routed.
    pub fn serves(&self, target: &str) -> bool {
        self.targets.contains_key(target)
    }

    /// The routed target named `target`, shared (cheap to clone).
    pub fn target(&self, target: &str) -> Option<Arc<str>> {
        self.targets
            .get_key_value(target)
            .map(|(name, _)| Arc::clone(name))
    }

    /// Every routed target's name.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(AsRef::as_ref)
    }

    /// The routed target named `asked`, or why there is none (naming every
    /// routed one), for the sink's 400.
    pub fn route(&self, asked: &str) -> Result<Arc<str>, NotRouted> {
        self.target(asked).ok_or_else(|| {
            let mut configured: Vec<&str> = self.targets().collect();
            configured.sort_unstable();
            NotRouted {
                asked: shorten(asked, direct::ID_BYTES).into_owned(),
                configured: configured.join(", "),
            }
        })
    }

    /// Delivers one request's parcels and reports what became of each, in
    /// order. Pools are served concurrently; one pool's parcels in order.
    /// A parcel for a target not routed is answered "not handled" (route
    /// first, with [`Delivery::route`]).
    pub async fn deliver(
        &self,
        parcels: Vec<Parcel<D::Payload>>,
        deadline: Deadline,
    ) -> Vec<Receipt> {
        let count = parcels.len();
        // One queue per pool, in arrival order.
        let mut queues: Vec<PoolQueue<D>> = Vec::new();
        let mut receipts: Vec<Option<Receipt>> = vec![None; count];
        for (index, parcel) in parcels.into_iter().enumerate() {
            let Some(pool) = self.targets.get(&parcel.target) else {
                continue;
            };
            let work = (index, Work::new(parcel));
            match queues.iter_mut().find(|(p, _)| Arc::ptr_eq(p, pool)) {
                Some((_, queue)) => queue.push(work),
                None => queues.push((Arc::clone(pool), vec![work])),
            }
        }
        let store = &self.store;
        let delivered = join_all(queues.into_iter().map(|(pool, works)| async move {
            let (indexes, works): (Vec<usize>, Vec<_>) = works.into_iter().unzip();
            let receipts = pool.deliver(works, deadline, store).await;
            indexes.into_iter().zip(receipts).collect::<Vec<_>>()
        }))
        .await;
        for (index, receipt) in delivered.into_iter().flatten() {
            receipts[index] = Some(receipt);
        }
        fail_closed(receipts)
    }

    /// Delivers one request's events as the sink prepared them: each a
    /// parcel, or the outcome of an event that can never be sent (its data
    /// does not fit, its target is not routed), which reaches no
    /// destination. One receipt per event, in order; the parcels' as
    /// [`Delivery::deliver`] gives them.
    pub async fn deliver_each(
        &self,
        prepared: Vec<Result<Parcel<D::Payload>, Outcome>>,
        deadline: Deadline,
    ) -> Vec<Receipt> {
        let mut receipts: Vec<Option<Receipt>> = vec![None; prepared.len()];
        let (mut parcels, mut indexes) = (Vec::new(), Vec::new());
        for (index, prepared) in prepared.into_iter().enumerate() {
            match prepared {
                Ok(parcel) => {
                    parcels.push(parcel);
                    indexes.push(index);
                }
                Err(outcome) => {
                    receipts[index] = Some(Receipt {
                        outcome,
                        code: None,
                        queued: false,
                    });
                }
            }
        }
        let delivered = self.deliver(parcels, deadline).await;
        for (index, receipt) in indexes.into_iter().zip(delivered) {
            receipts[index] = Some(receipt);
        }
        fail_closed(receipts)
    }

    /// Every destination and outbox as they are now, for `/status`.
    pub async fn status(&self) -> Status {
        let destinations = join_all(
            self.endpoints
                .iter()
                .map(|endpoint| status::destination(endpoint)),
        )
        .await;
        let outboxes = join_all(
            self.pools
                .iter()
                .filter(|pool| pool.outbox.is_some())
                .map(|pool| status::outbox(pool)),
        )
        .await;
        Status {
            destinations,
            outboxes,
        }
    }
}

/// Every receipt, one never filled in answered "retry later": it is not a
/// delivery.
fn fail_closed(receipts: Vec<Option<Receipt>>) -> Vec<Receipt> {
    receipts
        .into_iter()
        .map(|receipt| {
            receipt.unwrap_or_else(|| Receipt {
                outcome: Outcome::unavailable(
                    crate::Unavailable::ServiceUnavailable,
                    "the event was not handled; retry later",
                ),
                code: None,
                queued: false,
            })
        })
        .collect()
}

/// One pool's parcels of a request, each with its index in the request.
type PoolQueue<D> = (
    Arc<Pool<D>>,
    Vec<(usize, Work<<D as Destination>::Payload>)>,
);

/// An outbox's store key: its destination's key when it has one (so what a
/// robot queued before pools existed is found), else a hash of its
/// destinations' keys in order.
fn pool_key(keys: &[&str]) -> String {
    if let [one] = keys {
        return (*one).to_owned();
    }
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for key in sorted {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
    }
    format!("pool-{}", hex::encode(&hasher.finalize()[..12]))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This machine's name (a pod's name in Kubernetes), for the flusher's lease.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sink".to_owned())
}

#[cfg(test)]
mod tests;
