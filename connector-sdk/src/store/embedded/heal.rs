//! Healing after an I/O error. Once a write fails on the disk (a full
//! volume, say), redb answers every later transaction "Previous I/O error
//! occurred. Please close and re-open the database", for ever. So the
//! writer closes the database at the first I/O error and reopens it, with
//! a backoff ([`FIRST_RETRY`] doubling to [`LAST_RETRY`]), on the
//! operations that follow (the health probe sends one a second). Until it
//! is open again every operation, reads included, fails at once: nothing is
//! answered from a database that cannot record what follows.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use crate::logging::{REPEAT_LOG_EVERY, Repeated};

/// The first reopen is tried this long after the I/O error.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two reopen attempts.
pub(super) const LAST_RETRY: Duration = Duration::from_secs(10);

/// When the next attempt may be made: a wait that doubles with each failed
/// attempt, up to a maximum, and starts over once one succeeds.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    first: Duration,
    last: Duration,
    delay: Duration,
    not_before: Option<Instant>,
}

impl Backoff {
    pub(super) fn new(first: Duration, last: Duration) -> Self {
        Self {
            first,
            last,
            delay: first,
            not_before: None,
        }
    }

    /// True when an attempt may be made at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| now >= at)
    }

    /// How long until the next attempt, from `now`.
    pub(super) fn wait(&self, now: Instant) -> Duration {
        self.not_before
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }

    /// A failure at `now`: the next attempt waits the current delay, and
    /// the delay after it doubles.
    pub(super) fn failed(&mut self, now: Instant) {
        self.not_before = Some(now + self.delay);
        self.delay = self.delay.saturating_mul(2).min(self.last);
    }

    /// A success: the next failure waits the first delay again.
    pub(super) fn reset(&mut self) {
        self.delay = self.first;
        self.not_before = None;
    }
}

/// Opens the database again (and creates its tables); `Err` says why not.
pub(super) type Reopen = Box<dyn FnMut() -> Result<Database, String> + Send>;

/// The open database, shared by the writer and the readers; `None` while
/// it is being reopened after an I/O error.
#[derive(Debug, Default)]
pub(super) struct Slot {
    db: RwLock<Option<Arc<Database>>>,
}

impl Slot {
    pub(super) fn new(db: Database) -> Self {
        Self {
            db: RwLock::new(Some(Arc::new(db))),
        }
    }

    /// The open database, unless it is being reopened.
    pub(super) fn current(&self) -> Option<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, db: Option<Arc<Database>>) {
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = db;
    }
}

/// The writer's side of healing: the database, or why there is none and
/// when to try again.
pub(super) struct Healer {
    slot: Arc<Slot>,
    /// `None` for a store that cannot be reopened (in memory).
    reopen: Option<Reopen>,
    /// Why the database is closed; `None` while it is open.
    broken: Option<String>,
    backoff: Backoff,
    failures: Repeated,
    path: String,
}

impl Healer {
    pub(super) fn new(slot: Arc<Slot>, reopen: Option<Reopen>, path: String) -> Self {
        Self {
            slot,
            reopen,
            broken: None,
            backoff: Backoff::new(FIRST_RETRY, LAST_RETRY),
            failures: Repeated::default(),
            path,
        }
    }

    /// The database to apply a batch to at `now`: the open one, or one
    /// reopened now if an attempt is due; else why there is none.
    pub(super) fn database(&mut self, now: Instant) -> Result<Arc<Database>, String> {
        let Some(reason) = self.broken.clone() else {
            return self
                .slot
                .current()
                .ok_or_else(|| "the database is closed".to_owned());
        };
        let refused = |wait: Duration| {
            format!(
                "the database is closed after an I/O error ({reason}); reopening in {} ms",
                wait.as_millis()
            )
        };
        let Some(reopen) = self.reopen.as_mut() else {
            return Err(format!(
                "the database failed ({reason}) and cannot be reopened"
            ));
        };
        if !self.backoff.due(now) {
            return Err(refused(self.backoff.wait(now)));
        }
        match reopen() {
            Ok(db) => {
                let db = Arc::new(db);
                self.slot.set(Some(Arc::clone(&db)));
                self.broken = None;
                self.backoff.reset();
                tracing::info!(path = %self.path, "the store's database is reopened after an I/O error and writes again");
                Ok(db)
            }
            Err(err) => {
                self.backoff.failed(now);
                if let Some(count) = self.failures.note(now, REPEAT_LOG_EVERY) {
                    tracing::error!(path = %self.path, %err, count, retry_in_ms = u64::try_from(self.backoff.wait(now).as_millis()).unwrap_or(u64::MAX), "cannot reopen the store's database (count: attempts since the last such line)");
                }
                Err(refused(self.backoff.wait(now)))
            }
        }
    }

    /// An I/O error at `now`: the database is closed (once the readers
    /// still on it finish) and reopened on a later operation.
    pub(super) fn broke(&mut self, now: Instant, reason: String) {
        if self.reopen.is_none() {
            return;
        }
        self.slot.set(None);
        if self.broken.is_none() {
            self.backoff.reset();
            self.backoff.failed(now);
            if let Some(count) = self.failures.note(now, REPEAT_LOG_EVERY) {
                tracing::error!(path = %self.path, %reason, count, "the store's database had an I/O error: closing it and reopening it with a backoff; until then every operation fails");
            }
        }
        self.broken = Some(reason);
    }
}

/// True when `err` is an I/O error, or redb's "previous I/O error": the
/// errors after which the database must be closed and reopened.
pub(super) fn is_io(err: &redb::Error) -> bool {
    matches!(err, redb::Error::Io(_) | redb::Error::PreviousIo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_success() {
        let start = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert!(backoff.due(start), "the first attempt is due at once");
        let mut waits = Vec::new();
        let mut now = start;
        for _ in 0..10 {
            backoff.failed(now);
            let wait = backoff.wait(now);
            assert!(!backoff.due(now + wait - Duration::from_millis(1)));
            assert!(backoff.due(now + wait));
            waits.push(wait.as_millis());
            now += wait;
        }
        assert_eq!(
            waits,
            [
                100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000
            ]
        );
        backoff.reset();
        assert!(backoff.due(now));
        backoff.failed(now);
        assert_eq!(backoff.wait(now), Duration::from_millis(100));
    }
}
