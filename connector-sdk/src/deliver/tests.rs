//! The kit on a stand-in destination, with tokio's clock paused and the
//! store's time following it ([`TokioClock`]): windows, holds, the
//! deadline, outbox order, digest slots, bursts, pools, refunds, leases and
//! shutdown, each in no time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::*;
use crate::Unavailable;
use crate::store::{Memory, TokioClock, Window};

const MINUTE: Duration = Duration::from_secs(60);

/// What the stand-in sends: a line of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    text: String,
}

/// Everything every stand-in was sent, in order: (when, its key, what).
#[derive(Clone, Default)]
struct Wire(Arc<Mutex<Vec<(Instant, String, String)>>>);

impl Wire {
    fn texts(&self) -> Vec<String> {
        let sent = self.0.lock().unwrap();
        sent.iter().map(|(_, _, text)| text.clone()).collect()
    }

    fn by(&self, key: &str) -> usize {
        let sent = self.0.lock().unwrap();
        sent.iter().filter(|(_, k, _)| k == key).count()
    }

    /// The most sends that started within any `per`.
    fn most_within(&self, per: Duration) -> usize {
        let sent = self.0.lock().unwrap();
        let times: Vec<Instant> = sent.iter().map(|(at, _, _)| *at).collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < per)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Every single event shown, digests unpacked, in order.
    fn shown(&self) -> Vec<String> {
        self.texts()
            .iter()
            .flat_map(|text| text.split(" + ").map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }
}

/// A destination that records what it is sent and answers from a script
/// (then `Delivered`); it merges digests as "a + b + c", up to `merges`.
struct Standin {
    key: String,
    windows: Vec<Window>,
    wire: Wire,
    script: Mutex<VecDeque<Verdict>>,
    merges: usize,
}

impl Standin {
    fn new(key: &str, windows: &[Window], wire: &Wire) -> Self {
        Self {
            key: key.to_owned(),
            windows: windows.to_vec(),
            wire: wire.clone(),
            script: Mutex::default(),
            merges: 100,
        }
    }

    fn answering(self, verdicts: impl IntoIterator<Item = Verdict>) -> Self {
        self.script.lock().unwrap().extend(verdicts);
        self
    }

    fn merging(mut self, merges: usize) -> Self {
        self.merges = merges;
        self
    }
}

#[async_trait::async_trait]
impl Destination for Standin {
    type Payload = Note;

    fn key(&self) -> &str {
        &self.key
    }

    fn windows(&self) -> &[Window] {
        &self.windows
    }

    async fn send(&self, payload: &Note, _timeout: Duration) -> Answer {
        let verdict = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Verdict::Delivered);
        let reached = !matches!(verdict, Verdict::Failed { reached: false, .. });
        if reached && verdict == Verdict::Delivered {
            self.wire.0.lock().unwrap().push((
                Instant::now(),
                self.key.clone(),
                payload.text.clone(),
            ));
        }
        Answer {
            verdict,
            code: Some(7),
        }
    }

    fn digest(&self, queued: &[&Note], _seed: &str) -> Option<Digest<Note>> {
        let count = queued.len().min(self.merges);
        let text: Vec<&str> = queued[..count].iter().map(|n| n.text.as_str()).collect();
        Some(Digest {
            payload: Note {
                text: text.join(" + "),
            },
            count,
        })
    }
}

fn memory() -> Store {
    Store::new(Arc::new(Memory::new(Arc::new(TokioClock::new()))))
}

fn settings(outbox: Option<OutboxSettings>) -> Settings {
    Settings {
        outbox,
        ..Settings::default()
    }
}

fn queueing(reserved: u32, burst: u32) -> Option<OutboxSettings> {
    Some(OutboxSettings {
        max_queued: 1_000,
        reserved,
        burst,
        linger: Duration::from_secs(1),
    })
}

fn parcels(target: &str, range: std::ops::Range<u32>) -> Vec<Parcel<Note>> {
    range
        .map(|i| {
            Parcel::new(
                target,
                format!("e{i}"),
                "test",
                Note {
                    text: format!("e{i}"),
                },
            )
        })
        .collect()
}

fn texts(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("e{i}")).collect()
}

async fn kit(
    store: &Store,
    settings: Settings,
    routes: Vec<Route<Standin>>,
) -> (Delivery<Standin>, Context) {
    let delivery = Delivery::new(store.clone(), settings, routes)
        .await
        .expect("builds");
    let context = Context::new(store.clone());
    delivery.start(&context);
    (delivery, context)
}

/// Sleeps (in paused time) until `done` or `limit` passes.
async fn until(limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn past_the_window_events_queue_and_go_out_as_digests_in_order() {
    let wire = Wire::default();
    let window = Window::new(5, MINUTE);
    let store = memory();
    let routes = vec![Route::new("ops", vec![Standin::new("a", &[window], &wire)])];
    let (delivery, _context) = kit(&store, settings(queueing(1, 0)), routes).await;

    let receipts = delivery
        .deliver(
            parcels("ops", 0..12),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(receipts.iter().all(|r| r.outcome
        == if r.queued {
            Outcome::Queued
        } else {
            Outcome::Delivered
        }));
    let queued = receipts.iter().filter(|r| r.queued).count();
    assert_eq!(queued, 8, "4 sent at once: one of 5 is kept for digests");
    assert_eq!(wire.texts(), texts(0..4));

    until(Duration::from_secs(200), || wire.shown().len() == 12).await;
    assert_eq!(wire.shown(), texts(0..12), "every event once, in order");
    assert!(wire.texts().len() < 12, "the queued ones went merged");
    assert!(wire.most_within(MINUTE) <= 5, "never past the window");
}

#[tokio::test(start_paused = true)]
async fn every_window_bounds_the_sends_and_the_rest_wait_inside_the_deadline() {
    // Feishu's bot: 5 a second, 100 a minute; no outbox: wait, or 429.
    let wire = Wire::default();
    let windows = [
        Window::new(100, MINUTE),
        Window::new(5, Duration::from_secs(1)),
    ];
    let routes = vec![Route::new("ops", vec![Standin::new("f", &windows, &wire)])];
    let (delivery, _context) = kit(&memory(), settings(None), routes).await;

    let receipts = delivery
        .deliver(
            parcels("ops", 0..20),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    let delivered = receipts
        .iter()
        .filter(|r| r.outcome == Outcome::Delivered)
        .count();
    assert!(
        (10..=15).contains(&delivered),
        "{delivered} in 3 s at 5 a second"
    );
    assert!(wire.most_within(Duration::from_secs(1)) <= 5);
    let first_refused = receipts
        .iter()
        .position(|r| r.outcome != Outcome::Delivered)
        .expect("some wait too long");
    assert!(
        receipts[first_refused..]
            .iter()
            .all(|r| r.outcome.is_retryable() && !r.queued),
        "the rest are retried later, in order"
    );
    assert_eq!(wire.texts(), texts(0..u32::try_from(delivered).unwrap()));
}

#[tokio::test(start_paused = true)]
async fn too_fast_holds_the_destination_and_the_event_waits_out_the_hold() {
    let wire = Wire::default();
    let throttled = Verdict::Throttled {
        hold: Some(Duration::from_secs(30)),
        reason: "too fast".into(),
    };
    let standin = Standin::new("a", &[Window::new(20, MINUTE)], &wire).answering([throttled]);
    let (delivery, _context) = kit(
        &memory(),
        settings(queueing(4, 0)),
        vec![Route::new("ops", vec![standin])],
    )
    .await;
    let started = Instant::now();
    let receipts = delivery
        .deliver(
            parcels("ops", 0..2),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(receipts.iter().all(|r| r.queued), "held: both queued");
    assert_eq!(receipts[0].code, Some(7), "the destination's code is kept");
    let status = delivery.status().await;
    assert!(status.destinations[0].held_for_secs.is_some());

    until(Duration::from_secs(120), || wire.shown().len() == 2).await;
    assert_eq!(wire.shown(), texts(0..2));
    let (at, _, _) = wire.0.lock().unwrap()[0].clone();
    assert!(
        at - started >= Duration::from_secs(30),
        "not before the hold ended"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_fit_the_deadline_and_the_answer_says_why() {
    let wire = Wire::default();
    let busy = Verdict::Failed {
        kind: Unavailable::ServiceUnavailable,
        retry: Retry::Soon,
        reached: true,
        reason: "busy".into(),
    };
    let standin = Standin::new("a", &[Window::new(100, MINUTE)], &wire)
        .answering(std::iter::repeat_n(busy, 100));
    let (delivery, _context) = kit(
        &memory(),
        settings(None),
        vec![Route::new("ops", vec![standin])],
    )
    .await;
    let started = Instant::now();
    let receipts = delivery
        .deliver(
            parcels("ops", 0..3),
            Deadline::after(Duration::from_secs(2)),
        )
        .await;
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "answered in time"
    );
    assert!(matches!(
        &receipts[0].outcome,
        Outcome::Unavailable { kind: Unavailable::ServiceUnavailable, reason } if reason.contains("event e0: ops: busy")
    ));
    assert!(
        receipts[1].outcome.reason().contains("keep order"),
        "the later ones are held back with it: {:?}",
        receipts[1]
    );
}

#[tokio::test(start_paused = true)]
async fn once_one_is_queued_the_later_ones_queue_behind_it() {
    let wire = Wire::default();
    let store = memory();
    let routes = vec![Route::new(
        "ops",
        vec![Standin::new("a", &[Window::new(2, MINUTE)], &wire)],
    )];
    let delivery = Delivery::new(store.clone(), settings(queueing(0, 0)), routes)
        .await
        .expect("builds");
    // No flusher: what is queued stays queued.
    let first = delivery
        .deliver(
            parcels("ops", 0..3),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert_eq!(first.iter().filter(|r| r.queued).count(), 1);
    tokio::time::advance(MINUTE).await;
    let later = delivery
        .deliver(
            parcels("ops", 3..4),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(
        later[0].queued,
        "the budget is back, but e2 is still queued"
    );
    assert_eq!(wire.texts(), texts(0..2));
    let redelivered = delivery
        .deliver(
            parcels("ops", 2..3),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(redelivered[0].queued);
    assert_eq!(
        delivery.status().await.outboxes[0].queued,
        Some(2),
        "queued once"
    );
}

#[tokio::test(start_paused = true)]
async fn the_reserved_slots_carry_the_digests() {
    let wire = Wire::default();
    let routes = vec![Route::new(
        "ops",
        vec![Standin::new("a", &[Window::new(5, MINUTE)], &wire)],
    )];
    let (delivery, _context) = kit(&memory(), settings(queueing(2, 0)), routes).await;
    delivery
        .deliver(
            parcels("ops", 0..30),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert_eq!(wire.texts().len(), 3, "arriving events use 3 of 5");
    // The flusher's first digest goes after the linger, in the same window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(wire.texts().len(), 4);
    assert_eq!(wire.texts()[3], texts(3..30).join(" + "));
}

#[tokio::test(start_paused = true)]
async fn past_a_burst_the_rest_of_the_storm_waits_for_one_digest() {
    let wire = Wire::default();
    let routes = vec![Route::new(
        "ops",
        vec![Standin::new("a", &[Window::new(20, MINUTE)], &wire)],
    )];
    let (delivery, _context) = kit(&memory(), settings(queueing(4, 3)), routes).await;
    delivery
        .deliver(
            parcels("ops", 0..30),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    until(Duration::from_secs(10), || wire.shown().len() == 30).await;
    assert_eq!(wire.texts().len(), 4, "3 on their own, then one digest");
    assert_eq!(wire.shown(), texts(0..30));
    // A quiet target's single event still goes at once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let one = delivery
        .deliver(
            parcels("ops", 30..31),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(!one[0].queued);
}

#[tokio::test(start_paused = true)]
async fn a_storm_that_goes_on_is_told_in_few_spaced_digests() {
    let wire = Wire::default();
    let routes = vec![Route::new(
        "ops",
        vec![Standin::new("a", &[Window::new(20, MINUTE)], &wire).merging(MAX_PER_DIGEST)],
    )];
    let (delivery, _context) = kit(&memory(), settings(queueing(4, 3)), routes).await;
    // 1,000 events over 10 s, ten every 100 ms.
    for batch in 0..100 {
        delivery
            .deliver(
                parcels("ops", batch * 10..batch * 10 + 10),
                Deadline::after(Duration::from_secs(3)),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_arrived = Instant::now();
    until(Duration::from_secs(30), || wire.shown().len() == 1_000).await;
    assert_eq!(wire.shown(), texts(0..1_000), "all, in order");
    // 3 on their own, then one digest once the storm is quiet for the
    // linger (it went on for less than the spacing).
    assert_eq!(wire.texts().len(), 4, "{:?}", wire.texts().len());
    let last_post = wire.0.lock().expect("wire").last().map(|(at, ..)| *at);
    assert!(last_post.is_some_and(|at| at <= last_arrived + Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn a_pool_spreads_its_sends_and_passes_over_a_member_that_refuses() {
    let wire = Wire::default();
    let window = [Window::new(4, MINUTE)];
    let refuses = Verdict::Refused {
        blame: Blame::Destination,
        reason: "sign not match".into(),
    };
    let members = vec![
        Standin::new("a", &window, &wire),
        Standin::new("b", &window, &wire).answering(std::iter::repeat_n(refuses, 10)),
        Standin::new("c", &window, &wire),
    ];
    let (delivery, _context) = kit(
        &memory(),
        settings(queueing(0, 0)),
        vec![Route::new("ops", members)],
    )
    .await;
    let receipts = delivery
        .deliver(
            parcels("ops", 0..8),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(
        receipts
            .iter()
            .all(|r| r.outcome == Outcome::Delivered && !r.queued)
    );
    assert_eq!((wire.by("a"), wire.by("b"), wire.by("c")), (4, 0, 4));
    assert_eq!(wire.texts(), texts(0..8), "in arrival order");
    let status = delivery.status().await;
    let b = status
        .destinations
        .iter()
        .find(|d| d.key == "b")
        .expect("b");
    assert_eq!(b.refusing.as_deref(), Some("sign not match"));
    assert_eq!(status.outboxes[0].destinations, ["a", "b", "c"]);

    // The two that work are spent: the rest queue for the flusher, which
    // also passes over the one that refuses.
    let later = delivery
        .deliver(
            parcels("ops", 8..10),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(later.iter().all(|r| r.queued));
    until(Duration::from_secs(200), || wire.shown().len() == 10).await;
    assert_eq!(wire.shown(), texts(0..10));
    assert_eq!(wire.by("b"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_send_that_never_left_gives_its_slot_back() {
    let wire = Wire::default();
    let refused = Verdict::Failed {
        kind: Unavailable::ServiceUnavailable,
        retry: Retry::Soon,
        reached: false,
        reason: "connection refused".into(),
    };
    let standin = Standin::new("a", &[Window::new(20, MINUTE)], &wire)
        .answering(std::iter::repeat_n(refused, 8));
    let (delivery, _context) = kit(
        &memory(),
        settings(None),
        vec![Route::new("ops", vec![standin])],
    )
    .await;
    let receipts = delivery
        .deliver(
            parcels("ops", 0..1),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(receipts[0].outcome.is_retryable(), "{:?}", receipts[0]);
    let status = delivery.status().await;
    assert_eq!(
        status.destinations[0].sent_in_window,
        Some(0),
        "no slot spent"
    );
}

#[tokio::test(start_paused = true)]
async fn one_replica_flushes_at_a_time_and_another_takes_over_when_it_dies() {
    let wire = Wire::default();
    // Two replicas on one shared store.
    let store = Store::new(Arc::new(Memory::shared(Arc::new(TokioClock::new()))));
    let route = || {
        vec![Route::new(
            "ops",
            vec![Standin::new("a", &[Window::new(3, MINUTE)], &wire)],
        )]
    };
    let (first, first_context) = kit(&store, settings(queueing(1, 0)), route()).await;
    first
        .deliver(
            parcels("ops", 0..2),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    // The first replica's flusher takes the lease, then the replica dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(first_context.stop_tasks(Duration::from_secs(6)).await);
    let (second, _context) = kit(&store, settings(queueing(1, 0)), route()).await;
    second
        .deliver(
            parcels("ops", 2..6),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert_eq!(
        wire.shown(),
        texts(0..2),
        "the budget is shared: 2 of 3 direct"
    );
    let died = Instant::now();
    until(Duration::from_secs(200), || wire.shown().len() == 6).await;
    assert_eq!(wire.shown(), texts(0..6));
    let (third_at, _, _) = wire.0.lock().unwrap()[2].clone();
    assert!(
        third_at - died >= Duration::from_secs(10),
        "not before the dead replica's lease lapsed"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_the_context_stops_the_flushers_and_leaves_the_queue() {
    let wire = Wire::default();
    let store = memory();
    let routes = || {
        vec![Route::new(
            "ops",
            vec![Standin::new("a", &[Window::new(1, MINUTE)], &wire)],
        )]
    };
    let (delivery, context) = kit(&store, settings(queueing(0, 0)), routes()).await;
    delivery
        .deliver(
            parcels("ops", 0..3),
            Deadline::after(Duration::from_secs(3)),
        )
        .await;
    assert!(
        context.stop_tasks(Duration::from_secs(1)).await,
        "stopped at once"
    );
    assert_eq!(delivery.status().await.outboxes[0].queued, Some(2));
    // A restart finds them and sends them.
    let (_again, _context) = kit(&store, settings(queueing(0, 0)), routes()).await;
    until(Duration::from_secs(300), || wire.shown().len() == 3).await;
    assert_eq!(wire.shown(), texts(0..3));
}

#[tokio::test(start_paused = true)]
async fn routes_that_cannot_work_are_refused_at_start() {
    let wire = Wire::default();
    let empty = Delivery::<Standin>::new(
        memory(),
        Settings::default(),
        vec![Route::new("ops", Vec::new())],
    )
    .await;
    assert!(matches!(
        empty,
        Err(StartError::Route(RouteError::NoDestination(t))) if t == "ops"
    ));
    let twice = Delivery::new(
        memory(),
        Settings::default(),
        vec![
            Route::new(
                "ops",
                vec![Standin::new("a", &[Window::new(1, MINUTE)], &wire)],
            ),
            Route::new(
                "ops",
                vec![Standin::new("b", &[Window::new(1, MINUTE)], &wire)],
            ),
        ],
    )
    .await;
    assert!(matches!(
        twice,
        Err(StartError::Route(RouteError::Twice(_)))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_remembered_parcel_is_sent_once_however_often_its_event_comes_back() {
    let wire = Wire::default();
    let failing = Verdict::Failed {
        kind: Unavailable::ServiceUnavailable,
        retry: Retry::Later,
        reached: true,
        reason: "down".into(),
    };
    let routes = vec![
        Route::new(
            "oncall",
            vec![Standin::new("a", &[Window::new(20, MINUTE)], &wire)],
        ),
        Route::new(
            "team",
            vec![Standin::new("b", &[Window::new(20, MINUTE)], &wire).answering([failing])],
        ),
    ];
    let (delivery, _context) = kit(&memory(), settings(None), routes).await;
    // One event for two targets; the second fails, so the sender retries
    // the whole event.
    let fan_out = || {
        ["oncall", "team"]
            .into_iter()
            .map(|target| {
                Parcel::new(
                    target,
                    "e1",
                    "test",
                    Note {
                        text: format!("e1 to {target}"),
                    },
                )
                .remembered()
            })
            .collect::<Vec<_>>()
    };
    let first = delivery
        .deliver(fan_out(), Deadline::after(Duration::from_secs(3)))
        .await;
    assert_eq!(first[0].outcome, Outcome::Delivered);
    assert!(first[1].outcome.is_retryable());
    let again = delivery
        .deliver(fan_out(), Deadline::after(Duration::from_secs(3)))
        .await;
    assert!(again.iter().all(|r| r.outcome == Outcome::Delivered));
    assert_eq!(
        wire.texts(),
        ["e1 to oncall", "e1 to team"],
        "each target once"
    );
    // Without `remembered`, a redelivery sends again (the runtime's ledger
    // is what answers a whole event's redelivery).
    let plain = || {
        vec![Parcel::new(
            "oncall",
            "e2",
            "test",
            Note { text: "e2".into() },
        )]
    };
    delivery
        .deliver(plain(), Deadline::after(Duration::from_secs(3)))
        .await;
    delivery
        .deliver(plain(), Deadline::after(Duration::from_secs(3)))
        .await;
    assert_eq!(wire.by("a"), 3);
}

#[tokio::test(start_paused = true)]
async fn events_refused_before_the_kit_keep_their_place_among_the_receipts() {
    let wire = Wire::default();
    let routes = vec![
        Route::new(
            "ops",
            vec![Standin::new("a", &[Window::new(20, MINUTE)], &wire)],
        ),
        Route::new(
            "dev",
            vec![Standin::new("b", &[Window::new(20, MINUTE)], &wire)],
        ),
    ];
    let (delivery, _context) = kit(&memory(), settings(None), routes).await;
    let not_routed = delivery.route("nope").expect_err("not routed");
    assert_eq!(
        not_routed.to_string(),
        "`nope` is not configured; configured: dev, ops"
    );
    assert_eq!(delivery.route("ops").as_deref(), Ok("ops"));

    let mut prepared: Vec<Result<Parcel<Note>, Outcome>> =
        parcels("ops", 0..3).into_iter().map(Ok).collect();
    prepared.insert(1, Err(Outcome::rejected("too long")));
    let receipts = delivery
        .deliver_each(prepared, Deadline::after(Duration::from_secs(3)))
        .await;
    let outcomes: Vec<Outcome> = receipts.into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Delivered,
            Outcome::rejected("too long"),
            Outcome::Delivered,
            Outcome::Delivered
        ]
    );
    assert_eq!(wire.texts(), texts(0..3), "the refused one never left");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_routes_to_the_new_destination_and_a_removed_one_still_flushes_its_outbox() {
    let wire = Wire::default();
    let store = memory();
    let slow = [Window::new(1, MINUTE)];
    let routes = vec![Route::new("ops", vec![Standin::new("a", &slow, &wire)])];
    let (delivery, _context) = kit(&store, settings(queueing(0, 0)), routes).await;
    let deadline = || Deadline::after(Duration::from_secs(3));
    let receipts = delivery.deliver(parcels("ops", 0..3), deadline()).await;
    assert_eq!(receipts.iter().filter(|r| r.queued).count(), 2);

    // `a` leaves, `b` serves ops, and a new target arrives with `c`.
    let fast = [Window::new(100, MINUTE)];
    delivery
        .renew(vec![
            Route::new("ops", vec![Standin::new("b", &fast, &wire)]),
            Route::new("dev", vec![Standin::new("c", &fast, &wire)]),
        ])
        .await
        .expect("renewed");
    let mut targets = delivery.targets();
    targets.sort_unstable();
    assert_eq!(targets, [Arc::from("dev"), Arc::from("ops")]);
    let receipts = delivery.deliver(parcels("ops", 3..5), deadline()).await;
    assert!(receipts.iter().all(|r| r.outcome == Outcome::Delivered));
    assert_eq!(wire.by("b"), 2, "the new destination from then on");
    let receipts = delivery.deliver(parcels("dev", 5..6), deadline()).await;
    assert_eq!(receipts[0].outcome, Outcome::Delivered);
    assert_eq!(wire.by("c"), 1);

    // What `a` had queued still goes out, through `a`, by its flusher.
    until(Duration::from_secs(300), || wire.by("a") >= 2).await;
    let shown = wire.shown();
    for event in texts(0..3) {
        assert_eq!(
            shown.iter().filter(|s| **s == event).count(),
            1,
            "{event} once"
        );
    }
    assert_eq!(wire.by("b") + wire.by("c"), 3, "nothing queued moved");

    // A route that cannot work changes nothing.
    let refused = delivery.renew(vec![Route::new("ops", Vec::new())]).await;
    assert!(refused.is_err());
    assert!(delivery.serves("dev"), "the old routing stays");
}
