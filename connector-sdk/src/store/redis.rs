//! The shared backend: Redis (`store.redis.url`), so several replicas of a
//! connector share one state: the ledger (a redelivery to any replica is
//! answered without a post), each destination's send log and hold (the
//! budget is one, whichever replica sends), and the outboxes (what one
//! replica queued survives it).
//!
//! Every decision that reads and writes is one Lua script, atomic in Redis,
//! and gates read Redis's own `TIME`, so the replicas' clocks do not
//! matter. A sliding log (a sorted set of send times), not GCRA: GCRA with a
//! burst of 20 lets 40 through in a minute.
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

use super::{Backend, GateState, Once, OpenError, Passage, Pushed, QueueItem, StoreError, millis};

// Durations go to Redis as whole milliseconds, at least 1: it refuses an
// expiry of 0 (`.max(1)` at each `millis` call).

const NAME: &str = "redis";

/// Each script once, with its hash, so a call sends `EVALSHA` (the
/// connection loads it again after a Redis restart).
mod scripts {
    use std::sync::LazyLock;

    use redis::Script;

    pub(super) static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(super::LEASE));
    pub(super) static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(super::PUSH));
    pub(super) static POP_THROUGH: LazyLock<Script> =
        LazyLock::new(|| Script::new(super::POP_THROUGH));
    pub(super) static PASS: LazyLock<Script> = LazyLock::new(|| Script::new(super::PASS));
    pub(super) static HOLD: LazyLock<Script> = LazyLock::new(|| Script::new(super::HOLD));
    pub(super) static STATE: LazyLock<Script> = LazyLock::new(|| Script::new(super::STATE));
}

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
pub struct Redis {
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
    pub fn connect(config: &RedisConfig, default_prefix: &str) -> Result<Self, OpenError> {
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

/// Appends unless full (or, with a once key KEYS[3], unless it is set, and
/// then sets it for ARGV[3] ms); items are `seq:data`, `seq` from a
/// counter. Answers {1, len} queued, {0, len} full, {2, 0} already.
const PUSH: &str = r"
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return {2, 0} end
local len = redis.call('LLEN', KEYS[1])
if len >= tonumber(ARGV[1]) then return {0, len} end
local seq = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], seq .. ':' .. ARGV[2])
if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
return {1, len + 1}
";

/// Pops head items while their `seq` is at most ARGV[1]; an item that is
/// not `seq:data` (`peek` skips it too) goes with them.
const POP_THROUGH: &str = r"
local popped = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local seq = tonumber(string.match(head, '^(%d+):'))
  if seq and seq > tonumber(ARGV[1]) then break end
  redis.call('LPOP', KEYS[1])
  popped = popped + 1
end
return popped
";

/// The gate rule of `gate.rs`, in Redis: KEYS = log, hold, counter;
/// ARGV = limit, window ms. Answers {1, used} open, {2, ms} held,
/// {3, ms} wait.
const PASS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local held = redis.call('PTTL', KEYS[2])
if held > 0 then return {2, held} end
local used = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if limit < 1 then return {3, window} end
if used < limit then
  local n = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[1], now, now .. ':' .. n)
  redis.call('PEXPIRE', KEYS[1], window)
  redis.call('PEXPIRE', KEYS[3], window)
  return {1, used + 1}
end
local nth = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
local wait = tonumber(nth[2]) + window - now
if wait < 1 then wait = 1 end
return {3, wait}
";

/// Holds for ARGV[1] ms unless held longer already.
const HOLD: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
";

/// KEYS = log, hold; ARGV = window ms. Answers {used, ms until the oldest
/// leaves or -1, ms held or -1}.
const STATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_free = -1
if first[2] then next_free = tonumber(first[2]) + window - now end
return {used, next_free, redis.call('PTTL', KEYS[2])}
";

/// Takes or renews a lease: KEYS[1]; ARGV = holder, ttl ms.
const LEASE: &str = r"
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

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

    async fn pass(&self, gate: &str, limit: u32, window: Duration) -> Result<Passage, StoreError> {
        let mut conn = self.conn();
        let script = &*scripts::PASS;
        let mut invocation = script.key(self.key(&format!("{gate}:log")));
        invocation
            .key(self.key(&format!("{gate}:hold")))
            .key(self.key(&format!("{gate}:n")))
            .arg(limit)
            .arg(millis(window).max(1));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::testing::RedisServer;
    use std::sync::Arc;

    fn backend(server: &RedisServer, prefix: &str) -> Arc<Redis> {
        let config = RedisConfig {
            url: server.url(),
            ..RedisConfig::default()
        };
        Arc::new(Redis::connect(&config, prefix).expect("connects"))
    }

    fn store(server: &RedisServer, prefix: &str) -> Store {
        Store::new(backend(server, prefix))
    }

    #[tokio::test]
    async fn keeps_the_store_contract() {
        let server = RedisServer::start();
        crate::store::contract::check_all(&store(&server, "t")).await;
    }

    #[tokio::test]
    async fn replicas_share_one_budget_and_one_hold() {
        let server = RedisServer::start();
        let (one, two) = (store(&server, "bot"), store(&server, "bot"));
        let window = Duration::from_secs(60);
        // 40 sends race for a budget of 20 from two replicas: exactly 20 pass.
        let mut racing = tokio::task::JoinSet::new();
        for i in 0..40 {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            racing.spawn(async move { store.pass("g", 20, window).await });
        }
        let mut open = 0;
        while let Some(passage) = racing.join_next().await {
            match passage.expect("joins").expect("answers") {
                Passage::Open { .. } => open += 1,
                Passage::Wait(wait) => assert!(wait > Duration::from_secs(58), "{wait:?}"),
                Passage::Held(_) => panic!("not held"),
            }
        }
        assert_eq!(open, 20);
        assert_eq!(one.gate_state("g", window).await.expect("state").used, 20);

        one.hold("h", Duration::from_secs(600)).await.expect("hold");
        assert!(matches!(
            two.pass("h", 20, window).await,
            Ok(Passage::Held(held)) if held > Duration::from_secs(599)
        ));
        let state = two.gate_state("h", window).await.expect("state");
        assert!(state.held_for.is_some() && state.used == 0);
        // Another prefix is another connector.
        assert!(matches!(
            store(&server, "other").pass("h", 20, window).await,
            Ok(Passage::Open { used: 1 })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_in_time_not_a_hang() {
        let mut server = RedisServer::start();
        let redis = backend(&server, "t");
        let store = Store::new(Arc::clone(&redis) as Arc<dyn Backend>);
        redis.health().await.expect("up");
        server.stop();
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            store.pass("g", 1, Duration::from_secs(60)),
        )
        .await
        .expect("an error in time, not a hang")
        .expect_err("down");
        assert!(err.to_string().contains("redis"), "{err}");
        assert!(redis.health().await.is_err());
        server.restart();
        let mut healthy = false;
        for _ in 0..50 {
            if redis.health().await.is_ok() {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(healthy, "reconnected by itself");
    }

    /// A server speaking just enough of Redis's protocol to answer every
    /// script call with `reply` (and any other command `+OK`); its URL.
    async fn answering_scripts_with(reply: &'static str) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

        async fn number(
            socket: &mut BufReader<tokio::net::TcpStream>,
            kind: char,
        ) -> Option<usize> {
            let mut line = String::new();
            socket.read_line(&mut line).await.ok()?;
            line.trim_end().strip_prefix(kind)?.parse().ok()
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("redis://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    // A command: `*<args>`, then each as `$<len>` and its bytes.
                    while let Some(args) = number(&mut socket, '*').await {
                        let mut name = Vec::new();
                        for at in 0..args {
                            let Some(len) = number(&mut socket, '$').await else {
                                return;
                            };
                            let mut arg = vec![0; len + 2];
                            if socket.read_exact(&mut arg).await.is_err() {
                                return;
                            }
                            if at == 0 {
                                name = arg[..len].to_ascii_uppercase();
                            }
                        }
                        let answer = if name.starts_with(b"EVAL") {
                            reply
                        } else {
                            "+OK\r\n"
                        };
                        if socket.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn a_reply_no_script_gives_is_an_error_not_a_default() {
        let connect = |url: String| {
            let config = RedisConfig {
                url,
                ..RedisConfig::default()
            };
            Store::new(Arc::new(Redis::connect(&config, "t").expect("connects")))
        };
        let window = Duration::from_secs(60);
        let not_a_pair = connect(answering_scripts_with(":5\r\n").await);
        let passed = not_a_pair.pass("g", 1, window).await;
        assert!(
            matches!(passed, Err(StoreError::Unavailable { .. })),
            "{passed:?}"
        );
        let unknown_code = connect(answering_scripts_with("*2\r\n:7\r\n:1\r\n").await);
        let pushed = unknown_code.push("q", b"x".to_vec(), 10, None).await;
        assert!(
            matches!(pushed, Err(StoreError::Unavailable { .. })),
            "{pushed:?}"
        );
        let passed = unknown_code.pass("g", 1, window).await;
        assert!(
            matches!(passed, Err(StoreError::Unavailable { .. })),
            "{passed:?}"
        );
        let too_short = connect(answering_scripts_with("*2\r\n:1\r\n:2\r\n").await);
        let state = too_short.gate_state("g", window).await;
        assert!(
            matches!(state, Err(StoreError::Unavailable { .. })),
            "{state:?}"
        );
    }

    #[test]
    fn the_password_never_shows() {
        let config = RedisConfig {
            url: "redis://:hunter2@10.0.0.1:6379/2".into(),
            ..RedisConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.masked_url(), "redis://:***@10.0.0.1:6379/2");
        let socket = RedisConfig {
            url: "redis+unix:///run/redis.sock?db=1&pass=hunter2".into(),
            ..RedisConfig::default()
        };
        assert_eq!(
            socket.masked_url(),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        let bad = RedisConfig {
            url: "http://:hunter2@x".into(),
            ..RedisConfig::default()
        };
        let err = Redis::connect(&bad, "p").expect_err("not redis");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().starts_with("store.redis.url"), "{err}");
    }
}
