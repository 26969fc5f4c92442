//! Storms and redeliveries, tried as a Vanus trigger would, against the fake
//! DingTalk that shows and counts every POST (no msgUuid de-duplication),
//! allows 20 a minute and blocks a robot for 10 minutes past that: nothing
//! is posted twice, nothing answered 200 is left behind, and alerts past the
//! budget reach the group in digests within seconds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use connector_sdk::testing::ShiftedClock;
use connector_sdk::testing::proto::CloudEvent;
use fake_dingtalk::{Failure, RobotSpec, most_in_any_minute};
use futures_util::future::join_all;
use serde_json::json;
use tokio::time::Instant;

#[tokio::test]
async fn a_batch_redelivered_whole_by_a_trigger_is_shown_once() {
    // Each event sent on its own while the budget lasts (no storm rule), so
    // the failure comes part-way through the batch.
    let h = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  deadline_ms: 1000\ndigest:\n  burst: 0\n",
            two_groups(fake)
        )
    })
    .await;
    let batch: Vec<CloudEvent> = (0..30).map(grpc_alert).collect();
    // Nine go out, then DingTalk fails for longer than one request's
    // retries: the first attempt answers an error, and the trigger sends
    // the whole batch again.
    h.fake.fail_next(TOKEN_1, Failure::Delay(Duration::ZERO), 9);
    h.fake.fail_next(TOKEN_1, Failure::Http(500), 4);
    let attempts = h.trigger_grpc(batch.clone(), 6).await;
    assert!(
        attempts.is_some_and(|n| n > 1),
        "delivered after a redelivery: {attempts:?}"
    );
    let wanted = markers(0..30);
    assert_eq!(
        h.wait_visible(TOKEN_1, &wanted, Duration::from_secs(10))
            .await,
        30
    );
    // Once more, whole, after success: the ledger answers it.
    h.grpc_send(batch)
        .await
        .expect("a redelivery is answered OK");

    let accepted = h.fake.accepted_for(TOKEN_1);
    for m in &wanted {
        assert_eq!(times_shown(&accepted, m), 1, "{m} shown once");
    }
    assert_eq!(h.fake.throttled_for(TOKEN_1), 0);
    assert!(accepted.len() <= 20, "{} posts", accepted.len());
}

#[tokio::test]
async fn an_alert_storm_is_seen_in_digests_within_seconds() {
    let h = Harness::start().await;
    let first = Instant::now();
    // 200 alerts in 10 s, one request each, as a trigger pushes over HTTP.
    let answers = join_all((0..200).map(|i| {
        let h = &h;
        async move {
            tokio::time::sleep(Duration::from_millis(50 * i as u64)).await;
            h.post_structured(&alert(i)).await
        }
    }))
    .await;
    let refused: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(refused.is_empty(), "every alert accepted: {refused:?}");

    let wanted = markers(0..200);
    let shown = h
        .wait_visible(
            TOKEN_1,
            &wanted,
            Duration::from_secs(30).saturating_sub(first.elapsed()),
        )
        .await;
    assert_eq!(shown, 200, "all visible within 30 s of the first");
    let accepted = h.fake.accepted_for(TOKEN_1);
    for m in &wanted {
        assert_eq!(times_shown(&accepted, m), 1, "{m} shown once");
    }
    assert_eq!(h.fake.throttled_for(TOKEN_1), 0);
    assert!(
        most_in_any_minute(&h.fake.posted_at(TOKEN_1)) <= 20,
        "{}",
        accepted.len()
    );
    let digests: Vec<_> = accepted
        .iter()
        .filter(|a| {
            a.body["markdown"]["title"]
                .as_str()
                .is_some_and(|t| t.contains(" events, "))
        })
        .collect();
    assert!(!digests.is_empty(), "the rest came as digests");
    let status = h.sink.get("/status").await;
    assert!(
        status.body.contains(r#""digests_sent":"#),
        "{}",
        status.body
    );
}

/// `i` in letters, no digit: `12` is `bc`.
fn letters(i: usize) -> String {
    i.to_string()
        .bytes()
        .map(|digit| char::from(b'a' + (digit - b'0')))
        .collect()
}

#[tokio::test]
async fn a_digest_stays_under_the_body_limit_and_the_rest_waits_for_the_next() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}digest:\n  linger_ms: 200\n", two_groups(fake))
    })
    .await;
    // 16 go on their own; the long ones after them queue.
    let long = "很长的告警内容 ".repeat(60);
    for i in 0..80 {
        let body = structured(
            &format!("long-{i}"),
            &[("xvchatgroup", "bot1"), ("xvmsgtype", "markdown")],
            "application/json",
            // A word of its own in each title: no two are grouped, so each
            // brings its long text into the digest.
            json!({"title": format!("{} host {} down", marker(i), letters(i)), "text": long}),
        );
        assert_eq!(h.post_structured(&body).await.status, 200);
    }
    let wanted = markers(0..80);
    assert_eq!(
        h.wait_visible(TOKEN_1, &wanted, Duration::from_secs(30))
            .await,
        80
    );
    assert!(h.fake.rejections().is_empty(), "{:?}", h.fake.rejections());
    let digests: Vec<_> = h
        .fake
        .accepted_for(TOKEN_1)
        .into_iter()
        .filter(|a| a.msgtype == "markdown" && a.body.to_string().contains(" events, "))
        .collect();
    assert!(digests.len() >= 2, "more than one digest was needed");
    for digest in &digests {
        assert!(digest.body.to_string().len() <= 20_000);
    }
}

#[tokio::test]
async fn mentions_of_queued_events_notify_once_each() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}digest:\n  linger_ms: 200\n", two_groups(fake))
    })
    .await;
    for i in 0..16 {
        assert_eq!(h.post_structured(&alert(i)).await.status, 200);
    }
    for (i, mobiles) in [
        (16, "13800000001"),
        (17, "13800000001,13800000002"),
        (18, ""),
    ] {
        let mut event: serde_json::Value = serde_json::from_str(&alert(i)).expect("json");
        if !mobiles.is_empty() {
            event["xvatmobiles"] = json!(mobiles);
        }
        assert_eq!(h.post_structured(&event.to_string()).await.status, 200);
    }
    assert_eq!(
        h.wait_visible(TOKEN_1, &markers(16..19), Duration::from_secs(10))
            .await,
        3
    );
    let digest = h
        .fake
        .accepted_for(TOKEN_1)
        .into_iter()
        .find(|a| a.body.to_string().contains(&marker(17)))
        .expect("the digest");
    assert_eq!(
        digest.body["at"]["atMobiles"],
        json!(["13800000001", "13800000002"])
    );
    let text = digest.body["markdown"]["text"].as_str().unwrap_or_default();
    assert_eq!(text.matches("@13800000001").count(), 1, "{text}");
    assert_eq!(text.matches("@13800000002").count(), 1, "{text}");
}

#[tokio::test]
async fn a_full_outbox_answers_429_and_loses_nothing() {
    let h = Harness::with(vec![RobotSpec::new(TOKEN_2)], |fake| {
        format!(
            "bot:\n  webhooks:\n    - {{ chat_group: ops, url: \"{}\", per_minute: 2 }}\ndigest:\n  reserved: 1\n  max_queued: 3\n  linger_ms: 60000\n",
            fake.webhook_url(TOKEN_2)
        )
    })
    .await;
    let event = |i: usize| structured(&format!("full-{i}"), &[], "text/plain", json!(marker(i)));
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for i in 0..5 {
            statuses.push(h.post_structured(&event(i)).await.status);
        }
        statuses
    };
    // One on its own, three queued (the flusher lingers), then full.
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    let full = h.post_structured(&event(5)).await;
    assert!(full.retry_after.is_some(), "{full:?}");
    assert!(full.body.contains("digest.max_queued"), "{full:?}");
    let status = h.sink.get("/status").await.body;
    assert!(status.contains(r#""queued":3"#), "{status}");
}

#[tokio::test]
async fn a_throttled_robot_queues_instead_of_refusing_and_posts_nothing_while_held() {
    let h = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  cooldown_secs: 2\ndigest:\n  linger_ms: 100\n",
            two_groups(fake)
        )
    })
    .await;
    h.fake.fail_next(
        TOKEN_1,
        Failure::ErrCode(410_100, "send too fast".into()),
        1,
    );
    // One robot held: a batch for it and another answers 200 at once.
    let batch = format!(
        "[{},{},{}]",
        alert(1),
        alert(2),
        structured(
            "other",
            &[("xvchatgroup", "bot2")],
            "text/plain",
            json!("unaffected")
        ),
    );
    let answer = h.post_batch(&batch).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(h.post_structured(&alert(3)).await.status, 200);
    assert_eq!(h.fake.accepted_for(TOKEN_2).len(), 1, "bot2 is not held");
    assert_eq!(h.fake.requests_for(TOKEN_1), 1, "no POST to a held robot");
    // After the hold, the queued ones go out, in one digest.
    assert_eq!(
        h.wait_visible(TOKEN_1, &markers(1..4), Duration::from_secs(10))
            .await,
        3
    );
    assert_eq!(h.fake.requests_for(TOKEN_1), 2);
}

#[tokio::test]
async fn a_gateway_429_holds_the_robot_instead_of_retrying() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}digest:\n  enabled: false\n", two_groups(fake))
    })
    .await;
    h.fake.fail_next(TOKEN_1, Failure::Http(429), 1);
    let answer = h.post_structured(&alert(1)).await;
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.retry_after, Some(60));
    assert_eq!(h.post_structured(&alert(2)).await.status, 429);
    assert_eq!(h.fake.requests_for(TOKEN_1), 1, "not retried, held");
}

#[tokio::test]
async fn a_send_waiting_for_a_slot_does_not_post_after_too_fast() {
    let clock = Arc::new(ShiftedClock::default());
    let h = Harness::with_clock(
        two_robots(),
        |fake| {
            format!(
                "bot:\n  webhooks:\n    - {{ chat_group: bot1, url: \"{}\", signature: {SECRET_1}, per_minute: 2 }}\ndigest:\n  enabled: false\n",
                fake.webhook_url(TOKEN_1)
            )
        },
        Arc::clone(&clock),
    )
    .await;
    assert_eq!(h.post_structured(&alert(1)).await.status, 200);
    let waits_before = h
        .sink
        .metric("connector_pacing_wait_seconds_count", &[])
        .await;
    // A window on, less half a second: the first send leaves it soon.
    clock.advance(sink_dingtalk::robot::WINDOW - Duration::from_millis(500));
    // The second POST is answered "too fast", slowly; meanwhile a third
    // event waits for the slot the first frees.
    h.fake.fail_next(
        TOKEN_1,
        Failure::After(
            Duration::from_millis(300),
            Box::new(Failure::ErrCode(410_100, "send too fast".into())),
        ),
        1,
    );
    let second_alert = alert(2);
    let second = h.post_structured(&second_alert);
    let third = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.post_structured(&alert(3)).await
    };
    let (second, third) = tokio::join!(second, third);
    assert_eq!(second.status, 429, "{second:?}");
    assert_eq!(third.status, 429, "{third:?}");
    assert!(third.body.contains("held"), "{third:?}");
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        2,
        "the waiting send saw the hold and did not post"
    );
    // The third did wait for the slot (at least: other tests may wait too).
    let waits = h
        .sink
        .metric("connector_pacing_wait_seconds_count", &[])
        .await;
    assert!(waits > waits_before, "{waits_before} -> {waits}");
}

#[tokio::test]
async fn a_slow_dingtalk_never_makes_an_answer_late() {
    let h = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  deadline_ms: 3000\ndigest:\n  enabled: false\n",
            two_groups(fake)
        )
    })
    .await;
    // Every POST takes a second: eight events for one robot cannot all go.
    h.fake
        .fail_next(TOKEN_1, Failure::Delay(Duration::from_secs(1)), 8);
    let batch = format!("[{}]", (0..8).map(alert).collect::<Vec<_>>().join(","));
    // Waited on as a trigger does: 5 s.
    let answer = tokio::time::timeout(Duration::from_secs(5), h.post_batch(&batch))
        .await
        .expect("answered before the trigger's timeout");
    assert!(matches!(answer.status, 503 | 504), "{answer:?}");
    assert!(
        h.fake.requests_for(TOKEN_1) <= 3,
        "no POST once time ran out"
    );
}

#[tokio::test]
async fn a_digest_refused_for_a_robot_level_reason_does_not_end_digests() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}digest:\n  linger_ms: 200\n", two_groups(fake))
    })
    .await;
    // 16 go on their own; the flusher's first digest is then refused for a
    // reason about the robot (its signature), not about the digest.
    for i in 0..16 {
        assert_eq!(h.post_structured(&alert(i)).await.status, 200);
    }
    h.fake.fail_next(
        TOKEN_1,
        Failure::ErrCode(310_000, "sign not match".into()),
        1,
    );
    for i in 16..26 {
        assert_eq!(h.post_structured(&alert(i)).await.status, 200);
    }
    let queued = markers(16..26);
    assert_eq!(
        h.wait_visible(TOKEN_1, &queued, Duration::from_secs(30))
            .await,
        10
    );
    assert_eq!(h.fake.rejections().len(), 1, "{:?}", h.fake.rejections());
    // Once the robot answers again, the backlog still goes out as a digest,
    // not one message at a time.
    let carrying: Vec<_> = h
        .fake
        .accepted_for(TOKEN_1)
        .into_iter()
        .filter(|a| queued.iter().any(|m| a.body.to_string().contains(m)))
        .collect();
    assert_eq!(carrying.len(), 1, "one digest: {carrying:?}");
    assert_eq!(carrying[0].msgtype, "markdown");
}

#[tokio::test]
async fn an_answer_echoing_the_request_never_passes_the_token_on() {
    let h = Harness::start().await;
    // A proxy in the way that quotes the request it refused.
    h.fake.fail_next(
        TOKEN_1,
        Failure::ErrCode(
            999_999,
            format!("cannot route /robot/send?access_token={TOKEN_1}&timestamp=1&sign=abc%3D"),
        ),
        1,
    );
    let answer = h.post_structured(&alert(1)).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer
            .body
            .contains("access_token=***&timestamp=1&sign=***"),
        "{answer:?}"
    );
    let status = h.sink.get("/status").await.body;
    for shown in [&answer.body, &status] {
        assert!(!shown.contains(TOKEN_1), "{shown}");
        assert!(!shown.contains("abc%3D"), "{shown}");
    }
}
