//! What a destination is sent for one event (a webhook robot's POST, an app
//! robot's OpenAPI call): the payload that waits in an outbox, and for a
//! one-to-one message, who gets it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::message::digest::Summary;

/// What a robot is sent for one event: the message's exact JSON body, and
/// what a digest needs of it. This is what waits in an outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    /// Its DingTalk type.
    pub msgtype: String,
    /// The message's exact JSON body, for sending it on its own (kept as
    /// text in the store).
    #[serde(with = "utf8")]
    pub body: Bytes,
    /// When it happened (the event's time, else when it arrived), in
    /// milliseconds since the epoch: the time a digest shows.
    #[serde(default)]
    pub at_ms: i64,
    /// What a digest shows of it, when known before it is needed; worked
    /// out from the body otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// For an app robot's one-to-one message: who gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<People>,
}

impl Post {
    /// What a digest shows of it.
    pub fn summary(&self) -> Summary {
        self.summary
            .clone()
            .unwrap_or_else(|| Summary::of(&self.body, self.at_ms))
    }
}

/// Who gets a one-to-one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct People {
    /// Their user ids, at most [`crate::app::MAX_USERS_PER_CALL`].
    pub users: Vec<String>,
    /// The record of who got it: unique per event and call.
    pub ledger: String,
}

impl People {
    /// `users` of the event `event_id` from `source`, call `call` of its
    /// one-to-one message.
    pub fn new(users: Vec<String>, source: &str, event_id: &str, call: usize) -> Self {
        let mut hasher = Sha256::new();
        for part in [source, event_id, &call.to_string()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        Self {
            users,
            ledger: hex::encode(&hasher.finalize()[..16]),
        }
    }
}

/// A body of UTF-8 JSON as text in the store, as bytes in memory.
mod utf8 {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        String::deserialize(deserializer).map(Bytes::from)
    }
}
