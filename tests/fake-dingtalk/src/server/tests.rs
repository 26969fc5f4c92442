//! The tests of [`super`]: the fake's HTTP server, driven as a client would.

use super::handlers::Params;
use super::*;
use crate::errcode;
use crate::sign;
use serde_json::{Value, json};

const HELLO: &str = r#"{"msgtype":"text","text":{"content":"Hello dingtalk"}}"#;

/// A minimal HTTP/1.1 client over a plain TCP stream. (reqwest built
/// with `rustls-no-provider` refuses to build a client until a rustls
/// crypto provider is installed, even for plain http.)
async fn request(method: &str, url: &str, content_type: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(url).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head += &format!("Content-Type: {content_type}\r\n");
    }
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

async fn post(url: &str, content_type: &str, body: &str) -> (u16, Value) {
    let (status, text) = request("POST", url, content_type, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post_json(url: &str, body: &str) -> i64 {
    let (status, v) = post(url, "application/json", body).await;
    assert_eq!(status, 200, "{v}");
    v["errcode"].as_i64().unwrap()
}

#[tokio::test]
async fn accepts_and_records() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("bot-1"), RobotSpec::new("bot-2")])
        .await
        .unwrap();
    let url = fake.webhook_url("bot-1");
    assert_eq!(
        url,
        format!(
            "http://127.0.0.1:{}/robot/send?access_token=bot-1",
            fake.addr().port()
        )
    );
    let (status, v) = post(&url, "application/json; charset=utf-8", HELLO).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"errcode": 0, "errmsg": "ok"}));
    assert_eq!(post_json(&fake.webhook_url("bot-2"), HELLO).await, 0);

    let got = fake.wait_for_accepted(2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].token, "bot-1");
    assert_eq!(got[0].msgtype, "text");
    assert_eq!(got[0].body["text"]["content"], "Hello dingtalk");
    assert_eq!(fake.accepted_for("bot-2").len(), 1);
    assert_eq!(fake.requests_for("bot-1"), 1);
    assert!(fake.rejections().is_empty());
}

#[tokio::test]
async fn refusals_over_http() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("bot")])
        .await
        .unwrap();
    let url = fake.webhook_url("bot");
    let base = format!("http://{}/robot/send", fake.addr());
    assert_eq!(post_json(&base, HELLO).await, errcode::TOKEN_NOT_EXIST);
    assert_eq!(
        post_json(&fake.webhook_url("other"), HELLO).await,
        errcode::TOKEN_NOT_EXIST
    );
    let (status, v) = post(&url, "text/plain", HELLO).await;
    assert_eq!(
        (status, v["errcode"].as_i64()),
        (200, Some(errcode::CONTENT_TYPE))
    );
    assert_eq!(post_json(&url, "{oops").await, errcode::MISSING_PARAM);
    let big = format!(
        r#"{{"msgtype":"text","text":{{"content":"{}"}}}}"#,
        "字".repeat(7000)
    );
    assert_eq!(post_json(&url, &big).await, errcode::TOO_LONG);
    let link = r#"{"msgtype":"link","link":{"title":"t","text":"x"}}"#;
    let (_, v) = post(&url, "application/json", link).await;
    assert_eq!(v["errcode"], 40035);
    assert!(
        v["errmsg"].as_str().unwrap().contains("link.messageUrl"),
        "{v}"
    );

    let (status, _) = request("GET", &url, "", "").await;
    assert_eq!(status, 405);
    let (status, _) = post(&url, "", HELLO).await;
    assert_eq!(status, 200);

    let rejections = fake.rejections();
    assert_eq!(rejections.len(), 7);
    assert_eq!(rejections[6].1, errcode::CONTENT_TYPE);
    assert_eq!(
        rejections[0],
        ("".into(), 300_001, "token is not exist".into())
    );
    assert_eq!(rejections[1].0, "other");
    assert_eq!(fake.requests_for("other"), 1);
    assert_eq!(fake.requests_for("bot"), 5);
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn signature_over_http() {
    let fake = FakeDingTalk::start(vec![RobotSpec::signed("s", "SECabc")])
        .await
        .unwrap();
    assert_eq!(post_json(&fake.signed_webhook_url("s"), HELLO).await, 0);

    let (_, v) = post(&fake.webhook_url("s"), "application/json", HELLO).await;
    assert_eq!(v["errcode"], 310_000);
    assert!(v["errmsg"].as_str().unwrap().contains("sign not match"));

    // A stale timestamp with an otherwise correct sign.
    let old = sign::unix_millis(SystemTime::now()) - 2 * 3_600_000;
    let url = fake.webhook_url("s") + &sign::signed_query("SECabc", old);
    let (_, v) = post(&url, "application/json", HELLO).await;
    assert_eq!(v["errcode"], 310_000);
    assert!(v["errmsg"].as_str().unwrap().contains("invalid"), "{v}");

    // A client that forgets to url-encode a sign containing '+'.
    let now = sign::unix_millis(SystemTime::now());
    let (ts, raw) = (0..1000)
        .map(|i| now - i)
        .map(|ts| (ts, sign::compute_sign("SECabc", &ts.to_string())))
        .find(|(_, s)| s.contains('+'))
        .unwrap();
    let url = format!("{}&timestamp={ts}&sign={raw}", fake.webhook_url("s"));
    assert_eq!(post_json(&url, HELLO).await, errcode::SIGN);
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn rate_limit_and_duplicates_over_http() {
    let spec = RobotSpec::new("r")
        .per_minute(2)
        .block_for(Duration::from_millis(300))
        .honour_msg_uuid();
    let fake = FakeDingTalk::start(vec![spec]).await.unwrap();
    let url = fake.webhook_url("r");
    let with_uuid = r#"{"msgtype":"text","text":{"content":"x"},"msgUuid":"m-1"}"#;
    assert_eq!(post_json(&url, with_uuid).await, 0);
    assert_eq!(post_json(&url, with_uuid).await, 0);
    assert_eq!(post_json(&url, HELLO).await, 0);
    let (_, v) = post(&url, "application/json", HELLO).await;
    assert_eq!(
        v,
        json!({"errcode": 410_100, "errmsg": "send too fast, exceed 2 times per minute"})
    );
    assert_eq!(post_json(&url, HELLO).await, errcode::TOO_FAST);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(post_json(&url, HELLO).await, 0);
    assert_eq!(fake.accepted_for("r").len(), 3);
    assert_eq!(fake.duplicates_for("r"), 1);
    assert_eq!(fake.throttled_for("r"), 2);
    assert_eq!(fake.requests_for("r"), 6);
    // Every POST counts toward the limit, the refused ones too: the
    // accepted alone could never show more than it allows.
    let posted = fake.posted_at("r");
    assert_eq!(posted.len(), 6);
    assert!(posted.is_sorted(), "{posted:?}");
    assert_eq!(crate::most_in_any_minute(&posted), 6);
}

#[tokio::test]
async fn injected_failures() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("f")])
        .await
        .unwrap();
    let url = fake.webhook_url("f");
    fake.fail_next("f", Failure::Http(503), 1);
    fake.fail_next("f", Failure::ErrCode(-1, "系统繁忙".into()), 1);
    fake.fail_next("f", Failure::Delay(Duration::from_secs(30)), 1);
    let (status, body) = post(&url, "application/json", HELLO).await;
    assert_eq!(status, 503, "{body}");
    let (_, v) = post(&url, "application/json", HELLO).await;
    assert_eq!(v, json!({"errcode": -1, "errmsg": "系统繁忙"}));
    // A delayed request is held: no answer while the delay lasts.
    let held = tokio::time::timeout(Duration::from_millis(300), post_json(&url, HELLO)).await;
    assert!(held.is_err(), "answered despite the delay");
    assert_eq!(post_json(&url, HELLO).await, 0);
    assert_eq!(fake.accepted().len(), 1);
    assert_eq!(fake.requests_for("f"), 4);
    assert_eq!(fake.rejections(), vec![("f".into(), -1, "系统繁忙".into())]);
}

#[tokio::test]
async fn events_and_waiting() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("e")])
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    fake.on_event(move |e| sink.lock().unwrap().push(format!("{e:?}")));

    let waiter = {
        let fake = fake.clone();
        tokio::spawn(async move { fake.wait_for_accepted(1, Duration::from_secs(5)).await })
    };
    assert_eq!(post_json(&fake.webhook_url("e"), HELLO).await, 0);
    assert_eq!(waiter.await.unwrap().len(), 1);
    assert_eq!(post_json(&fake.webhook_url("x"), HELLO).await, 300_001);

    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].starts_with("Accepted("));
    assert!(events[1].starts_with("Rejected {"));

    // Timing out returns what there is.
    let got = fake.wait_for_accepted(5, Duration::from_millis(50)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        fake.wait_for_requests("x", 1, Duration::from_millis(50))
            .await,
        1
    );
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("a")])
        .await
        .unwrap();
    let addr = fake.addr();
    assert_eq!(post_json(&fake.webhook_url("a"), HELLO).await, 0);
    fake.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let fake = FakeDingTalk::start(vec![RobotSpec::new("a")])
        .await
        .unwrap();
    let addr = fake.addr();
    let clone = fake.clone();
    drop(fake);
    // A clone keeps it running.
    assert_eq!(post_json(&clone.webhook_url("a"), HELLO).await, 0);
    drop(clone);
    let mut stopped = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stopped,
        "server still listening after the last handle was dropped"
    );
}

#[tokio::test]
async fn start_on_refuses_duplicate_tokens() {
    let err = FakeDingTalk::start(vec![RobotSpec::new("a"), RobotSpec::new("a")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn params_parse_decodes_and_keeps_first() {
    let p = Params::parse("access_token=a%2Db&sign=ab%2Bc%3D&sign=zzz&timestamp=1&x=y");
    assert_eq!(p.access_token.as_deref(), Some("a-b"));
    assert_eq!(p.sign.as_deref(), Some("ab+c="));
    assert_eq!(p.timestamp.as_deref(), Some("1"));
    let p = Params::parse("sign=ab+c=");
    assert_eq!(p.sign.as_deref(), Some("ab c="));
}
