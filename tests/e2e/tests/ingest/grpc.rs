//! End-to-end over gRPC, as a Vanus trigger pushes: `CloudEvents/Send` with
//! JSON data as bytes and the extensions a redelivery carries.

use std::collections::HashMap;

use crate::common::*;
use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
use connector_sdk::testing::proto::cloud_event::{CloudEventAttributeValue, Data};
use serde_json::json;

fn attr(attr: Attr) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(attr) }
}

fn string(value: &str) -> CloudEventAttributeValue {
    attr(Attr::CeString(value.to_owned()))
}

fn vanus_event(
    id: &str,
    mut attributes: HashMap<String, CloudEventAttributeValue>,
    data: Data,
) -> CloudEvent {
    // What a trigger adds when it redelivers an event.
    attributes.insert("xvanusretryattempts".into(), attr(Attr::CeInteger(2)));
    attributes.insert(
        "xvanusdeliverytime".into(),
        attr(Attr::CeTimestamp(prost_types::Timestamp {
            seconds: 1_764_000_000,
            nanos: 123_000_000,
        })),
    );
    attributes.insert("xvanuseventbus".into(), string("quick-start"));
    attributes.insert(
        "time".into(),
        attr(Attr::CeTimestamp(prost_types::Timestamp {
            seconds: 1_764_000_000,
            nanos: 0,
        })),
    );
    CloudEvent {
        id: id.into(),
        source: "vanus-trigger".into(),
        spec_version: "1.0".into(),
        r#type: "test".into(),
        attributes,
        data: Some(data),
    }
}

#[tokio::test]
async fn a_redelivered_vanus_batch_is_delivered() {
    let h = Harness::start().await;
    let markdown = vanus_event(
        "g1",
        HashMap::from([
            ("xvmsgtype".to_owned(), string("markdown")),
            ("datacontenttype".to_owned(), string("application/json")),
        ]),
        Data::BinaryData(br#"{"title":"Deploy","text":"**done**"}"#.to_vec()),
    );
    let text = vanus_event(
        "g2",
        HashMap::from([("xvchatgroup".to_owned(), string("bot2"))]),
        Data::TextData("plain text over gRPC".into()),
    );

    h.grpc_send(vec![markdown, text]).await.expect("delivered");

    assert_eq!(
        h.received(TOKEN_1),
        vec![json!({"msgtype": "markdown", "markdown": {"title": "Deploy", "text": "**done**"}})]
    );
    assert_eq!(
        h.received(TOKEN_2),
        vec![json!({"msgtype": "text", "text": {"content": "plain text over gRPC"}})]
    );
}

#[tokio::test]
async fn an_invalid_event_is_invalid_argument_and_nothing_is_sent() {
    let h = Harness::start().await;
    let unknown_group = vanus_event(
        "g3",
        HashMap::from([("xvchatgroup".to_owned(), string("nobody"))]),
        Data::TextData("x".into()),
    );
    let status = h
        .grpc_send(vec![unknown_group])
        .await
        .expect_err("rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("nobody"), "{status:?}");

    let mut missing_id = vanus_event("", HashMap::new(), Data::TextData("x".into()));
    missing_id.id.clear();
    let status = h.grpc_send(vec![missing_id]).await.expect_err("rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("`id`"), "{status:?}");

    assert_eq!(
        h.fake.requests_for(TOKEN_1) + h.fake.requests_for(TOKEN_2),
        0
    );
}

#[tokio::test]
async fn a_dingtalk_outage_is_unavailable_so_the_trigger_retries() {
    let h = Harness::start().await;
    h.fake
        .fail_next(TOKEN_1, fake_dingtalk::Failure::Http(503), 1_000);
    let event = vanus_event("g4", HashMap::new(), Data::TextData("x".into()));
    let status = h.grpc_send(vec![event]).await.expect_err("not delivered");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(h.fake.accepted().is_empty());
}
