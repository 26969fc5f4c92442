//! The embedded store's writer thread: it takes every operation waiting in
//! its queue at once (up to [`MAX_BATCH`]), applies them in one write
//! transaction, commits (with an fsync only when one of them must be
//! durable) and answers each; a batch of lazy puts alone lingers a moment
//! for more. Until every sender is gone, then a last durable commit. After
//! an I/O error it closes the database and reopens it (`heal.rs`).

use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::mpsc;

use super::heal::{Healer, is_io};
use super::tables::Tables;
use super::unavailable;
use crate::store::{Clock, StoreError};

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
}

/// The writer thread: batches, applies, commits, answers; until every
/// sender is gone. An I/O error closes the database; `healer` reopens it.
pub(super) fn write_loop(
    mut healer: Healer,
    mut queue: mpsc::Receiver<Op>,
    max_records: u64,
    clock: &dyn Clock,
) {
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
            apply_batch(&db, batch, max_records, now)
        }));
        drop(db);
        match applied {
            Ok(Some(io_error)) => healer.broke(Instant::now(), io_error),
            Ok(None) => {}
            Err(_) => tracing::error!(
                "the store's writer failed on a batch; its operations were not applied"
            ),
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

/// Adds what is waiting in `queue` to `batch`, up to [`MAX_BATCH`].
fn drain(queue: &mut mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

/// Applies `batch` in one transaction and answers each operation; returns
/// the I/O error that failed it, if one did.
fn apply_batch(db: &Database, batch: Vec<Op>, max_records: u64, now: u64) -> Option<String> {
    let durable = batch.iter().any(|op| op.kind == Kind::Durable);
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(err) => {
            let failure = Failure::of(&err.into());
            refuse(batch, &unavailable(&failure.reason));
            return failure.io.then_some(failure.reason);
        }
    };
    if !durable {
        // Cannot fail before anything was written in this transaction.
        let _ = txn.set_durability(Durability::None);
    }
    let (finishes, failure) = run_ops(&txn, batch, now, max_records);
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
    for finish in finishes {
        finish(result.clone());
    }
    failure.and_then(|failure| failure.io.then_some(failure.reason))
}

/// Applies every op of a batch; the first failure (if any) aborts it.
fn run_ops(
    txn: &WriteTransaction,
    batch: Vec<Op>,
    now: u64,
    max_records: u64,
) -> (Vec<Finish>, Option<Failure>) {
    let mut tables = match Tables::open(txn) {
        Ok(tables) => tables,
        Err(err) => {
            let failure = Failure::of(&err);
            let finishes = batch
                .into_iter()
                .map(|op| (op.apply)(&mut Tables::unusable(), now).1)
                .collect();
            return (finishes, Some(failure));
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
        failure = tables
            .purge(now, max_records)
            .err()
            .map(|e| Failure::of(&e));
    }
    (finishes, failure)
}
