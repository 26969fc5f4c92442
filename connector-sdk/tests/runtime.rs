//! The runtime's own behaviour, through the public API and the testing kit:
//! what reaches the sink (once, in order, again when it was not accepted),
//! what a sink's panic or missing outcome costs, how a store failure is
//! answered, how the store heals after a full disk, and that shutdown waits
//! for a delivery whose sender hung up.

mod support;

use std::time::Duration;

use connector_sdk::testing::{TestServer, event};
use connector_sdk::{BoxError, Context, Event, NoConfig, Outcome, Sink, StoreError, async_trait};
use support::Recorder;

#[tokio::test]
async fn batches_keep_their_order() {
    let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
    let events = [event("a").build(), event("b").build()];
    let more = [event("c").build(), event("d").build()];
    assert_eq!(server.send_batch(&events).await.status, 200);
    assert_eq!(server.send_grpc(&more).await.status, 200);
    assert_eq!(server.sink().ids(), ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_redelivered_event_reaches_the_sink_once_whichever_door() {
    let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
    let batch = [event("a").build(), event("b").build(), event("a").build()];
    assert_eq!(server.send_grpc(&batch).await.status, 200);
    assert_eq!(server.send_batch(&batch).await.status, 200);
    assert_eq!(server.send_structured(&batch[1]).await.status, 200);
    assert_eq!(server.sink().ids(), ["a", "b"], "a repeat in one batch too");
    // Another source makes another event, even with the same id.
    let other = event("a").source("elsewhere").build();
    assert_eq!(server.send_binary(&other).await.status, 200);
    assert_eq!(server.sink().ids(), ["a", "b", "a"]);
}

#[tokio::test]
async fn an_event_not_accepted_reaches_the_sink_again() {
    let server = TestServer::start(Recorder::answering(Outcome::rejected("no"))).await;
    let one = event("1").build();
    assert_eq!(server.send_structured(&one).await.status, 400);
    assert_eq!(server.send_structured(&one).await.status, 400);
    assert_eq!(server.sink().ids(), ["1", "1"]);
}

#[tokio::test]
async fn an_outcome_the_sink_never_gave_is_not_a_delivery() {
    // Forgets to report outcomes: answers one for the first event only.
    let forgetful = Recorder::answering_with(|_| vec![Outcome::Delivered]);
    let server = TestServer::start(forgetful).await;
    let batch = [event("a").build(), event("b").build()];
    let reply = server.send_grpc(&batch).await;
    assert_eq!(reply.status, 503, "fail closed: {reply:?}");
    // The sender retries; only the event without an outcome comes back.
    assert_eq!(server.send_grpc(&batch).await.status, 200);
    assert_eq!(server.sink().ids(), ["a", "b", "b"]);
}

#[tokio::test]
async fn a_sink_that_panicked_gets_the_redelivery() {
    let panicked = std::sync::atomic::AtomicBool::new(false);
    let panics_once = Recorder::answering_with(move |count| {
        let first = !panicked.swap(true, std::sync::atomic::Ordering::SeqCst);
        assert!(!first, "the test sink panics on its first batch");
        Outcome::Delivered.for_each(count)
    });
    let server = TestServer::start(panics_once).await;
    let one = event("1").build();
    let reply = server.send_structured(&one).await;
    assert_eq!(reply.status, 503, "not delivered: {reply:?}");
    // Its claim was released: the sink answers, not "being handled".
    let reply = server.send_structured(&one).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(server.sink().ids(), ["1", "1"]);
}

/// Takes a while over each batch, and says when it starts and ends.
#[derive(Default)]
struct Slow {
    started: tokio::sync::Notify,
    finished: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Sink for Slow {
    type Config = NoConfig;
    fn name() -> &'static str {
        "slow"
    }
    async fn initialize(_: NoConfig, _: Context) -> Result<Self, BoxError> {
        Ok(Self::default())
    }
    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.finished
            .fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
        Outcome::Delivered.for_each(events.len())
    }
}

#[tokio::test]
async fn shutdown_waits_for_a_delivery_whose_sender_hung_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = format!("store:\n  path: {}\n", dir.path().display());
    let server = TestServer::<Slow>::from_yaml(&yaml).await;
    let one = event("1").build();
    tokio::select! {
        reply = server.send_grpc(std::slice::from_ref(&one)) => panic!("answered before the sink was done: {reply:?}"),
        () = server.sink().started.notified() => {}
    }
    // The call is cancelled; the sink goes on posting the event.
    assert!(server.shutdown().await);
    let finished = server
        .sink()
        .finished
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(finished, 1, "the sink finished before the store closed");

    // Its acceptance was recorded: the redelivery does not reach the sink.
    let restarted = TestServer::<Slow>::from_yaml(&yaml).await;
    assert_eq!(restarted.send_grpc(&[one]).await.status, 200);
    let finished = restarted
        .sink()
        .finished
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(finished, 0, "answered from the ledger");
    assert!(restarted.shutdown().await);
}

#[tokio::test]
async fn a_store_failure_is_retry_later_without_its_detail() {
    let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
    // A closed store fails every operation, as one out of reach does.
    server.close_store().await;
    let reply = server.send_structured(&event("1").build()).await;
    let store_error = StoreError::Closed.to_string();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(!reply.body.contains(&store_error), "{reply:?}");
    assert_eq!(
        reply.body,
        "the connector's store is unavailable; retry later\n"
    );
    assert!(server.sink().ids().is_empty());
}

#[tokio::test]
async fn a_full_disk_is_answered_retry_later_then_the_store_heals_by_itself() {
    let server = TestServer::<Recorder>::from_yaml("store:\n  unhealthy_after_secs: 1\n").await;
    let before = event("before").build();
    assert_eq!(server.send_structured(&before).await.status, 200);

    // The volume fills: the store fails its writes.
    server.fail_store_writes(true);
    let (down, reply) = server.wait_for_status("/readyz", 503).await;
    assert!(down, "/readyz never went 503: {reply}");
    assert!(reply.contains("the store is down"), "{reply}");
    // Events are answered "retry later" and never reach the sink, which
    // would post them without a record.
    let during = event("during").build();
    let reply = server.send_structured(&during).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    let reply = server.send_grpc(std::slice::from_ref(&during)).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(server.sink().ids(), ["before"], "nothing handed on");
    // Down past store.unhealthy_after_secs: /healthz fails, so the
    // orchestrator restarts the pod.
    let (dead, reply) = server.wait_for_status("/healthz", 503).await;
    assert!(dead, "/healthz never went 503: {reply}");
    assert!(reply.contains("store.unhealthy_after_secs: 1"), "{reply}");

    // Space is freed: the store reopens by itself and takes events again.
    server.fail_store_writes(false);
    let (ready, reply) = server.wait_for_status("/readyz", 200).await;
    assert!(ready, "/readyz never came back: {reply}");
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(server.send_structured(&during).await.status, 200);
    // What the ledger held before the disk filled is still there.
    assert_eq!(server.send_structured(&before).await.status, 200);
    assert_eq!(server.sink().ids(), ["before", "during"]);
    let status = server.get("/status").await;
    assert!(status.body.contains(r#""healthy":true"#), "{status:?}");
}
