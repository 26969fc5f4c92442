//! Hostile and broken clients, on loopback against the runtime serving a
//! sink that only records what arrives (`support::Recorder`): the
//! transport's limits (slots, timeouts, connections, the memory budget, the
//! HTTP/2 settings, decoding) keep them from taking the connector down,
//! filling its memory or getting a wrong answer, whatever the sink. The
//! DingTalk sink's own hostile cases are in `tests/e2e/tests/hostile.rs`.
//!
//! Each case is bounded in time (every wait has a bound, `BOUND` at most)
//! and in size (a few dozen connections, bodies of at most 4 MiB from one
//! shared buffer). The memory cases read this process's resident memory
//! from `/proc/self/status` while the attack holds, and run one at a time.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use connector_sdk::testing::grpc_client::send_request;
use connector_sdk::testing::proto::{BatchEvent, CloudEvent};
use connector_sdk::testing::{Reply, STRUCTURED_CONTENT_TYPE, TestServer, event, process};
use prost::Message;
use support::Recorder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(5);

/// How soon a probe or a refusal must answer while an attack holds.
const PROMPTLY: Duration = Duration::from_secs(1);

/// The memory cases read the whole process's memory: each runs alone
/// (`write`), the other cases of this file run together (`read`).
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const MIB: usize = 1024 * 1024;

/// Resident memory of this process now, in bytes.
fn rss_bytes() -> usize {
    let memory = process::memory(std::process::id()).expect("/proc/self/status");
    usize::try_from(memory.rss_kib).expect("fits") * 1024
}

/// Samples resident memory every 10 ms until stopped; the highest seen.
struct RssPeak {
    peak: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RssPeak {
    fn start() -> Self {
        let peak = Arc::new(AtomicUsize::new(rss_bytes()));
        let task = {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        Self { peak, task }
    }

    fn stop(self) -> usize {
        self.task.abort();
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

/// A recording sink served with the runtime keys `runtime_keys` (YAML).
async fn sink_with(runtime_keys: &str) -> TestServer<Recorder> {
    TestServer::from_yaml(runtime_keys).await
}

/// POSTs a structured-mode CloudEvent (JSON text, as curl would).
async fn post_structured(sink: &TestServer<Recorder>, body: &str) -> Reply {
    sink.post_raw(STRUCTURED_CONTENT_TYPE, body.to_owned(), &[])
        .await
}

/// Whether nothing reached the sink.
fn nothing_arrived(sink: &TestServer<Recorder>) -> bool {
    sink.sink().arrived.lock().expect("lock").is_empty()
}

/// The answer to one raw HTTP/1.1 request on `stream`: status and body.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let read = async {
        let mut raw = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if raw.len() >= end + 4 + length {
                    let status = head[9..12].parse().expect("a status code");
                    let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]);
                    return (status, body.into_owned());
                }
            }
            let n = stream.read(&mut chunk).await.expect("the answer arrives");
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&chunk[..n]);
        }
    };
    timeout(BOUND, read)
        .await
        .expect("an answer within the bound")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits until the server closes `stream`; what it sent before, if anything.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let read = async {
        let mut seen = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("the server did not close the connection within {within:?}"))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(BOUND, TcpStream::connect(addr))
        .await
        .expect("connects in time")
        .expect("connects")
}

/// A text event, structured mode, as JSON text.
fn text_event(id: &str) -> String {
    let event = event(id).data("text/plain", format!("hello {id}")).build();
    serde_json::to_string(&event).expect("an event is JSON")
}

#[tokio::test]
async fn stalled_bodies_hold_the_slots_only_until_the_body_read_timeout() {
    let _together = MEMORY.read().await;
    let h = sink_with("max_in_flight: 8\nbody_read_timeout_ms: 2500\n").await;
    let addr = h.http_addr();
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(addr).await;
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{")
            .await
            .expect("head sent");
        stalled.push(stream);
    }

    // The service still answers at once: a POST is refused (not left
    // hanging), the liveness probe stays 200, readiness turns 503.
    let refused = timeout(BOUND, async {
        loop {
            let reply = timeout(PROMPTLY, post_structured(&h, &text_event("meanwhile")))
                .await
                .expect("a POST is answered promptly during the attack");
            if reply.status == 503 {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("refused once the stalled bodies hold every slot");
    assert!(refused.body.contains("over capacity"), "{refused:?}");
    let health = timeout(PROMPTLY, h.get("/healthz")).await.expect("prompt");
    assert_eq!(health.status, 200);
    let not_ready = timeout(BOUND, async {
        loop {
            let ready = timeout(PROMPTLY, h.get("/readyz")).await.expect("prompt");
            if ready.status == 503 {
                return ready;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("readiness reports the saturation");
    assert!(not_ready.body.contains("over capacity"), "{not_ready:?}");

    // Each stalled body gets 408 at the read timeout, and its connection closes.
    for stream in &mut stalled {
        let (status, body) = read_answer(stream).await;
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("body_read_timeout_ms"), "{body}");
        closed_by_server(stream, BOUND).await;
    }
    assert_eq!(post_structured(&h, &text_event("after")).await.status, 200);
    let ready = timeout(BOUND, async {
        loop {
            if h.get("/readyz").await.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "ready again once the slots are back");
}

#[tokio::test]
async fn slow_headers_and_silent_connections_are_closed_without_an_answer() {
    let _together = MEMORY.read().await;
    let h = sink_with("header_read_timeout_ms: 300\n").await;
    let addr = h.http_addr();

    let mut silent = connect(addr).await;
    let mut partial = connect(addr).await;
    partial
        .write_all(b"POST / HTTP/1.1\r\nHost: sink\r\nContent-")
        .await
        .expect("sent");
    // One byte of a header every 50 ms: never done, always busy.
    let mut trickle = connect(addr).await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Pad: ")
        .await
        .expect("sent");
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if trickle_write.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    assert!(closed_by_server(&mut silent, BOUND).await.is_empty());
    assert!(closed_by_server(&mut partial, BOUND).await.is_empty());
    let trickled = timeout(BOUND, async {
        let mut chunk = [0_u8; 64];
        loop {
            match trickle_read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        trickled.is_ok(),
        "a trickled head is closed at the header timeout"
    );
    writer.abort();

    // A well-behaved client is unaffected.
    assert_eq!(h.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_http_and_grpc() {
    let _together = MEMORY.read().await;
    let h = sink_with("idle_timeout_ms: 400\n").await;

    // HTTP/1.1: one request, then nothing.
    let mut http = connect(h.http_addr()).await;
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: sink\r\n\r\n")
        .await
        .expect("sent");
    assert_eq!(read_answer(&mut http).await.0, 200);
    closed_by_server(&mut http, BOUND).await;

    // gRPC: one call, then nothing; the server says GOAWAY and closes.
    let grpc = h.grpc_addr().expect("gRPC on");
    let (mut client, connection) = h2::client::handshake(connect(grpc).await)
        .await
        .expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let batch = BatchEvent::default().encode_to_vec();
    let (status, _) = grpc_call(&mut client, grpc_frame(&batch), true).await;
    assert_eq!(status, Some(0), "an empty batch is fine");
    let ended = timeout(BOUND, driver).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was closed");

    // And a gRPC connection that never sends anything.
    let mut silent = connect(grpc).await;
    closed_by_server(&mut silent, BOUND).await;
}

/// A POST whose body never comes: a request in flight until the body
/// read timeout.
async fn stalled_post(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .expect("head sent");
    stream
}

/// `GET /healthz` on a new connection, retried until it answers 200.
async fn healthy_on_a_new_connection(addr: SocketAddr) -> bool {
    timeout(BOUND, async {
        loop {
            let mut stream = connect(addr).await;
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\r\n")
                .await
                .is_ok()
            {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer).await;
                if answer.starts_with(b"HTTP/1.1 200") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn idle_connections_cannot_lock_clients_out() {
    let _together = MEMORY.read().await;
    let h =
        sink_with("max_connections: 4\nheader_read_timeout_ms: 20000\nidle_timeout_ms: 60000\n")
            .await;
    let addr = h.http_addr();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(addr).await);
    }
    // Every slot is taken by a connection that sends nothing: a new client
    // gets in all the same, and the longest-idle connection is closed.
    assert!(
        healthy_on_a_new_connection(addr).await,
        "a new client is served"
    );
    let mut closed = 0;
    for stream in &mut idle {
        if timeout(Duration::from_millis(200), closed_by_server(stream, BOUND))
            .await
            .is_ok()
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "an idle connection made room");
    assert!(
        h.metric(
            "connector_connections_expired_total",
            &[("transport", "http"), ("reason", "evicted")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn connections_past_max_connections_with_requests_in_flight_are_closed_at_once() {
    let _together = MEMORY.read().await;
    let h = sink_with("max_connections: 4\nbody_read_timeout_ms: 20000\n").await;
    let addr = h.http_addr();
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(stalled_post(addr).await);
    }
    // Every connection has a request in flight: nothing to evict.
    let refused = timeout(BOUND, async {
        loop {
            let mut extra = connect(addr).await;
            if closed_by_server(&mut extra, BOUND).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "closed without a word");
    // gRPC shares the limit.
    let mut grpc = connect(h.grpc_addr().expect("gRPC on")).await;
    assert!(closed_by_server(&mut grpc, BOUND).await.is_empty());

    drop(busy.pop());
    assert!(
        healthy_on_a_new_connection(addr).await,
        "a freed slot serves again"
    );
    assert!(
        h.metric(
            "connector_connections_refused_total",
            &[("transport", "http")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn what_would_decode_into_too_much_memory_is_refused_before_decoding() {
    let _together = MEMORY.read().await;
    let h = sink_with("{}").await;
    // 1 MiB of JSON zeros: half a million values, far more memory decoded
    // than the 16 MiB budget.
    let zeros = format!("[{}]", vec!["0"; 500_000].join(","));
    let event = format!(
        r#"{{"specversion":"1.0","id":"zeros","source":"e2e","type":"t","datacontenttype":"application/json","data":{zeros}}}"#
    );
    let reply = post_structured(&h, &event).await;
    assert_eq!(
        reply.status,
        413,
        "{}",
        &reply.body[..reply.body.len().min(300)]
    );
    assert!(reply.body.contains("once decoded"), "{}", reply.body);

    let proto = CloudEvent {
        id: "zeros".into(),
        source: "e2e".into(),
        spec_version: "1.0".into(),
        r#type: "t".into(),
        data: Some(
            connector_sdk::testing::proto::cloud_event::Data::BinaryData(zeros.into_bytes()),
        ),
        ..CloudEvent::default()
    };
    let status = h.send_grpc_events(vec![proto]).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("once decoded"), "{status:?}");
    assert!(nothing_arrived(&h));
}

#[tokio::test]
async fn many_large_bodies_stay_within_the_memory_budget() {
    let _alone = MEMORY.write().await;
    // Default limits: 4 MiB bodies, a 16 MiB budget.
    let h = sink_with("body_read_timeout_ms: 2000\n").await;
    let addr = h.http_addr();
    let len = 4 * MIB - 1;
    let body = Bytes::from(vec![b'x'; len]);
    let baseline = rss_bytes();
    let peak = RssPeak::start();

    let clients: Vec<_> = (0..48)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move {
                let stream = connect(addr).await;
                let (mut read, mut write) = stream.into_split();
                let head = format!(
                    "POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {len}\r\n\r\n"
                );
                let sender = tokio::spawn(async move {
                    // All but the last byte, then hold.
                    if write.write_all(head.as_bytes()).await.is_ok() {
                        let _ = write.write_all(&body[..len - 1]).await;
                    }
                    tokio::time::sleep(BOUND).await;
                    drop(write);
                });
                let mut answer = Vec::new();
                let _ = timeout(BOUND, async {
                    let mut chunk = [0_u8; 1024];
                    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match read.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => answer.extend_from_slice(&chunk[..n]),
                        }
                    }
                })
                .await;
                sender.abort();
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    // Meanwhile, the service answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = timeout(PROMPTLY, h.get("/healthz")).await.expect("prompt");
    assert_eq!(health.status, 200);

    let mut answers = Vec::new();
    for client in clients {
        answers.push(client.await.expect("client task"));
    }
    let grown = peak.stop().saturating_sub(baseline);
    let timed_out = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408"))
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .count();
    assert!(
        timed_out <= 4,
        "at most the budget's worth admitted: {timed_out}"
    );
    assert!(
        refused >= 1,
        "the rest refused before their upload: {answers:?}"
    );
    assert!(
        grown < 48 * MIB,
        "48 bodies of 4 MiB grew memory by {} MiB",
        grown / MIB
    );
}

#[tokio::test]
async fn held_grpc_streams_stay_within_the_memory_budget() {
    let _alone = MEMORY.write().await;
    let h = sink_with("body_read_timeout_ms: 2000\n").await;
    let grpc = h.grpc_addr().expect("gRPC on");
    let message_len: usize = 4_000_000;
    let mut prefix = vec![0_u8];
    prefix.extend_from_slice(&(message_len as u32).to_be_bytes());
    let prefix = Bytes::from(prefix);
    let partial = Bytes::from(vec![0_u8; message_len - 100_000]);
    let baseline = rss_bytes();
    let peak = RssPeak::start();

    let mut calls = Vec::new();
    let mut drivers = Vec::new();
    for _ in 0..2 {
        let (client, connection) = h2::client::handshake(connect(grpc).await)
            .await
            .expect("h2 handshake");
        drivers.push(tokio::spawn(connection));
        for _ in 0..50 {
            let client = client.clone();
            let (prefix, partial) = (prefix.clone(), partial.clone());
            calls.push(tokio::spawn(async move {
                // A message of 4 MB declared, most of it sent, the rest held.
                let mut client = client.ready().await.expect("ready");
                let (answer, mut stream) =
                    client.send_request(send_request(), false).expect("sent");
                let _ = stream.send_data(prefix, false);
                let _ = stream.send_data(partial, false);
                let answer = timeout(BOUND, answer).await.expect("answered in time");
                answer.ok().and_then(|a| grpc_status(a.headers()))
            }));
        }
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.expect("call task"));
    }
    let grown = peak.stop().saturating_sub(baseline);
    for driver in drivers {
        driver.abort();
    }
    let unavailable = statuses.iter().filter(|s| **s == Some(14)).count();
    let deadline = statuses.iter().filter(|s| **s == Some(4)).count();
    assert!(
        deadline <= 4,
        "at most the budget's worth admitted: {statuses:?}"
    );
    assert!(
        unavailable >= 90,
        "the rest refused before decoding: {statuses:?}"
    );
    assert!(
        grown < 48 * MIB,
        "100 held 4 MB messages grew memory by {} MiB",
        grown / MIB
    );
}

#[tokio::test]
async fn the_grpc_server_bounds_concurrent_streams_per_connection() {
    let _together = MEMORY.read().await;
    let h = sink_with("grpc_max_concurrent_streams: 7\n").await;
    let grpc = h.grpc_addr().expect("gRPC on");
    let (mut client, mut connection) = h2::client::handshake(connect(grpc).await)
        .await
        .expect("h2 handshake");
    // One call lets the server's SETTINGS arrive.
    let call = async {
        let (status, _) = grpc_call(&mut client, grpc_frame(&[]), true).await;
        status
    };
    let status = tokio::select! {
        status = call => status,
        _ = &mut connection => panic!("the connection ended early"),
    };
    assert_eq!(status, Some(0));
    assert_eq!(connection.max_concurrent_send_streams(), 7);
}

#[tokio::test]
async fn undecodable_protobuf_is_invalid_argument() {
    let _together = MEMORY.read().await;
    let h = sink_with("{}").await;
    let grpc = h.grpc_addr().expect("gRPC on");
    let (mut client, connection) = h2::client::handshake(connect(grpc).await)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    let mut rng = fastrand::Rng::with_seed(13);
    let mut cases: Vec<Vec<u8>> = (0..128)
        .map(|_| {
            let len = rng.usize(1..512);
            (0..len).map(|_| rng.u8(..)).collect()
        })
        .collect();
    // eventbus_name (field 1) holding bytes that are not UTF-8.
    cases.push(vec![0x0a, 0x02, 0xff, 0xfe]);
    for bytes in cases {
        let decodes = BatchEvent::decode(&bytes[..])
            .ok()
            .is_some_and(|batch| connector_sdk::testing::decode_batch(batch).is_ok());
        let (status, message) = grpc_call(&mut client, grpc_frame(&bytes), true).await;
        if decodes {
            // Random bytes can be a valid (empty) batch; never an error then.
            assert_eq!(status, Some(0), "{bytes:?}: {message}");
        } else {
            assert_eq!(
                status,
                Some(3),
                "{bytes:?}: INVALID_ARGUMENT, got {message}"
            );
        }
    }
}

#[tokio::test]
async fn one_rule_for_both_doors() {
    let _together = MEMORY.read().await;
    let h = sink_with("{}").await;
    let base = || CloudEvent {
        id: "rule".into(),
        source: "e2e".into(),
        spec_version: "1.0".into(),
        r#type: "t".into(),
        ..CloudEvent::default()
    };
    let cases: [(&str, &str, CloudEvent); 4] = [
        (
            "id",
            r#"{"specversion":"1.0","id":"","source":"s","type":"t","data":"x"}"#,
            CloudEvent {
                id: String::new(),
                ..base()
            },
        ),
        (
            "source",
            r#"{"specversion":"1.0","id":"1","source":"","type":"t","data":"x"}"#,
            CloudEvent {
                source: String::new(),
                ..base()
            },
        ),
        (
            "type",
            r#"{"specversion":"1.0","id":"1","source":"s","type":"","data":"x"}"#,
            CloudEvent {
                r#type: String::new(),
                ..base()
            },
        ),
        (
            "specversion",
            r#"{"specversion":"0.3","id":"1","source":"s","type":"t","data":"x"}"#,
            CloudEvent {
                spec_version: "0.3".into(),
                ..base()
            },
        ),
    ];
    for (attribute, json, proto) in cases {
        let reply = post_structured(&h, json).await;
        assert_eq!(reply.status, 400, "{attribute} over HTTP: {reply:?}");
        assert!(reply.body.contains(attribute), "{reply:?}");
        let status = h.send_grpc_events(vec![proto]).await.expect_err("refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{attribute} over gRPC"
        );
        assert!(status.message().contains(attribute), "{status:?}");
    }
    assert!(nothing_arrived(&h), "nothing invalid reached the sink");
}

#[tokio::test]
async fn the_http_layer_says_what_was_wrong() {
    let _together = MEMORY.read().await;
    let h = sink_with("{}").await;
    let addr = h.http_addr();
    let exchange = |raw: Vec<u8>| async move {
        let mut stream = connect(addr).await;
        stream.write_all(&raw).await.expect("sent");
        read_answer(&mut stream).await
    };
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: sink\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let (status, body) = exchange(big_header.into_bytes()).await;
    assert_eq!(status, 431);
    assert!(body.contains("max_header_bytes"), "{body}");

    let (status, body) = exchange(b"NOT AN HTTP REQUEST\r\n\r\n".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("could not be parsed"), "{body}");

    let (status, body) = exchange(b"GET /nowhere HTTP/1.1\r\nHost: sink\r\n\r\n".to_vec()).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("/nowhere") && body.contains("POST /"),
        "{body}"
    );

    let (status, body) = exchange(b"DELETE / HTTP/1.1\r\nHost: sink\r\n\r\n".to_vec()).await;
    assert_eq!(status, 405);
    assert!(body.contains("DELETE"), "{body}");
}

#[tokio::test]
async fn an_upload_that_cannot_be_admitted_is_refused_before_100_continue() {
    let _together = MEMORY.read().await;
    let h = sink_with("max_buffered_bytes: 8388608\n").await;
    let addr = h.http_addr();
    let mut stream = connect(addr).await;
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("sent");
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!(status, 413, "not 100 Continue: {body}");
    assert!(body.contains("max_body_bytes"), "{body}");

    // The budget is full (two 4 MiB bodies held): the next is refused at once.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = connect(addr).await;
        holder
            .write_all(b"POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 4194304\r\n\r\n{")
            .await
            .expect("sent");
        holders.push(holder);
    }
    let refused = timeout(BOUND, async {
        loop {
            let mut stream = connect(addr).await;
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
                .await
                .expect("sent");
            let (status, body) = read_answer(&mut stream).await;
            if status == 503 {
                return body;
            }
            assert_eq!(status, 100, "either refused or invited: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("refused while the budget is full");
    assert!(refused.contains("max_buffered_bytes"), "{refused}");
}

// ---- the raw gRPC client ----

/// A gRPC message: the 5-byte prefix and the bytes.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0_u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

fn grpc_status(headers: &hyper::http::HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// One unary call with `body` as the request body: the grpc-status (from
/// the headers of a refusal, or the trailers) and the grpc-message.
async fn grpc_call(
    client: &mut h2::client::SendRequest<Bytes>,
    body: Bytes,
    end: bool,
) -> (Option<u32>, String) {
    let call = async {
        let mut ready = client.clone().ready().await.expect("ready");
        let (answer, mut stream) = ready.send_request(send_request(), false).expect("sent");
        stream.send_data(body, end).expect("data sent");
        let answer = answer.await.expect("an answer");
        let message = |headers: &hyper::http::HeaderMap| {
            headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        if let Some(status) = grpc_status(answer.headers()) {
            return (Some(status), message(answer.headers()));
        }
        let mut body = answer.into_body();
        while let Some(data) = body.data().await {
            let _ = data.expect("data");
        }
        let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
        (grpc_status(&trailers), message(&trailers))
    };
    timeout(BOUND, call)
        .await
        .expect("the call is answered in time")
}
