//! What the kit shows of every destination and outbox on `/status`: typed,
//! so each sink shapes its own view (with its own words: a robot, a chat
//! group) and a new sink can serve these as they are. Never a secret: a
//! destination describes itself through [`Destination::describe`].

use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::destination::Destination;
use super::endpoint::Endpoint;
use super::now_ms;
use super::pool::{Pool, lock};

/// Every destination and outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Each destination once, in the order routes named them.
    pub destinations: Vec<DestinationStatus>,
    /// Each outbox (one per pool).
    pub outboxes: Vec<OutboxStatus>,
}

/// One destination.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationStatus {
    /// Its store key.
    pub key: String,
    /// Its name ([`Destination::name`]).
    pub name: String,
    /// The targets it serves.
    pub targets: Vec<String>,
    /// Whether its budget is enforced.
    pub paced: bool,
    /// Its main window's limit.
    pub limit: u32,
    /// Its main window's length, in seconds.
    pub window_secs: u64,
    /// Sends in the main window now; `None` when the store did not answer.
    pub sent_in_window: Option<u32>,
    /// What is left of its hold, in seconds, rounded up.
    pub held_for_secs: Option<f64>,
    /// Why its state could not be read.
    pub store_error: Option<String>,
    /// Its refusal of its own, while it is passed over for it.
    pub refusing: Option<String>,
    /// What it said last.
    pub last_answer: Option<LastAnswer>,
    /// What it says of itself ([`Destination::describe`]).
    pub describe: serde_json::Value,
}

/// What a destination said last.
#[derive(Debug, Clone, Serialize)]
pub struct LastAnswer {
    /// Its code, if any.
    pub code: Option<i64>,
    /// Its verdict's reason, or "ok".
    pub reason: String,
    /// When, in seconds since the epoch.
    pub unix_secs: Option<u64>,
}

/// One outbox.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxStatus {
    /// Its name (its first target).
    pub name: String,
    /// The targets whose events it holds.
    pub targets: Vec<String>,
    /// The keys of the destinations that send it.
    pub destinations: Vec<String>,
    /// Their names, in the same order.
    pub destination_names: Vec<String>,
    /// Entries queued; `None` when the store did not answer.
    pub queued: Option<u64>,
    /// Entries it may hold.
    pub max_queued: u64,
    /// How long the oldest entry has waited, in seconds.
    pub oldest_queued_secs: Option<i64>,
    /// Digests sent by this process.
    pub digests_sent: u64,
    /// Events sent from it by this process.
    pub events_sent: u64,
    /// Queued events refused for good and dropped.
    pub refused: u64,
    /// The last of those: its event id and why.
    pub last_refused: Option<(String, String)>,
}

pub(super) async fn destination<D: Destination>(endpoint: &Endpoint<D>) -> DestinationStatus {
    let state = endpoint.budget.state().await;
    let main = endpoint.budget.main();
    let last = endpoint.last_answer();
    DestinationStatus {
        key: endpoint.destination.key().to_owned(),
        name: endpoint.name.to_string(),
        targets: lock(&endpoint.targets)
            .iter()
            .map(ToString::to_string)
            .collect(),
        paced: endpoint.budget.is_paced(),
        limit: main.limit,
        window_secs: main.per.as_secs(),
        sent_in_window: state.as_ref().ok().map(|s| s.used),
        held_for_secs: state
            .as_ref()
            .ok()
            .and_then(|s| s.held_for)
            .map(|held| held.as_secs_f64().ceil()),
        store_error: state.as_ref().err().map(ToString::to_string),
        refusing: endpoint.refusal(),
        last_answer: last.map(|last| LastAnswer {
            code: last.code,
            reason: last.reason,
            unix_secs: last
                .at
                .duration_since(UNIX_EPOCH)
                .ok()
                .as_ref()
                .map(Duration::as_secs),
        }),
        describe: endpoint.destination.describe(),
    }
}

pub(super) async fn outbox<D: Destination>(pool: &Pool<D>) -> OutboxStatus {
    let (queued, oldest, max_queued) = match &pool.outbox {
        None => (None, None, 0),
        Some(outbox) => {
            let oldest = outbox.peek(1).await.ok().and_then(|head| {
                head.first()
                    .and_then(|q| q.entry.as_ref())
                    .map(|e| (now_ms() - e.queued_at_ms).max(0) / 1_000)
            });
            (outbox.len().await.ok(), oldest, outbox.max_queued())
        }
    };
    OutboxStatus {
        name: pool.name.to_string(),
        targets: lock(&pool.targets)
            .iter()
            .map(ToString::to_string)
            .collect(),
        destinations: pool
            .members
            .iter()
            .map(|m| m.destination.key().to_owned())
            .collect(),
        destination_names: pool.members.iter().map(|m| m.name.to_string()).collect(),
        queued,
        max_queued,
        oldest_queued_secs: oldest,
        digests_sent: pool.stats.digests.load(Ordering::Relaxed),
        events_sent: pool.stats.flushed.load(Ordering::Relaxed),
        refused: pool.stats.refused.load(Ordering::Relaxed),
        last_refused: lock(&pool.stats.last_refused).clone(),
    }
}
