//! A chat group served by a pool of three robots (three custom robots of one
//! DingTalk group, each with its own 20 a minute): its messages spread over
//! the robots with budget left, one that refuses for a reason of its own is
//! passed over while the others carry everything, and replicas sharing the
//! robots through Redis keep every robot's budget.

mod common;

use std::time::Duration;

use common::*;
use connector_sdk::testing::{RedisServer, TestServer};
use fake_dingtalk::{Failure, FakeDingTalk, RobotSpec, most_in_any_minute};
use futures_util::future::join_all;
use serde_json::json;
use sink_dingtalk::DingTalkSink;

const POOL: [&str; 3] = ["pool-robot-1", "pool-robot-2", "pool-robot-3"];

fn pool_robots() -> Vec<RobotSpec> {
    POOL.iter().map(|token| RobotSpec::new(token)).collect()
}

/// Chat group `ops` on the three robots, with `digest` settings.
fn pool_config(fake: &FakeDingTalk, digest: &str) -> String {
    named_pool_config(fake, "ops", digest)
}

/// Chat group `group` (the default) on the three robots, with `digest`
/// settings. A test that reads the process's metrics names its own group.
fn named_pool_config(fake: &FakeDingTalk, group: &str, digest: &str) -> String {
    let robots: String = POOL
        .iter()
        .map(|token| format!("        - {{ url: \"{}\" }}\n", fake.webhook_url(token)))
        .collect();
    format!(
        "bot:\n  webhooks:\n    - chat_group: {group}\n      robots:\n{robots}digest:\n{digest}"
    )
}

/// Alert `i` for the default chat group.
fn ops_alert(i: usize) -> String {
    structured(
        &format!("pool-alert-{i}"),
        &[],
        "text/plain",
        json!(format!("{} disk full on host-{i}", marker(i))),
    )
}

/// `count` alerts over `over`, one request each, as a trigger pushes them
/// over HTTP; every answer must be 200.
async fn storm(sinks: &[&TestServer<DingTalkSink>], count: usize, over: Duration) {
    let gap = over / u32::try_from(count).unwrap_or(1);
    let answers = join_all((0..count).map(|i| async move {
        tokio::time::sleep(gap * u32::try_from(i).unwrap_or(0)).await;
        post_structured(sinks[i % sinks.len()], &ops_alert(i)).await
    }))
    .await;
    let refused: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(refused.is_empty(), "every alert accepted: {refused:?}");
}

/// Waits until every marker of `0..count` shows in what any pool robot
/// accepted, at most `timeout`; returns how many times each shows.
async fn wait_all_shown(fake: &FakeDingTalk, count: usize, timeout: Duration) -> Vec<usize> {
    let started = tokio::time::Instant::now();
    loop {
        let accepted: Vec<_> = POOL.iter().flat_map(|t| fake.accepted_for(t)).collect();
        let shown: Vec<usize> = (0..count)
            .map(|i| times_shown(&accepted, &marker(i)))
            .collect();
        if shown.iter().all(|n| *n > 0) || started.elapsed() >= timeout {
            return shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No robot throttled, none over 20 POSTs in any 60 s.
fn assert_within_every_budget(fake: &FakeDingTalk) {
    for token in POOL {
        assert_eq!(fake.throttled_for(token), 0, "{token} throttled");
        let most = most_in_any_minute(&fake.posted_at(token));
        assert!(most <= 20, "{token}: {most} POSTs within 60 s");
    }
}

#[tokio::test]
async fn three_robots_send_sixty_a_minute_each_alert_on_its_own() {
    let h = Harness::with(pool_robots(), |fake| {
        pool_config(fake, "  reserved: 0\n  burst: 0\n")
    })
    .await;
    storm(&[&h.sink], 60, Duration::from_secs(10)).await;
    let shown = wait_all_shown(&h.fake, 60, Duration::from_secs(70)).await;
    assert!(shown.iter().all(|n| *n == 1), "each shown once: {shown:?}");
    let posts: usize = POOL.iter().map(|t| h.fake.accepted_for(t).len()).sum();
    assert_eq!(posts, 60, "every alert a message of its own");
    for token in POOL {
        assert_eq!(
            h.fake.accepted_for(token).len(),
            20,
            "{token} did its share"
        );
    }
    assert_within_every_budget(&h.fake);
}

#[tokio::test]
async fn with_the_defaults_a_pool_keeps_its_digest_slots() {
    let h = Harness::with(pool_robots(), |fake| {
        named_pool_config(fake, "pool-defaults", "  burst: 0\n")
    })
    .await;
    storm(&[&h.sink], 60, Duration::from_secs(10)).await;
    let shown = wait_all_shown(&h.fake, 60, Duration::from_secs(70)).await;
    assert!(shown.iter().all(|n| *n == 1), "each shown once: {shown:?}");
    let events = |outcome: &'static str| {
        let sink = &h.sink;
        async move {
            sink.metric(
                "dingtalk_events_total",
                &[("outcome", outcome), ("chat_group", "pool-defaults")],
            )
            .await
        }
    };
    assert_eq!(
        events("delivered").await,
        48.0,
        "16 of each robot's 20 on arrival"
    );
    assert_eq!(events("queued").await, 12.0, "the rest in digests");
    assert_within_every_budget(&h.fake);
}

#[tokio::test]
async fn a_robot_that_refuses_is_passed_over_and_the_status_names_it() {
    let h = Harness::with(pool_robots(), |fake| {
        pool_config(fake, "  reserved: 0\n  burst: 0\n")
    })
    .await;
    h.fake.fail_next(
        POOL[1],
        Failure::ErrCode(310000, "sign not match".into()),
        1_000,
    );
    storm(&[&h.sink], 40, Duration::from_secs(10)).await;
    let shown = wait_all_shown(&h.fake, 40, Duration::from_secs(70)).await;
    assert!(shown.iter().all(|n| *n == 1), "each shown once: {shown:?}");
    assert_eq!(h.fake.accepted_for(POOL[1]).len(), 0);
    assert_eq!(
        h.fake.accepted_for(POOL[0]).len() + h.fake.accepted_for(POOL[2]).len(),
        40,
        "the other two carry everything"
    );
    assert!(
        h.fake.requests_for(POOL[1]) <= 2,
        "passed over once it refused"
    );
    assert_within_every_budget(&h.fake);

    let status: serde_json::Value =
        serde_json::from_str(&h.sink.get("/status").await.body).expect("JSON");
    let refusing: Vec<&str> = status["robots"]
        .as_array()
        .expect("robots")
        .iter()
        .filter(|robot| {
            robot["refusing"]
                .as_str()
                .is_some_and(|reason| reason.contains("310000"))
        })
        .filter_map(|robot| robot["name"].as_str())
        .collect();
    assert_eq!(refusing, ["ops/2"], "{status}");
    assert_eq!(
        status["pools"][0]["robots"],
        json!(["ops/1", "ops/2", "ops/3"]),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_pools_budgets_through_redis() {
    let redis = RedisServer::start();
    let fake = FakeDingTalk::start(pool_robots())
        .await
        .expect("fake DingTalk starts");
    fake.fail_next(
        POOL[1],
        Failure::ErrCode(310000, "sign not match".into()),
        1_000,
    );
    let config = format!(
        "store:\n  redis:\n    url: \"{}\"\n{}",
        redis.url(),
        pool_config(&fake, "  reserved: 0\n  burst: 0\n")
    );
    let first = TestServer::<DingTalkSink>::from_yaml(&config).await;
    let second = TestServer::<DingTalkSink>::from_yaml(&config).await;
    storm(&[&first, &second], 40, Duration::from_secs(10)).await;
    let shown = wait_all_shown(&fake, 40, Duration::from_secs(70)).await;
    assert!(shown.iter().all(|n| *n == 1), "each shown once: {shown:?}");
    assert_eq!(fake.accepted_for(POOL[1]).len(), 0);
    assert!(
        fake.requests_for(POOL[1]) <= 4,
        "each replica passes it over once it refused"
    );
    assert_within_every_budget(&fake);
    // Both replicas spent the two working robots' one budget: 40 in 10 s
    // fit in their 40 a minute, so nothing waited for a digest.
    let posts = fake.accepted_for(POOL[0]).len() + fake.accepted_for(POOL[2]).len();
    assert_eq!(posts, 40);
    first.shutdown().await;
    second.shutdown().await;
}
