//! The embedded store's writer thread: it takes every operation waiting in
//! its queue at once (up to [`MAX_BATCH`]), applies them in one write
//! transaction, commits (with an fsync only when one of them must be
//! durable) and answers each; a batch of lazy puts alone lingers a moment
//! for more. Until every sender is gone, then a last durable commit. After
//! an I/O error it closes the database and reopens it (`heal.rs`), and
//! writes again the lazy puts that were committed but not yet durable (the
//! ledger's records of events already answered 200): they would otherwise
//! vanish with the database that could not make them durable.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::mpsc;

use super::heal::{Healer, is_io};
use super::marks::MarkIndex;
use super::tables::Tables;
use super::unavailable;
use crate::store::{Clock, StoreError, millis};

/// Operations applied in one transaction at most.
const MAX_BATCH: usize = 512;
/// How long a batch of lazy puts only waits for more before it commits:
/// nobody waits on them (the ledger writes its records after the answer
/// left), so a few milliseconds turn many small commits into one.
const LAZY_LINGER: Duration = Duration::from_millis(2);
/// Operations waiting for the writer at most; senders wait past it.
pub(super) const QUEUE_BOUND: usize = 4096;

/// How durable a write must be when it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) type Apply = Box<dyn FnOnce(&mut Tables<'_>, u64) -> (Option<Failure>, Finish) + Send>;
pub(super) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Why an operation (or a whole batch) failed.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    reason: String,
    /// An I/O error: the database must be reopened.
    io: bool,
}

impl Failure {
    pub(super) fn of(err: &redb::Error) -> Self {
        Self {
            reason: err.to_string(),
            io: is_io(err),
        }
    }
}

pub(super) struct Op {
    pub(super) kind: Kind,
    pub(super) apply: Apply,
    /// For a lazy put: what it writes, to write again if the database fails
    /// before a durable commit carried it.
    pub(super) lazy_put: Option<LazyPut>,
}

/// What a lazy write writes, with its time to live.
pub(super) enum LazyPut {
    /// A record: key, value.
    Record(String, Vec<u8>, Duration),
    /// Marks ([`Tables::remember`]), with their time to live.
    Marks(Vec<u128>, Duration),
}

impl LazyPut {
    /// What it wrote, with its expiry, into `written`.
    fn expire_into(self, now: u64, written: &mut Vec<Written>) {
        match self {
            LazyPut::Record(key, value, ttl) => {
                written.push(Written::Record(key, value, now.saturating_add(millis(ttl))));
            }
            LazyPut::Marks(marks, ttl) => {
                let expires = now.saturating_add(millis(ttl));
                written.extend(marks.into_iter().map(|mark| Written::Mark(mark, expires)));
            }
        }
    }
}

/// A lazy write committed, with its expiry (ms).
#[derive(Debug)]
enum Written {
    Record(String, Vec<u8>, u64),
    Mark(u128, u64),
}

/// Lazy puts kept until they are durable at most; past it the oldest go
/// (a durable commit comes at least once a second, from the probe).
const MAX_UNFLUSHED: usize = 100_000;

/// The lazy puts committed since the last durable commit.
#[derive(Debug, Default)]
struct Unflushed {
    puts: VecDeque<Written>,
    /// True after an I/O error: the next commit writes them again.
    replay: bool,
    /// Dropped past [`MAX_UNFLUSHED`] since the last line about it.
    dropped: u64,
}

impl Unflushed {
    fn committed(&mut self, durable: bool, puts: Vec<Written>) {
        if durable {
            self.puts.clear();
            self.replay = false;
            self.dropped = 0;
            return;
        }
        for put in puts {
            if self.puts.len() >= MAX_UNFLUSHED {
                self.puts.pop_front();
                self.dropped += 1;
            }
            self.puts.push_back(put);
        }
    }

    /// An I/O error: the puts kept are written again with the next commit.
    fn failed(&mut self) {
        self.replay = true;
        if self.dropped > 0 {
            tracing::warn!(
                lost = std::mem::take(&mut self.dropped),
                "lazy writes lost with the failed database: more waited for a durable commit than are kept"
            );
        }
    }
}

/// The writer thread: batches, applies, commits, answers; until every
/// sender is gone. An I/O error closes the database; `healer` reopens it.
pub(super) fn write_loop(
    mut healer: Healer,
    mut queue: mpsc::Receiver<Op>,
    clock: &dyn Clock,
    marks: &MarkIndex,
) {
    let mut unflushed = Unflushed::default();
    // Where the sweep of the previous release's marks goes on from.
    let mut sweep = 0u128;
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        drain(&mut queue, &mut batch);
        if batch.iter().all(|op| op.kind == Kind::Lazy) {
            std::thread::sleep(LAZY_LINGER);
            drain(&mut queue, &mut batch);
        }
        let db = match healer.database(Instant::now()) {
            Ok(db) => db,
            Err(reason) => {
                refuse(batch, &unavailable(reason));
                continue;
            }
        };
        let now = clock.now_ms();
        // A panic in one batch must not end the writer: its callers are
        // answered (their channels close), the next batch goes on.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut broke = |reason| healer.broke(Instant::now(), reason);
            apply_batch(
                &db,
                batch,
                marks,
                now,
                &mut unflushed,
                &mut sweep,
                &mut broke,
            );
        }));
        drop(db);
        if applied.is_err() {
            tracing::error!(
                "the store's writer failed on a batch; its operations were not applied"
            );
        }
    }
    // Closed: a durable commit makes the lazy writes before it durable too.
    let Ok(db) = healer.database(Instant::now()) else {
        return;
    };
    let flushed: Result<(), redb::Error> = db
        .begin_write()
        .map_err(redb::Error::from)
        .and_then(|txn| txn.commit().map_err(redb::Error::from));
    if let Err(err) = flushed {
        tracing::error!(%err, "cannot flush the store on close");
    }
}

/// Answers every operation of `batch` with `err`, applying none.
fn refuse(batch: Vec<Op>, err: &StoreError) {
    for op in batch {
        let (_, finish) = (op.apply)(&mut Tables::unusable(), 0);
        finish(Err(err.clone()));
    }
}

/// Writes again the lazy puts a failed database may have lost.
fn replay(tables: &mut Tables<'_>, unflushed: &Unflushed, now: u64) -> Option<Failure> {
    if !unflushed.replay {
        return None;
    }
    for put in &unflushed.puts {
        let written = match put {
            Written::Record(key, value, expires) => tables.put(key, value, *expires),
            Written::Mark(mark, expires) => tables.remember(*mark, *expires, now),
        };
        if let Err(err) = written {
            return Some(Failure::of(&err));
        }
    }
    None
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

/// Applies `batch` in one transaction and answers each operation; an I/O
/// error that failed it goes to `broke` first, so that no operation
/// answered after it meets the failed database.
fn apply_batch(
    db: &Database,
    batch: Vec<Op>,
    marks: &MarkIndex,
    now: u64,
    unflushed: &mut Unflushed,
    sweep: &mut u128,
    broke: &mut dyn FnMut(String),
) {
    // After an I/O error, the lazy puts written again must be durable.
    let durable = unflushed.replay || batch.iter().any(|op| op.kind == Kind::Durable);
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(err) => {
            let failure = Failure::of(&err.into());
            let refused = unavailable(&failure.reason);
            if failure.io {
                unflushed.failed();
                broke(failure.reason);
            }
            refuse(batch, &refused);
            return;
        }
    };
    if !durable {
        // Cannot fail before anything was written in this transaction.
        let _ = txn.set_durability(Durability::None);
    }
    let (finishes, lazy_puts, failure) = run_ops(&txn, batch, now, marks, unflushed, sweep);
    let failure = match failure {
        Some(failure) => {
            let _ = txn.abort();
            Some(failure)
        }
        None => txn.commit().err().map(|err| Failure::of(&err.into())),
    };
    let result = match &failure {
        Some(failure) => Err(unavailable(&failure.reason)),
        None => Ok(()),
    };
    match failure {
        None => unflushed.committed(durable, lazy_puts),
        Some(failure) if failure.io => {
            unflushed.failed();
            broke(failure.reason);
        }
        Some(_) => {}
    }
    for finish in finishes {
        finish(result.clone());
    }
}

/// The answers to give once the transaction is done.
type Applied = (Vec<Finish>, Vec<Written>, Option<Failure>);

/// Applies every op of a batch (after the lazy puts to write again, if
/// any); the first failure (if any) aborts it. Returns the lazy puts among
/// them too, with their expiry.
fn run_ops(
    txn: &WriteTransaction,
    batch: Vec<Op>,
    now: u64,
    marks: &MarkIndex,
    unflushed: &Unflushed,
    sweep: &mut u128,
) -> Applied {
    let mut tables = match Tables::open(txn, marks) {
        Ok(tables) => tables,
        Err(err) => {
            let failure = Failure::of(&err);
            let finishes = batch
                .into_iter()
                .map(|op| (op.apply)(&mut Tables::unusable(), now).1)
                .collect();
            return (finishes, Vec::new(), Some(failure));
        }
    };
    let mut failure = replay(&mut tables, unflushed, now);
    let mut finishes = Vec::with_capacity(batch.len());
    let mut lazy_puts = Vec::new();
    for op in batch {
        if let Some(put) = op.lazy_put {
            put.expire_into(now, &mut lazy_puts);
        }
        let (failed, finish) = (op.apply)(&mut tables, now);
        failure = failure.or(failed);
        finishes.push(finish);
    }
    if failure.is_none() {
        failure = tables
            .purge(now, marks.max_records())
            .and_then(|()| tables.forget_generations(now))
            .and_then(|()| tables.purge_legacy_marks(now, marks.max_records(), sweep))
            .err()
            .map(|e| Failure::of(&e));
    }
    (finishes, lazy_puts, failure)
}
