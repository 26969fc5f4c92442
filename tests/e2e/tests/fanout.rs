//! Fan-out: `xvchatgroup: "bot1,bot2"` delivers one event to each group.
//! Each group's post is remembered per event, so a redelivery after one
//! group failed posts only to the groups that did not get it; the answer is
//! the most retry-worthy of the groups'; a list naming a group that is not
//! configured is a 400 before anything is sent. Over HTTP and gRPC.

mod common;

use std::collections::HashMap;

use common::*;
use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::proto::cloud_event::CloudEventAttributeValue;
use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
use fake_dingtalk::Failure;
use serde_json::json;

/// Event `id` for the chat groups `groups` (an `xvchatgroup` value), its
/// text showing marker `i`.
fn fan_out_event(id: &str, groups: &str, i: usize) -> String {
    structured(
        id,
        &[("xvchatgroup", groups)],
        "text/plain",
        json!(format!("{} disk full", marker(i))),
    )
}

/// How often marker `i` shows in what robot `token` accepted.
fn shown(h: &Harness, token: &str, i: usize) -> usize {
    times_shown(&h.fake.accepted_for(token), &marker(i))
}

#[tokio::test]
async fn a_list_of_groups_gets_the_event_once_each_and_a_redelivery_posts_nothing() {
    let h = Harness::start().await;
    let event = fan_out_event("fan-1", " bot1 , bot2,bot1", 1);
    let answer = h.post_structured(&event).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "delivered\n"));
    assert_eq!(shown(&h, TOKEN_1, 1), 1, "bot1 once, though named twice");
    assert_eq!(shown(&h, TOKEN_2, 1), 1, "bot2 once");

    // Delivered to both: the ledger answers the redelivery.
    let again = h.post_structured(&event).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(h.fake.requests_for(TOKEN_1), 1, "not posted again");
    assert_eq!(h.fake.requests_for(TOKEN_2), 1, "not posted again");
}

#[tokio::test]
async fn one_group_failing_is_503_and_the_redelivery_posts_only_to_it() {
    let h = Harness::start().await;
    // More failures than one request's retries can use up.
    h.fake.fail_next(TOKEN_2, Failure::Http(500), 10);
    let event = fan_out_event("fan-2", "bot1,bot2", 2);
    let answer = h.post_structured(&event).await;
    assert_eq!(answer.status, 503, "bot2's failure decides: {answer:?}");
    assert!(answer.body.contains("bot2"), "names the group: {answer:?}");
    assert_eq!(shown(&h, TOKEN_1, 2), 1, "bot1 got it");
    assert_eq!(shown(&h, TOKEN_2, 2), 0);

    // The trigger redelivers until bot2 recovers (each redelivery uses up
    // some of its failures).
    let mut answer = h.post_structured(&event).await;
    for _ in 0..10 {
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        answer = h.post_structured(&event).await;
    }
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        h.fake.requests_for(TOKEN_1),
        1,
        "bot1 was never posted to again"
    );
    assert_eq!(shown(&h, TOKEN_1, 2), 1);
    assert_eq!(shown(&h, TOKEN_2, 2), 1, "bot2 got it once it recovered");
}

#[tokio::test]
async fn a_group_refusing_for_good_is_400_and_a_replay_posts_only_to_it() {
    let h = Harness::start().await;
    // A refusal of the message (blame on it, not on the robot's settings).
    h.fake
        .fail_next(TOKEN_2, Failure::ErrCode(400_105, "bad request".into()), 1);
    let event = fan_out_event("fan-3", "bot1,bot2", 3);
    let answer = h.post_structured(&event).await;
    assert_eq!(answer.status, 400, "retrying cannot help bot2: {answer:?}");
    assert_eq!(shown(&h, TOKEN_1, 3), 1, "bot1 got it all the same");

    // Replayed from the dead letter: only bot2 is posted to.
    let replay = h.post_structured(&event).await;
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(h.fake.requests_for(TOKEN_1), 1, "bot1 not posted again");
    assert_eq!(shown(&h, TOKEN_2, 3), 1);
}

#[tokio::test]
async fn an_unknown_group_in_the_list_is_400_and_nothing_is_sent() {
    let h = Harness::start().await;
    let answer = h
        .post_structured(&fan_out_event("fan-4", "bot1,nowhere,bot2", 4))
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.body.contains("`nowhere` is not configured"),
        "{answer:?}"
    );
    assert!(answer.body.contains("bot1, bot2"), "lists them: {answer:?}");
    assert!(h.fake.accepted().is_empty(), "nothing sent");
    assert_eq!(
        h.fake.requests_for(TOKEN_1) + h.fake.requests_for(TOKEN_2),
        0
    );

    let empty = h.post_structured(&fan_out_event("fan-5", " , ", 5)).await;
    assert_eq!(empty.status, 400, "{empty:?}");
    assert!(h.fake.accepted().is_empty(), "nothing sent");
}

/// A gRPC event for chat groups `groups`, as a Vanus trigger pushes it.
fn grpc_event(i: usize, groups: &str) -> CloudEvent {
    let mut event = GRPC_ALERTS.grpc(i);
    event.attributes = HashMap::from([(
        "xvchatgroup".to_owned(),
        CloudEventAttributeValue {
            attr: Some(Attr::CeString(groups.to_owned())),
        },
    )]);
    event
}

#[tokio::test]
async fn over_grpc_a_batch_fans_out_and_its_redelivery_posts_only_what_failed() {
    let h = Harness::start().await;
    h.fake.fail_next(TOKEN_2, Failure::Http(500), 10);
    let batch = vec![grpc_event(7, "bot1,bot2"), grpc_event(8, "bot1, bot2")];
    let status = h.grpc_send(batch.clone()).await.expect_err("bot2 failing");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let bot1_posts = h.fake.requests_for(TOKEN_1);
    assert_eq!(bot1_posts, 2, "bot1 got both events");

    // The trigger redelivers the whole batch until it is accepted.
    let mut result = h.grpc_send(batch.clone()).await;
    for _ in 0..10 {
        if result.is_ok() {
            break;
        }
        result = h.grpc_send(batch.clone()).await;
    }
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(h.fake.requests_for(TOKEN_1), 2, "bot1 never posted again");
    for i in [7, 8] {
        assert_eq!(shown(&h, TOKEN_1, i), 1);
        assert_eq!(shown(&h, TOKEN_2, i), 1, "bot2 got event {i} once");
    }

    let unknown = h
        .grpc_send(vec![grpc_event(9, "bot1,elsewhere")])
        .await
        .expect_err("not configured");
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument, "{unknown:?}");
    assert_eq!(h.fake.requests_for(TOKEN_1), 2, "nothing sent");
    assert_eq!(shown(&h, TOKEN_2, 9), 0);
}
