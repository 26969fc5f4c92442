//! End-to-end message rules: mentions that notify, bodies that fit
//! DingTalk's 20,000 bytes, and required fields checked before sending.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_markdown_mention_arrives_with_at_and_the_token_in_the_text() {
    let h = Harness::start().await;
    let data = json!({"title": "Disk", "text": "### disk full on db-1", "at": {"atMobiles": ["13800000000"]}});
    let answer = h
        .post_structured(&structured(
            "m1",
            &[("xvmsgtype", "markdown")],
            "application/json",
            data,
        ))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &h.received(TOKEN_1)[0];
    assert_eq!(
        body["markdown"]["text"],
        "### disk full on db-1\n\n@13800000000"
    );
    assert_eq!(body["at"]["atMobiles"], json!(["13800000000"]));
}

#[tokio::test]
async fn an_attribute_only_mention_on_a_text_message() {
    let h = Harness::start().await;
    let event = structured(
        "m2",
        &[("xvatuserids", "manager01,ops02"), ("xvatall", "true")],
        "text/plain",
        json!("deploy finished"),
    );
    assert_eq!(h.post_structured(&event).await.status, 200);
    assert_eq!(
        h.received(TOKEN_1),
        vec![json!({
            "msgtype": "text",
            "text": {"content": "deploy finished"},
            "at": {"atMobiles": [], "atUserIds": ["manager01", "ops02"], "isAtAll": true}
        })]
    );
}

#[tokio::test]
async fn a_50000_byte_markdown_arrives_truncated_and_accepted() {
    let h = Harness::start().await;
    let data = json!({"title": "Log", "text": "x".repeat(50_000)});
    let answer = h
        .post_structured(&structured(
            "m3",
            &[("xvmsgtype", "markdown")],
            "application/json",
            data,
        ))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let accepted = h.fake.accepted_for(TOKEN_1);
    assert_eq!(accepted.len(), 1, "rejections: {:?}", h.fake.rejections());
    let text = accepted[0].body["markdown"]["text"].as_str().expect("text");
    assert!(
        text.starts_with("xxxx") && text.contains("(truncated, "),
        "{}",
        &text[text.len() - 50..]
    );
    assert!(serde_json::to_vec(&accepted[0].body).expect("json").len() <= 20_000);
}

#[tokio::test]
async fn a_feed_card_too_large_to_fit_is_400_and_not_sent() {
    let h = Harness::start().await;
    let links: Vec<_> = (0..300)
        .map(|i| json!({"title": format!("incident {i}"), "messageURL": "https://status.example.com/incidents/0123456789", "picURL": "https://status.example.com/img/0123456789.png"}))
        .collect();
    let event = structured(
        "m4",
        &[("xvmsgtype", "feedCard")],
        "application/json",
        json!({"links": links}),
    );
    let answer = h.post_structured(&event).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("cannot be shortened"), "{answer:?}");
    assert_eq!(h.fake.requests_for(TOKEN_1), 0);
}

#[tokio::test]
async fn each_missing_required_field_is_400_naming_it() {
    let h = Harness::start().await;
    let cases = [
        (
            "link",
            json!({"text": "x", "messageUrl": "https://a.b"}),
            "link.title is required",
        ),
        (
            "link",
            json!({"title": "t", "text": "x"}),
            "link.messageUrl is required",
        ),
        (
            "link",
            json!({"title": "t", "text": "x", "messageURL": "https://a.b"}),
            "link.messageUrl is required",
        ),
        (
            "markdown",
            json!({"title": "t"}),
            "markdown.text is required",
        ),
        (
            "actionCard",
            json!({"title": "t", "text": "x", "singleTitle": "go"}),
            "actionCard.singleURL is required",
        ),
        (
            "actionCard",
            json!({"title": "t", "text": "x", "btns": [{"actionURL": "https://a.b"}]}),
            "actionCard.btns[0].title is required",
        ),
        (
            "feedCard",
            json!({"links": [{"title": "t", "messageURL": "https://a.b"}]}),
            "feedCard.links[0].picURL is required",
        ),
        (
            "link",
            json!({"title": "t", "text": "x", "messageUrl": "javascript:alert(1)"}),
            "link.messageUrl must be an absolute",
        ),
        (
            "link",
            json!({"title": "t", "text": "x", "messageUrl": "https://a.b", "at": {"isAtAll": true}}),
            "link messages cannot mention anyone",
        ),
    ];
    for (i, (msgtype, data, reason)) in cases.into_iter().enumerate() {
        let event = structured(
            &format!("v{i}"),
            &[("xvmsgtype", msgtype)],
            "application/json",
            data,
        );
        let answer = h.post_structured(&event).await;
        assert_eq!(answer.status, 400, "{msgtype}: {answer:?}");
        assert!(
            answer.body.contains(reason),
            "expected `{reason}` in {:?}",
            answer.body
        );
    }
    assert_eq!(h.fake.requests_for(TOKEN_1), 0, "nothing was sent");
}

#[tokio::test]
async fn unknown_fields_pass_through_untouched() {
    let h = Harness::start().await;
    let data = json!({"title": "t", "text": "x", "singleTitle": "go", "singleURL": "https://a.b", "hideAvatar": "1", "btnOrientation": "1"});
    let answer = h
        .post_structured(&structured(
            "u1",
            &[("xvmsgtype", "actionCard")],
            "application/json",
            data.clone(),
        ))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(h.received(TOKEN_1)[0]["actionCard"], data);
}

/// One event of each message type, none with a keyword.
fn one_of_each_type(group: &str) -> Vec<(&'static str, String)> {
    let card = json!({"title": "Deploy", "text": "v2 is live", "singleTitle": "Open", "singleURL": "https://ci.example.com/1"});
    let link =
        json!({"title": "Deploy", "text": "v2 is live", "messageUrl": "https://ci.example.com/1"});
    let feed = json!({"links": [
        {"title": "Deploy v2", "messageURL": "https://ci.example.com/1", "picURL": "https://ci.example.com/1.png"},
        {"title": "Deploy v3", "messageURL": "https://ci.example.com/2", "picURL": "https://ci.example.com/2.png"}
    ]});
    let markdown = json!({"title": "Deploy", "text": "### v2 is live"});
    [
        ("text", json!("v2 is live")),
        ("markdown", markdown),
        ("link", link),
        ("actionCard", card),
        ("feedCard", feed),
    ]
    .into_iter()
    .map(|(msgtype, data)| {
        let content_type = if msgtype == "text" {
            "text/plain"
        } else {
            "application/json"
        };
        (
            msgtype,
            structured(
                &format!("kw-{group}-{msgtype}"),
                &[("xvchatgroup", group), ("xvmsgtype", msgtype)],
                content_type,
                data,
            ),
        )
    })
    .collect()
}

#[tokio::test]
async fn a_keyword_secured_robot_gets_its_keyword_in_every_message_type() {
    let robots = vec![
        fake_dingtalk::RobotSpec::new("kw-robot").keywords(&["[ops]", "deploy-bot"]),
        fake_dingtalk::RobotSpec::new("kw-pool").keywords(&["pool-kw"]),
        fake_dingtalk::RobotSpec::new("kw-unset").keywords(&["[ops]"]),
    ];
    let h = Harness::with(robots, |fake| {
        format!(
            "bot:\n  webhooks:\n    - chat_group: ops\n      url: \"{}\"\n      keywords: ['[ops]', deploy-bot]\n    - chat_group: pool\n      robots:\n        - {{ url: \"{}\", keywords: [pool-kw] }}\n    - chat_group: none\n      url: \"{}\"\ndigest:\n  burst: 0\n",
            fake.webhook_url("kw-robot"),
            fake.webhook_url("kw-pool"),
            fake.webhook_url("kw-unset"),
        )
    })
    .await;
    for (msgtype, event) in one_of_each_type("ops") {
        let answer = h.post_structured(&event).await;
        assert_eq!(answer.status, 200, "{msgtype}: {answer:?}");
    }
    let got = h.received("kw-robot");
    assert_eq!(got.len(), 5, "rejections: {:?}", h.fake.rejections());
    assert_eq!(got[0]["text"]["content"], "v2 is live\n[ops]");
    assert_eq!(got[1]["markdown"]["text"], "### v2 is live\n\n[ops]");
    assert_eq!(got[1]["markdown"]["title"], "Deploy", "the title stays");
    assert_eq!(got[2]["link"]["text"], "v2 is live\n[ops]");
    assert_eq!(got[3]["actionCard"]["text"], "v2 is live\n\n[ops]");
    assert_eq!(got[4]["feedCard"]["links"][0]["title"], "Deploy v2 [ops]");
    assert_eq!(got[4]["feedCard"]["links"][1]["title"], "Deploy v3");

    // One that has a keyword already is sent as it is.
    let has_one = structured(
        "kw-has",
        &[("xvchatgroup", "ops")],
        "text/plain",
        json!("deploy-bot: v3"),
    );
    assert_eq!(h.post_structured(&has_one).await.status, 200);
    assert_eq!(
        h.received("kw-robot")[5]["text"]["content"],
        "deploy-bot: v3"
    );

    // A pool robot's own keywords.
    let (_, text) = one_of_each_type("pool").remove(0);
    assert_eq!(h.post_structured(&text).await.status, 200);
    assert_eq!(
        h.received("kw-pool")[0]["text"]["content"],
        "v2 is live\npool-kw"
    );

    // Without `keywords` in the config, the fake refuses as DingTalk does:
    // 310000, the message's fault, 400.
    let (_, text) = one_of_each_type("none").remove(0);
    let answer = h.post_structured(&text).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("310000"), "{answer:?}");
    assert!(h.fake.accepted_for("kw-unset").is_empty());
}
