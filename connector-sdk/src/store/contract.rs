//! What every [`Backend`](super::Backend) must do, as checks any backend's
//! tests can run (feature `testing`): the embedded and the Redis backend run
//! the same ones, and a third backend would too.
//!
//! Each check works under its own [`Store::scope`], so they can share one
//! store (and one Redis) without seeing each other's keys. They panic on the
//! first difference, naming it.

use std::time::Duration;

use super::{Once, Passage, Pushed, Store, Window};

/// Runs every check below on `store`.
pub async fn check_all(store: &Store) {
    records(&store.scope("contract-records")).await;
    leases(&store.scope("contract-leases")).await;
    namespaces(&store.scope("contract-namespaces")).await;
    marks(&store.scope("contract-marks")).await;
    queues(&store.scope("contract-queues")).await;
    once_pushes(&store.scope("contract-once")).await;
    gates(&store.scope("contract-gates")).await;
    windows_and_refunds(&store.scope("contract-windows")).await;
    concurrent_pushes(&store.scope("contract-concurrent")).await;
}

/// Records: `create` keeps the first value, `put` and `put_lazily`
/// overwrite, `remove` removes, an expired record is gone and can be created
/// again.
pub async fn records(store: &Store) {
    let minute = Duration::from_secs(60);
    assert_eq!(store.create("a", b"1".to_vec(), minute).await, Ok(None));
    assert_eq!(
        store.create("a", b"2".to_vec(), minute).await,
        Ok(Some(b"1".to_vec())),
        "create keeps the first value"
    );
    store.put("a", b"3".to_vec(), minute).await.expect("put");
    assert_eq!(store.get("a").await, Ok(Some(b"3".to_vec())));
    store
        .put_lazily("a", b"4".to_vec(), minute)
        .await
        .expect("put_lazily");
    assert_eq!(store.get("a").await, Ok(Some(b"4".to_vec())));
    store.remove("a").await.expect("remove");
    assert_eq!(store.get("a").await, Ok(None));
    store.remove("a").await.expect("removing nothing is fine");

    store
        .put("short", b"x".to_vec(), Duration::from_millis(20))
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.get("short").await, Ok(None), "expired");
    assert_eq!(
        store.create("short", b"y".to_vec(), minute).await,
        Ok(None),
        "an expired record can be created again"
    );
}

/// Marks (the ledger's): a key remembered, lazily or durably, is
/// remembered; another, or the same in another scope, is not; a record
/// holding [`REMEMBERED`](super::REMEMBERED) counts as remembered too.
pub async fn marks(store: &Store) {
    let minute = Duration::from_secs(60);
    assert_eq!(store.remembered("m").await, Ok(false), "nothing yet");
    store
        .remember("m", minute, true)
        .await
        .expect("remember lazily");
    assert_eq!(store.remembered("m").await, Ok(true));
    store.remember("n", minute, false).await.expect("remember");
    assert_eq!(store.remembered("n").await, Ok(true));
    assert_eq!(store.remembered("o").await, Ok(false), "another key");
    assert_eq!(
        store.scope("other").remembered("m").await,
        Ok(false),
        "another scope"
    );
    store
        .put("r", super::REMEMBERED.to_vec(), minute)
        .await
        .expect("put");
    assert_eq!(store.remembered("r").await, Ok(true), "a record");
    store.put("s", b"x".to_vec(), minute).await.expect("put");
    assert_eq!(store.remembered("s").await, Ok(false), "another value");
}

/// Leases: one holder at a time, renewed by its holder, taken over once it
/// expired.
pub async fn leases(store: &Store) {
    let ttl = Duration::from_millis(100);
    assert_eq!(store.lease("l", "a", ttl).await, Ok(true));
    assert_eq!(store.lease("l", "b", ttl).await, Ok(false), "one holder");
    assert_eq!(store.lease("l", "a", ttl).await, Ok(true), "renewed");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.lease("l", "b", ttl).await, Ok(true), "taken over");
    assert_eq!(
        store.lease("l", "a", ttl).await,
        Ok(false),
        "b holds it now"
    );
}

/// Scopes: the same key in two scopes is two records.
pub async fn namespaces(store: &Store) {
    let minute = Duration::from_secs(60);
    let (a, b) = (store.scope("a"), store.scope("b"));
    a.put("k", b"a".to_vec(), minute).await.expect("put");
    b.put("k", b"b".to_vec(), minute).await.expect("put");
    assert_eq!(a.get("k").await, Ok(Some(b"a".to_vec())));
    assert_eq!(b.get("k").await, Ok(Some(b"b".to_vec())));
    assert_eq!(store.get("k").await, Ok(None), "the parent scope is apart");
}

/// Queues: ordered, bounded, binary-safe; popped from the head through a
/// sequence number; sequence numbers never reused.
pub async fn queues(store: &Store) {
    let items: [&[u8]; 3] = [b"a:b", &[0, 255, b':', 10], b""];
    for (pushed, item) in (1..).zip(items) {
        assert_eq!(
            store.push("q", item.to_vec(), 3, None).await,
            Ok(Pushed::Queued { len: pushed })
        );
    }
    assert_eq!(
        store.push("q", b"d".to_vec(), 3, None).await,
        Ok(Pushed::Full { len: 3 }),
        "bounded"
    );
    let head = store.peek("q", 2).await.expect("peek");
    let data: Vec<&[u8]> = head.iter().map(|i| i.data.as_slice()).collect();
    assert_eq!(data, items[..2], "peek reads from the head, in order");
    assert!(head[0].seq < head[1].seq);

    store.pop_through("q", head[1].seq).await.expect("pop");
    assert_eq!(store.len("q").await, Ok(1));
    store.push("q", b"d".to_vec(), 3, None).await.expect("push");
    let rest = store.peek("q", 10).await.expect("peek");
    let data: Vec<&[u8]> = rest.iter().map(|i| i.data.as_slice()).collect();
    assert_eq!(data, [items[2], b"d"]);
    assert!(
        rest[0].seq > head[1].seq && rest[1].seq > rest[0].seq,
        "sequence numbers are never reused"
    );
    store
        .pop_through("q", head[0].seq)
        .await
        .expect("popping the past does nothing");
    assert_eq!(store.len("q").await, Ok(2));
    assert_eq!(store.len("other").await, Ok(0));
    assert_eq!(store.peek("other", 5).await, Ok(Vec::new()));
}

/// A push with a once key happens once; a push refused because the queue
/// is full sets no key, so it can be pushed once there is room.
pub async fn once_pushes(store: &Store) {
    let once = |key| {
        Some(Once {
            key,
            ttl: Duration::from_secs(60),
        })
    };
    assert_eq!(
        store.push("q", b"e1".to_vec(), 10, once("queued/e1")).await,
        Ok(Pushed::Queued { len: 1 })
    );
    assert_eq!(
        store.push("q", b"e1".to_vec(), 10, once("queued/e1")).await,
        Ok(Pushed::Already)
    );
    assert_eq!(store.len("q").await, Ok(1));
    assert_eq!(
        store.push("q", b"e2".to_vec(), 1, once("queued/e2")).await,
        Ok(Pushed::Full { len: 1 })
    );
    assert_eq!(
        store.push("q", b"e2".to_vec(), 2, once("queued/e2")).await,
        Ok(Pushed::Queued { len: 2 })
    );
}

/// Gates: a pass within the limit opens, past it waits for the window, a
/// hold holds every pass, and the state says both.
pub async fn gates(store: &Store) {
    let window = Duration::from_secs(60);
    assert_eq!(
        store.pass("g", 1, window).await,
        Ok(Passage::Open { used: 1 })
    );
    let second = store.pass("g", 1, window).await;
    assert!(
        matches!(second, Ok(Passage::Wait(wait)) if wait > Duration::from_secs(58) && wait <= window),
        "{second:?}"
    );
    assert!(
        matches!(store.pass("g", 0, window).await, Ok(Passage::Wait(_))),
        "a limit of 0 never opens"
    );
    store
        .hold("g", Duration::from_secs(600))
        .await
        .expect("hold");
    let held = store.pass("g", 5, window).await;
    assert!(
        matches!(held, Ok(Passage::Held(wait)) if wait > Duration::from_secs(598)),
        "{held:?}"
    );
    let state = store.gate_state("g", window).await.expect("state");
    assert_eq!(state.used, 1, "waits and holds use nothing");
    assert!(state.held_for.is_some());
    let other = store.gate_state("other", window).await.expect("state");
    assert_eq!((other.used, other.held_for), (0, None));
}

/// Several windows on one gate: each must have room; a refund gives the
/// latest send back.
pub async fn windows_and_refunds(store: &Store) {
    let minute = Window::new(3, Duration::from_secs(60));
    let second = Window::new(2, Duration::from_secs(1));
    let both = [minute, second];
    for used in 1..=2 {
        assert_eq!(
            store.pass_windows("g", &both).await,
            Ok(Passage::Open { used })
        );
    }
    let third = store.pass_windows("g", &both).await;
    assert!(
        matches!(third, Ok(Passage::Wait(wait)) if wait <= Duration::from_secs(1)),
        "the second is full: {third:?}"
    );
    store.refund("g").await.expect("refund");
    assert_eq!(
        store.pass_windows("g", &both).await,
        Ok(Passage::Open { used: 2 }),
        "the refunded send left both windows"
    );
    assert_eq!(
        store.gate_state("g", minute.per).await.map(|s| s.used),
        Ok(2)
    );
    store
        .refund("nothing-sent")
        .await
        .expect("a refund of nothing");
}

/// Pushes from many tasks at once all land.
pub async fn concurrent_pushes(store: &Store) {
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..200_u8 {
        let store = store.clone();
        pushes.spawn(async move { store.push("q", vec![i], 1_000, None).await });
    }
    while let Some(pushed) = pushes.join_next().await {
        assert!(
            matches!(pushed, Ok(Ok(Pushed::Queued { .. }))),
            "{pushed:?}"
        );
    }
    assert_eq!(store.len("q").await, Ok(200));
}
