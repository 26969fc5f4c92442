use super::*;
use http_body::Frame;
use http_body_util::{Full, StreamBody};

fn limits(max_in_flight: usize, max_body_bytes: usize, max_buffered_bytes: usize) -> Limits {
    Limits {
        max_in_flight,
        max_body_bytes,
        max_buffered_bytes,
        body_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// A body sent in the given chunks, then ended.
fn chunked(
    chunks: Vec<&'static [u8]>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin> {
    StreamBody::new(futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
    ))
}

/// A body that sends `first` and then nothing, forever.
fn stalled(
    first: &'static [u8],
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin> {
    use futures_util::StreamExt;
    StreamBody::new(
        futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(first)))])
            .chain(futures_util::stream::pending()),
    )
}

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

#[test]
fn admits_up_to_the_bound_then_refuses_until_a_slot_returns() {
    let admission = Admission::new(&limits(2, 100, 1000));
    let first = admission.admit(None).expect("first");
    let _second = admission.admit(None).expect("second");
    let refused = admission.admit(None).expect_err("third is over capacity");
    assert_eq!(refused, Refusal::OverCapacity { max_in_flight: 2 });
    assert_eq!(refused.class(), "unavailable");
    assert_eq!(
        crate::ingest::answer::http_refusal(&refused).status(),
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    );
    drop(first);
    assert!(admission.admit(None).is_ok());
}

#[test]
fn a_declared_length_is_checked_and_reserved_before_reading() {
    let admission = Admission::new(&limits(10, 100, 150));
    assert_eq!(
        admission.admit(Some(101)).expect_err("too large"),
        Refusal::TooLarge { limit: 100 }
    );
    let held = admission.admit(Some(100)).expect("fits");
    assert_eq!(admission.buffered(), 100);
    assert_eq!(
        admission.admit(Some(60)).expect_err("no room"),
        Refusal::OverBudget { budget: 150 }
    );
    let small = admission.admit(Some(50)).expect("still room for 50");
    drop(held);
    drop(small);
    assert_eq!(admission.buffered(), 0, "memory comes back with the ticket");
}

#[tokio::test]
async fn a_body_of_unknown_length_reserves_as_it_arrives() {
    let admission = Admission::new(&limits(10, 100, 100));
    let mut ticket = admission.admit(None).expect("admitted");
    let body = admission
        .read_body(&mut ticket, chunked(vec![b"hello ", b"world"]))
        .await
        .expect("read");
    assert_eq!(&body[..], b"hello world");
    assert_eq!(admission.buffered(), 11);

    let mut other = admission.admit(None).expect("admitted");
    let refused = admission
        .read_body(&mut other, Full::new(Bytes::from(vec![b'x'; 95])))
        .await
        .expect_err("no room left");
    assert_eq!(refused, Refusal::OverBudget { budget: 100 });

    let mut big = admission.admit(None).expect("admitted");
    drop(ticket);
    let refused = admission
        .read_body(&mut big, Full::new(Bytes::from(vec![b'x'; 101])))
        .await
        .expect_err("over the body limit");
    assert_eq!(refused, Refusal::TooLarge { limit: 100 });
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_refused_at_the_read_timeout() {
    let admission = Admission::new(&limits(10, 100, 100));
    let mut ticket = admission.admit(Some(10)).expect("admitted");
    let refused = admission
        .read_body(&mut ticket, stalled(b"x"))
        .await
        .expect_err("too slow");
    assert_eq!(
        refused,
        Refusal::SlowBody {
            timeout: Duration::from_secs(1)
        }
    );
    assert!(refused.reason().contains("body_read_timeout_ms"));
}

#[tokio::test]
async fn a_grpc_message_is_reserved_from_its_prefix() {
    let admission = Admission::new(&limits(10, 100, 100));
    let framed = grpc_frame(b"payload");
    let mut ticket = admission.admit(None).expect("admitted");
    let (head, tail) = framed.split_at(3);
    let body = StreamBody::new(futures_util::stream::iter([
        Ok::<_, std::io::Error>(Frame::data(Bytes::copy_from_slice(head))),
        Ok(Frame::data(Bytes::copy_from_slice(tail))),
    ]));
    let message = admission
        .read_grpc_message(&mut ticket, body)
        .await
        .expect("one message");
    assert_eq!(&message[..], &framed[..]);
    assert_eq!(admission.buffered(), framed.len());
}

#[tokio::test]
async fn a_grpc_prefix_over_the_limit_is_refused_before_the_message() {
    let admission = Admission::new(&limits(10, 100, 1000));
    let mut prefix = vec![0];
    prefix.extend_from_slice(&4_000_000_u32.to_be_bytes());
    let mut ticket = admission.admit(None).expect("admitted");
    let body = StreamBody::new(
        futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(Bytes::from(prefix)))])
            .chain(futures_util::stream::pending()),
    );
    use futures_util::StreamExt;
    let refused = admission.read_grpc_message(&mut ticket, body).await;
    assert_eq!(refused, Err(Refusal::TooLarge { limit: 100 }));
}

#[tokio::test]
async fn malformed_grpc_bodies_are_named() {
    let admission = Admission::new(&limits(10, 100, 1000));
    let cases: [(Vec<u8>, &str); 4] = [
        (vec![], "no message"),
        (vec![0, 0], "inside the 5-byte message prefix"),
        (
            vec![0, 0, 0, 0, 9, 1, 2],
            "after 7 of the message's 14 bytes",
        ),
        (
            [grpc_frame(b"a"), grpc_frame(b"b")].concat(),
            "more than one message",
        ),
    ];
    for (bytes, expected) in cases {
        let mut ticket = admission.admit(None).expect("admitted");
        let refused = admission
            .read_grpc_message(&mut ticket, Full::new(Bytes::from(bytes)))
            .await
            .expect_err("malformed");
        assert!(refused.reason().contains(expected), "{refused:?}");
    }
    let mut ticket = admission.admit(None).expect("admitted");
    let refused = admission
        .read_grpc_message(&mut ticket, Full::new(Bytes::from_static(&[7, 0, 0, 0, 0])))
        .await
        .expect_err("bad flag");
    assert!(refused.reason().contains("compression flag"), "{refused:?}");
}

#[test]
fn what_a_body_decodes_into_is_charged_before_decoding() {
    let admission = Admission::new(&limits(10, 100, 300));
    let mut first = admission.admit(Some(100)).expect("admitted");
    first.charge_decoded(100).expect("200 of 300");
    let mut second = admission.admit(Some(50)).expect("admitted");
    assert_eq!(
        second.charge_decoded(100),
        Err(Refusal::OverBudget { budget: 300 }),
        "not now"
    );
    assert_eq!(
        second.charge_decoded(1_000),
        Err(Refusal::TooLargeDecoded {
            estimate: 1_050,
            budget: 300
        }),
        "not ever"
    );
    drop(first);
    second.charge_decoded(100).expect("room again");
    assert_eq!(admission.buffered(), 150);
}

#[tokio::test(start_paused = true)]
async fn saturation_starts_when_the_last_slot_goes_and_ends_when_one_returns() {
    let admission = Admission::new(&limits(1, 100, 100));
    assert_eq!(admission.saturated_for(), None);
    let only = admission.admit(None).expect("admitted");
    assert!(
        admission
            .saturated_for()
            .is_some_and(|d| d < SATURATED_AFTER),
        "saturated, but not for longer than a moment yet"
    );
    drop(only);
    assert_eq!(admission.saturated_for(), None);
}

#[tokio::test(start_paused = true)]
async fn refusals_for_memory_saturate_until_they_stop_for_a_moment() {
    let admission = Admission::new(&limits(10, 100, 100));
    let held = admission.admit(Some(100)).expect("admitted");
    assert_eq!(
        admission.saturated_for(),
        None,
        "full, but nobody refused yet"
    );
    for _ in 0..3 {
        admission.admit(Some(1)).expect_err("no room");
        tokio::time::sleep(SATURATED_AFTER / 2).await;
    }
    assert!(
        admission
            .saturated_for()
            .is_some_and(|d| d >= SATURATED_AFTER),
        "refused again and again: saturated for more than a moment"
    );
    drop(held);
    tokio::time::sleep(SATURATED_AFTER).await;
    assert_eq!(admission.saturated_for(), None, "no refusal for a moment");
}
