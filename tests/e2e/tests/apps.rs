//! DingTalk app robots (issue 21), end to end against the fake's OpenAPI:
//! an event to an app's group over HTTP and gRPC, one-to-one messages to 45
//! people in 3 calls (each person once, flow-controlled ones retried, unknown
//! ones reported), a token that expires in the middle of a burst (one
//! refresh, nothing lost, nothing twice), a bad app secret (a clear error
//! naming the app, events refused for good), and two replicas sharing one
//! app's token through Redis.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
use connector_sdk::testing::proto::cloud_event::{CloudEventAttributeValue, Data};
use connector_sdk::testing::{RedisServer, TestServer};
use fake_dingtalk::{AppMessage, AppSpec, AppTarget, FakeDingTalk};
use futures_util::future::join_all;
use serde_json::json;
use sink_dingtalk::DingTalkSink;

const APP_KEY: &str = "dingoncall";
const APP_SECRET: &str = "oncall-secret";
const ROOM: &str = "cid-room==";

/// A bounded wait for what an outbox sends after the answers: a ceiling,
/// never a timed assertion.
const FLUSHED: Duration = Duration::from_secs(20);

/// One webhook group (`bot1`) and one app group (`room`), the app's secret
/// `secret`.
fn config(fake: &FakeDingTalk, secret: &str) -> String {
    config_paced(fake, secret, 20)
}

/// [`config`], the app at most `per_minute` a conversation.
fn config_paced(fake: &FakeDingTalk, secret: &str, per_minute: u32) -> String {
    format!(
        r#"
bot:
  default: room
  apps:
    - name: oncall
      app_key: {APP_KEY}
      app_secret: {secret}
      robot_code: {APP_KEY}
      api_base: "{}"
      per_minute: {per_minute}
  webhooks:
    - chat_group: bot1
      url: "{}"
      signature: {SECRET_1}
    - chat_group: room
      app: oncall
      open_conversation_id: "{ROOM}"
"#,
        fake.api_base(),
        fake.webhook_url(TOKEN_1),
    )
}

async fn start(secret: &str) -> Harness {
    Harness::with(two_robots(), |fake| {
        fake.add_app(AppSpec::new(APP_KEY, APP_SECRET));
        config(fake, secret)
    })
    .await
}

fn event(id: &str, extensions: &[(&str, &str)], text: &str) -> String {
    structured(id, extensions, "text/plain", json!(text))
}

fn string(value: &str) -> CloudEventAttributeValue {
    CloudEventAttributeValue {
        attr: Some(Attr::CeString(value.to_owned())),
    }
}

/// The group messages the fake accepted for `room`.
fn in_room(fake: &FakeDingTalk) -> Vec<AppMessage> {
    fake.app_messages()
        .into_iter()
        .filter(|m| m.target == AppTarget::Group(ROOM.to_owned()))
        .collect()
}

/// How many one-to-one messages each user got.
fn per_user(fake: &FakeDingTalk) -> HashMap<String, usize> {
    let mut got = HashMap::new();
    for message in fake.app_messages() {
        if let AppTarget::Users(users) = message.target {
            for user in users {
                *got.entry(user).or_default() += 1;
            }
        }
    }
    got
}

#[tokio::test]
async fn an_event_reaches_an_app_group_over_http_and_grpc() {
    let h = start(APP_SECRET).await;
    let reply = h
        .post_structured(&event("e1", &[("xvchatgroup", "room")], "disk full"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let markdown = structured(
        "e2",
        &[("xvmsgtype", "markdown")],
        "application/json",
        json!({"title": "CPU", "text": "## cpu high"}),
    );
    let reply = h.post_structured(&markdown).await;
    assert_eq!(
        reply.status, 200,
        "the default group is the app's: {}",
        reply.body
    );

    let grpc = CloudEvent {
        id: "g1".into(),
        source: "prometheus".into(),
        spec_version: "1.0".into(),
        r#type: "alert".into(),
        attributes: [("xvchatgroup".to_owned(), string("room"))].into(),
        data: Some(Data::TextData("memory low".into())),
    };
    h.grpc_send(vec![grpc]).await.expect("gRPC delivers");

    let got = in_room(&h.fake);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].msg_key, "sampleText");
    assert_eq!(got[0].msg_param, json!({"content": "disk full"}));
    assert_eq!(got[0].robot_code, APP_KEY);
    assert_eq!(got[1].msg_key, "sampleMarkdown");
    assert_eq!(
        got[1].msg_param,
        json!({"title": "CPU", "text": "## cpu high"})
    );
    assert_eq!(got[2].msg_param, json!({"content": "memory low"}));
    assert_eq!(h.fake.token_fetches(APP_KEY), 1, "one token for every send");
    // The webhook group beside it still works.
    let reply = h
        .post_structured(&event("w1", &[("xvchatgroup", "bot1")], "to the webhook"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1);

    // No app-robot form: refused for good, saying so, before any send.
    let feed = structured(
        "f1",
        &[("xvchatgroup", "room"), ("xvmsgtype", "feedCard")],
        "application/json",
        json!({"links": [{"title": "t", "messageURL": "https://a.test", "picURL": "https://a.test/p.png"}]}),
    );
    h.assert_refused(&feed, "feedCard has no app-robot form")
        .await;
    // The one-to-one target is not a chat group.
    let reply = h
        .post_structured(&event("x1", &[("xvchatgroup", "oncall/one-to-one")], "hi"))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(in_room(&h.fake).len(), 3);

    // Neither the token nor the secret shows in /status.
    let status = h.sink.get("/status").await;
    assert!(
        status.body.contains("\"app\":\"oncall\""),
        "{}",
        status.body
    );
    assert!(
        !status.body.contains("fake-app-token") && !status.body.contains(APP_SECRET),
        "{}",
        status.body
    );
}

#[tokio::test]
async fn one_to_one_to_45_people_is_3_calls_and_each_gets_it_once() {
    let h = start(APP_SECRET).await;
    let users: Vec<String> = (1..=45).map(|i| format!("u{i:02}")).collect();
    let list = users.join(",");
    let page = event(
        "page-1",
        &[("xvchatgroup", "room"), ("xvusers", &list)],
        "wake up",
    );
    let reply = h.post_structured(&page).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.fake.app_requests(), 3, "20 + 20 + 5");
    let got = per_user(&h.fake);
    assert_eq!(got.len(), 45);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(
        in_room(&h.fake).is_empty(),
        "xvusers sends to the people, not the group"
    );

    // The trigger redelivers it (its answer was lost): nobody gets it twice.
    let reply = h.post_structured(&page).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.fake.app_requests(), 3);

    // xvusers on a webhook group is the sender's mistake.
    h.assert_refused(
        &event(
            "page-2",
            &[("xvchatgroup", "bot1"), ("xvusers", "u01")],
            "x",
        ),
        "app robot",
    )
    .await;
}

#[tokio::test]
async fn fan_out_reaches_a_webhook_group_and_an_app_group_but_not_with_xvusers() {
    let h = start(APP_SECRET).await;
    let both = event("fan-app-1", &[("xvchatgroup", "bot1,room")], "to both");
    let reply = h.post_structured(&both).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1, "the webhook group");
    assert_eq!(in_room(&h.fake).len(), 1, "the app group");

    // xvusers takes one chat group: nothing is sent.
    h.assert_refused(
        &event(
            "fan-app-2",
            &[("xvchatgroup", "room,bot1"), ("xvusers", "u01")],
            "x",
        ),
        "xvusers takes one chat group",
    )
    .await;
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1);
    assert_eq!(in_room(&h.fake).len(), 1);
    assert!(per_user(&h.fake).is_empty());
}

#[tokio::test]
async fn flow_controlled_people_are_sent_to_again_and_unknown_ones_reported() {
    let h = start(APP_SECRET).await;
    h.fake.set_invalid_users(&["ghost"]);
    h.fake.flow_control_next("u03", 1);
    let mut users: Vec<String> = (1..=24).map(|i| format!("u{i:02}")).collect();
    users.push("ghost".into());
    let page = event(
        "page-1",
        &[("xvchatgroup", "room"), ("xvusers", &users.join(","))],
        "wake up",
    );
    let reply = h.post_structured(&page).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // 20 + 5, and once more for the one held back.
    assert_eq!(h.fake.app_requests(), 3);
    let got = per_user(&h.fake);
    assert_eq!(got.len(), 24, "{got:?}");
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert!(!got.contains_key("ghost"));

    // An event for nobody DingTalk knows is refused for good, naming them.
    h.assert_refused(
        &event(
            "page-2",
            &[("xvchatgroup", "room"), ("xvusers", "ghost")],
            "x",
        ),
        "ghost",
    )
    .await;
}

#[tokio::test]
async fn a_token_expiring_in_the_middle_of_a_burst_is_refreshed_once() {
    // Every event sent on its own (no storm rule): each one needs the token.
    let h = Harness::with(two_robots(), |fake| {
        fake.add_app(AppSpec::new(APP_KEY, APP_SECRET));
        format!("{}digest:\n  burst: 0\n", config(fake, APP_SECRET))
    })
    .await;
    for i in 0..5 {
        let reply = h
            .post_structured(&event(&format!("a{i}"), &[], &marker(i)))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(h.fake.token_fetches(APP_KEY), 1);
    // DingTalk expires the token while ten more arrive at once.
    h.fake.expire_tokens();
    let replies = join_all((5..15).map(|i| {
        let body = event(&format!("a{i}"), &[], &marker(i));
        let sink = &h.sink;
        async move { post_structured(sink, &body).await }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        h.fake.token_fetches(APP_KEY),
        2,
        "one refresh for the burst"
    );
    let got = in_room(&h.fake);
    for i in 0..15 {
        let shown = got
            .iter()
            .filter(|m| m.msg_param["content"] == json!(marker(i)))
            .count();
        assert_eq!(shown, 1, "{} shown once", marker(i));
    }
}

#[tokio::test]
async fn a_bad_app_secret_refuses_events_for_good_naming_the_app() {
    let h = start("not-the-secret").await;
    let reply = h.post_structured(&event("e1", &[], "hello")).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("app `oncall`") && reply.body.contains("app_secret"),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("not-the-secret"), "{}", reply.body);
    let grpc = CloudEvent {
        id: "g1".into(),
        source: "prometheus".into(),
        spec_version: "1.0".into(),
        r#type: "alert".into(),
        attributes: Default::default(),
        data: Some(Data::TextData("hello".into())),
    };
    let status = h.grpc_send(vec![grpc]).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(h.fake.app_messages().is_empty());
    // A storm of events is not a storm of token requests.
    assert_eq!(h.fake.token_fetches(APP_KEY), 1);
}

#[tokio::test]
async fn two_replicas_share_one_apps_token_through_redis() {
    let redis = RedisServer::start();
    let fake = FakeDingTalk::start(two_robots())
        .await
        .expect("fake DingTalk starts");
    fake.add_app(AppSpec::new(APP_KEY, APP_SECRET));
    let yaml = format!(
        "{}store:\n  redis:\n    url: \"{}\"\n    timeout_ms: 300\n",
        config(&fake, APP_SECRET),
        redis.url()
    );
    let one = TestServer::<DingTalkSink>::from_yaml(&yaml).await;
    let two = TestServer::<DingTalkSink>::from_yaml(&yaml).await;
    for i in 0..6 {
        let sink = if i % 2 == 0 { &one } else { &two };
        let reply = post_structured(sink, &event(&format!("r{i}"), &[], &marker(i))).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(in_room(&fake).len(), 6);
    assert_eq!(
        fake.token_fetches(APP_KEY),
        1,
        "one token fetch between them"
    );
}

#[tokio::test]
async fn past_an_app_groups_budget_events_are_queued_and_sent_as_digests() {
    let h = Harness::with(two_robots(), |fake| {
        fake.add_app(AppSpec::new(APP_KEY, APP_SECRET));
        config_paced(fake, APP_SECRET, 6) + "digest:\n  reserved: 2\n  linger_ms: 200\n"
    })
    .await;
    for i in 0..10 {
        let reply = h
            .post_structured(&event(&format!("s{i}"), &[], &marker(i)))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Four on their own, the rest queued; the flusher sends them merged.
    let shown = |m: &AppMessage, i: usize| m.msg_param.to_string().matches(&marker(i)).count();
    let started = tokio::time::Instant::now();
    while (0..10).any(|i| in_room(&h.fake).iter().map(|m| shown(m, i)).sum::<usize>() == 0)
        && started.elapsed() < FLUSHED
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = in_room(&h.fake);
    for i in 0..10 {
        let times: usize = got.iter().map(|m| shown(m, i)).sum();
        assert_eq!(times, 1, "{} shown once in {got:?}", marker(i));
    }
    assert!(got.len() <= 6, "within the budget: {}", got.len());
    assert!(
        got.iter().any(|m| m.msg_key == "sampleMarkdown"),
        "a digest is markdown: {got:?}"
    );
}

#[tokio::test]
async fn a_template_rule_picks_the_people_of_a_one_to_one_message() {
    let h = Harness::with(two_robots(), |fake| {
        fake.add_app(AppSpec::new(APP_KEY, APP_SECRET));
        format!(
            "{}templates:\n  - name: page\n    match: {{ type: \"page\" }}\n    msgtype: text\n    message:\n      content: \"{{{{ data.summary }}}}\"\n    users: \"{{{{ data.oncall | join(',') }}}}\"\n",
            config(fake, APP_SECRET)
        )
    })
    .await;
    let page = |id: &str, oncall: serde_json::Value, summary: &str| {
        let mut event: serde_json::Value = serde_json::from_str(&structured(
            id,
            &[("xvchatgroup", "room")],
            "application/json",
            json!({"summary": summary, "oncall": oncall}),
        ))
        .expect("JSON");
        event["type"] = json!("page");
        event.to_string()
    };
    let reply = h
        .post_structured(&page("p1", json!(["alice", "bob"]), "db-1 is down"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = per_user(&h.fake);
    assert_eq!(got.get("alice"), Some(&1), "{got:?}");
    assert_eq!(got.get("bob"), Some(&1), "{got:?}");
    assert!(in_room(&h.fake).is_empty(), "to the people, not the group");

    // Nobody on call: the rule's users is empty, the group gets it.
    let reply = h
        .post_structured(&page("p2", json!([]), "db-2 is down"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(in_room(&h.fake).len(), 1);
    assert_eq!(
        in_room(&h.fake)[0].msg_param["content"],
        json!("db-2 is down")
    );

    // xvusers wins over the rule.
    let mut event: serde_json::Value =
        serde_json::from_str(&page("p3", json!(["alice"]), "db-3 is down")).expect("JSON");
    event["xvusers"] = json!("carol");
    let reply = h.post_structured(&event.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = per_user(&h.fake);
    assert_eq!(got.get("carol"), Some(&1), "{got:?}");
    assert_eq!(got.get("alice"), Some(&1), "alice got p1 only: {got:?}");
}

#[tokio::test]
async fn an_apps_own_rate_bounds_all_its_groups_together() {
    const ROOM_2: &str = "cid-room-2==";
    let h = Harness::with(two_robots(), |fake| {
        fake.add_app(AppSpec::new(APP_KEY, APP_SECRET));
        format!(
            r#"
bot:
  default: room
  apps:
    - name: oncall
      app_key: {APP_KEY}
      app_secret: {APP_SECRET}
      robot_code: {APP_KEY}
      api_base: "{}"
      app_per_minute: 3
  webhooks:
    - chat_group: room
      app: oncall
      open_conversation_id: "{ROOM}"
    - chat_group: room2
      app: oncall
      open_conversation_id: "{ROOM_2}"
digest:
  burst: 0
  reserved: 1
"#,
            fake.api_base(),
        )
    })
    .await;
    let mut answers = Vec::new();
    for i in 0..6 {
        let group = if i % 2 == 0 { "room" } else { "room2" };
        let reply = h
            .post_structured(&event(
                &format!("r{i}"),
                &[("xvchatgroup", group)],
                &format!("m{i}"),
            ))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        answers.push(reply.body);
    }
    // Each group may post 20 a minute, the app 3 over both: the rest wait
    // in the outboxes (answered `queued`).
    let sent = h.fake.app_messages().len();
    assert!(sent <= 3, "{sent} sent at once");
    assert!(answers.iter().any(|a| a.contains("queued")), "{answers:?}");
    let status = h.sink.get("/status").await;
    assert!(status.body.contains("room2"), "{}", status.body);
}
