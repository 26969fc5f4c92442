//! The shared backend: Redis (`store.redis.url`), so several replicas of a
//! connector share one state: the ledger (a redelivery to any replica is
//! answered without a post), each destination's send log and hold (the
//! budget is one, whichever replica sends), and the outboxes (what one
//! replica queued survives it).
//!
//! Every decision that reads and writes is one Lua script (`scripts.rs`),
//! atomic in Redis, and gates read Redis's own `TIME`, so the replicas'
//! clocks do not matter. A sliding log (a sorted set of send times), not
//! GCRA: GCRA with a burst of 20 lets 40 through in a minute.
//!
//! The connection is a `redis` connection manager, which reconnects by
//! itself; every call has a timeout. A call that fails or times out is a
//! [`StoreError`]: the caller answers "retry later" and sends nothing, so an
//! outage never costs a robot its budget.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::{
    Backend, GateState, Once, OpenError, Passage, Pushed, QueueItem, StoreError, Window, millis,
};

mod scripts;
#[cfg(test)]
mod tests;

// Durations go to Redis as whole milliseconds, at least 1: it refuses an
// expiry of 0 (`.max(1)` at each `millis` call).

const NAME: &str = "redis";

/// `store.redis`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`, or `rediss://` for TLS.
    pub url: String,
    /// Prefix of every key (default: the sink's name), so several connectors
    /// can share one Redis.
    pub key_prefix: Option<String>,
    /// The longest a call may take, in milliseconds. Default 500: a request
    /// makes a few calls around the sink's own time (the ledger's claim and
    /// record), and must be answered within the sender's 5 s.
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: None,
            timeout_ms: 500,
        }
    }
}

impl RedisConfig {
    /// The URL without its password: safe to print. A password can be in
    /// the user info (`redis://:pw@host`) or, for a Unix socket, in the
    /// query (`redis+unix:///run/redis.sock?pass=pw`).
    pub fn masked_url(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.url) else {
            return "(not a URL)".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(name, value)| {
                    let secret = matches!(name.as_ref(), "pass" | "password");
                    let value = if secret { "***".into() } else { value };
                    (name.into_owned(), value.into_owned())
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.masked_url())
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The Redis backend: state shared by every replica, each decision one Lua
/// script timed by Redis's own clock, every call under a timeout.
pub(crate) struct Redis {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    shown: String,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// A backend on `config.url`, keys under `config.key_prefix` (else
    /// `default_prefix`). Connects lazily: an unreachable Redis is an error
    /// of the first calls, not of start-up, and the connection manager keeps
    /// reconnecting; only a URL that is not Redis's stops start-up.
    pub(crate) fn connect(config: &RedisConfig, default_prefix: &str) -> Result<Self, OpenError> {
        let shown = config.masked_url();
        let problem = |reason: String| OpenError {
            setting: format!("store.redis.url {shown}"),
            reason,
        };
        if config.url.starts_with("rediss://") {
            // TLS through rustls: use ring, as the rest of the process does.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(config.url.as_str()).map_err(|err| {
            problem(format!(
                "is not a Redis URL ({}); write redis://[:password@]host:port/db, or rediss:// for TLS",
                err.category()
            ))
        })?;
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|err| problem(format!("cannot set up the connection: {}", err.category())))?;
        Ok(Self {
            connection,
            prefix: config
                .key_prefix
                .clone()
                .unwrap_or_else(|| default_prefix.to_owned()),
            timeout,
            shown,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    /// Runs one call with the timeout; failures become [`StoreError`]s that
    /// say what to check and never show the password.
    async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::unavailable(
                NAME,
                format!("{} ({err})", self.shown),
            )),
            Err(_) => Err(StoreError::unavailable(
                NAME,
                format!(
                    "{} did not answer within {} ms (store.redis.timeout_ms)",
                    self.shown,
                    self.timeout.as_millis()
                ),
            )),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// A reply of the right shape that no script of this connector gives.
    fn strange(&self, call: &str, reply: impl fmt::Debug) -> StoreError {
        StoreError::unavailable(
            NAME,
            format!(
                "{} answered {call} with {reply:?}, which no script of this connector returns; check that store.redis.url is a Redis server",
                self.shown
            ),
        )
    }
}

fn positive_ms(ms: i64) -> Option<Duration> {
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

#[async_trait]
impl Backend for Redis {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn();
        self.call(conn.get(self.key(key))).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.call(conn.pset_ex(self.key(key), value, millis(ttl).max(1)))
            .await
    }

    async fn put_lazily(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        // Redis's own persistence settings decide durability either way.
        self.put(key, value, ttl).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(millis(ttl).max(1));
        self.call(cmd.query_async(&mut conn)).await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.call(conn.del(self.key(key))).await
    }

    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::LEASE;
        let mut invocation = script.key(self.key(key));
        invocation.arg(holder).arg(millis(ttl).max(1));
        let taken: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(taken == 1)
    }

    async fn push(
        &self,
        queue: &str,
        item: Vec<u8>,
        max_len: u64,
        once: Option<Once<'_>>,
    ) -> Result<Pushed, StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::PUSH;
        let mut invocation = script.key(self.key(&format!("{queue}:items")));
        invocation
            .key(self.key(&format!("{queue}:seq")))
            .arg(max_len)
            .arg(item);
        if let Some(once) = once {
            invocation
                .key(self.key(once.key))
                .arg(millis(once.ttl).max(1));
        }
        let (code, len): (i64, u64) = self.call(invocation.invoke_async(&mut conn)).await?;
        match code {
            0 => Ok(Pushed::Full { len }),
            1 => Ok(Pushed::Queued { len }),
            2 => Ok(Pushed::Already),
            _ => Err(self.strange("a push", (code, len))),
        }
    }

    async fn peek(&self, queue: &str, max_items: usize) -> Result<Vec<QueueItem>, StoreError> {
        if max_items == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let stop = isize::try_from(max_items).unwrap_or(isize::MAX) - 1;
        let raw: Vec<Vec<u8>> = self
            .call(conn.lrange(self.key(&format!("{queue}:items")), 0, stop))
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|item| {
                let colon = item.iter().position(|b| *b == b':')?;
                let seq = std::str::from_utf8(&item[..colon]).ok()?.parse().ok()?;
                Some(QueueItem {
                    seq,
                    data: item[colon + 1..].to_vec(),
                })
            })
            .collect())
    }

    async fn pop_through(&self, queue: &str, seq: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::POP_THROUGH;
        let mut invocation = script.key(self.key(&format!("{queue}:items")));
        invocation.arg(seq);
        let _popped: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn len(&self, queue: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        self.call(conn.llen(self.key(&format!("{queue}:items"))))
            .await
    }

    async fn pass(&self, gate: &str, windows: &[Window]) -> Result<Passage, StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::PASS;
        let mut invocation = script.key(self.key(&format!("{gate}:log")));
        invocation
            .key(self.key(&format!("{gate}:hold")))
            .key(self.key(&format!("{gate}:n")));
        let longest = windows.iter().map(|w| w.per).max().unwrap_or_default();
        invocation.arg(millis(longest).max(1));
        for window in windows {
            invocation.arg(window.limit).arg(millis(window.per).max(1));
        }
        let (code, value): (i64, i64) = self.call(invocation.invoke_async(&mut conn)).await?;
        let wait = positive_ms(value).unwrap_or(Duration::from_millis(1));
        match code {
            1 => Ok(Passage::Open {
                used: u32::try_from(value).unwrap_or(u32::MAX),
            }),
            2 => Ok(Passage::Held(wait)),
            3 => Ok(Passage::Wait(wait)),
            _ => Err(self.strange("a gate pass", (code, value))),
        }
    }

    async fn refund(&self, gate: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::REFUND;
        let invocation = script.key(self.key(&format!("{gate}:log")));
        let _: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn hold(&self, gate: &str, duration: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::HOLD;
        let mut invocation = script.key(self.key(&format!("{gate}:hold")));
        invocation.arg(millis(duration).max(1));
        let _: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn gate_state(&self, gate: &str, window: Duration) -> Result<GateState, StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::STATE;
        let mut invocation = script.key(self.key(&format!("{gate}:log")));
        invocation
            .key(self.key(&format!("{gate}:hold")))
            .arg(millis(window).max(1));
        let (used, next_free, held): (u32, i64, i64) =
            self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(GateState {
            used,
            next_free_in: positive_ms(next_free),
            held_for: positive_ms(held),
        })
    }

    async fn health(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let pong: String = self.call(redis::cmd("PING").query_async(&mut conn)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::unavailable(
                NAME,
                format!("{} answered PING with {pong:?}", self.shown),
            ))
        }
    }

    async fn close(&self) {
        // The connection closes when the last handle goes.
    }
}
