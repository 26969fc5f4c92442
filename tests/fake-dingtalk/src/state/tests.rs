//! The tests of the fake's state: its limits, blocks and records, on a paused clock.

use super::*;
use std::time::Duration;
use tokio::time::advance;

const JSON: Option<&str> = Some("application/json");

fn text<'a>(token: &'a str, body: &'a str) -> Incoming<'a> {
    Incoming {
        token: Some(token),
        content_type: JSON,
        body: body.as_bytes(),
        ..Incoming::default()
    }
}

fn code(reply: &Reply) -> i64 {
    match reply {
        Reply::Json { errcode, .. } => *errcode,
        Reply::Http(s) => panic!("unexpected HTTP {s}"),
    }
}

const HELLO: &str = r#"{"msgtype":"text","text":{"content":"hello"}}"#;

#[tokio::test(start_paused = true)]
async fn rejects_in_dingtalk_order() {
    let mut st = State::new(vec![RobotSpec::new("a"), RobotSpec::signed("s", "SECabc")]).unwrap();
    let now = Instant::now();
    let wall = SystemTime::now();
    let cases: Vec<(Incoming<'static>, i64)> = vec![
        (
            Incoming {
                token: None,
                ..text("a", HELLO)
            },
            300_001,
        ),
        (text("nope", HELLO), 300_001),
        (text("s", HELLO), 310_000),
        (
            Incoming {
                content_type: Some("text/plain"),
                ..text("a", HELLO)
            },
            43_004,
        ),
        (
            Incoming {
                content_type: None,
                ..text("a", HELLO)
            },
            43_004,
        ),
        (text("a", "not json"), 40_035),
        (
            text("a", r#"{"msgtype":"link","link":{"title":"t","text":"x"}}"#),
            40_035,
        ),
        (text("a", HELLO), 0),
        (
            Incoming {
                content_type: Some("Application/JSON; charset=utf-8"),
                ..text("a", HELLO)
            },
            0,
        ),
    ];
    for (req, want) in cases {
        let (reply, _) = st.handle(&req, now, wall);
        assert_eq!(code(&reply), want, "{req:?} -> {reply:?}");
    }
    assert_eq!(st.accepted().len(), 2);
    assert_eq!(st.rejections().len(), 7);
    assert_eq!(st.rejections()[0].0, "");
    assert_eq!(st.rejections()[6].2, "缺少参数 link.messageUrl");
}

#[tokio::test(start_paused = true)]
async fn too_long_body() {
    let mut st = State::new(vec![RobotSpec::new("a")]).unwrap();
    let content = "x".repeat(MAX_BODY_BYTES);
    let body = format!(r#"{{"msgtype":"text","text":{{"content":"{content}"}}}}"#);
    let (reply, _) = st.handle(&text("a", &body), Instant::now(), SystemTime::now());
    assert_eq!(code(&reply), errcode::TOO_LONG);
}

#[tokio::test(start_paused = true)]
async fn signed_robot_accepts_a_good_sign() {
    let mut st = State::new(vec![RobotSpec::signed("s", "SECabc")]).unwrap();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let req = Incoming {
        timestamp: Some("1700000000000"),
        sign: Some("jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM="),
        ..text("s", HELLO)
    };
    assert_eq!(code(&st.handle(&req, Instant::now(), wall).0), 0);
    let late = wall + Duration::from_secs(3601);
    let (reply, _) = st.handle(&req, Instant::now(), late);
    let Reply::Json { errcode, errmsg } = reply else {
        panic!()
    };
    assert_eq!(errcode, 310_000);
    assert!(
        errmsg.contains("timestamp") && errmsg.contains("invalid"),
        "{errmsg}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_blocks_every_request() {
    let spec = RobotSpec::new("a")
        .per_minute(3)
        .block_for(Duration::from_secs(600));
    let mut st = State::new(vec![spec]).unwrap();
    let wall = SystemTime::now();
    for _ in 0..3 {
        assert_eq!(
            code(&st.handle(&text("a", HELLO), Instant::now(), wall).0),
            0
        );
    }
    let (reply, _) = st.handle(&text("a", HELLO), Instant::now(), wall);
    assert_eq!(
        reply,
        Reply::Json {
            errcode: 410_100,
            errmsg: "send too fast, exceed 3 times per minute".into()
        }
    );
    // Blocked: even a malformed request is answered 410100.
    advance(Duration::from_secs(300)).await;
    assert_eq!(
        code(&st.handle(&text("a", "junk"), Instant::now(), wall).0),
        410_100
    );
    advance(Duration::from_secs(300)).await;
    assert_eq!(
        code(&st.handle(&text("a", HELLO), Instant::now(), wall).0),
        0
    );
    assert_eq!(st.throttled_for("a"), 2);
    assert_eq!(st.accepted().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn by_default_a_repeated_msg_uuid_shows_and_counts_again() {
    let mut st = State::new(vec![RobotSpec::new("a").per_minute(2)]).unwrap();
    let with_uuid = r#"{"msgtype":"text","text":{"content":"hi"},"msgUuid":"u1"}"#;
    let wall = SystemTime::now();
    for _ in 0..2 {
        let (reply, _) = st.handle(&text("a", with_uuid), Instant::now(), wall);
        assert_eq!(code(&reply), 0);
    }
    assert_eq!(st.accepted().len(), 2, "shown twice");
    assert_eq!(st.duplicates_for("a"), 0);
    let (reply, _) = st.handle(&text("a", with_uuid), Instant::now(), wall);
    assert_eq!(code(&reply), 410_100, "and counted twice");
}

#[tokio::test(start_paused = true)]
async fn duplicates_are_ok_but_not_recorded_nor_counted() {
    let mut st = State::new(vec![RobotSpec::new("a").per_minute(2).honour_msg_uuid()]).unwrap();
    let with_uuid = r#"{"msgtype":"text","text":{"content":"hi"},"msgUuid":"u1"}"#;
    let wall = SystemTime::now();
    for _ in 0..5 {
        let (reply, _) = st.handle(&text("a", with_uuid), Instant::now(), wall);
        assert_eq!(code(&reply), 0);
    }
    assert_eq!(st.accepted().len(), 1);
    assert_eq!(st.duplicates_for("a"), 4);
    // One slot of budget left.
    assert_eq!(
        code(&st.handle(&text("a", HELLO), Instant::now(), wall).0),
        0
    );
    assert_eq!(
        code(&st.handle(&text("a", HELLO), Instant::now(), wall).0),
        410_100
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_uuid_is_not_remembered() {
    let spec = RobotSpec::new("a")
        .per_minute(1)
        .block_for(Duration::from_secs(1))
        .honour_msg_uuid();
    let mut st = State::new(vec![spec]).unwrap();
    let with_uuid = r#"{"msgtype":"text","text":{"content":"hi"},"msgUuid":"u1"}"#;
    let wall = SystemTime::now();
    assert_eq!(
        code(&st.handle(&text("a", HELLO), Instant::now(), wall).0),
        0
    );
    assert_eq!(
        code(&st.handle(&text("a", with_uuid), Instant::now(), wall).0),
        410_100
    );
    advance(Duration::from_secs(61)).await;
    assert_eq!(
        code(&st.handle(&text("a", with_uuid), Instant::now(), wall).0),
        0
    );
    assert_eq!(st.duplicates_for("a"), 0);
    assert_eq!(st.accepted().len(), 2);
}

#[test]
fn failure_queue() {
    let mut st = State::new(vec![RobotSpec::new("a")]).unwrap();
    st.fail_next("a", Failure::Http(503), 2);
    st.fail_next("a", Failure::ErrCode(-1, "busy".into()), 1);
    assert!(matches!(
        st.begin("a", b"{}", SystemTime::now()),
        Some(Failure::Http(503))
    ));
    assert!(st.begin("b", b"{}", SystemTime::now()).is_none());
    assert!(matches!(
        st.begin("a", b"{}", SystemTime::now()),
        Some(Failure::Http(503))
    ));
    let f = st.begin("a", b"{}", SystemTime::now());
    let (reply, event) = st.answer(&text("a", HELLO), f, Instant::now(), SystemTime::now());
    assert_eq!(code(&reply), -1);
    assert!(matches!(event, Some(Event::Rejected { errcode: -1, .. })));
    assert!(st.begin("a", b"{}", SystemTime::now()).is_none());
    assert_eq!(st.requests_for("a"), 4);
    assert_eq!(st.requests_for("b"), 1);
    assert_eq!(st.rejections().len(), 1);
}

#[test]
fn duplicate_tokens_refused() {
    assert!(State::new(vec![RobotSpec::new("a"), RobotSpec::signed("a", "SEC")]).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_keyword_secured_robot_refuses_a_message_without_a_keyword() {
    let mut st = State::new(vec![RobotSpec::new("k").keywords(&["alert", "ops"])]).unwrap();
    let wall = SystemTime::now();
    let cases = [
        (HELLO, 310_000),
        (r#"{"msgtype":"text","text":{"content":"ops: hello"}}"#, 0),
        (
            r#"{"msgtype":"markdown","markdown":{"title":"alert","text":"x"}}"#,
            0,
        ),
        (
            r#"{"msgtype":"markdown","markdown":{"title":"t","text":"x"}}"#,
            310_000,
        ),
        (
            r#"{"msgtype":"feedCard","feedCard":{"links":[{"title":"x","messageURL":"https://x","picURL":"https://p"},{"title":"alert","messageURL":"https://x","picURL":"https://p"}]}}"#,
            0,
        ),
    ];
    for (body, expected) in cases {
        let (reply, _) = st.handle(&text("k", body), Instant::now(), wall);
        assert_eq!(code(&reply), expected, "{body}");
        if let Reply::Json { errmsg, .. } = reply
            && expected != 0
        {
            assert!(errmsg.contains("keywords not in content"), "{errmsg}");
        }
    }
}
