//! The delivered-ledger: an event is handed to the sink at most once.
//!
//! A Vanus trigger redelivers whole batches: after an error, after its own
//! timeout, and at least once by design. The ledger remembers each event the
//! sink accepted, by its CloudEvents identity (`source` + `id`, which the
//! spec says identifies an event), for `ledger_ttl_secs`, so a redelivered
//! event is answered 200 at once without reaching the sink.
//!
//! While a request handles an event the event is *claimed*: a concurrent
//! redelivery of it (a trigger that gave up waiting and sent again) is
//! answered "retry later" instead of being handed to the sink a second
//! time. With a store other processes share, a claim is a record there that
//! lapses on its own after [`CLAIM_TTL`], so one left behind by a crash
//! blocks nothing for long; with a store only this process opens, claims
//! are kept in memory (nothing else could see them), and cost no write.
//! Either way, an event accepted whose record is still being written is
//! known here as accepted, so a redelivery in that moment is answered 200.
//!
//! Fail closed: a record written after the answer (the fast path) that
//! fails marks the store down at once; while it is down, records are
//! written before the answer, and one that fails turns the answer into
//! "retry later". A record that failed is kept in memory (a redelivery is
//! answered 200, not handed to the sink again) and written with the next
//! records once the store is back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudevents::{AttributesReader, Event};
use sha2::{Digest, Sha256};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::logging::{REPEAT_LOG_EVERY, Repeated};
use crate::store::{Remembered, Store, StoreError, StoreHealth};

/// How long a claim holds without being settled: far longer than a request
/// may take (a sink answers within the sender's 5 s), short enough that one
/// a crash left behind lapses before a trigger's fourth retry.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(30);

const DONE: &[u8] = crate::store::REMEMBERED;
const CLAIMED: &[u8] = b"claimed";

/// What the ledger knows of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Not seen before: claimed for this request; hand it to the sink.
    Fresh,
    /// Accepted before: answer delivered without calling the sink.
    Done,
    /// Another request is handling it right now: answer "retry later".
    Busy,
    /// The same event already appears earlier in this batch, at this index:
    /// it shares that one's outcome.
    SameAs(usize),
}

impl Entry {
    /// Its `result` in the metric `connector_ledger_events_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Entry::Fresh => "fresh",
            Entry::Done => "redelivered",
            Entry::Busy => "busy",
            Entry::SameAs(_) => "repeated",
        }
    }
}

/// An event's identity in the ledger: a hash of `source` and `id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity(String);

impl Identity {
    pub(crate) fn of(event: &Event) -> Self {
        let mut hasher = Sha256::new();
        for part in [event.source().as_str().as_bytes(), event.id().as_bytes()] {
            // Length-prefixed so ("a", "bc") and ("ab", "c") differ.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Identity(hex::encode(&hasher.finalize()[..16]))
    }
}

/// The hasher of the ledger's maps: an identity is a hash already, and the
/// sender cannot choose it, so SipHash's defence against chosen keys buys
/// nothing there.
type Hasher = foldhash::fast::RandomState;

/// What this process knows of the events it handles or accepted and whose
/// records are not written yet.
type LocalMap = HashMap<Identity, Local, Hasher>;

/// What this process knows of an event before the store does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// Claimed by a request of this process (a store only it opens).
    Handling,
    /// Accepted; its record is being written.
    Accepted,
}

/// The ledger over its part of the store.
#[derive(Debug)]
pub(crate) struct Ledger {
    store: Store,
    ttl: Duration,
    /// Records written after the answer went out; waited for at shutdown.
    settling: TaskTracker,
    /// What memory knows, and what a record's write changes there: shared
    /// with the writes that finish elsewhere (a task, the store's writer).
    recorder: Arc<Recorder>,
}

/// How long shutdown waits for the records still being written: as long as
/// a write of the embedded store may take before it is an error.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Accepted events whose record failed kept for another write at most.
const MAX_UNRECORDED: usize = 100_000;

impl Ledger {
    pub(crate) fn new(store: Store, ttl: Duration, health: StoreHealth) -> Self {
        let store_backend = store.backend_name();
        Self {
            store,
            ttl,
            settling: TaskTracker::new(),
            recorder: Arc::new(Recorder {
                local: Mutex::default(),
                failures: Mutex::default(),
                health,
                unrecorded: Mutex::default(),
                backend: store_backend,
            }),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, LocalMap> {
        lock(&self.recorder.local)
    }

    fn unrecorded(&self) -> std::sync::MutexGuard<'_, VecDeque<Identity>> {
        lock(&self.recorder.unrecorded)
    }

    /// Looks up every event of a batch and claims the fresh ones.
    pub(crate) async fn claim(&self, identities: &[Identity]) -> Result<Vec<Entry>, StoreError> {
        let mut first_seen: HashMap<&Identity, usize, Hasher> = HashMap::default();
        let mut entries = Vec::with_capacity(identities.len());
        let mut lookups = Vec::new();
        for (index, identity) in identities.iter().enumerate() {
            match first_seen.get(identity) {
                Some(&first) => entries.push(Some(Entry::SameAs(first))),
                None => {
                    first_seen.insert(identity, index);
                    entries.push(None);
                    lookups.push((index, self.claim_one(identity)));
                }
            }
        }
        // Concurrently: a shared backend pipelines them, the embedded one
        // commits them together.
        let (indexes, claims): (Vec<usize>, Vec<_>) = lookups.into_iter().unzip();
        let results = futures_util::future::join_all(claims).await;
        let mut failure = None;
        for (index, result) in indexes.into_iter().zip(results) {
            match result {
                Ok(entry) => entries[index] = Some(entry),
                Err(err) => failure = Some(err),
            }
        }
        if let Some(err) = failure {
            // Release what this call did claim: nothing is handed on.
            // Concurrently: each is a round trip to a shared store.
            let releases = identities
                .iter()
                .zip(&entries)
                .filter(|(_, entry)| **entry == Some(Entry::Fresh))
                .map(|(identity, _)| self.release(identity));
            futures_util::future::join_all(releases).await;
            return Err(err);
        }
        Ok(entries
            .into_iter()
            .map(|entry| entry.unwrap_or(Entry::Busy))
            .collect())
    }

    async fn claim_one(&self, identity: &Identity) -> Result<Entry, StoreError> {
        let known = |local: Option<&Local>| match local {
            Some(Local::Handling) => Some(Entry::Busy),
            Some(Local::Accepted) => Some(Entry::Done),
            None => None,
        };
        if let Some(entry) = known(self.local().get(identity)) {
            return Ok(entry);
        }
        if !self.store.is_shared() {
            if self.store.remembered(&identity.0).await? {
                return Ok(Entry::Done);
            }
            // Checked again under the lock: another request may have
            // claimed it while the store was read.
            let mut local = self.local();
            if let Some(entry) = known(local.get(identity)) {
                return Ok(entry);
            }
            local.insert(identity.clone(), Local::Handling);
            return Ok(Entry::Fresh);
        }
        let existing = self
            .store
            .create(&identity.0, CLAIMED.to_vec(), CLAIM_TTL)
            .await?;
        Ok(match existing.as_deref() {
            None => Entry::Fresh,
            Some(DONE) => Entry::Done,
            Some(_) => Entry::Busy,
        })
    }

    /// Drops a claim without recording anything.
    async fn release(&self, identity: &Identity) {
        if !self.store.is_shared() {
            self.local().remove(identity);
        } else if let Err(err) = self.store.remove(&identity.0).await {
            // It lapses by itself after CLAIM_TTL.
            tracing::debug!(%err, ledger_key = %identity.0, "cannot release a claim");
        }
    }

    /// Remembers the events the sink accepted and releases the claims of
    /// the others. With `wait`, or while the store is down, returns once
    /// the records are durable (the sender was told to retry, so the
    /// redelivery must find them; or the store may not write them), with
    /// the error of one that failed; otherwise writes them in the
    /// background, lazily: the sender has its 200 and will not send them
    /// again, so they ride on the store's next durable commit instead of
    /// paying an fsync each, and one that fails marks the store down (one
    /// that hangs with a stalled disk waits for the health probe to say
    /// so: it has no timer of its own).
    pub(crate) async fn settle(
        &self,
        settled: Vec<(Identity, bool)>,
        wait: bool,
    ) -> Result<(), StoreError> {
        let mut accepted = Vec::with_capacity(settled.len());
        let mut refused = Vec::new();
        for (identity, was_accepted) in settled {
            if was_accepted {
                accepted.push(identity);
            } else {
                refused.push(identity);
            }
        }
        // Concurrently: each is a round trip to a shared store, and the
        // answer waits for them.
        futures_util::future::join_all(refused.iter().map(|identity| self.release(identity))).await;
        if accepted.is_empty() {
            return Ok(());
        }
        let down = self.recorder.health.problem().is_some();
        let wait = wait || down;
        {
            let mut local = self.local();
            for identity in &accepted {
                local.insert(identity.clone(), Local::Accepted);
            }
        }
        // Their records failed before: they go with these.
        let again = if down {
            VecDeque::new()
        } else {
            std::mem::take(&mut *self.unrecorded())
        };
        if wait {
            return self.record(accepted, again).await;
        }
        self.record_in_background(accepted, again);
        Ok(())
    }

    /// Writes the records of `accepted` (and `again`) lazily, without
    /// waiting: in the store's writer, with no task, channel or timer of
    /// their own where the store can (the embedded one), else in a task.
    /// [`Ledger::flush`] waits for them either way.
    fn record_in_background(&self, accepted: Vec<Identity>, again: VecDeque<Identity>) {
        let all: Vec<Identity> = accepted.into_iter().chain(again).collect();
        let keys = all.iter().map(|identity| identity.0.clone()).collect();
        let pending = PendingRecords {
            all,
            recorder: Arc::clone(&self.recorder),
            _settling: self.settling.token(),
        };
        let then: Remembered = Box::new(move |result| pending.written(result));
        self.store.remember_in_background(keys, self.ttl, then);
    }

    /// Writes the records of `accepted` (and of `again`, which failed
    /// before), durably; the error of the first of `accepted` that failed.
    /// Each that fails stays known in memory as accepted and is kept to be
    /// written again; the store counts as down from then on.
    fn record(
        &self,
        accepted: Vec<Identity>,
        again: VecDeque<Identity>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let store = self.store.clone();
        let ttl = self.ttl;
        let recorder = Arc::clone(&self.recorder);
        let fresh = accepted.len();
        async move {
            let all: Vec<Identity> = accepted.into_iter().chain(again).collect();
            let writes = all.iter().map(|identity| {
                let store = store.clone();
                async move { store.remember(&identity.0, ttl, false).await }
            });
            let results = futures_util::future::join_all(writes).await;
            recorder.recorded(all, results, fresh)
        }
    }

    /// Waits for the records still being written.
    pub(crate) async fn flush(&self) {
        self.settling.close();
        if tokio::time::timeout(FLUSH_WAIT, self.settling.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                settles = self.settling.len(),
                wait_secs = FLUSH_WAIT.as_secs(),
                "records of accepted events were not written in time (is the disk stalled?); their events may be delivered again after a restart"
            );
        }
        // A last try for the records that failed.
        let again = std::mem::take(&mut *self.unrecorded());
        if !again.is_empty() {
            let _ = self.record(Vec::new(), again).await;
        }
    }
}

/// The records of one settle on their way to the store in the background.
/// Counted as settling ([`Ledger::flush`] waits) until written; dropped
/// unwritten (the store closed, its writer stopped), they count as failed:
/// kept in memory to write again, and the store marked down.
struct PendingRecords {
    /// Empty once taken in.
    all: Vec<Identity>,
    recorder: Arc<Recorder>,
    _settling: TaskTrackerToken,
}

impl PendingRecords {
    fn written(mut self, result: Result<(), StoreError>) {
        self.take_in(result);
    }

    fn take_in(&mut self, result: Result<(), StoreError>) {
        let all = std::mem::take(&mut self.all);
        if !all.is_empty() {
            let results = vec![result; all.len()];
            let _ = self.recorder.recorded(all, results, 0);
        }
    }
}

impl Drop for PendingRecords {
    fn drop(&mut self) {
        self.take_in(Err(StoreError::Closed));
    }
}

/// What the ledger keeps in memory, and what it does there once records
/// were written.
#[derive(Debug)]
struct Recorder {
    /// Claims, when the store is this process's alone, and accepted events
    /// whose records are not written yet.
    local: Mutex<LocalMap>,
    /// Failed record writes, logged once per [`REPEAT_LOG_EVERY`] with a
    /// count instead of one line an event.
    failures: Mutex<Repeated>,
    /// The store's health: a failed record write marks it down; while it
    /// is down records are written before the answer.
    health: StoreHealth,
    /// Accepted events whose record failed, to write again (up to
    /// [`MAX_UNRECORDED`]); memory answers for them meanwhile.
    unrecorded: Mutex<VecDeque<Identity>>,
    /// The store's backend, for the health's reason.
    backend: &'static str,
}

impl Recorder {
    /// Takes in the outcome of writing the record of each of `all`: a
    /// written one is forgotten from memory (the store answers for it
    /// now); one that failed stays there as accepted and is kept to be
    /// written again, and the store counts as down. Returns the error of
    /// the first of the first `fresh` that failed.
    fn recorded(
        &self,
        all: Vec<Identity>,
        results: Vec<Result<(), StoreError>>,
        fresh: usize,
    ) -> Result<(), StoreError> {
        let mut first_error = None;
        let mut failed = Vec::new();
        {
            // Only now: until the record is readable, memory answers
            // for it; and for one that failed, until it is written.
            let mut local = lock(&self.local);
            for (index, (identity, result)) in all.into_iter().zip(results).enumerate() {
                match result {
                    Ok(()) => {
                        local.remove(&identity);
                    }
                    Err(err) => {
                        if index < fresh && first_error.is_none() {
                            first_error = Some(err.clone());
                        }
                        failed.push((identity, err));
                    }
                }
            }
        }
        let Some((_, err)) = failed.first() else {
            return Ok(());
        };
        // Without a record, a redelivery of an accepted event may reach
        // the sink again: the next events are answered only once theirs
        // are written.
        self.health.failed(err.to_string(), self.backend);
        let due = lock(&self.failures).note(Instant::now(), REPEAT_LOG_EVERY);
        if let Some(count) = due {
            tracing::error!(%err, failed = failed.len(), count, every_secs = REPEAT_LOG_EVERY.as_secs(), "cannot record events in the delivered-ledger; kept in memory to write again (count: failed settles since the last such line)");
        }
        let mut kept = lock(&self.unrecorded);
        for (identity, _) in failed {
            if kept.len() >= MAX_UNRECORDED {
                // Forgotten: a redelivery reaches the sink again.
                if let Some(oldest) = kept.pop_front() {
                    lock(&self.local).remove(&oldest);
                }
            }
            kept.push_back(identity);
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Embedded;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use std::sync::Arc;

    fn event(source: &str, id: &str) -> Event {
        EventBuilderV10::new()
            .id(id)
            .source(source)
            .ty("t")
            .build()
            .expect("valid")
    }

    fn ledger(dir: &std::path::Path) -> Ledger {
        let store = Store::new(Arc::new(Embedded::open(dir, 1_000).expect("opens")));
        Ledger::new(store, Duration::from_secs(3_600), StoreHealth::default())
    }

    #[test]
    fn identity_keys_never_change() {
        // Stores written by earlier versions hold these keys: the format is
        // fixed (the first 16 bytes of SHA-256 over the length-prefixed
        // source and id, in lowercase hex).
        assert_eq!(
            Identity::of(&event("https://example.com/alerts", "event-42")).0,
            "91dafa6bf6e08f5170fcb3965ff30097"
        );
    }

    #[test]
    fn identity_is_source_and_id() {
        let a = Identity::of(&event("s", "1"));
        assert_eq!(a, Identity::of(&event("s", "1")));
        assert_ne!(a, Identity::of(&event("s", "2")));
        assert_ne!(a, Identity::of(&event("t", "1")));
        assert_ne!(
            Identity::of(&event("ab", "c")),
            Identity::of(&event("a", "bc"))
        );
    }

    #[tokio::test]
    async fn accepted_events_are_done_refused_ones_fresh_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = ledger(dir.path());
        let ids = [
            Identity::of(&event("s", "1")),
            Identity::of(&event("s", "2")),
        ];
        assert_eq!(
            ledger.claim(&ids).await,
            Ok(vec![Entry::Fresh, Entry::Fresh])
        );
        assert_eq!(
            ledger.claim(&ids).await,
            Ok(vec![Entry::Busy, Entry::Busy]),
            "claimed by the first request"
        );
        ledger
            .settle(vec![(ids[0].clone(), true), (ids[1].clone(), false)], true)
            .await
            .expect("recorded");
        assert_eq!(
            ledger.claim(&ids).await,
            Ok(vec![Entry::Done, Entry::Fresh])
        );
    }

    #[tokio::test]
    async fn a_repeat_inside_one_batch_follows_its_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = ledger(dir.path());
        let one = Identity::of(&event("s", "1"));
        let ids = [one.clone(), Identity::of(&event("s", "2")), one];
        assert_eq!(
            ledger.claim(&ids).await,
            Ok(vec![Entry::Fresh, Entry::Fresh, Entry::SameAs(0)])
        );
    }

    #[tokio::test]
    async fn an_accepted_event_is_done_while_its_record_is_being_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = ledger(dir.path());
        let ids = [Identity::of(&event("s", "1"))];
        ledger.claim(&ids).await.expect("claims");
        ledger
            .settle(vec![(ids[0].clone(), true)], false)
            .await
            .expect("settled");
        // No flush: the record is on its way, the redelivery is here now.
        assert_eq!(ledger.claim(&ids).await, Ok(vec![Entry::Done]));
        ledger.flush().await;
        assert_eq!(ledger.claim(&ids).await, Ok(vec![Entry::Done]));
    }

    /// A backend that cannot write in the background (the in-memory one,
    /// as Redis): the records go in a task, which flush waits for, and the
    /// records are then the store's, not memory's.
    #[tokio::test]
    async fn without_background_writes_the_records_go_in_a_task() {
        let memory = Arc::new(crate::store::Memory::new(Arc::new(
            crate::store::TokioClock::new(),
        )));
        let store = Store::new(Arc::clone(&memory) as Arc<dyn crate::store::Backend>);
        let ledger = Ledger::new(
            store.clone(),
            Duration::from_secs(3_600),
            StoreHealth::default(),
        );
        let ids = [Identity::of(&event("s", "1"))];
        ledger.claim(&ids).await.expect("claims");
        ledger
            .settle(vec![(ids[0].clone(), true)], false)
            .await
            .expect("not awaited");
        ledger.flush().await;
        assert!(ledger.local().is_empty(), "written: memory forgot it");
        assert_eq!(store.remembered(&ids[0].0).await, Ok(true));

        // Closed, the write fails: the event stays known as accepted and
        // the store counts as down.
        let health = StoreHealth::default();
        let ledger = Ledger::new(store, Duration::from_secs(3_600), health.clone());
        let two = [Identity::of(&event("s", "2"))];
        ledger.claim(&two).await.expect("claims");
        crate::store::Backend::close(memory.as_ref()).await;
        ledger
            .settle(vec![(two[0].clone(), true)], false)
            .await
            .expect("not awaited");
        ledger.flush().await;
        assert!(health.problem().is_some(), "marked down by the failure");
        assert_eq!(ledger.local().get(&two[0]), Some(&Local::Accepted));
    }

    /// Records the store drops unwritten (here: the task writing them is
    /// dropped with its runtime before it ran) count as failed: kept to be
    /// written again, and the store marked down; not silently forgotten.
    #[test]
    fn records_dropped_unwritten_count_as_failed() {
        let store = Store::new(Arc::new(crate::store::Memory::new(Arc::new(
            crate::store::SystemClock,
        ))));
        let health = StoreHealth::default();
        let ledger = Ledger::new(store, Duration::from_secs(3_600), health.clone());
        let ids = [Identity::of(&event("s", "1"))];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            ledger.claim(&ids).await.expect("claims");
            ledger
                .settle(vec![(ids[0].clone(), true)], false)
                .await
                .expect("not awaited");
        });
        // The write's task never ran; it goes with the runtime.
        drop(runtime);
        assert!(health.problem().is_some(), "marked down");
        assert_eq!(ledger.unrecorded().len(), 1, "kept to write again");
        assert_eq!(ledger.local().get(&ids[0]), Some(&Local::Accepted));
    }

    /// A shared store whose `remove` returns only once `removers` of them
    /// are in flight together, and whose `create` fails for one key: shows
    /// the ledger releases claims concurrently (serially, it would hang).
    #[derive(Debug)]
    struct TogetherRemoves {
        removers: tokio::sync::Barrier,
        failing_key: String,
    }

    #[async_trait::async_trait]
    impl crate::store::Backend for TogetherRemoves {
        fn name(&self) -> &'static str {
            "test"
        }
        fn is_shared(&self) -> bool {
            true
        }
        async fn create(
            &self,
            key: &str,
            _: Vec<u8>,
            _: Duration,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            if key == self.failing_key {
                return Err(StoreError::Closed);
            }
            Ok(None)
        }
        async fn remove(&self, _: &str) -> Result<(), StoreError> {
            self.removers.wait().await;
            Ok(())
        }
        // Not used by claims and releases.
        async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn put(&self, _: &str, _: Vec<u8>, _: Duration) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn put_lazily(&self, _: &str, _: Vec<u8>, _: Duration) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn lease(&self, _: &str, _: &str, _: Duration) -> Result<bool, StoreError> {
            Err(StoreError::Closed)
        }
        async fn push(
            &self,
            _: &str,
            _: Vec<u8>,
            _: u64,
            _: Option<crate::store::Once<'_>>,
        ) -> Result<crate::store::Pushed, StoreError> {
            Err(StoreError::Closed)
        }
        async fn peek(
            &self,
            _: &str,
            _: usize,
        ) -> Result<Vec<crate::store::QueueItem>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn pop_through(&self, _: &str, _: u64) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn len(&self, _: &str) -> Result<u64, StoreError> {
            Err(StoreError::Closed)
        }
        async fn pass(
            &self,
            _: &str,
            _: &[crate::store::Window],
        ) -> Result<crate::store::Passage, StoreError> {
            Err(StoreError::Closed)
        }
        async fn refund(&self, _: &str) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn hold(&self, _: &str, _: Duration) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn gate_state(
            &self,
            _: &str,
            _: Duration,
        ) -> Result<crate::store::GateState, StoreError> {
            Err(StoreError::Closed)
        }
        async fn health(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn close(&self) {}
    }

    fn together_removes(removers: usize, failing: &Identity) -> Ledger {
        let backend = TogetherRemoves {
            removers: tokio::sync::Barrier::new(removers),
            failing_key: failing.0.clone(),
        };
        Ledger::new(
            Store::new(Arc::new(backend)),
            Duration::from_secs(3_600),
            StoreHealth::default(),
        )
    }

    #[tokio::test]
    async fn refused_events_release_their_claims_together() {
        let ids = [
            Identity::of(&event("s", "1")),
            Identity::of(&event("s", "2")),
        ];
        let ledger = together_removes(2, &Identity::of(&event("s", "none")));
        assert_eq!(
            ledger.claim(&ids).await,
            Ok(vec![Entry::Fresh, Entry::Fresh])
        );
        let refused = ids.iter().map(|id| (id.clone(), false)).collect();
        tokio::time::timeout(Duration::from_secs(5), ledger.settle(refused, true))
            .await
            .expect("both releases in flight at once, not one after the other")
            .expect("nothing to record");
    }

    #[tokio::test]
    async fn a_failed_claim_releases_the_others_together() {
        let failing = Identity::of(&event("s", "3"));
        let ids = [
            Identity::of(&event("s", "1")),
            Identity::of(&event("s", "2")),
            failing.clone(),
        ];
        let ledger = together_removes(2, &failing);
        let claimed = tokio::time::timeout(Duration::from_secs(5), ledger.claim(&ids))
            .await
            .expect("both releases in flight at once, not one after the other");
        assert_eq!(claimed, Err(StoreError::Closed));
    }

    #[tokio::test]
    async fn background_records_land_before_flush_returns() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = ledger(dir.path());
        let ids = [Identity::of(&event("s", "1"))];
        ledger.claim(&ids).await.expect("claims");
        ledger
            .settle(vec![(ids[0].clone(), true)], false)
            .await
            .expect("settled");
        ledger.flush().await;
        assert_eq!(ledger.claim(&ids).await, Ok(vec![Entry::Done]));
    }

    #[tokio::test]
    async fn a_failed_record_marks_the_store_down_and_the_next_are_awaited() {
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = Arc::new(Embedded::open(dir.path(), 1_000).expect("opens"));
        let health = StoreHealth::default();
        let store = Store::new(Arc::clone(&embedded) as Arc<dyn crate::store::Backend>);
        let ledger = Ledger::new(store, Duration::from_secs(3_600), health.clone());
        let ids = [
            Identity::of(&event("s", "1")),
            Identity::of(&event("s", "2")),
        ];
        ledger.claim(&ids).await.expect("claims");
        // The disk fills; the probe's durable commit is the first to see it.
        embedded
            .fault_switch()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            crate::store::Backend::health(embedded.as_ref())
                .await
                .is_err()
        );
        assert!(health.problem().is_none(), "no probe runs here");
        // The fast path: answered before the record, which then fails...
        ledger
            .settle(vec![(ids[0].clone(), true)], false)
            .await
            .expect("not awaited");
        ledger.flush().await;
        // ... and marks the store down: the next record is awaited, and
        // its failure is the answer.
        assert!(health.problem().is_some(), "marked down by the failure");
        let settled = ledger.settle(vec![(ids[1].clone(), true)], false).await;
        assert!(settled.is_err(), "{settled:?}");
        // Both stay known as accepted: a redelivery is not handed on again.
        assert_eq!(ledger.claim(&ids).await, Ok(vec![Entry::Done, Entry::Done]));

        // The disk has room again and the store reopens: the next records
        // carry the failed ones along, durably.
        embedded
            .fault_switch()
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut healed = false;
        for _ in 0..200 {
            if crate::store::Backend::health(embedded.as_ref())
                .await
                .is_ok()
            {
                healed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(healed, "the store reopens");
        health.record(None, "embedded");
        let third = Identity::of(&event("s", "3"));
        ledger
            .claim(std::slice::from_ref(&third))
            .await
            .expect("claims");
        ledger
            .settle(vec![(third.clone(), true)], true)
            .await
            .expect("recorded");
        let fresh = Ledger::new(ledger.store.clone(), ledger.ttl, StoreHealth::default());
        assert_eq!(
            fresh.claim(&[ids[0].clone(), ids[1].clone(), third]).await,
            Ok(vec![Entry::Done, Entry::Done, Entry::Done]),
            "in the store, not only in memory"
        );
    }
}
