//! Replicas sharing each robot through a real Redis (started by the test on
//! a free loopback port): a redelivery to another replica posts nothing
//! twice, a "too fast" heard by one holds the robot on all, and an outage of
//! Redis is answered 503 (with `/readyz` 503) without a post beyond the
//! budget or a loss, until Redis is back, with no restart.

mod common;

use std::time::Duration;

use common::*;
use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::{RedisServer, TestServer};
use fake_dingtalk::{Failure, FakeDingTalk, most_in_any_minute};
use sink_dingtalk::DingTalkSink;

/// A fake DingTalk and two replicas of the sink sharing `redis`.
struct Replicas {
    fake: FakeDingTalk,
    one: TestServer<DingTalkSink>,
    two: TestServer<DingTalkSink>,
}

async fn replicas(redis: &RedisServer, extra: &str) -> Replicas {
    let fake = FakeDingTalk::start(two_robots())
        .await
        .expect("fake DingTalk starts");
    let yaml = format!(
        "{}store:\n  redis:\n    url: \"{}\"\n    timeout_ms: 300\n{extra}",
        two_groups(&fake),
        redis.url()
    );
    let one = TestServer::from_yaml(&yaml).await;
    let two = TestServer::from_yaml(&yaml).await;
    Replicas { fake, one, two }
}

#[tokio::test]
async fn a_batch_half_delivered_by_one_replica_and_redelivered_to_another_posts_nothing_twice() {
    let redis = RedisServer::start();
    // Every event on its own (no storm rule): this is about the ledger.
    let r = replicas(
        &redis,
        "delivery:\n  deadline_ms: 1000\ndigest:\n  burst: 0\n",
    )
    .await;
    let batch: Vec<CloudEvent> = (0..12).map(grpc_alert).collect();
    // Replica one delivers six, then DingTalk fails past its deadline.
    r.fake.fail_next(TOKEN_1, Failure::Delay(Duration::ZERO), 6);
    r.fake.fail_next(TOKEN_1, Failure::Http(500), 5);
    let first = r.one.send_grpc_events(batch.clone()).await;
    assert!(first.is_err(), "the first attempt fails part-way");
    assert_eq!(r.fake.accepted_for(TOKEN_1).len(), 6);

    // The trigger redelivers the whole batch, this time to replica two.
    let mut delivered = false;
    for _ in 0..5 {
        let answer = r.two.send_grpc_events(batch.clone()).await;
        if answer.is_ok() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(delivered, "replica two completes the batch");
    let wanted: Vec<String> = (0..12).map(marker).collect();
    assert_eq!(
        wait_visible(&r.fake, TOKEN_1, &wanted, Duration::from_secs(10)).await,
        12
    );
    let accepted = r.fake.accepted_for(TOKEN_1);
    for i in 0..12 {
        assert_eq!(
            times_shown(&accepted, &marker(i)),
            1,
            "{} shown once",
            marker(i)
        );
    }
}

#[tokio::test]
async fn too_fast_heard_by_one_replica_holds_the_robot_on_every_replica() {
    let redis = RedisServer::start();
    let r = replicas(
        &redis,
        "delivery:\n  cooldown_secs: 3\ndigest:\n  linger_ms: 100\n",
    )
    .await;
    r.fake.fail_next(
        TOKEN_1,
        Failure::ErrCode(410_100, "send too fast".into()),
        1,
    );
    assert_eq!(
        post_structured(&r.one, &alert(1)).await.status,
        200,
        "queued"
    );
    // Replica two queues behind the hold: it does not post.
    for i in 2..5 {
        assert_eq!(post_structured(&r.two, &alert(i)).await.status, 200);
    }
    assert_eq!(
        r.fake.requests_for(TOKEN_1),
        1,
        "nobody posts to a held robot"
    );
    let status: serde_json::Value =
        serde_json::from_str(&r.two.get("/status").await.body).expect("status is JSON");
    let held = status["robots"][0]["cooling_down_for_secs"].as_f64();
    assert!(
        held.is_some_and(|s| s > 0.0),
        "replica two sees the hold: {status}"
    );

    // After the hold, one replica's flusher sends what both queued, once.
    let wanted: Vec<String> = (1..5).map(marker).collect();
    assert_eq!(
        wait_visible(&r.fake, TOKEN_1, &wanted, Duration::from_secs(10)).await,
        4
    );
    let accepted = r.fake.accepted_for(TOKEN_1);
    for m in &wanted {
        assert_eq!(times_shown(&accepted, m), 1, "{m} once, by one flusher");
    }
    assert_eq!(
        r.fake.throttled_for(TOKEN_1),
        1,
        "only the injected one: nothing went out into the block"
    );
}

#[tokio::test]
async fn a_redis_outage_is_503_and_delivery_resumes_by_itself_when_it_is_back() {
    let mut redis = RedisServer::start_durable();
    let r = replicas(&redis, "digest:\n  linger_ms: 5000\n  burst: 0\n").await;
    // 16 go out; 4 wait in the outbox (the flusher lingers).
    for i in 0..20 {
        assert_eq!(post_structured(&r.one, &alert(i)).await.status, 200);
    }
    assert_eq!(r.fake.accepted_for(TOKEN_1).len(), 16);

    redis.stop();
    let answer = post_structured(&r.two, &alert(20)).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("retry later"), "{answer:?}");
    let mut not_ready = false;
    for _ in 0..50 {
        if r.one.get("/readyz").await.status == 503 {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(not_ready, "/readyz turns 503 while the store is down");
    assert!(r.one.get("/readyz").await.body.contains("store is down"));
    let status: serde_json::Value =
        serde_json::from_str(&r.one.get("/status").await.body).expect("status is JSON");
    assert_eq!(status["store"]["backend"], "redis");
    assert_eq!(status["store"]["healthy"], false, "{status}");

    redis.restart();
    let mut answer = post_structured(&r.two, &alert(20)).await;
    for _ in 0..50 {
        if answer.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = post_structured(&r.two, &alert(20)).await;
    }
    assert_eq!(answer.status, 200, "taking events again: {answer:?}");
    let wanted: Vec<String> = (0..21).map(marker).collect();
    assert_eq!(
        wait_visible(&r.fake, TOKEN_1, &wanted, Duration::from_secs(15)).await,
        21,
        "what was queued before the outage was not lost"
    );
    assert_eq!(
        r.fake.throttled_for(TOKEN_1),
        0,
        "no post beyond the budget"
    );
    assert!(most_in_any_minute(&r.fake.posted_at(TOKEN_1)) <= 20);
    assert_eq!(r.one.get("/readyz").await.status, 200);
}
