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
mod routing;
mod settings;
mod status;
mod storm;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
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

use direct::Work;
use pool::{Pool, lock};
use routing::{Routing, build};

use crate::sink::{Context, Outcome};
use crate::store::{Store, StoreError};
use crate::text::shorten;

/// Every target, its pool of destinations, and their outboxes' flushers.
pub struct Delivery<D: Destination> {
    /// Where remembered parcels are recorded.
    store: Store,
    /// The routing now; [`Delivery::renew`] swaps it whole, so a request
    /// finishes on the routing it started with.
    routing: RwLock<Arc<Routing<D>>>,
    settings: Arc<Settings>,
    /// Where new outboxes' flushers start, once [`Delivery::start`] ran.
    started: Mutex<Option<(Context, String)>>,
}

impl<D: Destination> std::fmt::Debug for Delivery<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut targets: Vec<Arc<str>> = self.targets();
        targets.sort_unstable();
        f.debug_struct("Delivery")
            .field("targets", &targets)
            .field("destinations", &self.routing().endpoints.len())
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
        let routing = build(&store, &settings, routes, &Routing::empty()).await?;
        Ok(Self {
            store,
            routing: RwLock::new(Arc::new(routing)),
            settings,
            started: Mutex::new(None),
        })
    }

    /// Swaps the routing for `routes` (a live reload), keeping the kit's
    /// settings. A destination already known by its key keeps its endpoint
    /// (its budget, holds and last answer), told of the new one with
    /// [`Destination::adopt`] (a new secret applies to what is queued too);
    /// a pool of the same destinations keeps its outbox and flusher. New
    /// pools get an outbox and, once started, a flusher. A pool no longer
    /// routed keeps its flusher, with its last settings, so what its outbox
    /// holds is still sent. Requests in flight finish on the routing they
    /// started with. On an error nothing changes.
    pub async fn renew(&self, routes: Vec<Route<D>>) -> Result<(), StartError> {
        let old = self.routing();
        let routing = Arc::new(build(&self.store, &self.settings, routes, &old).await?);
        let started = lock(&self.started).clone();
        if let Some((context, holder)) = started {
            let known: Vec<&Arc<Pool<D>>> = old.pools.iter().chain(&old.retired_pools).collect();
            let fresh: Vec<&Arc<Pool<D>>> = routing
                .pools
                .iter()
                .filter(|pool| !known.iter().any(|k| Arc::ptr_eq(k, pool)))
                .collect();
            self.start_pools(&fresh, &context, &holder);
        }
        *self.routing.write().unwrap_or_else(PoisonError::into_inner) = routing;
        Ok(())
    }

    fn routing(&self) -> Arc<Routing<D>> {
        Arc::clone(&self.routing.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts one flusher per outbox, on the context's task tracker; they
    /// stop when its shutdown token is cancelled. A flusher first sends
    /// what a previous run left queued; with a shared store, one replica's
    /// flusher at a time works on an outbox. Also puts every metric series
    /// known at start at zero.
    pub fn start(&self, context: &Context) {
        let routing = self.routing();
        let holder = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            fastrand::u32(..)
        );
        let pools: Vec<&Arc<Pool<D>>> = routing.pools.iter().collect();
        self.start_pools(&pools, context, &holder);
        *lock(&self.started) = Some((context.clone(), holder));
    }

    fn start_pools(&self, pools: &[&Arc<Pool<D>>], context: &Context, holder: &str) {
        metrics::export_from_the_start(
            pools
                .iter()
                .flat_map(|pool| lock(&pool.targets).clone())
                .collect::<Vec<_>>()
                .iter()
                .map(AsRef::as_ref),
            pools
                .iter()
                .filter(|pool| pool.outbox.is_some())
                .map(|pool| pool.name.as_ref()),
        );
        for pool in pools {
            if pool.outbox.is_some() {
                context.tasks().spawn(flusher::run(
                    Arc::clone(pool),
                    holder.to_owned(),
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
        self.routing().targets.contains_key(target)
    }

    /// The routed target named `target`, shared (cheap to clone).
    pub fn target(&self, target: &str) -> Option<Arc<str>> {
        self.routing()
            .targets
            .get_key_value(target)
            .map(|(name, _)| Arc::clone(name))
    }

    /// Every routed target's name.
    pub fn targets(&self) -> Vec<Arc<str>> {
        self.routing().targets.keys().cloned().collect()
    }

    /// The routed target named `asked`, or why there is none (naming every
    /// routed one), for the sink's 400.
    pub fn route(&self, asked: &str) -> Result<Arc<str>, NotRouted> {
        self.target(asked).ok_or_else(|| {
            let mut configured: Vec<Arc<str>> = self.targets();
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
        let routing = self.routing();
        for (index, parcel) in parcels.into_iter().enumerate() {
            let Some(pool) = routing.targets.get(&parcel.target) else {
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
        let routing = self.routing();
        let destinations = join_all(
            routing
                .endpoints
                .iter()
                .map(|endpoint| status::destination(endpoint)),
        )
        .await;
        let outboxes = join_all(
            routing
                .pools
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
