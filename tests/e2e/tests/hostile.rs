//! Hostile and broken input that reaches the DingTalk sink, on loopback:
//! huge attributes and bad message types get short reasons on both doors,
//! a redirecting or rambling DingTalk cannot make the sink follow it or
//! quote it at length. The transport's own limits (slots, timeouts,
//! connections, the memory budget, decoding) are the SDK's, tested whatever
//! the sink in `connector-sdk/tests/hostile.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use connector_sdk::testing::proto::CloudEvent;
use fake_dingtalk::{Failure, RobotSpec};
use serde_json::json;

fn text_event(id: &str) -> String {
    structured(id, &[], "text/plain", json!(format!("hello {id}")))
}

#[tokio::test]
async fn a_huge_extension_gets_a_short_reason_on_both_doors() {
    let h = Harness::start().await;
    let huge = "x".repeat(1_000_000);
    let reply = h
        .post_structured(&structured(
            "huge",
            &[("xvmsgtype", &huge)],
            "text/plain",
            json!("hi"),
        ))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.len() < 2048, "{} bytes", reply.body.len());
    assert!(reply.body.contains("xvmsgtype"), "{}", &reply.body[..200]);

    let mut event = CloudEvent {
        id: "huge".into(),
        source: "e2e".into(),
        spec_version: "1.0".into(),
        r#type: "t".into(),
        ..CloudEvent::default()
    };
    event.attributes.insert(
        "xvmsgtype".into(),
        connector_sdk::testing::proto::cloud_event::CloudEventAttributeValue {
            attr: Some(
                connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr::CeString(
                    huge.clone(),
                ),
            ),
        },
    );
    let status = h.grpc_send(vec![event]).await.expect_err("rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() < 2048);

    // A 3 MB id: the answer quotes a short piece of it.
    let id = "i".repeat(3_000_000);
    let reply = h
        .post_structured(&structured(
            &id,
            &[("xvchatgroup", "nowhere")],
            "text/plain",
            json!("hi"),
        ))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.len() < 2048, "{} bytes", reply.body.len());
}

#[tokio::test]
async fn no_data_and_an_inexact_type_name_are_refused() {
    // The SDK's attribute rules, the same on both doors, are tested in
    // connector-sdk/tests/hostile.rs; what the DingTalk sink adds:
    let h = Harness::start().await;
    // `"data": null` is no data, and a type name is exact.
    let null = r#"{"specversion":"1.0","id":"n","source":"s","type":"t","data":null}"#;
    let reply = h.post_structured(null).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("has no data"), "{reply:?}");
    let spaced = structured("sp", &[("xvmsgtype", " text")], "text/plain", json!("hi"));
    assert_eq!(h.post_structured(&spaced).await.status, 400);
    assert!(h.fake.accepted().is_empty(), "nothing invalid was sent");
}

#[tokio::test]
async fn a_redirecting_dingtalk_is_not_followed() {
    let requests = Arc::new(AtomicUsize::new(0));
    let upstream = serve_upstream(Arc::clone(&requests), |url| {
        (302, vec![("location", url)], String::new())
    })
    .await;
    let h = Harness::with(Vec::<RobotSpec>::new(), |_| {
        format!("bot:\n  webhooks:\n    - chat_group: g\n      url: \"{upstream}\"\n")
    })
    .await;
    let reply = h.post_structured(&text_event("redirected")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.body.contains("redirect"), "{reply:?}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "one POST, not followed, not retried"
    );
}

#[tokio::test]
async fn dingtalks_text_is_capped_before_it_reaches_answers_and_status() {
    let h = Harness::start().await;
    h.fake.fail_next(
        TOKEN_2,
        // 48 KB: under the 64 KiB read of an answer, far over what is quoted.
        Failure::ErrCode(310000, "keywords not in content ".repeat(2_000)),
        1,
    );
    let event = structured(
        "errmsg",
        &[("xvchatgroup", "bot2")],
        "text/plain",
        json!("hi"),
    );
    let reply = h.post_structured(&event).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.len() < 1024, "{} bytes", reply.body.len());
    assert!(
        reply.body.contains("keywords not in content"),
        "{}",
        reply.body
    );
    let status = h.sink.get("/status").await;
    assert!(status.body.len() < 4096, "{} bytes", status.body.len());

    // An answer that is not JSON at all, and huge: not read past 64 KiB.
    let requests = Arc::new(AtomicUsize::new(0));
    let upstream = serve_upstream(requests, |_| {
        (
            200,
            vec![("content-type", "text/html".to_owned())],
            format!("<html>{}</html>", "x".repeat(5_000_000)),
        )
    })
    .await;
    let h = Harness::with(Vec::<RobotSpec>::new(), |_| {
        format!("bot:\n  webhooks:\n    - chat_group: g\n      url: \"{upstream}\"\ndelivery:\n  deadline_ms: 500\n")
    })
    .await;
    let reply = h.post_structured(&text_event("html")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.body.len() < 1024, "{} bytes", reply.body.len());
    assert!(reply.body.contains("<html>"), "{}", reply.body);
}

// ---- helpers for the cases above ----

/// Status, headers and body, given the server's own webhook URL.
type UpstreamAnswer = (u16, Vec<(&'static str, String)>, String);

/// A webhook server answering every request with `answer(own url)`;
/// counts the requests. Returns its webhook URL.
async fn serve_upstream(
    requests: Arc<AtomicUsize>,
    answer: fn(String) -> UpstreamAnswer,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/robot/send?access_token=upstream",
        listener.local_addr().expect("addr")
    );
    let own = url.clone();
    let app = axum::Router::new().fallback(move || {
        let requests = Arc::clone(&requests);
        let own = own.clone();
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let (status, headers, body) = answer(own);
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).expect("status");
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
