//! A pool: the destinations that serve a target (a chat group's robots),
//! its outbox, and what it has sent from it. A send takes a slot from
//! whichever destination has one, in turn, so a pool of three robots at 20
//! a minute sends 60 a minute; one that is held or refuses for a reason of
//! its own is passed over while the others carry on. Targets served by the
//! same destinations share one pool, and so one outbox and one order.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::Settings;
use super::destination::Destination;
use super::endpoint::Endpoint;
use super::outbox::Outbox;
use super::storm::Storm;
use crate::store::{GateState, Passage, StoreError, Window};

/// One pool.
pub(crate) struct Pool<D: Destination> {
    /// Its destinations, in configured order.
    pub members: Vec<Arc<Endpoint<D>>>,
    /// Its outbox, when events past the budget are queued.
    pub outbox: Option<Outbox<D::Payload>>,
    /// Its first target: its name in metrics and logs.
    pub name: Arc<str>,
    /// The targets it serves.
    pub targets: Mutex<Vec<Arc<str>>>,
    /// Where the next search for a slot starts, so sends take turns.
    turn: AtomicUsize,
    pub stats: Stats,
    pub settings: Arc<Settings>,
    /// Its recent arrivals: when a storm starts.
    pub storm: Storm,
}

/// What the flusher did, for `/status`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub digests: AtomicU64,
    pub flushed: AtomicU64,
    pub refused: AtomicU64,
    pub last_refused: Mutex<Option<(String, String)>>,
}

impl Stats {
    /// A send from the outbox carried `events` events.
    pub(crate) fn flushed(&self, events: usize) {
        if events > 1 {
            self.digests.fetch_add(1, Ordering::Relaxed);
        }
        self.flushed
            .fetch_add(u64::try_from(events).unwrap_or(0), Ordering::Relaxed);
    }

    /// A queued event refused for good: dropped, loudly.
    pub(crate) fn refused(&self, event_id: &str, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_refused) = Some((event_id.to_owned(), reason.to_owned()));
    }
}

/// The answer to "which destination may send now?".
pub(crate) enum Pick<D> {
    /// This one; its slot is taken.
    Open(Arc<Endpoint<D>>),
    /// None now: the soonest frees in this long.
    Wait(Duration),
    /// Every one is held; the first hold ends in this long.
    Held(Duration),
}

/// Whose share of the budget a send uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum For {
    /// An arriving event: the digests' reserve applies.
    Event,
    /// The flusher: the whole budget.
    Flush,
}

impl<D: Destination> Pool<D> {
    pub(crate) fn new(
        members: Vec<Arc<Endpoint<D>>>,
        outbox: Option<Outbox<D::Payload>>,
        name: Arc<str>,
        settings: Arc<Settings>,
    ) -> Self {
        Self {
            members,
            outbox,
            targets: Mutex::new(vec![Arc::clone(&name)]),
            name,
            turn: AtomicUsize::new(0),
            stats: Stats::default(),
            storm: match &settings.outbox {
                Some(outbox) => Storm::new(outbox.burst, outbox.linger),
                None => Storm::new(0, Duration::ZERO),
            },
            settings,
        }
    }

    /// Takes a slot from the first destination that has one, starting with
    /// the one whose turn it is. Destinations held or refusing are passed
    /// over while another can be asked.
    pub(crate) async fn pick(&self, purpose: For) -> Result<Pick<D>, StoreError> {
        let n = self.members.len();
        let start = if n > 1 {
            self.turn.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        // None usable: ask them all, so that a lone robot is always tried
        // and a hold ends as the store says.
        let any_usable = n > 1 && self.members.iter().any(|m| m.is_usable());
        let mut wait: Option<Duration> = None;
        let mut held: Option<Duration> = None;
        for i in 0..n {
            let member = &self.members[(start + i) % n];
            if any_usable && !member.is_usable() {
                continue;
            }
            let passage = match purpose {
                For::Event => member.budget.for_event().await?,
                For::Flush => member.budget.for_flush().await?,
            };
            match passage {
                Passage::Open { .. } => return Ok(Pick::Open(Arc::clone(member))),
                Passage::Wait(w) => wait = Some(wait.map_or(w, |v| v.min(w))),
                Passage::Held(h) => held = Some(held.map_or(h, |v| v.min(h))),
            }
        }
        Ok(match (wait, held) {
            (Some(wait), _) => Pick::Wait(wait),
            (None, Some(held)) => Pick::Held(held),
            (None, None) => Pick::Wait(Duration::from_secs(1)),
        })
    }

    /// True when a destination other than `tried` may be asked for a slot.
    pub(crate) fn has_another(&self, tried: &Endpoint<D>) -> bool {
        self.members
            .iter()
            .any(|member| !std::ptr::eq(member.as_ref(), tried) && member.is_usable())
    }

    /// The pool's main windows summed (the usable members', or all when
    /// none is): what the flusher paces by. Held while every member is.
    pub(crate) async fn state(&self) -> Result<(GateState, Window), StoreError> {
        let usable: Vec<&Arc<Endpoint<D>>> =
            self.members.iter().filter(|m| !m.is_refusing()).collect();
        let members = if usable.is_empty() {
            self.members.iter().collect()
        } else {
            usable
        };
        let mut total = GateState::default();
        let mut main = Window::new(0, Duration::ZERO);
        let mut held: Option<Duration> = None;
        let mut all_held = true;
        for member in members {
            let state = member.budget.state().await?;
            let window = member.budget.main();
            main.limit = main.limit.saturating_add(window.limit);
            main.per = main.per.max(window.per);
            total.used = total.used.saturating_add(state.used);
            total.next_free_in = match (total.next_free_in, state.next_free_in) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match state.held_for {
                Some(h) => held = Some(held.map_or(h, |v| v.min(h))),
                None => all_held = false,
            }
        }
        total.held_for = if all_held { held } else { None };
        Ok((total, main))
    }

    /// True when every member's budget is enforced.
    pub(crate) fn is_paced(&self) -> bool {
        self.members.iter().all(|m| m.budget.is_paced())
    }

    /// Its digest of the oldest `queued`, by its first member's rule (every
    /// member is the same kind of destination).
    pub(crate) fn digest(
        &self,
        queued: &[&D::Payload],
        seed: &str,
    ) -> Option<super::destination::Digest<D::Payload>> {
        self.members.first()?.destination.digest(queued, seed)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
