//! End-to-end templates: the real sink with the ready Alertmanager rule (and
//! a few of the test's own) against the fake DingTalk, events sent over HTTP
//! and gRPC as senders do.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use connector_sdk::cloudevents::Event;
use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
use connector_sdk::testing::proto::cloud_event::{CloudEventAttributeValue, Data};
use fake_dingtalk::FakeDingTalk;
use serde_json::{Value, json};
use sink_dingtalk::DingTalkConfig;

fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/templates")
}

/// The ready Alertmanager rule, then rules of the test's own.
fn rules() -> String {
    let ready =
        std::fs::read_to_string(templates_dir().join("alertmanager.yml")).expect("the ready rule");
    format!(
        r#"{ready}
  - name: runaway
    msgtype: text
    message:
      content: "{{% for i in range(100000) %}}{{% for j in range(100000) %}}{{% endfor %}}{{% endfor %}}"
  - name: deploy
    match: {{ type: "com.example.deploy", chat_group: "bot2" }}
    msgtype: text
    message:
      content: "{{{{ data.service }}}} {{{{ data.version }}}} is live ({{{{ time | datetime('%H:%M', tz='UTC') }}}})"
"#
    )
}

async fn start() -> Harness {
    Harness::with(two_robots(), |fake: &FakeDingTalk| {
        format!("{}{}", two_groups(fake), rules())
    })
    .await
}

/// The Alertmanager sample: a structured-mode CloudEvent with two alerts.
fn alertmanager_sample() -> Value {
    let text =
        std::fs::read_to_string(templates_dir().join("samples/alertmanager.json")).expect("sample");
    serde_json::from_str(&text).expect("JSON")
}

#[tokio::test]
async fn an_alertmanager_payload_with_two_alerts_arrives_with_the_loop_rendered() {
    let h = start().await;
    let answer = h.post_structured(&alertmanager_sample().to_string()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = h.received(TOKEN_1);
    assert_eq!(received.len(), 1, "rejections: {:?}", h.fake.rejections());
    let markdown = &received[0]["markdown"];
    assert_eq!(markdown["title"], "[FIRING:2] HighErrorRate");
    let text = markdown["text"].as_str().expect("text");
    assert!(text.contains("#### Firing (2)\n"), "{text}");
    // One line per alert, in order, times in Beijing time.
    let items: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(items.len(), 2, "{text}");
    assert!(
        items[0].starts_with(
            "- **api-1.prod:8080** Error rate above 5% on api-1.prod:8080 (since 05-01 18:25,"
        ),
        "{}",
        items[0]
    );
    assert!(
        items[1].starts_with("- **api-2.prod:8080**"),
        "{}",
        items[1]
    );
}

#[tokio::test]
async fn the_same_payload_over_grpc_as_vanus_sends_it_renders_the_same_message() {
    let h = start().await;
    let sample = alertmanager_sample();
    let event = CloudEvent {
        id: sample["id"].as_str().expect("id").into(),
        source: sample["source"].as_str().expect("source").into(),
        spec_version: "1.0".into(),
        r#type: sample["type"].as_str().expect("type").into(),
        attributes: HashMap::from([(
            "datacontenttype".to_owned(),
            CloudEventAttributeValue {
                attr: Some(Attr::CeString("application/json".into())),
            },
        )]),
        // Vanus sends JSON data as bytes.
        data: Some(Data::BinaryData(sample["data"].to_string().into_bytes())),
    };
    h.grpc_send(vec![event]).await.expect("delivered");
    let over_grpc = h.received(TOKEN_1);

    let http = start().await;
    assert_eq!(http.post_structured(&sample.to_string()).await.status, 200);
    assert_eq!(over_grpc, http.received(TOKEN_1));
}

#[tokio::test]
async fn an_event_no_rule_matches_is_delivered_exactly_as_without_templates() {
    let h = start().await;
    let text = structured(
        "plain-1",
        &[("xvmsgtype", "markdown")],
        "application/json",
        json!({"title": "Deploy", "text": "### Deploy finished\n- service: **checkout**"}),
    );
    assert_eq!(h.post_structured(&text).await.status, 200);
    let event: Event = serde_json::from_str(&text).expect("event");
    let today = sink_dingtalk::message::build(&event, "bot1").expect("the plain path builds it");
    let accepted = h.fake.accepted_for(TOKEN_1);
    assert_eq!(accepted.len(), 1);
    let today: Value = serde_json::from_slice(&today.body).expect("JSON");
    assert_eq!(accepted[0].body, today, "same body, same msgUuid");
}

#[tokio::test]
async fn a_match_on_the_chat_group_applies_only_there() {
    let h = start().await;
    let deploy = |id: &str, group: &str| {
        let mut event: Value = serde_json::from_str(&structured(
            id,
            &[("xvchatgroup", group)],
            "application/json",
            json!({"service": "checkout", "version": "1.4.2", "content": "raw"}),
        ))
        .expect("JSON");
        event["type"] = json!("com.example.deploy");
        event["time"] = json!("2024-05-01T10:30:00Z");
        event.to_string()
    };
    assert_eq!(h.post_structured(&deploy("d1", "bot2")).await.status, 200);
    assert_eq!(h.post_structured(&deploy("d2", "bot1")).await.status, 200);
    assert_eq!(
        h.received(TOKEN_2),
        vec![json!({"msgtype": "text", "text": {"content": "checkout 1.4.2 is live (10:30)"}})]
    );
    // Not bot2: no rule applies, the data is the message (its `content`).
    assert_eq!(
        h.received(TOKEN_1),
        vec![
            json!({"msgtype": "text", "text": {"content": "raw", "service": "checkout", "version": "1.4.2"}})
        ]
    );
}

#[tokio::test]
async fn the_runaway_template_answers_400_and_the_sink_stays_healthy() {
    let h = start().await;
    let runaway = structured(
        "r1",
        &[("xvtemplate", "runaway")],
        "application/json",
        json!({}),
    );
    let answer = h.post_structured(&runaway).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.body.contains(
            "event r1: template `runaway` (templates.1): message.content line 1: the template ran past its limit of 500000 steps"
        ),
        "{}",
        answer.body
    );
    // The same sink goes on delivering.
    let answer = h.post_structured(&alertmanager_sample().to_string()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(h.fake.accepted_for(TOKEN_1).len(), 1);
}

#[tokio::test]
async fn an_unknown_xvtemplate_and_an_undefined_field_are_400_with_the_reason() {
    let h = start().await;
    let unknown = structured(
        "u1",
        &[("xvtemplate", "grafana")],
        "application/json",
        json!({}),
    );
    let answer = h.post_structured(&unknown).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("xvtemplate `grafana` names no template; named templates: `alertmanager`, `runaway`, `deploy`"),
        "{}",
        answer.body
    );

    // An Alertmanager-typed event without `alerts`: strict templates refuse it.
    let mut broken = alertmanager_sample();
    broken["id"] = json!("u2");
    broken["data"]
        .as_object_mut()
        .expect("object")
        .remove("alerts");
    let answer = h.post_structured(&broken.to_string()).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .contains("template `alertmanager` (templates.0): message.")
            && answer.body.contains("undefined value"),
        "{}",
        answer.body
    );
    assert!(h.fake.accepted().is_empty());
}

#[tokio::test]
async fn a_broken_template_stops_start_up_naming_its_key() {
    let fake = FakeDingTalk::start(two_robots()).await.expect("fake");
    let yaml = format!(
        "{}templates:\n  - match: {{ type: '*' }}\n    msgtype: markdown\n    message:\n      title: ok\n      text: \"line one\\n{{{{ data.x | }}}}\"\n",
        two_groups(&fake)
    );
    let err = connector_sdk::config::load_from_str::<DingTalkConfig>(&yaml, "test")
        .expect_err("start-up stops");
    let problems: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("templates.0.message.text: line 2: syntax error"),
        "{}",
        problems[0]
    );
}
