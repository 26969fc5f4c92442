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
//!
//! After an I/O error (a full disk, say) the writer closes the database and
//! reopens it with a backoff; until then every operation fails at once.
//!
//! The rooms: this file (the store and its [`Backend`] operations, each
//! a read or a write of one kind), `writer.rs` (the writer thread and its
//! group commit), `heal.rs` (closing and reopening after an I/O error),
//! `tables.rs` (the tables and what one transaction does to them),
//! `file.rs` (the file under redb, with the tests' switch that fails its
//! writes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

use file::{FaultSwitch, SwitchedFile};
use heal::{Healer, Reopen, Slot};

use super::{
    Backend, Clock, GateState, Once, OpenError, Passage, Pushed, QueueItem, REMEMBERED, Remembered,
    StoreError, SystemClock, Window, millis,
};
use marks::{MARKS, MarkIndex};
use tables::{
    GATES, ITEMS, LEGACY_MARKS, QUEUES, RECORDS, Tables, bounds, create_tables, gate_log,
    head_items, mark_of, marked, record,
};
use writer::{Apply, Failure, Finish, Kind, LazyPut, Op, QUEUE_BOUND, write_loop};

mod file;
mod heal;
mod marks;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

/// The database file inside `store.path`.
const FILE_NAME: &str = "connector.redb";
/// redb's page cache: memory is budgeted, and what is read and written
/// often is small (the newest generation of the ledger's marks, the
/// outboxes' heads, the gates); the ledger's lookups rarely read a page.
const CACHE_BYTES: usize = 4 << 20;
/// The longest an operation waits for the writer before it is an error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The ledger's marks: where each may be.
    marks: Arc<MarkIndex>,
    /// Fails the file's writes while on (tests only turn it on).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    faults: FaultSwitch,
}

/// What a read needs.
#[derive(Clone)]
struct Reader {
    slot: Arc<Slot>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl Embedded {
    /// Opens (or creates) the database in directory `dir`, creating the
    /// directory if missing. The writer thread starts here.
    pub fn open(dir: &Path, max_records: u64) -> Result<Self, OpenError> {
        Self::open_with_clock(dir, max_records, Arc::new(SystemClock))
    }

    /// [`Embedded::open`], reading the time from `clock`.
    pub(crate) fn open_with_clock(
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
        let faults = FaultSwitch::default();
        let db = open_file(&file, &faults).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => problem(format!(
                "{} is in use by another process; give each connector process its own store.path (or share state through store.redis)",
                file.display()
            )),
            other => problem(format!(
                "cannot open {} ({other}); check that the directory is writable and the file is not damaged",
                file.display()
            )),
        })?;
        let marks = Arc::new(MarkIndex::new(max_records));
        let reopen: Reopen = {
            let faults = faults.clone();
            let marks = Arc::clone(&marks);
            Box::new(move || {
                let db = open_file(&file, &faults).map_err(|err| err.to_string())?;
                create_tables(&db).map_err(|err| err.to_string())?;
                // What the reopened file holds (a commit that failed may
                // have removed a generation, or not).
                load_marks(&db, &marks).map_err(|err| err.to_string())?;
                Ok(db)
            })
        };
        Self::serve(db, dir.to_owned(), marks, clock, Some(reopen), faults)
    }

    /// Creates the tables and starts the writer thread.
    fn serve(
        db: Database,
        path: PathBuf,
        marks: Arc<MarkIndex>,
        clock: Arc<dyn Clock>,
        reopen: Option<Reopen>,
        faults: FaultSwitch,
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
        load_marks(&db, &marks).map_err(|err| {
            problem(format!(
                "cannot read the ledger's marks ({err}); the file may be damaged: move it away to start with an empty store"
            ))
        })?;
        let (ops, queue) = mpsc::channel(QUEUE_BOUND);
        let slot = Arc::new(Slot::new(db));
        let reader = Reader {
            slot: Arc::clone(&slot),
            clock: Arc::clone(&clock),
        };
        let healer = Healer::new(slot, reopen, path.display().to_string());
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let marks = Arc::clone(&marks);
                move || write_loop(healer, queue, clock.as_ref(), &marks)
            })
            .map_err(|err| problem(format!("cannot start the store's writer thread: {err}")))?;
        Ok(Self {
            path,
            ops: Mutex::new(Some(ops)),
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(Some(reader)),
            marks,
            faults,
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
        Self::serve(
            db,
            path,
            Arc::new(MarkIndex::new(u64::MAX)),
            Arc::new(SystemClock),
            None,
            FaultSwitch::default(),
        )
    }

    /// The switch that fails the file's writes as a full disk would.
    #[cfg(feature = "testing")]
    pub(crate) fn fault_switch(&self) -> FaultSwitch {
        self.faults.clone()
    }

    /// Runs `f` on a read transaction of its own, now. (A short, bounded
    /// piece of work: a few B-tree lookups, mostly from redb's cache.)
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction, u64) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let (db, now) = self.database()?;
        let txn = db.begin_read().map_err(unavailable)?;
        f(&txn, now).map_err(unavailable)
    }

    /// The database to read, and the time now (ms).
    fn database(&self) -> Result<(Arc<Database>, u64), StoreError> {
        let reader = lock(&self.reader).clone().ok_or(StoreError::Closed)?;
        // None while the writer reopens it after an I/O error: nothing is
        // answered from a database that cannot write what follows.
        let db = reader.slot.current().ok_or_else(|| {
            unavailable(format!(
                "{} is being reopened after an I/O error",
                self.path.display()
            ))
        })?;
        Ok((db, reader.clock.now_ms()))
    }

    /// Sets `key` in a write of `kind`.
    async fn put_as(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let lazy_put =
            (kind == Kind::Lazy).then(|| LazyPut::Record(key.to_owned(), value.clone(), ttl));
        let key = key.to_owned();
        self.run_op(
            kind,
            move |t, now| t.put(&key, &value, now.saturating_add(millis(ttl))),
            lazy_put,
        )
        .await
    }

    /// Runs `f` in the writer's next transaction and answers with its value
    /// once that transaction is done.
    async fn run<T: Send + 'static>(
        &self,
        kind: Kind,
        f: impl FnOnce(&mut Tables<'_>, u64) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_op(kind, f, None).await
    }

    /// [`Embedded::run`], for a lazy put with its key, value and time to
    /// live (written again if the database fails before it is durable).
    async fn run_op<T: Send + 'static>(
        &self,
        kind: Kind,
        f: impl FnOnce(&mut Tables<'_>, u64) -> Result<T, redb::Error> + Send + 'static,
        lazy_put: Option<LazyPut>,
    ) -> Result<T, StoreError> {
        let (answer, answered) = oneshot::channel();
        let apply: Apply = Box::new(move |tables, now| {
            let result = f(tables, now);
            let failed = result.as_ref().err().map(Failure::of);
            let finish: Finish = Box::new(move |batch| {
                // The batch result wins: a value from an aborted transaction
                // never happened.
                let _ = answer.send(batch.and_then(|()| result.map_err(unavailable)));
            });
            (failed, finish)
        });
        let ops = lock(&self.ops).clone().ok_or(StoreError::Closed)?;
        let queued_and_done = async {
            ops.send(Op {
                kind,
                apply,
                lazy_put,
            })
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

/// Builds `marks` from the database: its generations, and whether the
/// tables of earlier releases still hold ledger entries.
fn load_marks(db: &Database, marks: &MarkIndex) -> Result<(), redb::Error> {
    use redb::{ReadableTable, ReadableTableMetadata};
    let txn = db.begin_read()?;
    marks.load(&txn.open_table(MARKS)?)?;
    marks.set_legacy_marks(!txn.open_table(LEGACY_MARKS)?.is_empty()?);
    let mut legacy_records = false;
    for entry in txn.open_table(RECORDS)?.iter()? {
        if entry?.1.value().1 == REMEMBERED {
            legacy_records = true;
            break;
        }
    }
    marks.set_legacy_records(legacy_records);
    Ok(())
}

/// Opens (or creates) the database in `file`, its writes behind `faults`.
fn open_file(file: &Path, faults: &FaultSwitch) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(SwitchedFile::open(file, faults.clone())?)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(NAME, err)
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

    async fn remember(&self, key: &str, ttl: Duration, lazily: bool) -> Result<(), StoreError> {
        let mark = mark_of(key);
        let kind = if lazily { Kind::Lazy } else { Kind::Durable };
        let lazy_put = lazily.then(|| LazyPut::Marks(vec![mark], ttl));
        self.run_op(
            kind,
            move |t, now| t.remember(mark, now.saturating_add(millis(ttl)), now),
            lazy_put,
        )
        .await
    }

    fn remember_in_background(
        &self,
        keys: Vec<String>,
        ttl: Duration,
        then: Remembered,
    ) -> Result<(), (Vec<String>, Remembered)> {
        let Some(ops) = lock(&self.ops).clone() else {
            // Closed: `remember` answers so.
            return Err((keys, then));
        };
        let marks: Vec<u128> = keys.iter().map(|key| mark_of(key)).collect();
        let lazy_put = Some(LazyPut::Marks(marks.clone(), ttl));
        let apply: Apply = Box::new(move |tables, now| {
            let expires = now.saturating_add(millis(ttl));
            let failed = marks
                .into_iter()
                .find_map(|mark| tables.remember(mark, expires, now).err())
                .map(|err| Failure::of(&err));
            // Called with the batch's outcome: one operation that failed
            // aborts the whole transaction.
            let finish: Finish = then;
            (failed, finish)
        });
        let op = Op {
            kind: Kind::Lazy,
            apply,
            lazy_put,
        };
        match ops.try_send(op) {
            Ok(()) => {}
            // The writer's queue is full: a task waits for room.
            Err(mpsc::error::TrySendError::Full(op)) => {
                tokio::spawn(async move {
                    let _ = ops.send(op).await;
                });
            }
            // The writer is gone: `then` is dropped with the operation,
            // uncalled (the ledger counts its records as failed).
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        Ok(())
    }

    async fn remembered(&self, key: &str) -> Result<bool, StoreError> {
        let mark = mark_of(key);
        let generations = self.marks.candidates(mark);
        let legacy_marks = self.marks.has_legacy_marks();
        let legacy_records = self.marks.has_legacy_records();
        if generations.is_empty() && !legacy_marks && !legacy_records {
            // Never written (no filter knows it): no page to read. Still
            // an error while the database cannot be used, as any read.
            return self.database().map(|_| false);
        }
        self.read(|txn, now| {
            if !generations.is_empty() {
                let marks = txn.open_table(MARKS)?;
                for generation in generations {
                    if marked(&marks, marks::key(generation, mark), now)? {
                        return Ok(true);
                    }
                }
            }
            if legacy_marks && marked(&txn.open_table(LEGACY_MARKS)?, mark, now)? {
                return Ok(true);
            }
            // A record the ledger wrote before it kept marks: it ages out.
            Ok(legacy_records
                && record(&txn.open_table(RECORDS)?, key, now)?.as_deref() == Some(REMEMBERED))
        })
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

    async fn pass(&self, gate: &str, windows: &[Window]) -> Result<Passage, StoreError> {
        let gate = gate.to_owned();
        let windows = windows.to_vec();
        self.run(Kind::Durable, move |t, now| {
            let mut log = t.gate(&gate)?;
            let passage = log.pass(now, &windows);
            t.save_gate(&gate, &log)?;
            Ok(passage)
        })
        .await
    }

    async fn refund(&self, gate: &str) -> Result<(), StoreError> {
        let gate = gate.to_owned();
        self.run(Kind::Durable, move |t, _| {
            let mut log = t.gate(&gate)?;
            log.refund();
            t.save_gate(&gate, &log)
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
        // The writer first: a store whose writer is gone takes no event,
        // and after an I/O error it is the writer that reopens the
        // database, on an operation (this one, a second at the latest).
        // Durable: a full disk shows only when redb writes the file, which
        // lazy writes and claims do not (they wait for a durable commit);
        // this also bounds how long a lazy write waits for one.
        self.run(Kind::Durable, |t, _| t.usable()).await?;
        self.read(|_, _| Ok(()))
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
