//! What a sink hands the kit and gets back: a target and the destinations
//! that serve it ([`Route`]), one event's payload for one target
//! ([`Parcel`]), and what became of it ([`Receipt`]).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::sink::Outcome;

/// A target and the destinations that serve it.
#[derive(Debug)]
pub struct Route<D> {
    /// The target's name (a chat group): what parcels name.
    pub target: String,
    /// Its destinations; at least one. A destination with the key of one
    /// already routed is that one (its budget is shared).
    pub destinations: Vec<D>,
}

impl<D> Route<D> {
    /// `target`, served by `destinations`.
    pub fn new(target: impl Into<String>, destinations: Vec<D>) -> Self {
        Self {
            target: target.into(),
            destinations,
        }
    }
}

/// One event's payload for one target.
#[derive(Debug, Clone)]
pub struct Parcel<P> {
    /// The target, as routed.
    pub target: Arc<str>,
    /// The event's `id`.
    pub event_id: String,
    /// The event's `source`.
    pub source: String,
    /// What to send.
    pub payload: P,
    /// Remember it once sent, so that a redelivery of its event skips it
    /// (see [`Parcel::remembered`]).
    pub remember: bool,
}

impl<P> Parcel<P> {
    /// `payload`, for `target`, of the event `event_id` from `source`.
    pub fn new(
        target: impl Into<Arc<str>>,
        event_id: impl Into<String>,
        source: impl Into<String>,
        payload: P,
    ) -> Self {
        Self {
            target: target.into(),
            event_id: event_id.into(),
            source: source.into(),
            payload,
            remember: false,
        }
    }

    /// The same parcel, remembered once sent (for as long as a Vanus
    /// trigger redelivers, a day): a redelivery of its event is answered
    /// "delivered" for it without a second send. For an event a sink sends
    /// to several targets: when one fails, the event is redelivered, and
    /// only the targets that did not get it are sent to again. (The
    /// runtime's ledger remembers whole events; a queued parcel is
    /// remembered by its outbox anyway.) Costs a store read before and a
    /// durable write after the send.
    pub fn remembered(mut self) -> Self {
        self.remember = true;
        self
    }

    /// The event's identity in its target: an outbox queues it once under
    /// this key, whatever its content.
    pub(crate) fn queue_key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [&*self.source, &*self.event_id, &*self.target] {
            // Length-prefixed so ("a", "bc") and ("ab", "c") differ.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(&hasher.finalize()[..16])
    }
}

/// What became of one parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The answer for it.
    pub outcome: Outcome,
    /// The destination's code for its last send, if any.
    pub code: Option<i64>,
    /// True when it joined an outbox instead of being sent (the outcome is
    /// then [`Outcome::Queued`]: durably queued).
    pub queued: bool,
}
