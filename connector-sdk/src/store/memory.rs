//! A backend in memory, for tests (feature `testing`): the same contract as
//! the embedded and Redis backends (it runs the same checks), nothing on
//! disk, and, with [`TokioClock`], its time moves with tokio's, so a test
//! on a paused clock (`#[tokio::test(start_paused = true)]`) crosses a
//! minute's window in no time. Every operation completes at once: nothing
//! waits on a thread, so tokio's paused clock never jumps while a store
//! call is pending.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::gate::GateLog;
use super::{
    Backend, Clock, GateState, Once, Passage, Pushed, QueueItem, StoreError, Window, millis,
};

/// The wall clock when it was made, moved on by tokio's clock since: a
/// paused test's `tokio::time::advance` (or its idle auto-advance) moves it.
#[derive(Debug)]
pub struct TokioClock {
    start_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the wall clock now, then following tokio's.
    pub fn new() -> Self {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(millis)
            .unwrap_or(0);
        Self {
            start_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.start_ms.saturating_add(millis(self.start.elapsed()))
    }
}

/// The in-memory backend.
#[derive(Debug)]
pub struct Memory {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    shared: bool,
}

#[derive(Debug, Default)]
struct State {
    /// key -> (value, expires at ms)
    records: HashMap<String, (Vec<u8>, u64)>,
    /// queue -> (items, next sequence number)
    queues: HashMap<String, (VecDeque<QueueItem>, u64)>,
    gates: HashMap<String, GateLog>,
    closed: bool,
}

impl Memory {
    /// An empty store on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::default(),
            shared: false,
        }
    }

    /// An empty store on `clock` that says it is shared
    /// ([`Backend::is_shared`]): hand it to two sinks in one test and they
    /// behave as two replicas on one Redis (leases, no local shortcuts).
    pub fn shared(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: true,
            ..Self::new(clock)
        }
    }

    fn state(&self) -> Result<(MutexGuard<'_, State>, u64), StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Err(StoreError::Closed);
        }
        Ok((state, self.clock.now_ms()))
    }
}

impl State {
    fn record(&self, key: &str, now: u64) -> Option<&Vec<u8>> {
        self.records
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value)
    }
}

#[async_trait]
impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn is_shared(&self) -> bool {
        self.shared
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (state, now) = self.state()?;
        Ok(state.record(key, now).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let (mut state, now) = self.state()?;
        state
            .records
            .insert(key.to_owned(), (value, now.saturating_add(millis(ttl))));
        Ok(())
    }

    async fn put_lazily(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.put(key, value, ttl).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (mut state, now) = self.state()?;
        if let Some(existing) = state.record(key, now) {
            return Ok(Some(existing.clone()));
        }
        state
            .records
            .insert(key.to_owned(), (value, now.saturating_add(millis(ttl))));
        Ok(None)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let (mut state, _) = self.state()?;
        state.records.remove(key);
        Ok(())
    }

    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (mut state, now) = self.state()?;
        if state
            .record(key, now)
            .is_some_and(|current| current != holder.as_bytes())
        {
            return Ok(false);
        }
        state.records.insert(
            key.to_owned(),
            (holder.as_bytes().to_vec(), now.saturating_add(millis(ttl))),
        );
        Ok(true)
    }

    async fn push(
        &self,
        queue: &str,
        item: Vec<u8>,
        max_len: u64,
        once: Option<Once<'_>>,
    ) -> Result<Pushed, StoreError> {
        let (mut state, now) = self.state()?;
        if let Some(once) = once
            && state.record(once.key, now).is_some()
        {
            return Ok(Pushed::Already);
        }
        let (items, next) = state.queues.entry(queue.to_owned()).or_default();
        let len = items.len() as u64;
        if len >= max_len {
            return Ok(Pushed::Full { len });
        }
        items.push_back(QueueItem {
            seq: *next,
            data: item,
        });
        *next += 1;
        if let Some(once) = once {
            state.records.insert(
                once.key.to_owned(),
                (Vec::new(), now.saturating_add(millis(once.ttl))),
            );
        }
        Ok(Pushed::Queued { len: len + 1 })
    }

    async fn peek(&self, queue: &str, max_items: usize) -> Result<Vec<QueueItem>, StoreError> {
        let (state, _) = self.state()?;
        Ok(state
            .queues
            .get(queue)
            .map(|(items, _)| items.iter().take(max_items).cloned().collect())
            .unwrap_or_default())
    }

    async fn pop_through(&self, queue: &str, seq: u64) -> Result<(), StoreError> {
        let (mut state, _) = self.state()?;
        if let Some((items, _)) = state.queues.get_mut(queue) {
            while items.front().is_some_and(|item| item.seq <= seq) {
                items.pop_front();
            }
        }
        Ok(())
    }

    async fn len(&self, queue: &str) -> Result<u64, StoreError> {
        let (state, _) = self.state()?;
        Ok(state
            .queues
            .get(queue)
            .map_or(0, |(items, _)| items.len() as u64))
    }

    async fn pass(&self, gate: &str, windows: &[Window]) -> Result<Passage, StoreError> {
        let (mut state, now) = self.state()?;
        Ok(state
            .gates
            .entry(gate.to_owned())
            .or_default()
            .pass(now, windows))
    }

    async fn refund(&self, gate: &str) -> Result<(), StoreError> {
        let (mut state, _) = self.state()?;
        if let Some(log) = state.gates.get_mut(gate) {
            log.refund();
        }
        Ok(())
    }

    async fn hold(&self, gate: &str, duration: Duration) -> Result<(), StoreError> {
        let (mut state, now) = self.state()?;
        state
            .gates
            .entry(gate.to_owned())
            .or_default()
            .hold(now, duration);
        Ok(())
    }

    async fn gate_state(&self, gate: &str, window: Duration) -> Result<GateState, StoreError> {
        let (state, now) = self.state()?;
        Ok(state
            .gates
            .get(gate)
            .map(|log| log.state(now, window))
            .unwrap_or_default())
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.state().map(drop)
    }

    async fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, contract};

    #[tokio::test(start_paused = true)]
    async fn keeps_the_store_contract_on_tokios_clock() {
        let store = Store::new(Arc::new(Memory::new(Arc::new(TokioClock::new()))));
        contract::check_all(&store).await;
    }

    #[tokio::test(start_paused = true)]
    async fn its_time_moves_with_a_paused_tokio_clock() {
        let store = Store::new(Arc::new(Memory::new(Arc::new(TokioClock::new()))));
        let minute = Duration::from_secs(60);
        assert!(matches!(
            store.pass("g", 1, minute).await,
            Ok(Passage::Open { .. })
        ));
        assert!(matches!(
            store.pass("g", 1, minute).await,
            Ok(Passage::Wait(_))
        ));
        tokio::time::advance(minute).await;
        assert!(matches!(
            store.pass("g", 1, minute).await,
            Ok(Passage::Open { .. })
        ));
    }
}
