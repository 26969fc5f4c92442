//! An outbox: events accepted (answered 200) while their destinations'
//! budget was used up or they were held, kept durably in the connector's
//! store in arrival order until the flusher has sent them, alone or in
//! digests. One per pool of destinations (one robot, or the robots of a
//! chat group), so one target's events keep their order.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::metrics;
use crate::store::{Once, Pushed, QueueItem, Store, StoreError};

/// One queued payload and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<P> {
    /// The event's `id`, for logs.
    pub event_id: String,
    /// The event's `source`, for logs.
    pub source: String,
    /// The target it is for (a chat group).
    #[serde(alias = "chat_group")]
    pub target: String,
    /// When it was queued, in milliseconds since the epoch.
    pub queued_at_ms: i64,
    /// What to send.
    #[serde(flatten)]
    pub payload: P,
}

/// A queued entry and its place in the queue; `None` when the stored bytes
/// do not decode (written by an incompatible version).
#[derive(Debug)]
pub(crate) struct Queued<P> {
    /// Its sequence number in the queue.
    pub seq: u64,
    /// The entry.
    pub entry: Option<Entry<P>>,
}

/// How long a queued message is remembered, so a redelivery does not queue
/// it again: as long as a Vanus trigger redelivers.
const QUEUED_REMEMBERED: Duration = Duration::from_secs(86_400);

/// How long the flusher's lease on an outbox lasts without renewal: longer
/// than a send from it may take, so a live flusher never loses it mid-send.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(15);

/// One pool's outbox.
#[derive(Debug)]
pub(crate) struct Outbox<P> {
    store: Store,
    queue: String,
    lease: String,
    max_queued: u64,
    /// Its name in metrics: its first target.
    name: Arc<str>,
    /// The queue's length as this process counts it: exact when only this
    /// process writes the store; a shared store is asked instead.
    len: AtomicI64,
    /// Wakes the flusher when something is queued.
    wake: Notify,
    payload: PhantomData<fn() -> P>,
}

impl<P: Serialize + DeserializeOwned> Outbox<P> {
    /// The outbox whose store key is `key` (named `name` in metrics), with
    /// what a previous run left in it.
    pub(crate) async fn open(
        store: Store,
        key: &str,
        max_queued: u64,
        name: Arc<str>,
    ) -> Result<Self, StoreError> {
        let queue = format!("outbox/{key}");
        // A shared store is asked each time: its length is not read here, so
        // a replica starts while Redis is down (and is not ready until it is
        // back).
        let len = if store.is_shared() {
            0
        } else {
            store.len(&queue).await?
        };
        Ok(Self {
            store,
            lease: format!("flusher/{key}"),
            queue,
            max_queued,
            name,
            len: AtomicI64::new(i64::try_from(len).unwrap_or(i64::MAX)),
            wake: Notify::new(),
            payload: PhantomData,
        })
    }

    /// How many it may hold.
    pub(crate) fn max_queued(&self) -> u64 {
        self.max_queued
    }

    /// Entries queued.
    pub(crate) async fn len(&self) -> Result<u64, StoreError> {
        if self.store.is_shared() {
            return self.store.len(&self.queue).await;
        }
        Ok(u64::try_from(self.len.load(Ordering::Acquire)).unwrap_or(0))
    }

    /// Appends `entry`, durably, unless the outbox is full, or the same
    /// event (by `queue_key`, its identity in its target) was queued before:
    /// a redelivery of an event whose first delivery queued it, even in a
    /// process that died before it could answer, is [`Pushed::Already`].
    pub(crate) async fn push(
        &self,
        entry: &Entry<P>,
        queue_key: &str,
    ) -> Result<Pushed, StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|err| StoreError::Unavailable {
            backend: "outbox",
            reason: format!("could not encode the entry: {err}"),
        })?;
        let once_key = format!("queued/{queue_key}");
        let once = Once {
            key: &once_key,
            ttl: QUEUED_REMEMBERED,
        };
        let pushed = self
            .store
            .push(&self.queue, bytes, self.max_queued, Some(once))
            .await?;
        match pushed {
            Pushed::Queued { len } => {
                self.len.fetch_add(1, Ordering::AcqRel);
                metrics::outbox_queued(&self.name, len);
                self.wake.notify_one();
            }
            Pushed::Full { len } => metrics::outbox_queued(&self.name, len),
            Pushed::Already => {}
        }
        Ok(pushed)
    }

    /// Up to `max` entries from the head, oldest first.
    pub(crate) async fn peek(&self, max: usize) -> Result<Vec<Queued<P>>, StoreError> {
        let items = self.store.peek(&self.queue, max).await?;
        Ok(items
            .into_iter()
            .map(|QueueItem { seq, data }| Queued {
                seq,
                entry: serde_json::from_slice(&data).ok(),
            })
            .collect())
    }

    /// Removes the head entries up to and including `seq`: `count` of them.
    pub(crate) async fn pop_through(&self, seq: u64, count: usize) -> Result<(), StoreError> {
        self.store.pop_through(&self.queue, seq).await?;
        self.len
            .fetch_sub(i64::try_from(count).unwrap_or(i64::MAX), Ordering::AcqRel);
        self.publish_len().await;
        Ok(())
    }

    /// Sets the outbox's `connector_outbox_queued` to its length, as
    /// [`Outbox::len`] knows it (the store's, when shared); left as it was
    /// when the store does not answer. Always a length read, never a
    /// running sum, so it cannot drift.
    pub(crate) async fn publish_len(&self) {
        match self.len().await {
            Ok(len) => metrics::outbox_queued(&self.name, len),
            Err(err) => {
                tracing::debug!(outbox = %self.name, %err, "the outbox's length is unknown; its gauge is left as it was");
            }
        }
    }

    /// Resolves when this process queued something since the last call;
    /// with a shared store, also after a second (another replica may have).
    pub(crate) async fn queued(&self) {
        if self.store.is_shared() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        } else {
            self.wake.notified().await;
        }
    }

    /// Takes or renews the right to flush this outbox, for [`LEASE_TTL`]:
    /// one flusher at a time, across replicas; when its holder dies another
    /// takes over once the lease lapses. A store only this process opens
    /// needs none (and a lease of the process before a restart must not
    /// hold up this one).
    pub(crate) async fn lease(&self, holder: &str) -> Result<bool, StoreError> {
        if !self.store.is_shared() {
            return Ok(true);
        }
        self.store.lease(&self.lease, holder, LEASE_TTL).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Embedded;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A payload as a sink would have one: a struct, flattened into the entry.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Text {
        body: String,
    }

    fn entry(id: &str) -> Entry<Text> {
        Entry {
            event_id: id.to_owned(),
            source: "test".into(),
            target: "ops".into(),
            queued_at_ms: 1,
            payload: Text {
                body: format!("message {id}"),
            },
        }
    }

    #[test]
    fn an_entry_written_before_targets_had_their_name_still_reads() {
        // What sink-dingtalk 0.1 queued: `chat_group`, and its payload's
        // fields beside the entry's.
        let old = br#"{"event_id":"e1","source":"s","chat_group":"ops","msgtype":"text","queued_at_ms":7,"body":"hi","summary":{"headline":"hi","at_ms":7}}"#;
        let entry: Entry<Text> = serde_json::from_slice(old).expect("decodes");
        assert_eq!(
            (entry.target.as_str(), entry.payload.body.as_str()),
            ("ops", "hi")
        );
    }

    #[tokio::test]
    async fn entries_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 1_000).expect("opens")));
        let outbox = Outbox::<Text>::open(store.clone(), "robot", 2, Arc::from("ops"))
            .await
            .expect("opens");
        assert_eq!(
            outbox.push(&entry("a"), "uuid-a").await,
            Ok(Pushed::Queued { len: 1 })
        );
        assert_eq!(
            outbox.push(&entry("a"), "uuid-a").await,
            Ok(Pushed::Already),
            "a message is queued once"
        );
        assert_eq!(
            outbox.push(&entry("b"), "uuid-b").await,
            Ok(Pushed::Queued { len: 2 })
        );
        assert_eq!(
            outbox.push(&entry("c"), "uuid-c").await,
            Ok(Pushed::Full { len: 2 })
        );
        assert_eq!(outbox.len().await, Ok(2));

        let head = outbox.peek(10).await.expect("peek");
        let ids: Vec<_> = head
            .iter()
            .filter_map(|q| q.entry.as_ref().map(|e| e.event_id.as_str()))
            .collect();
        assert_eq!(ids, ["a", "b"]);
        outbox.pop_through(head[0].seq, 1).await.expect("pop");

        let reopened = Outbox::<Text>::open(store, "robot", 2, Arc::from("ops"))
            .await
            .expect("opens");
        assert_eq!(reopened.len().await, Ok(1));
        let left = reopened.peek(10).await.expect("peek");
        assert_eq!(left[0].entry, Some(entry("b")));
    }

    /// The latest value of each robot's outbox gauge.
    #[derive(Clone, Default)]
    struct Gauges(Arc<Mutex<HashMap<String, f64>>>);

    struct RobotGauge(String, Gauges);

    impl Gauges {
        fn get(&self, robot: &str) -> Option<f64> {
            self.0.lock().expect("gauges").get(robot).copied()
        }
        fn change(&self, robot: &str, change: impl FnOnce(&mut f64)) {
            change(
                self.0
                    .lock()
                    .expect("gauges")
                    .entry(robot.to_owned())
                    .or_default(),
            );
        }
    }

    impl ::metrics::GaugeFn for RobotGauge {
        fn increment(&self, value: f64) {
            self.1.change(&self.0, |v| *v += value);
        }
        fn decrement(&self, value: f64) {
            self.1.change(&self.0, |v| *v -= value);
        }
        fn set(&self, value: f64) {
            self.1.change(&self.0, |v| *v = value);
        }
    }

    impl ::metrics::Recorder for Gauges {
        fn describe_counter(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Counter {
            ::metrics::Counter::noop()
        }
        fn register_gauge(
            &self,
            key: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Gauge {
            assert_eq!(key.name(), metrics::OUTBOX_QUEUED);
            let robot = key
                .labels()
                .find(|l| l.key() == "outbox")
                .expect("outbox label");
            ::metrics::Gauge::from_arc(Arc::new(RobotGauge(robot.value().to_owned(), self.clone())))
        }
        fn register_histogram(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Histogram {
            ::metrics::Histogram::noop()
        }
    }

    #[tokio::test]
    async fn the_queued_gauge_is_the_outbox_length_across_a_restart() {
        let gauges = Gauges::default();
        // The test's runtime runs on this thread only.
        let _recorder = ::metrics::set_default_local_recorder(&gauges);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Arc::new(Embedded::open(dir.path(), 1_000).expect("opens")));
        let outbox = Outbox::<Text>::open(store.clone(), "robot", 10, Arc::from("gauge"))
            .await
            .expect("opens");
        for id in ["a", "b", "c"] {
            outbox.push(&entry(id), id).await.expect("pushed");
        }
        assert_eq!(gauges.get("gauge"), Some(3.0));

        // A restart with three queued: the new process starts from them.
        gauges.change("gauge", |v| *v = 0.0);
        let reopened = Outbox::<Text>::open(store, "robot", 10, Arc::from("gauge"))
            .await
            .expect("opens");
        reopened.publish_len().await;
        assert_eq!(gauges.get("gauge"), Some(3.0));
        let head = reopened.peek(10).await.expect("peek");
        reopened.pop_through(head[1].seq, 2).await.expect("pop");
        assert_eq!(gauges.get("gauge"), Some(1.0));
        reopened.pop_through(head[2].seq, 1).await.expect("pop");
        assert_eq!(gauges.get("gauge"), Some(0.0));
    }
}
