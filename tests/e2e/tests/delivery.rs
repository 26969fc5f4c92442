//! End-to-end delivery guarantees against the fake DingTalk, which enforces
//! 20 messages a minute, blocks a robot for its cool-down after a 21st, and
//! shows every POST (it does not de-duplicate by msgUuid): pacing never gets
//! a robot throttled, failures are retried inside the request's deadline,
//! throttles hold the robot, and the ledger makes resends harmless. With
//! digests off (`digest.enabled: false`) the sink answers 429 past the
//! budget; storms.rs covers what it does with them on.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use connector_sdk::testing::proto::cloud_event::CloudEventAttributeValue;
use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
use fake_dingtalk::Failure;
use futures_util::future::join_all;
use serde_json::json;

fn text_event(id: &str, group: &str) -> String {
    structured(
        id,
        &[("xvchatgroup", group)],
        "text/plain",
        json!(format!("message {id}")),
    )
}

const DIGESTS_OFF: &str = "digest:\n  enabled: false\n";

#[tokio::test]
async fn with_digests_off_a_burst_is_paced_and_the_rest_answered_429() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}{DIGESTS_OFF}", two_groups(fake))
    })
    .await;
    let answers = join_all((0..30).map(|i| {
        let h = &h;
        async move {
            h.post_structured(&text_event(&format!("burst-{i}"), "bot1"))
                .await
        }
    }))
    .await;

    let delivered = answers.iter().filter(|a| a.status == 200).count();
    let throttled: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(delivered, 20, "{answers:?}");
    assert_eq!(
        throttled.len(),
        10,
        "every other answer is 429: {answers:?}"
    );
    for answer in throttled {
        let retry_after = answer.retry_after.expect("429 carries Retry-After");
        assert!(
            (60..=66).contains(&retry_after),
            "a slot frees within the minute: {retry_after}"
        );
    }
    assert_eq!(h.fake.throttled_for(TOKEN_1), 0, "the fake never throttled");
    let accepted = h.fake.accepted_for(TOKEN_1);
    assert_eq!(accepted.len(), 20, "every 200 delivered exactly once");
    let contents: HashSet<_> = accepted
        .iter()
        .map(|a| a.body["text"]["content"].to_string())
        .collect();
    assert_eq!(contents.len(), 20);
}

#[tokio::test]
async fn groups_on_one_robot_share_a_budget_however_its_url_is_spelled() {
    let h = Harness::with(two_robots(), |fake| {
        let url1 = fake.webhook_url(TOKEN_1);
        // The same robot, its query spelled another way.
        let respelled = url1.replace("?access_token=", "?from=group-b&access_token=");
        format!(
            r#"
bot:
  webhooks:
    - {{ chat_group: a, url: "{url1}", signature: {SECRET_1}, per_minute: 3 }}
    - {{ chat_group: b, url: "{respelled}", signature: {SECRET_1}, per_minute: 3 }}
    - {{ chat_group: c, url: "{url2}" }}
{DIGESTS_OFF}"#,
            url2 = fake.webhook_url(TOKEN_2),
        )
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            h.post_structured(&text_event(&format!("a{i}"), "a"))
                .await
                .status,
            200
        );
    }
    let answer = h.post_structured(&text_event("b0", "b")).await;
    assert_eq!(
        answer.status, 429,
        "group b posts through group a's robot: {answer:?}"
    );
    assert!(
        answer.body.contains("budget of 3 messages a minute"),
        "{answer:?}"
    );

    // Robot a's budget is spent; robot c still sends at once (a shared
    // budget would answer 429 here).
    for i in 0..5 {
        assert_eq!(
            h.post_structured(&text_event(&format!("c{i}"), "c"))
                .await
                .status,
            200
        );
    }
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 3);
    assert_eq!(h.fake.accepted_for(TOKEN_2).len(), 5);
}

#[tokio::test]
async fn transient_http_500s_are_retried_into_one_delivery() {
    let h = Harness::start().await;
    h.fake.fail_next(TOKEN_1, Failure::Http(500), 3);
    let answer = h.post_structured(&text_event("retry-1", "bot1")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        4,
        "three failures, then the delivery"
    );
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1, "one message");
}

#[tokio::test]
async fn a_busy_errcode_is_retried_and_a_lasting_one_is_503() {
    let h = Harness::start().await;
    h.fake
        .fail_next(TOKEN_1, Failure::ErrCode(-1, "system busy".into()), 1);
    assert_eq!(
        h.post_structured(&text_event("busy-1", "bot1"))
            .await
            .status,
        200
    );

    h.fake
        .fail_next(TOKEN_1, Failure::ErrCode(-1, "system busy".into()), 1_000);
    let answer = h.post_structured(&text_event("busy-2", "bot1")).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("busy"), "{answer:?}");
}

#[tokio::test]
async fn a_hanging_dingtalk_gets_a_retryable_answer_before_the_trigger_gives_up() {
    let h = Harness::start().await;
    h.fake
        .fail_next(TOKEN_1, Failure::Delay(Duration::from_secs(20)), 1);
    // Waited on as a Vanus trigger does: it gives up after 5 s.
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        h.post_structured(&text_event("hang-1", "bot1")),
    )
    .await
    .expect("answered before the trigger's 5 s timeout");
    assert_eq!(answer.status, 504, "{answer:?}");
}

#[tokio::test]
async fn dingtalk_unreachable_is_503() {
    let h = Harness::with(two_robots(), |_| {
        "bot:\n  webhooks:\n    - { chat_group: x, url: 'http://127.0.0.1:9/robot/send?access_token=t' }\ndelivery:\n  deadline_ms: 500\n".into()
    })
    .await;
    let answer = h.post_structured(&text_event("down-1", "x")).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("cannot reach DingTalk"), "{answer:?}");
}

#[tokio::test]
async fn with_digests_off_a_throttle_answer_holds_the_robot_for_the_cool_down() {
    let h = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  cooldown_secs: 2\n{DIGESTS_OFF}",
            two_groups(fake)
        )
    })
    .await;
    h.fake
        .fail_next(TOKEN_1, Failure::ErrCode(410100, "send too fast".into()), 1);

    let answer = h.post_structured(&text_event("t1", "bot1")).await;
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.retry_after, Some(2));
    assert_eq!(h.fake.requests_for(TOKEN_1), 1);

    // Held: answered 429 without calling DingTalk.
    let answer = h.post_structured(&text_event("t2", "bot1")).await;
    assert_eq!(answer.status, 429, "{answer:?}");
    assert!(
        answer.retry_after.is_some_and(|s| (1..=2).contains(&s)),
        "{answer:?}"
    );
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        1,
        "no call to a robot in cool-down"
    );
    // Other robots are unaffected.
    assert_eq!(
        h.post_structured(&text_event("t3", "bot2")).await.status,
        200
    );

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        h.post_structured(&text_event("t2", "bot1")).await.status,
        200
    );
    assert_eq!(h.fake.requests_for(TOKEN_1), 2);
}

#[tokio::test]
async fn the_same_event_twice_posts_once() {
    let h = Harness::start().await;
    let event = text_event("dup-1", "bot1");
    assert_eq!(h.post_structured(&event).await.status, 200);
    assert_eq!(h.post_structured(&event).await.status, 200);
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        1,
        "the redelivery is answered from the ledger, without a post"
    );
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1);

    assert_eq!(
        h.post_structured(&text_event("dup-2", "bot1")).await.status,
        200
    );
    let uuids: HashSet<_> = h
        .fake
        .accepted_for(TOKEN_1)
        .iter()
        .map(|a| a.body["msgUuid"].to_string())
        .collect();
    assert_eq!(uuids.len(), 2, "different events never share a msgUuid");
}

#[tokio::test]
async fn a_partly_failed_batch_is_retried_whole_without_double_posts() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}delivery:\n  deadline_ms: 500\n", two_groups(fake))
    })
    .await;
    let batch = format!(
        "[{},{},{}]",
        text_event("p1", "bot1"),
        text_event("p2", "bot2"),
        text_event("p3", "bot1"),
    );
    // More failures than one request's retries can use up.
    h.fake.fail_next(TOKEN_2, Failure::Http(500), 10);
    let answer = h.post_batch(&batch).await;
    assert_eq!(
        answer.status, 503,
        "the most retry-worthy outcome: {answer:?}"
    );
    assert_eq!(
        h.fake.accepted_for(TOKEN_1).len(),
        2,
        "bot1's events went out"
    );
    assert!(h.fake.accepted_for(TOKEN_2).is_empty());

    // The sender retries the whole batch until bot2 recovers.
    let mut answer = h.post_batch(&batch).await;
    for _ in 0..10 {
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        answer = h.post_batch(&batch).await;
    }
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        2,
        "resent events were not posted again"
    );
    assert_eq!(h.fake.accepted_for(TOKEN_2).len(), 1);
}

#[tokio::test]
async fn events_to_one_robot_keep_their_order_behind_a_failure() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}delivery:\n  deadline_ms: 500\n", two_groups(fake))
    })
    .await;
    h.fake.fail_next(TOKEN_1, Failure::Http(500), 1_000);
    let batch = format!(
        "[{},{}]",
        text_event("o1", "bot1"),
        text_event("o2", "bot1")
    );
    let answer = h.post_batch(&batch).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    let tried: HashSet<String> = h
        .fake
        .bodies_for(TOKEN_1)
        .iter()
        .map(|b| b["text"]["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        tried,
        HashSet::from(["message o1".to_owned()]),
        "o2 was held back, not sent ahead of o1"
    );
    assert!(h.fake.accepted_for(TOKEN_1).is_empty());
    assert_eq!(answer.body.lines().count(), 1);
}

#[tokio::test]
async fn an_event_queued_in_the_outbox_is_answered_queued() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}delivery:\n  cooldown_secs: 60\n", two_groups(fake))
    })
    .await;
    let sent = h.post_structured(&text_event("q-1", "bot2")).await;
    assert_eq!((sent.status, sent.body.as_str()), (200, "delivered\n"));

    // "Too fast": the robot is held, and what comes for it waits in its outbox.
    h.fake
        .fail_next(TOKEN_2, Failure::ErrCode(410100, "send too fast".into()), 1);
    let queued = h.post_structured(&text_event("q-2", "bot2")).await;
    assert_eq!((queued.status, queued.body.as_str()), (200, "queued\n"));
    let queued = h.post_structured(&text_event("q-3", "bot2")).await;
    assert_eq!((queued.status, queued.body.as_str()), (200, "queued\n"));

    // A batch of one delivered and one queued: still 200, and it says so.
    let batch = format!(
        "[{},{}]",
        text_event("q-4", "bot1"),
        text_event("q-5", "bot2")
    );
    let mixed = h.post_batch(&batch).await;
    assert_eq!((mixed.status, mixed.body.as_str()), (200, "queued\n"));
    // gRPC keeps its code: OK.
    let mut event = grpc_alert(1);
    event.attributes.insert(
        "xvchatgroup".into(),
        CloudEventAttributeValue {
            attr: Some(Attr::CeString("bot2".into())),
        },
    );
    h.grpc_send(vec![event]).await.expect("queued is OK");

    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1, "q-4 went at once");
    assert_eq!(
        h.sink
            .metric("connector_outbox_queued", &[("outbox", "bot2")])
            .await,
        4.0,
        "q-2, q-3, q-5 and the gRPC event wait"
    );
}

/// A free loopback port with nothing listening on it (yet).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[tokio::test]
async fn connection_refused_spends_no_budget_and_the_robot_sends_at_once_when_dingtalk_is_back() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/robot/send?access_token={TOKEN_2}");
    let h = Harness::with(two_robots(), |_| {
        format!(
            "bot:\n  webhooks:\n    - {{ chat_group: down, url: '{url}' }}\ndelivery:\n  deadline_ms: 1000\n{DIGESTS_OFF}"
        )
    })
    .await;
    for i in 0..3 {
        let answer = h
            .post_structured(&text_event(&format!("r-{i}"), "down"))
            .await;
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.body.contains("cannot reach DingTalk"), "{answer:?}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&h.sink.get("/status").await.body).expect("JSON");
    assert_eq!(
        status["robots"][0]["sent_in_window"], 0,
        "nothing reached DingTalk, nothing spent: {status}"
    );

    // DingTalk comes back on that port: the whole budget is there.
    let fake = fake_dingtalk::FakeDingTalk::start_on(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        vec![fake_dingtalk::RobotSpec::new(TOKEN_2)],
    )
    .await
    .expect("the fake binds the port");
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(
            h.post_structured(&text_event(&format!("r-{i}"), "down"))
                .await,
        );
    }
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.body == "delivered\n"),
        "20 of the robot's 20 a minute, at once: {answers:?}"
    );
    assert_eq!(fake.accepted_for(TOKEN_2).len(), 20);
    assert_eq!(fake.throttled_for(TOKEN_2), 0);
}
