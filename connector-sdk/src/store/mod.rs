//! Durable state for a connector: what a sink must remember between
//! requests, across restarts and, with a shared backend, across replicas.
//!
//! Three facilities, each something a rate-limited webhook sink needs:
//!
//! - **records**: a value under a key, with an expiry (the runtime's
//!   delivered-ledger lives here);
//! - **queues**: ordered, durable, bounded lists (an outbox of events
//!   accepted while the destination's budget is used up);
//! - **gates**: an atomic "may I send now?" over a sliding window, with
//!   holds (a destination's send budget, shared by everyone who sends to it,
//!   and its cool-down after the destination said "too fast").
//!
//! The runtime opens one store at start-up ([`open`]: `store.path`, an
//! embedded redb database by default, or `store.redis`) and hands the sink
//! its own namespace of it, a [`Store`], in [`crate::Context`]. Keys are
//! namespaced ([`Opened::scope`]), so the runtime's keys and the sink's
//! never collide; only the [`Opened`] store, which the runtime keeps, can
//! be probed or closed. Every operation either completes durably or
//! returns a [`StoreError`]: a sink answers "retry later" then, never "done".

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(feature = "testing")]
pub mod contract;
mod embedded;
mod gate;
mod health;
#[cfg(feature = "testing")]
mod memory;
mod open;
mod redis;

pub use embedded::Embedded;
pub(crate) use health::StoreHealth;
#[cfg(feature = "testing")]
pub use memory::{Memory, TokioClock};
#[cfg(feature = "testing")]
pub(crate) use open::open_with_clock;
pub use open::{Opened, open};
pub(crate) use redis::Redis;
pub use redis::RedisConfig;

/// The `store` section of the runtime's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// The directory of the embedded database, created if missing.
    /// Default `/vanus-connect/data`.
    pub path: PathBuf,
    /// Records kept at most, and the ledger's marks at most (each bound on
    /// its own); past it the ones closest to expiry go first. Default
    /// 1,000,000.
    pub max_records: u64,
    /// A Redis shared by every replica, instead of the embedded database.
    pub redis: Option<RedisConfig>,
    /// Once the store has been down this long, `/healthz` fails too (503),
    /// so the orchestrator restarts the process; 0: never. Default 60.
    pub unhealthy_after_secs: u64,
}

impl StoreConfig {
    /// How long the store may be down before `/healthz` fails; `None`:
    /// never.
    pub fn unhealthy_after(&self) -> Option<Duration> {
        (self.unhealthy_after_secs > 0).then(|| Duration::from_secs(self.unhealthy_after_secs))
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/vanus-connect/data"),
            max_records: 1_000_000,
            redis: None,
            unhealthy_after_secs: 60,
        }
    }
}

/// A store operation failed: the state it was about was not read or not
/// changed. Callers answer "retry later".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or could not be reached.
    #[error("the {backend} store is unavailable: {reason}")]
    Unavailable {
        /// Which backend (`embedded`, `redis`).
        backend: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The store was closed: the connector is shutting down.
    #[error("the store is closed: the connector is shutting down")]
    Closed,
}

impl StoreError {
    /// [`StoreError::Unavailable`]: `backend` failed, for `reason`.
    pub fn unavailable(backend: &'static str, reason: impl fmt::Display) -> Self {
        StoreError::Unavailable {
            backend,
            reason: reason.to_string(),
        }
    }
}

/// The store could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct OpenError {
    /// The setting at fault and its value, e.g. `store.path /data` (never a
    /// password).
    pub setting: String,
    /// What went wrong and what to do.
    pub reason: String,
}

/// The answer to a queue push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Appended; the queue now holds `len` items.
    Queued {
        /// Items in the queue, this one included.
        len: u64,
    },
    /// Not appended: the queue already holds its maximum.
    Full {
        /// Items in the queue.
        len: u64,
    },
    /// Not appended: the push's [`Once`] key is set, so this item was
    /// pushed before.
    Already,
}

/// Makes a push happen at most once per key: the key is set together with
/// the push, atomically, and a later push with the same key is answered
/// [`Pushed::Already`] (for as long as the key lives). What keeps a
/// redelivered event from being queued twice, even when the process that
/// queued it first died before it could answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Once<'a> {
    /// The key, in the store's namespace like any record's.
    pub key: &'a str,
    /// How long it is remembered.
    pub ttl: Duration,
}

/// One queued item and its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    /// Its sequence number: increasing in push order, never reused.
    pub seq: u64,
    /// What was pushed.
    pub data: Vec<u8>,
}

/// The answer of a gate: may the caller send now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// Yes, and the send is recorded: the window now holds `used` sends.
    Open {
        /// Sends in the window, this one included.
        used: u32,
    },
    /// No: the window holds the limit; a send leaves it after this long.
    Wait(Duration),
    /// No: the gate is held (a cool-down) for this long.
    Held(Duration),
}

/// One sliding window of a gate: at most `limit` sends in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Sends allowed in the window.
    pub limit: u32,
    /// The window's length.
    pub per: Duration,
}

impl Window {
    /// At most `limit` sends in any `per`.
    pub const fn new(limit: u32, per: Duration) -> Self {
        Self { limit, per }
    }
}

/// What a gate looks like now, without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateState {
    /// Sends in the window ending now.
    pub used: u32,
    /// When the oldest send in the window leaves it; `None` when empty.
    pub next_free_in: Option<Duration>,
    /// The remaining hold; `None` when not held.
    pub held_for: Option<Duration>,
}

/// Where a store reads the time for its gates and expiries.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The wall clock: what every store uses outside tests. Wall-clock time
/// (not a monotonic instant) so that a send log means the same after a
/// restart.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(millis)
            .unwrap_or(0)
    }
}

/// `duration` in whole milliseconds, saturating at `u64::MAX`: how every
/// backend writes times and expiries.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The value of a record that [`Backend::remember`] wrote by default.
pub const REMEMBERED: &[u8] = b"done";

/// What [`Backend::remember_in_background`] calls once its keys are
/// written, with the outcome of their write.
pub type Remembered = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A storage engine behind [`Store`]. Keys arrive fully namespaced.
///
/// Every method is atomic on its own: a gate's check and record, a push's
/// bound check and append, a create's existence check and write. A backend
/// whose state several processes share says so with
/// [`Backend::is_shared`].
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and `/status`: `embedded`, `redis`.
    fn name(&self) -> &'static str;

    /// True when other processes may change this state at any time.
    fn is_shared(&self) -> bool;

    /// The value under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` to `value` for `ttl`, durably.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError>;

    /// [`Backend::put`], lazily: durable once a later durable operation (or
    /// closing) commits, so a crash may lose it. For records whose loss
    /// costs little, written where an fsync each would cost much.
    async fn put_lazily(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError>;

    /// Sets `key` to `value` for `ttl` unless it holds an unexpired value,
    /// which is returned instead. Not durable on its own on every backend:
    /// use it for claims that may vanish with a crash.
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key`, if present.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;

    /// Remembers `key` for `ttl`: a mark with no value, what the
    /// delivered-ledger keeps for each event it accepted. Durably, or with
    /// `lazily` as [`Backend::put_lazily`]. By default a record under `key`
    /// holding [`REMEMBERED`] (so a [`Backend::create`] of `key` finds it);
    /// a backend may keep marks more compactly, in a space of their own
    /// that [`Backend::get`] does not read.
    async fn remember(&self, key: &str, ttl: Duration, lazily: bool) -> Result<(), StoreError> {
        if lazily {
            self.put_lazily(key, REMEMBERED.to_vec(), ttl).await
        } else {
            self.put(key, REMEMBERED.to_vec(), ttl).await
        }
    }

    /// [`Backend::remember`] each of `keys` lazily, without a task or a
    /// wait: `then` is called with the outcome, one for all of them, once
    /// their write committed or failed, on the thread that wrote them (so it
    /// must be quick and must not block). Called on the runtime. A backend
    /// that cannot hands both back, as the default does, and [`Store`]
    /// awaits [`Backend::remember`] for each in a task instead. If the
    /// backend closes first, `then` may be dropped without being called.
    fn remember_in_background(
        &self,
        keys: Vec<String>,
        _ttl: Duration,
        then: Remembered,
    ) -> Result<(), (Vec<String>, Remembered)> {
        Err((keys, then))
    }

    /// True when `key` was remembered ([`Backend::remember`]) and has not
    /// expired, or holds a record whose value is [`REMEMBERED`].
    async fn remembered(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.get(key).await?.as_deref() == Some(REMEMBERED))
    }

    /// Takes or renews the lease `key` for `holder`, for `ttl`: true when
    /// `holder` now holds it (it was free, expired, or already its), false
    /// when another holder does. What makes one process of many do a job.
    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Appends `item` to `queue`, durably, unless it holds `max_len` items
    /// (or, with `once`, unless its key is set; the key is set with the
    /// push).
    async fn push(
        &self,
        queue: &str,
        item: Vec<u8>,
        max_len: u64,
        once: Option<Once<'_>>,
    ) -> Result<Pushed, StoreError>;

    /// Up to `max_items` items from the head of `queue`, oldest first.
    async fn peek(&self, queue: &str, max_items: usize) -> Result<Vec<QueueItem>, StoreError>;

    /// Removes the items of `queue` up to and including sequence `seq`.
    async fn pop_through(&self, queue: &str, seq: u64) -> Result<(), StoreError>;

    /// Items in `queue`.
    async fn len(&self, queue: &str) -> Result<u64, StoreError>;

    /// Records a send through `gate` now, if it is not held and each of
    /// `windows` holds fewer than its limit of sends in the window of its
    /// length ending now; durably, before answering [`Passage::Open`]
    /// (whose `used` counts the first window). Sends older than the
    /// longest of `windows` are forgotten: every pass of one gate names
    /// its longest window.
    async fn pass(&self, gate: &str, windows: &[Window]) -> Result<Passage, StoreError>;

    /// Takes back the latest send recorded through `gate`: a send that
    /// never left (refused before a byte was written) spends no budget.
    async fn refund(&self, gate: &str) -> Result<(), StoreError>;

    /// Holds `gate` for `duration` from now (a longer hold already in place
    /// stays).
    async fn hold(&self, gate: &str, duration: Duration) -> Result<(), StoreError>;

    /// The state of `gate` over the `window` ending now.
    async fn gate_state(&self, gate: &str, window: Duration) -> Result<GateState, StoreError>;

    /// Ok when the backend answers.
    async fn health(&self) -> Result<(), StoreError>;

    /// Finishes pending writes and releases the backend; later calls fail
    /// with [`StoreError::Closed`].
    async fn close(&self);
}

/// A handle on the connector's store, scoped to a namespace; cheap to
/// clone. What a sink is given: it reads and writes, but cannot probe or
/// close the store (its [`Opened`] opener does). See the [module
/// documentation](self).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    namespace: Arc<str>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Store {
    /// A store over `backend`, at its root namespace: for a sink's own
    /// tests, over a backend they opened (and close) themselves.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            namespace: Arc::from(""),
        }
    }

    /// The same store, with keys under `name/` inside this namespace.
    pub fn scope(&self, name: &str) -> Store {
        Store {
            backend: Arc::clone(&self.backend),
            namespace: Arc::from(format!("{}{name}/", self.namespace)),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    /// The backend's name: `embedded` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// True when other processes share this state (see [`Backend::is_shared`]).
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// See [`Backend::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(&self.key(key)).await
    }

    /// See [`Backend::put`].
    pub async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.backend.put(&self.key(key), value, ttl).await
    }

    /// See [`Backend::put_lazily`].
    pub async fn put_lazily(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.backend.put_lazily(&self.key(key), value, ttl).await
    }

    /// See [`Backend::create`].
    pub async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.create(&self.key(key), value, ttl).await
    }

    /// See [`Backend::remove`].
    pub async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.backend.remove(&self.key(key)).await
    }

    /// See [`Backend::remember`].
    pub async fn remember(&self, key: &str, ttl: Duration, lazily: bool) -> Result<(), StoreError> {
        self.backend.remember(&self.key(key), ttl, lazily).await
    }

    /// See [`Backend::remember_in_background`]; on a backend that cannot,
    /// a task awaits [`Backend::remember`] for each key and calls `then`
    /// with the first error, if any. Call it on the runtime.
    pub(crate) fn remember_in_background(
        &self,
        mut keys: Vec<String>,
        ttl: Duration,
        then: Remembered,
    ) {
        for key in &mut keys {
            key.insert_str(0, &self.namespace);
        }
        let Err((keys, then)) = self.backend.remember_in_background(keys, ttl, then) else {
            return;
        };
        let backend = Arc::clone(&self.backend);
        tokio::spawn(async move {
            let writes = keys.iter().map(|key| backend.remember(key, ttl, true));
            let results = futures_util::future::join_all(writes).await;
            then(results.into_iter().find(Result::is_err).unwrap_or(Ok(())));
        });
    }

    /// See [`Backend::remembered`].
    pub async fn remembered(&self, key: &str) -> Result<bool, StoreError> {
        self.backend.remembered(&self.key(key)).await
    }

    /// See [`Backend::lease`].
    pub async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.backend.lease(&self.key(key), holder, ttl).await
    }

    /// See [`Backend::push`].
    pub async fn push(
        &self,
        queue: &str,
        item: Vec<u8>,
        max_len: u64,
        once: Option<Once<'_>>,
    ) -> Result<Pushed, StoreError> {
        let once_key = once.map(|once| self.key(once.key));
        let once = once
            .zip(once_key.as_deref())
            .map(|(once, key)| Once { key, ttl: once.ttl });
        self.backend
            .push(&self.key(queue), item, max_len, once)
            .await
    }

    /// See [`Backend::peek`].
    pub async fn peek(&self, queue: &str, max_items: usize) -> Result<Vec<QueueItem>, StoreError> {
        self.backend.peek(&self.key(queue), max_items).await
    }

    /// See [`Backend::pop_through`].
    pub async fn pop_through(&self, queue: &str, seq: u64) -> Result<(), StoreError> {
        self.backend.pop_through(&self.key(queue), seq).await
    }

    /// See [`Backend::len`].
    pub async fn len(&self, queue: &str) -> Result<u64, StoreError> {
        self.backend.len(&self.key(queue)).await
    }

    /// [`Backend::pass`] with one window: at most `limit` sends in any
    /// `window`.
    pub async fn pass(
        &self,
        gate: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Passage, StoreError> {
        self.pass_windows(gate, &[Window::new(limit, window)]).await
    }

    /// See [`Backend::pass`].
    pub async fn pass_windows(
        &self,
        gate: &str,
        windows: &[Window],
    ) -> Result<Passage, StoreError> {
        self.backend.pass(&self.key(gate), windows).await
    }

    /// See [`Backend::refund`].
    pub async fn refund(&self, gate: &str) -> Result<(), StoreError> {
        self.backend.refund(&self.key(gate)).await
    }

    /// See [`Backend::hold`].
    pub async fn hold(&self, gate: &str, duration: Duration) -> Result<(), StoreError> {
        self.backend.hold(&self.key(gate), duration).await
    }

    /// See [`Backend::gate_state`].
    pub async fn gate_state(&self, gate: &str, window: Duration) -> Result<GateState, StoreError> {
        self.backend.gate_state(&self.key(gate), window).await
    }
}
