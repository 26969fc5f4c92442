//! The testing kit itself (`connector_sdk::testing`): every sender reaches
//! the sink with the event it was given, every answer comes back as the
//! [`Reply`] a sender would see, raw requests and probes work, and
//! `from_yaml` applies the runtime's keys but keeps the ports free.

mod support;

use std::time::Duration;

use connector_sdk::cloudevents::Data;
use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::testing::{Reply, TestServer, event};
use connector_sdk::{Event, Outcome, Unavailable};
use support::Recorder;

#[tokio::test]
async fn every_transport_delivers_the_same_event() {
    let server = TestServer::<Recorder>::from_yaml("{}").await;
    // One event, with a fresh id per transport: the ledger would answer a
    // second send of the same id itself.
    let sent = |id: &str| {
        event(id)
            .subject("s")
            .data("application/json", serde_json::json!({"n": 1}))
            .extension("xcount", 2_i64)
            .build()
    };
    for reply in [
        server.send_structured(&sent("1")).await,
        server.send_batch(&[sent("2")]).await,
        server.send_grpc(&[sent("3")]).await,
        server.send_binary(&sent("4")).await,
    ] {
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let mut arrived = server.sink().arrived.lock().expect("lock").clone();
    let binary = arrived.pop().expect("four arrived");
    assert_eq!(arrived, [sent("1"), sent("2"), sent("3")]);
    // HTTP headers carry no types: binary mode gives strings and bytes.
    let attributes = |e: &Event| -> Vec<String> {
        e.iter_attributes()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    };
    assert_eq!(attributes(&binary), attributes(&sent("4")));
    assert_eq!(binary.data(), Some(&Data::Binary(br#"{"n":1}"#.to_vec())));
    assert_eq!(binary.extension("xcount"), Some(&ExtensionValue::from("2")));
    assert!(server.shutdown().await);
    assert!(server.shutdown().await, "a second shutdown does nothing");
}

#[tokio::test]
async fn outcomes_come_back_as_the_status_a_sender_acts_on() {
    let cases = [
        (Outcome::rejected("bad"), 400, 400, None),
        (
            Outcome::throttled(Duration::from_secs(7), "slow down"),
            429,
            429,
            Some(7),
        ),
        (
            Outcome::unavailable(Unavailable::BadGateway, "odd answer"),
            502,
            503,
            None,
        ),
        (
            Outcome::unavailable(Unavailable::GatewayTimeout, "too slow"),
            504,
            504,
            None,
        ),
    ];
    for (outcome, http, grpc, retry_after) in cases {
        let reason = outcome.reason().to_owned();
        let server = TestServer::start(Recorder::answering(outcome)).await;
        let reply = server.send_structured(&event("1").build()).await;
        assert_eq!(
            reply,
            Reply {
                status: http,
                retry_after,
                body: format!("{reason}\n")
            }
        );
        let reply = server.send_grpc(&[event("1").build()]).await;
        assert_eq!(
            reply,
            Reply {
                status: grpc,
                retry_after,
                body: reason
            }
        );
    }
}

#[tokio::test]
async fn raw_requests_and_probes() {
    let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
    let reply = server
        .post_raw(
            "application/json",
            "{}",
            &[("ce-id", "r1"), ("ce-type", "t")],
        )
        .await;
    assert_eq!(reply.status, 400, "ce-source is missing: {reply:?}");
    assert!(reply.body.starts_with("invalid CloudEvent"), "{reply:?}");
    assert_eq!(server.get("/healthz").await.status, 200);
    let status = server.get("/status").await;
    assert_eq!(status.status, 200, "the runtime's part: the store");
    assert!(
        status
            .body
            .contains(r#""store":{"backend":"embedded","healthy":true"#),
        "{status:?}"
    );
    // This test's own labels: the recorder's sink answers only here.
    let rejected = || {
        server.metric(
            "connector_requests_total",
            &[("transport", "http"), ("outcome", "rejected")],
        )
    };
    let before = rejected().await;
    server.post_raw("application/json", "{}", &[]).await;
    // At least this one (other tests in the process may add theirs).
    assert!(rejected().await - before >= 1.0);
}

#[tokio::test]
async fn yaml_runtime_keys_apply_but_ports_stay_free() {
    let server =
        TestServer::<Recorder>::from_yaml("port: 1\ngrpc_port: 2\nmax_body_bytes: 16\n").await;
    assert_ne!(server.http_addr().port(), 1);
    assert!(server.grpc_addr().is_some_and(|addr| addr.port() != 2));
    let big = event("big").data("text/plain", "x".repeat(100)).build();
    assert_eq!(server.send_structured(&big).await.status, 413);
}

#[test]
#[should_panic(expected = "invalid test event")]
fn an_invalid_event_says_so() {
    let _ = event("1").source("").build();
}
