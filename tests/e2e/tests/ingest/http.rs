//! End-to-end over HTTP: the original README's five curl examples (the
//! same files `make demo` sends, in config/examples/), binary
//! and batch mode, and bad input that must never reach DingTalk.

use crate::common::*;
use serde_json::json;

const README_TEXT: &str = include_str!("../../../../config/examples/text.json");
const README_LINK: &str = include_str!("../../../../config/examples/link.json");
const README_MARKDOWN: &str = include_str!("../../../../config/examples/markdown.json");
const README_ACTION_CARD: &str = include_str!("../../../../config/examples/actionCard.json");
const README_FEED_CARD: &str = include_str!("../../../../config/examples/feedCard.json");

#[tokio::test]
async fn the_readme_examples_reach_dingtalk_field_by_field() {
    // Five in a row would be a storm's start: each on its own here.
    let h = Harness::with(two_robots(), |fake| {
        format!("{}digest:\n  burst: 0\n", two_groups(fake))
    })
    .await;
    for example in [
        README_TEXT,
        README_LINK,
        README_MARKDOWN,
        README_ACTION_CARD,
        README_FEED_CARD,
    ] {
        let answer = h.post_structured(example).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    // All five go to bot1: the text names it, the others use the default.
    let received = h.received(TOKEN_1);
    let expected = vec![
        json!({"msgtype": "text", "text": {"content": "Hello dingtalk"}}),
        json!({"msgtype": "link", "link": {
            "text": "text", "title": "title",
            "picUrl": "https://www.vanus.ai/images/ng/vanus-black.svg",
            "messageUrl": "https://github.com/vanus-labs"}}),
        json!({"msgtype": "markdown", "markdown": {"text": "text", "title": "title"}}),
        json!({"msgtype": "actionCard", "actionCard": {
            "text": "text", "title": "title", "btnOrientation": "0",
            "btns": [
                {"title": "title1", "actionURL": "https://github.com/vanus-labs"},
                {"title": "title2", "actionURL": "https://github.com/vanus-labs"}]}}),
        json!({"msgtype": "feedCard", "feedCard": {"links": [
            {"title": "title1", "messageURL": "https://github.com/vanus-labs", "picURL": "https://www.vanus.ai/images/ng/vanus-black.svg"},
            {"title": "title2", "messageURL": "https://github.com/vanus-labs", "picURL": "https://www.vanus.ai/images/ng/vanus-black.svg"}]}}),
    ];
    assert_eq!(received, expected);
    assert!(h.received(TOKEN_2).is_empty());
    assert!(h.fake.rejections().is_empty(), "{:?}", h.fake.rejections());
    // Each carried its own idempotency key.
    let uuids: std::collections::HashSet<_> = h
        .fake
        .accepted_for(TOKEN_1)
        .iter()
        .map(|a| a.body["msgUuid"].to_string())
        .collect();
    assert_eq!(uuids.len(), 5);
}

#[tokio::test]
async fn binary_mode_routes_by_header_extensions() {
    let h = Harness::start().await;
    let answer = h
        .sink
        .post_raw(
            "application/json",
            json!({"title": "Build", "text": "## passed"}).to_string(),
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "bin-1"),
                ("ce-source", "ci"),
                ("ce-type", "build"),
                ("ce-xvchatgroup", "bot2"),
                ("ce-xvmsgtype", "markdown"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        h.received(TOKEN_2),
        vec![json!({"msgtype": "markdown", "markdown": {"title": "Build", "text": "## passed"}})]
    );
}

#[tokio::test]
async fn batch_mode_delivers_every_event_in_order() {
    let h = Harness::start().await;
    let batch = format!(
        "[{},{},{}]",
        structured("b1", &[], "text/plain", json!("first")),
        structured(
            "b2",
            &[("xvchatgroup", "bot2")],
            "text/plain",
            json!("to bot2")
        ),
        structured("b3", &[], "text/plain", json!("second")),
    );
    let answer = h.post_batch(&batch).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let contents = |token| -> Vec<String> {
        h.received(token)
            .iter()
            .map(|b| b["text"]["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(contents(TOKEN_1), ["first", "second"]);
    assert_eq!(contents(TOKEN_2), ["to bot2"]);
}

#[tokio::test]
async fn bad_input_is_400_with_a_reason_and_nothing_is_sent() {
    let h = Harness::start().await;
    let cases = [
        ("{\"id\": \"broken\", ", "invalid CloudEvent"),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","data":"x"}"#,
            "invalid CloudEvent",
        ),
        (
            &*structured("e1", &[("xvchatgroup", "nobody")], "text/plain", json!("x")),
            "xvchatgroup `nobody` is not configured",
        ),
        (
            &*structured("e2", &[("xvmsgtype", "image")], "text/plain", json!("x")),
            "xvmsgtype `image` is not supported",
        ),
        (
            &*structured(
                "e3",
                &[("xvmsgtype", "link")],
                "application/json",
                json!("not an object"),
            ),
            "must be a JSON object",
        ),
        (
            &*structured(
                "e4",
                &[("xvmsgtype", "link")],
                "application/json",
                json!({"title": "t", "text": "x"}),
            ),
            "link.messageUrl is required",
        ),
    ];
    for (body, reason) in cases {
        let answer = h.post_structured(body).await;
        assert_eq!(answer.status, 400, "{body} -> {answer:?}");
        assert!(
            answer.body.contains(reason),
            "{body}: expected `{reason}` in {:?}",
            answer.body
        );
        assert_eq!(
            answer.body.trim_end().lines().count(),
            1,
            "one-line reason: {:?}",
            answer.body
        );
    }
    assert_eq!(
        h.fake.requests_for(TOKEN_1) + h.fake.requests_for(TOKEN_2),
        0,
        "nothing reached DingTalk"
    );
}

#[tokio::test]
async fn an_oversized_request_is_413() {
    let h = Harness::start().await;
    let huge = structured("big", &[], "text/plain", json!("x".repeat(5 * 1024 * 1024)));
    let answer = h.post_structured(&huge).await;
    assert_eq!(answer.status, 413);
    assert_eq!(h.fake.requests_for(TOKEN_1), 0);
}

#[tokio::test]
async fn a_permanent_dingtalk_refusal_is_400_naming_the_errcode_but_not_the_token() {
    let h = Harness::start().await;
    h.fake.fail_next(
        TOKEN_1,
        fake_dingtalk::Failure::ErrCode(310000, "keywords not in content".into()),
        1,
    );
    let answer = h
        .post_structured(&structured("r1", &[], "text/plain", json!("hello")))
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.body.contains("310000") && answer.body.contains("keywords not in content"),
        "{answer:?}"
    );
    assert!(
        !answer.body.contains(TOKEN_1) && !answer.body.contains(SECRET_1),
        "{answer:?}"
    );
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        1,
        "permanent errors are not retried"
    );
}

#[tokio::test]
async fn health_and_readiness_probes_answer() {
    let h = Harness::start().await;
    for path in ["/healthz", "/readyz"] {
        let response = h.sink.get(path).await;
        assert_eq!(response.status, 200, "{path}");
    }
}
