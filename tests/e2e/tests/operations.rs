//! What an operator sees: probes (readiness turns 503 while draining),
//! Prometheus metrics that move with outcomes, and the per-robot status view
//! with the token masked.

mod common;

use std::time::Duration;

use common::*;
use fake_dingtalk::Failure;
use serde_json::{Value, json};

fn text(id: &str) -> String {
    structured(id, &[], "text/plain", json!(format!("hello {id}")))
}

#[tokio::test]
async fn readyz_turns_503_while_draining_and_in_flight_requests_finish() {
    let h = Harness::with(two_robots(), |fake| {
        let runtime = "drain_delay_ms: 800\nshutdown_timeout_secs: 5\n";
        format!("{}{runtime}", two_groups(fake))
    })
    .await;
    assert_eq!(h.sink.get("/readyz").await.status, 200);
    assert_eq!(h.sink.get("/healthz").await.status, 200);

    h.fake
        .fail_next(TOKEN_1, Failure::Delay(Duration::from_millis(600)), 1);
    let slow = text("slow");
    let in_flight = h.post_structured(&slow);
    let drain = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let probe = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            h.sink.get("/readyz").await
        };
        tokio::join!(h.sink.shutdown(), probe)
    };
    let (in_flight, (drained, ready)) = tokio::join!(in_flight, drain);

    assert_eq!(ready.status, 503, "still serving while draining");
    assert_eq!(ready.body, "shutting down\n");
    assert!(drained, "drained within the bound");
    assert_eq!(in_flight.status, 200, "the in-flight request finished");
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1);
}

#[tokio::test]
async fn metrics_move_with_delivered_queued_rejected_and_throttled_events() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}delivery:\n  cooldown_secs: 60\n", two_groups(fake))
    })
    .await;
    // Label values in this test are unique to it (chat group bot2), so other
    // tests running in this process do not disturb the counts.
    let h = &h;
    let events = |outcome| async move {
        h.sink
            .metric(
                "dingtalk_events_total",
                &[("chat_group", "bot2"), ("outcome", outcome)],
            )
            .await
    };
    let before = (
        events("delivered").await,
        events("rejected").await,
        events("queued").await,
    );
    let received_before = h
        .sink
        .metric(
            "connector_events_received_total",
            &[("transport", "http"), ("encoding", "batch")],
        )
        .await;

    let to_bot2 = |id: &str, msgtype: &str, data: Value| {
        structured(
            id,
            &[("xvchatgroup", "bot2"), ("xvmsgtype", msgtype)],
            "application/json",
            data,
        )
    };
    let batch = format!(
        "[{},{}]",
        to_bot2("m1", "text", json!("one")),
        to_bot2("m2", "text", json!("two"))
    );
    assert_eq!(h.post_batch(&batch).await.status, 200);
    assert_eq!(
        h.post_structured(&to_bot2("m3", "link", json!({"title": "t"})))
            .await
            .status,
        400
    );
    // "Too fast": the robot is held, and the event waits in its outbox.
    h.fake
        .fail_next(TOKEN_2, Failure::ErrCode(410100, "send too fast".into()), 1);
    assert_eq!(
        h.post_structured(&to_bot2("m4", "text", json!("three")))
            .await
            .status,
        200
    );

    assert_eq!(events("delivered").await - before.0, 2.0);
    assert_eq!(events("rejected").await - before.1, 1.0);
    assert_eq!(events("queued").await - before.2, 1.0);
    assert_eq!(
        h.sink
            .metric("connector_outbox_queued", &[("outbox", "bot2")])
            .await,
        1.0
    );
    assert!(
        h.sink
            .metric(
                "connector_events_received_total",
                &[("transport", "http"), ("encoding", "batch")]
            )
            .await
            - received_before
            >= 2.0
    );
    assert!(
        h.sink
            .metric("dingtalk_errcodes_total", &[("errcode", "410100")])
            .await
            >= 1.0
    );
    assert!(
        h.sink
            .metric(
                "connector_throttled_total",
                &[("target", "bot2"), ("cause", "destination")]
            )
            .await
            >= 1.0
    );
    assert!(
        h.sink
            .metric("connector_send_duration_seconds_count", &[])
            .await
            >= 3.0
    );
    let exposition = h.sink.get("/metrics").await.body;
    assert!(
        exposition.contains("\nconnector_requests_in_flight "),
        "the gauge is exported"
    );

    let text = h.sink.get("/metrics").await.body;
    assert!(
        !text.contains(TOKEN_1) && !text.contains(TOKEN_2) && !text.contains("m1"),
        "no secrets or ids in labels"
    );
}

#[tokio::test]
async fn the_status_view_shows_each_robot_with_its_token_masked() {
    let h = Harness::start().await;
    assert_eq!(h.post_structured(&text("s1")).await.status, 200);
    h.fake.fail_next(
        TOKEN_2,
        Failure::ErrCode(310000, "keywords not in content".into()),
        1,
    );
    let to_bot2 = structured("s2", &[("xvchatgroup", "bot2")], "text/plain", json!("x"));
    assert_eq!(h.post_structured(&to_bot2).await.status, 400);

    let Reply { status, body, .. } = h.sink.get("/status").await;
    assert_eq!(status, 200);
    assert!(
        !body.contains(TOKEN_1) && !body.contains(SECRET_1) && !body.contains(TOKEN_2),
        "{body}"
    );
    let view: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(view["default_chat_group"], "bot1");
    let robots = view["robots"].as_array().expect("robots");
    let bot1 = robots
        .iter()
        .find(|r| r["chat_groups"] == json!(["bot1"]))
        .expect("bot1");
    assert_eq!(bot1["sent_in_window"], 1);
    assert_eq!(bot1["per_minute"], 20);
    assert_eq!(bot1["signed"], true);
    assert_eq!(bot1["last_errcode"], 0);
    assert!(
        bot1["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("access_token=***")),
        "{bot1}"
    );
    let bot2 = robots
        .iter()
        .find(|r| r["chat_groups"] == json!(["bot2"]))
        .expect("bot2");
    assert_eq!(bot2["last_errcode"], 310000);
    assert!(
        bot2["last_answer"]
            .as_str()
            .is_some_and(|a| a.contains("keywords not in content")),
        "{bot2}"
    );
    assert!(bot2["last_answer_unix_secs"].as_u64().is_some());
}

#[tokio::test]
async fn requests_past_max_in_flight_get_503_at_once() {
    let h = Harness::with(two_robots(), |fake| {
        format!("{}max_in_flight: 1\n", two_groups(fake))
    })
    .await;
    h.fake
        .fail_next(TOKEN_1, Failure::Delay(Duration::from_millis(500)), 1);
    let held = text("held");
    let (slow, second) = tokio::join!(h.post_structured(&held), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.post_structured(&text("refused")).await
    });
    assert_eq!(slow.status, 200, "{slow:?}");
    assert_eq!(second.status, 503, "{second:?}");
    assert!(second.body.contains("over capacity"), "{second:?}");
    assert_eq!(
        h.post_structured(&text("later")).await.status,
        200,
        "capacity returns"
    );
}

#[tokio::test]
async fn a_full_store_volume_posts_nothing_answers_503_and_heals_without_a_restart() {
    // The issue's case: an unpaced robot, whose events need no send log,
    // only the ledger's record.
    let h = Harness::with(vec![fake_dingtalk::RobotSpec::new(TOKEN_2)], |fake| {
        format!(
            "bot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\n      paced: false\nstore:\n  unhealthy_after_secs: 1\n",
            fake.webhook_url(TOKEN_2)
        )
    })
    .await;
    assert_eq!(h.post_structured(&text("first")).await.status, 200);
    assert_eq!(h.received(TOKEN_2).len(), 1);

    h.sink.fail_store_writes(true);
    let (down, reply) = h.sink.wait_for_status("/readyz", 503).await;
    assert!(down, "/readyz never went 503: {reply}");
    let during = text("during");
    for _ in 0..3 {
        let reply = h.post_structured(&during).await;
        assert_eq!(reply.status, 503, "{reply:?}");
    }
    assert_eq!(
        h.received(TOKEN_2).len(),
        1,
        "nothing posted without a record"
    );
    let (dead, reply) = h.sink.wait_for_status("/healthz", 503).await;
    assert!(dead, "/healthz never went 503: {reply}");
    assert!(reply.contains("the store has been down"), "{reply}");

    h.sink.fail_store_writes(false);
    let (ready, reply) = h.sink.wait_for_status("/readyz", 200).await;
    assert!(ready, "/readyz never came back: {reply}");
    assert_eq!(h.sink.get("/healthz").await.status, 200);
    assert_eq!(h.post_structured(&during).await.status, 200);
    assert_eq!(h.received(TOKEN_2).len(), 2);
    // Both are in the ledger: redeliveries are answered without a post.
    assert_eq!(h.post_structured(&during).await.status, 200);
    assert_eq!(h.post_structured(&text("first")).await.status, 200);
    assert_eq!(h.received(TOKEN_2).len(), 2, "nothing posted twice");
}

#[tokio::test]
async fn url_and_signature_from_files_deliver_signed_messages() {
    // As a Kubernetes Secret mounted as files: one value a file, a newline
    // at its end.
    let secrets = tempfile::tempdir().expect("a directory");
    let url_path = secrets.path().join("bot1-url");
    let signature_path = secrets.path().join("bot1-signature");
    let h = Harness::with(two_robots(), |fake| {
        std::fs::write(&url_path, format!("{}\n", fake.webhook_url(TOKEN_1))).expect("written");
        std::fs::write(&signature_path, format!("{SECRET_1}\n")).expect("written");
        format!(
            "bot:\n  webhooks:\n    - chat_group: bot1\n      url_file: {}\n      signature_file: {}\n",
            url_path.display(),
            signature_path.display()
        )
    })
    .await;
    let answer = h
        .post_structured(&structured(
            "from-files",
            &[("xvchatgroup", "bot1")],
            "text/plain",
            json!("signed by a secret from a file"),
        ))
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "delivered\n"));
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1, "signed: accepted");
    assert!(h.fake.rejections().is_empty(), "{:?}", h.fake.rejections());
    let status = h.sink.get("/status").await.body;
    assert!(status.contains(r#""signed":true"#), "{status}");
    assert!(
        !status.contains(TOKEN_1) && !status.contains(SECRET_1),
        "{status}"
    );
}

#[tokio::test]
async fn delivery_proxy_carries_every_request_and_no_proxy_bypasses_it() {
    let proxy = fake_dingtalk::proxy::ForwardProxy::start()
        .await
        .expect("the proxy starts");
    let with_credentials = proxy.url().replace("http://", "http://alice:pr0xy-pass@");
    let h = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  proxy: {with_credentials}\n",
            two_groups(fake)
        )
    })
    .await;
    for (id, group) in [("p-1", "bot1"), ("p-2", "bot2")] {
        let answer = h
            .post_structured(&structured(
                id,
                &[("xvchatgroup", group)],
                "text/plain",
                json!(id),
            ))
            .await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "delivered\n"));
    }
    let forwarded = proxy.forwarded();
    assert_eq!(forwarded.len(), 2, "both through the proxy: {forwarded:?}");
    assert!(
        forwarded[0]
            .target
            .starts_with(&format!("http://{}/robot/send?", h.fake.addr())),
        "absolute form, to the fake: {forwarded:?}"
    );
    assert!(
        forwarded.iter().all(|f| f
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "the proxy's credentials went to the proxy: {forwarded:?}"
    );
    assert_eq!(
        h.fake.accepted_for(TOKEN_1).len(),
        1,
        "signed, through the proxy"
    );
    assert_eq!(h.fake.accepted_for(TOKEN_2).len(), 1);
    let status = h.sink.get("/status").await.body;
    assert!(status.contains(r#""from":"delivery.proxy""#), "{status}");
    assert!(status.contains(&proxy.addr().to_string()), "{status}");
    assert!(
        !status.contains("pr0xy-pass") && !status.contains("alice"),
        "credentials masked: {status}"
    );

    // The same, with the fake's address in delivery.no_proxy: straight to it.
    let direct = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  proxy: {}\n  no_proxy: 127.0.0.1\n",
            two_groups(fake),
            proxy.url()
        )
    })
    .await;
    let answer = direct
        .post_structured(&structured("p-3", &[], "text/plain", json!("direct")))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(proxy.forwarded().len(), 2, "not through the proxy");
    assert_eq!(direct.fake.accepted_for(TOKEN_1).len(), 1);
}

#[tokio::test]
async fn a_proxy_that_is_down_is_503_and_its_credentials_never_show() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let h = Harness::with(two_robots(), |fake| {
        format!(
            "{}delivery:\n  deadline_ms: 600\n  proxy: http://alice:pr0xy-pass@{closed}\n",
            two_groups(fake)
        )
    })
    .await;
    let answer = h
        .post_structured(&structured("pd-1", &[], "text/plain", json!("x")))
        .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(!answer.body.contains("pr0xy-pass"), "{answer:?}");
    let status = h.sink.get("/status").await.body;
    assert!(
        !status.contains("pr0xy-pass") && !status.contains("alice"),
        "{status}"
    );
    assert!(
        status.contains(r#""sent_in_window":0"#),
        "never reached DingTalk: {status}"
    );
}
