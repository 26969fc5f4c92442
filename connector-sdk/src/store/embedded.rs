//! The embedded backend: one redb database file in `store.path`.
//!
//! One thread writes the database and applies writes in the order they
//! arrive. It takes every write waiting in its queue at once and applies
//! them in one transaction (group commit), so a burst of concurrent requests
//! shares one fsync instead of paying one each. Reads do not queue behind
//! writes: each runs on its own read transaction (redb's readers never wait
//! for the writer) and sees every committed write. An operation is answered
//! only after its transaction committed: with an fsync for durable writes
//! (puts, pushes, gate passes), without one for claims (`create`) and
//! leases, which may vanish with a crash, as a claim should, and for lazy
//! puts, which the next durable commit carries along.
//!
//! Times are wall-clock milliseconds, so expiries and send logs mean the
//! same after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, WriteTransaction,
};
use tokio::sync::{mpsc, oneshot};

use super::gate::GateLog;
use super::{
    Backend, Clock, GateState, Once, OpenError, Passage, Pushed, QueueItem, StoreError,
    SystemClock, millis,
};

/// key -> (expires at ms, value)
const RECORDS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("records");
/// (expires at ms, key): the records in expiry order, to purge and evict.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("record_expiry");
/// (queue, seq) -> item
const ITEMS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_items");
/// queue -> (head seq, next seq)
const QUEUES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("queues");
/// gate -> encoded [`GateLog`]
const GATES: TableDefinition<&str, &[u8]> = TableDefinition::new("gates");

/// The database file inside `store.path`.
pub(crate) const FILE_NAME: &str = "connector.redb";
/// redb's page cache: the database is small, and memory is budgeted.
const CACHE_BYTES: usize = 8 << 20;
/// Operations applied in one transaction at most.
const MAX_BATCH: usize = 512;
/// How long a batch of lazy puts only waits for more before it commits:
/// nobody waits on them (the ledger writes its records after the answer
/// left), so a few milliseconds turn many small commits into one.
const LAZY_LINGER: Duration = Duration::from_millis(2);
/// Expired or excess records removed per write transaction at most, so
/// purging never stalls the requests waiting behind it.
const PURGE_PER_BATCH: usize = 256;
/// Records that expire sooner than this are never evicted to make room.
const EVICTABLE_AFTER: Duration = Duration::from_secs(600);
/// The longest an operation waits for the writer before it is an error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Operations waiting for the writer at most; senders wait past it.
const QUEUE_BOUND: usize = 4096;

const NAME: &str = "embedded";

/// The embedded store: one redb database in `store.path`, written by one
/// thread that group-commits, read on read transactions that never wait.
#[derive(Debug)]
pub struct Embedded {
    path: PathBuf,
    /// `None` once closed.
    ops: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// For reads; `None` once closed, so the file is released.
    reader: Mutex<Option<Reader>>,
}

/// What a read needs.
#[derive(Clone)]
struct Reader {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// How durable a write must be when it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Committed with an fsync.
    Durable,
    /// Committed without one: may be lost with a crash until a durable
    /// write follows (claims, leases). Its caller waits for it.
    Volatile,
    /// [`Kind::Volatile`], and nobody waits for it ([`Backend::put_lazily`]):
    /// a batch of only these lingers for more.
    Lazy,
}

/// Applies one operation inside the batch's transaction, and returns how
/// to answer it once the transaction has committed (or failed), and
/// whether the operation itself failed.
type Apply = Box<dyn FnOnce(&mut Tables<'_>, u64) -> (Option<String>, Finish) + Send>;
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Op {
    kind: Kind,
    apply: Apply,
}

impl Embedded {
    /// Opens (or creates) the database in directory `dir`, creating the
    /// directory if missing. The writer thread starts here.
    pub fn open(dir: &Path, max_records: u64) -> Result<Self, OpenError> {
        Self::open_with_clock(dir, max_records, Arc::new(SystemClock))
    }

    /// [`Embedded::open`], reading the time from `clock`.
    pub fn open_with_clock(
        dir: &Path,
        max_records: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let problem = |reason: String| OpenError {
            setting: format!("store.path {}", dir.display()),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|err| {
            problem(format!(
                "cannot create the directory ({err}); make it writable for the user the connector runs as, or set store.path elsewhere"
            ))
        })?;
        let file = dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&file)
            .map_err(|err| match err {
                redb::DatabaseError::DatabaseAlreadyOpen => problem(format!(
                    "{} is in use by another process; give each connector process its own store.path (or share state through store.redis)",
                    file.display()
                )),
                other => problem(format!(
                    "cannot open {} ({other}); check that the directory is writable and the file is not damaged",
                    file.display()
                )),
            })?;
        Self::serve(db, dir.to_owned(), max_records, clock)
    }

    /// Creates the tables and starts the writer thread.
    fn serve(
        db: Database,
        path: PathBuf,
        max_records: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let problem = |reason: String| OpenError {
            setting: format!("store.path {}", path.display()),
            reason,
        };
        create_tables(&db).map_err(|err| {
            problem(format!(
                "cannot write the database ({err}); check that the directory is writable"
            ))
        })?;
        let (ops, queue) = mpsc::channel(QUEUE_BOUND);
        let db = Arc::new(db);
        let reader = Reader {
            db: Arc::clone(&db),
            clock: Arc::clone(&clock),
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(&db, queue, max_records, clock.as_ref()))
            .map_err(|err| problem(format!("cannot start the store's writer thread: {err}")))?;
        Ok(Self {
            path,
            ops: Mutex::new(Some(ops)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(Some(reader)),
        })
    }

    /// A store that lives only as long as the process: for command-line
    /// tools that run a sink's code outside the connector, and for tests.
    pub fn in_memory() -> Result<Self, OpenError> {
        let path = PathBuf::from("(memory)");
        let problem = |reason: String| OpenError {
            setting: "an in-memory store".to_owned(),
            reason,
        };
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|err| problem(format!("cannot create an in-memory store: {err}")))?;
        Self::serve(db, path, u64::MAX, Arc::new(SystemClock))
    }

    /// Runs `f` on a read transaction of its own, now. (A short, bounded
    /// piece of work: a few B-tree lookups, mostly from redb's cache.)
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction, u64) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let reader = lock(&self.reader).clone().ok_or(StoreError::Closed)?;
        let txn = reader.db.begin_read().map_err(unavailable)?;
        f(&txn, reader.clock.now_ms()).map_err(unavailable)
    }

    /// Sets `key` in a write of `kind`.
    async fn put_as(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(kind, move |t, now| {
            t.put(&key, &value, now.saturating_add(millis(ttl)))
        })
        .await
    }

    /// Runs `f` in the writer's next transaction and answers with its value
    /// once that transaction is done.
    async fn run<T: Send + 'static>(
        &self,
        kind: Kind,
        f: impl FnOnce(&mut Tables<'_>, u64) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = oneshot::channel();
        let apply: Apply = Box::new(move |tables, now| {
            let result = f(tables, now);
            let failed = result.as_ref().err().map(ToString::to_string);
            let finish: Finish = Box::new(move |batch| {
                // The batch result wins: a value from an aborted transaction
                // never happened.
                let _ = answer.send(batch.and_then(|()| result.map_err(unavailable)));
            });
            (failed, finish)
        });
        let ops = lock(&self.ops).clone().ok_or(StoreError::Closed)?;
        let queued_and_done = async {
            ops.send(Op { kind, apply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answered.await.map_err(|_| StoreError::Closed)?
        };
        tokio::time::timeout(WRITE_TIMEOUT, queued_and_done)
            .await
            .map_err(|_| {
                unavailable(format!(
                    "{} did not commit within {WRITE_TIMEOUT:?}; is the disk stalled?",
                    self.path.display()
                ))
            })?
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(NAME, err)
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?;
    txn.open_table(EXPIRY)?;
    txn.open_table(ITEMS)?;
    txn.open_table(QUEUES)?;
    txn.open_table(GATES)?;
    txn.commit()?;
    Ok(())
}

/// The writer thread: batches, applies, commits, answers; until every
/// sender is gone.
fn write_loop(db: &Database, mut queue: mpsc::Receiver<Op>, max_records: u64, clock: &dyn Clock) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        drain(&mut queue, &mut batch);
        if batch.iter().all(|op| op.kind == Kind::Lazy) {
            std::thread::sleep(LAZY_LINGER);
            drain(&mut queue, &mut batch);
        }
        let now = clock.now_ms();
        // A panic in one batch must not end the writer: its callers are
        // answered (their channels close), the next batch goes on.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply_batch(db, batch, max_records, now);
        }));
        if applied.is_err() {
            tracing::error!(
                "the store's writer failed on a batch; its operations were not applied"
            );
        }
    }
    // Closed: a durable commit makes the lazy writes before it durable too.
    let flushed: Result<(), redb::Error> = db
        .begin_write()
        .map_err(redb::Error::from)
        .and_then(|txn| txn.commit().map_err(redb::Error::from));
    if let Err(err) = flushed {
        tracing::error!(%err, "cannot flush the store on close");
    }
}

/// Adds what is waiting in `queue` to `batch`, up to [`MAX_BATCH`].
fn drain(queue: &mut mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

fn apply_batch(db: &Database, batch: Vec<Op>, max_records: u64, now: u64) {
    let durable = batch.iter().any(|op| op.kind == Kind::Durable);
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(err) => {
            let err = unavailable(err);
            for op in batch {
                let (_, finish) = (op.apply)(&mut Tables::unusable(), 0);
                finish(Err(err.clone()));
            }
            return;
        }
    };
    if !durable {
        // Cannot fail before anything was written in this transaction.
        let _ = txn.set_durability(Durability::None);
    }
    let (finishes, failure) = run_ops(&txn, batch, now, max_records);
    let result = match failure {
        Some(reason) => {
            let _ = txn.abort();
            Err(unavailable(reason))
        }
        None => txn.commit().map_err(unavailable),
    };
    for finish in finishes {
        finish(result.clone());
    }
}

/// Applies every op of a batch; the first failure (if any) aborts it.
fn run_ops(
    txn: &WriteTransaction,
    batch: Vec<Op>,
    now: u64,
    max_records: u64,
) -> (Vec<Finish>, Option<String>) {
    let mut tables = match Tables::open(txn) {
        Ok(tables) => tables,
        Err(err) => {
            let reason = err.to_string();
            let finishes = batch
                .into_iter()
                .map(|op| (op.apply)(&mut Tables::unusable(), now).1)
                .collect();
            return (finishes, Some(reason));
        }
    };
    let mut failure = None;
    let mut finishes = Vec::with_capacity(batch.len());
    for op in batch {
        let (failed, finish) = (op.apply)(&mut tables, now);
        failure = failure.or(failed);
        finishes.push(finish);
    }
    if failure.is_none() {
        failure = tables.purge(now, max_records).err().map(|e| e.to_string());
    }
    (finishes, failure)
}

/// The value under `key` in `records`, unless absent or expired at `now`.
fn record(
    records: &impl ReadableTable<&'static str, (u64, &'static [u8])>,
    key: &str,
    now: u64,
) -> Result<Option<Vec<u8>>, redb::Error> {
    Ok(records.get(key)?.and_then(|guard| {
        let (expires, value) = guard.value();
        (expires > now).then(|| value.to_vec())
    }))
}

/// A queue's (head seq, next seq).
fn bounds(
    queues: &impl ReadableTable<&'static str, (u64, u64)>,
    queue: &str,
) -> Result<(u64, u64), redb::Error> {
    Ok(queues.get(queue)?.map_or((0, 0), |guard| guard.value()))
}

/// Up to `max_items` items of `queue` from its head.
fn head_items(
    items: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    queue: &str,
    (head, next): (u64, u64),
    max_items: usize,
) -> Result<Vec<QueueItem>, redb::Error> {
    let mut found = Vec::new();
    for entry in items.range((queue, head)..(queue, next))?.take(max_items) {
        let (key, value) = entry?;
        found.push(QueueItem {
            seq: key.value().1,
            data: value.value().to_vec(),
        });
    }
    Ok(found)
}

/// A gate's log (empty when it has none).
fn gate_log(
    gates: &impl ReadableTable<&'static str, &'static [u8]>,
    gate: &str,
) -> Result<GateLog, redb::Error> {
    Ok(gates
        .get(gate)?
        .map(|guard| GateLog::decode(guard.value()))
        .unwrap_or_default())
}

/// The tables, open in one write transaction.
struct Tables<'txn> {
    open: Option<OpenTables<'txn>>,
}

struct OpenTables<'txn> {
    records: Table<'txn, &'static str, (u64, &'static [u8])>,
    expiry: Table<'txn, (u64, &'static str), ()>,
    items: Table<'txn, (&'static str, u64), &'static [u8]>,
    queues: Table<'txn, &'static str, (u64, u64)>,
    gates: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            open: Some(OpenTables {
                records: txn.open_table(RECORDS)?,
                expiry: txn.open_table(EXPIRY)?,
                items: txn.open_table(ITEMS)?,
                queues: txn.open_table(QUEUES)?,
                gates: txn.open_table(GATES)?,
            }),
        })
    }

    /// Stands in when the transaction could not be opened: every operation
    /// on it fails, so its caller is answered with the batch's error.
    fn unusable() -> Self {
        Self { open: None }
    }

    fn tables(&mut self) -> Result<&mut OpenTables<'txn>, redb::Error> {
        self.open.as_mut().ok_or_else(|| {
            redb::Error::Io(std::io::Error::other("the transaction could not be opened"))
        })
    }

    fn get(&mut self, key: &str, now: u64) -> Result<Option<Vec<u8>>, redb::Error> {
        record(&self.tables()?.records, key, now)
    }

    fn put(&mut self, key: &str, value: &[u8], expires: u64) -> Result<(), redb::Error> {
        let t = self.tables()?;
        let replaced = t
            .records
            .insert(key, (expires, value))?
            .map(|old| old.value().0);
        if let Some(old_expires) = replaced {
            t.expiry.remove((old_expires, key))?;
        }
        t.expiry.insert((expires, key), ())?;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), redb::Error> {
        let t = self.tables()?;
        let removed = t.records.remove(key)?.map(|old| old.value().0);
        if let Some(expires) = removed {
            t.expiry.remove((expires, key))?;
        }
        Ok(())
    }

    fn queue_bounds(&mut self, queue: &str) -> Result<(u64, u64), redb::Error> {
        bounds(&self.tables()?.queues, queue)
    }

    fn push(&mut self, queue: &str, item: &[u8], max_len: u64) -> Result<Pushed, redb::Error> {
        let (head, next) = self.queue_bounds(queue)?;
        let len = next - head;
        if len >= max_len {
            return Ok(Pushed::Full { len });
        }
        let t = self.tables()?;
        t.items.insert((queue, next), item)?;
        t.queues.insert(queue, (head, next + 1))?;
        Ok(Pushed::Queued { len: len + 1 })
    }

    fn pop_through(&mut self, queue: &str, seq: u64) -> Result<(), redb::Error> {
        let (head, next) = self.queue_bounds(queue)?;
        let end = seq.saturating_add(1).min(next);
        if end <= head {
            return Ok(());
        }
        let t = self.tables()?;
        for at in head..end {
            t.items.remove((queue, at))?;
        }
        t.queues.insert(queue, (end, next))?;
        Ok(())
    }

    fn gate(&mut self, gate: &str) -> Result<GateLog, redb::Error> {
        let t = self.tables()?;
        Ok(t.gates
            .get(gate)?
            .map(|guard| GateLog::decode(guard.value()))
            .unwrap_or_default())
    }

    fn save_gate(&mut self, gate: &str, log: &GateLog) -> Result<(), redb::Error> {
        let t = self.tables()?;
        t.gates.insert(gate, log.encode().as_slice())?;
        Ok(())
    }

    /// Removes expired records; then, while there are more than
    /// `max_records`, the long-lived ones closest to expiry (the oldest of
    /// the ledger's). Short-lived records (claims, leases) are never
    /// evicted: they guard work in progress, and go by themselves soon. A
    /// bounded amount per transaction.
    fn purge(&mut self, now: u64, max_records: u64) -> Result<(), redb::Error> {
        let t = self.tables()?;
        let mut doomed: Vec<(u64, String)> = Vec::new();
        for entry in t
            .expiry
            .range(..(now.saturating_add(1), ""))?
            .take(PURGE_PER_BATCH)
        {
            let (key, _) = entry?;
            let (expires, name) = key.value();
            doomed.push((expires, name.to_owned()));
        }
        let excess = t
            .records
            .len()?
            .saturating_sub(max_records)
            .saturating_sub(u64::try_from(doomed.len()).unwrap_or(0));
        let long_lived = now.saturating_add(millis(EVICTABLE_AFTER));
        let room = PURGE_PER_BATCH.saturating_sub(doomed.len());
        for entry in t
            .expiry
            .range((long_lived, "")..)?
            .take(usize::try_from(excess).unwrap_or(usize::MAX).min(room))
        {
            let (key, _) = entry?;
            let (expires, name) = key.value();
            doomed.push((expires, name.to_owned()));
        }
        for (expires, key) in doomed {
            t.expiry.remove((expires, key.as_str()))?;
            t.records.remove(key.as_str())?;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Embedded {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn, now| record(&txn.open_table(RECORDS)?, key, now))
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.put_as(Kind::Durable, key, value, ttl).await
    }

    async fn put_lazily(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.put_as(Kind::Lazy, key, value, ttl).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.run(Kind::Volatile, move |t, now| {
            if let Some(existing) = t.get(&key, now)? {
                return Ok(Some(existing));
            }
            t.put(&key, &value, now.saturating_add(millis(ttl)))?;
            Ok(None)
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(Kind::Durable, move |t, _| t.remove(&key)).await
    }

    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (key, holder) = (key.to_owned(), holder.as_bytes().to_vec());
        self.run(Kind::Volatile, move |t, now| match t.get(&key, now)? {
            Some(current) if current != holder => Ok(false),
            _ => {
                t.put(&key, &holder, now.saturating_add(millis(ttl)))?;
                Ok(true)
            }
        })
        .await
    }

    async fn push(
        &self,
        queue: &str,
        item: Vec<u8>,
        max_len: u64,
        once: Option<Once<'_>>,
    ) -> Result<Pushed, StoreError> {
        let queue = queue.to_owned();
        let once = once.map(|once| (once.key.to_owned(), once.ttl));
        self.run(Kind::Durable, move |t, now| {
            if let Some((key, _)) = &once
                && t.get(key, now)?.is_some()
            {
                return Ok(Pushed::Already);
            }
            let pushed = t.push(&queue, &item, max_len)?;
            if let (Pushed::Queued { .. }, Some((key, ttl))) = (pushed, &once) {
                t.put(key, &[], now.saturating_add(millis(*ttl)))?;
            }
            Ok(pushed)
        })
        .await
    }

    async fn peek(&self, queue: &str, max_items: usize) -> Result<Vec<QueueItem>, StoreError> {
        self.read(|txn, _| {
            let bounds = bounds(&txn.open_table(QUEUES)?, queue)?;
            head_items(&txn.open_table(ITEMS)?, queue, bounds, max_items)
        })
    }

    async fn pop_through(&self, queue: &str, seq: u64) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.run(Kind::Durable, move |t, _| t.pop_through(&queue, seq))
            .await
    }

    async fn len(&self, queue: &str) -> Result<u64, StoreError> {
        self.read(|txn, _| {
            let (head, next) = bounds(&txn.open_table(QUEUES)?, queue)?;
            Ok(next - head)
        })
    }

    async fn pass(&self, gate: &str, limit: u32, window: Duration) -> Result<Passage, StoreError> {
        let gate = gate.to_owned();
        self.run(Kind::Durable, move |t, now| {
            let mut log = t.gate(&gate)?;
            let passage = log.pass(now, limit, window);
            t.save_gate(&gate, &log)?;
            Ok(passage)
        })
        .await
    }

    async fn hold(&self, gate: &str, duration: Duration) -> Result<(), StoreError> {
        let gate = gate.to_owned();
        self.run(Kind::Durable, move |t, now| {
            let mut log = t.gate(&gate)?;
            log.hold(now, duration);
            t.save_gate(&gate, &log)
        })
        .await
    }

    async fn gate_state(&self, gate: &str, window: Duration) -> Result<GateState, StoreError> {
        self.read(|txn, now| Ok(gate_log(&txn.open_table(GATES)?, gate)?.state(now, window)))
    }

    async fn health(&self) -> Result<(), StoreError> {
        // The writer too: a store whose writer is gone takes no event.
        self.read(|_, _| Ok(()))?;
        self.run(Kind::Volatile, |t, _| t.tables().map(drop)).await
    }

    async fn close(&self) {
        // Without senders the writer finishes what is queued, then stops;
        // without readers either, the file is released.
        lock(&self.ops).take();
        lock(&self.reader).take();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!(path = %self.path.display(), "the store's writer thread failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::testing::ShiftedClock;

    fn open(dir: &Path) -> Store {
        Store::new(Arc::new(Embedded::open(dir, 1_000).expect("opens")))
    }

    #[tokio::test]
    async fn keeps_the_store_contract() {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::store::contract::check_all(&open(dir.path())).await;
    }

    #[tokio::test]
    async fn keeps_the_store_contract_in_memory() {
        let store = Store::new(Arc::new(Embedded::in_memory().expect("opens")));
        crate::store::contract::check_all(&store).await;
    }

    #[tokio::test]
    async fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let window = Duration::from_secs(60);
        {
            let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
            let store = Store::new(Arc::clone(&embedded) as Arc<dyn Backend>);
            store
                .push("q", b"kept".to_vec(), 10, None)
                .await
                .expect("push");
            store.put("r", b"v".to_vec(), window).await.expect("put");
            assert_eq!(
                store.pass("g", 2, window).await,
                Ok(Passage::Open { used: 1 })
            );
            embedded.close().await;
            assert_eq!(store.get("r").await, Err(StoreError::Closed));
        }
        // Closing released the file.
        let store = open(dir.path());
        assert_eq!(store.peek("q", 5).await.expect("peek")[0].data, b"kept");
        assert_eq!(store.get("r").await, Ok(Some(b"v".to_vec())));
        assert_eq!(store.gate_state("g", window).await.expect("state").used, 1);
    }

    #[tokio::test]
    async fn gates_and_expiries_follow_the_clock_they_are_given() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ShiftedClock::default());
        let embedded = Embedded::open_with_clock(dir.path(), 1_000, clock.clone()).expect("opens");
        let store = Store::new(Arc::new(embedded));
        let window = Duration::from_secs(60);
        assert_eq!(
            store.pass("g", 1, window).await,
            Ok(Passage::Open { used: 1 })
        );
        store.put("r", b"v".to_vec(), window).await.expect("put");
        clock.advance(window);
        assert_eq!(
            store.pass("g", 1, window).await,
            Ok(Passage::Open { used: 1 })
        );
        assert_eq!(store.get("r").await, Ok(None), "expired a minute later");
    }

    #[tokio::test]
    async fn records_are_bounded_closest_to_expiry_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 3).expect("opens")));
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let ttl = EVICTABLE_AFTER + Duration::from_secs(100 + u64::try_from(i).unwrap());
            store.put(key, b"v".to_vec(), ttl).await.expect("put");
        }
        assert_eq!(store.get("a").await, Ok(None), "evicted");
        assert_eq!(store.get("b").await, Ok(None), "evicted");
        assert_eq!(store.get("e").await, Ok(Some(b"v".to_vec())));
    }

    #[tokio::test]
    async fn records_about_to_expire_are_never_evicted() {
        // A claim or a "queued once" mark evicted early would let an event
        // through twice; they are short-lived, so they bound themselves.
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 2).expect("opens")));
        for key in ["a", "b", "c", "d"] {
            store
                .put(key, b"v".to_vec(), Duration::from_secs(30))
                .await
                .expect("put");
        }
        for key in ["a", "b", "c", "d"] {
            assert_eq!(store.get(key).await, Ok(Some(b"v".to_vec())), "{key}");
        }
    }

    #[test]
    fn an_unwritable_path_is_named_with_what_to_do() {
        let err = Embedded::open(Path::new("/proc/no-such-dir/store"), 10).expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("store.path /proc/no-such-dir/store"),
            "{text}"
        );
        assert!(text.contains("writable"), "{text}");
    }

    #[tokio::test]
    async fn a_second_process_on_the_same_path_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _first = open(dir.path());
        let err = Embedded::open(dir.path(), 10).expect_err("in use");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }
}
