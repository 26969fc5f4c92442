//! The sink under attack: hostile and broken clients on loopback against a
//! fresh release sink with its default limits, one attack per process, so
//! `VmHWM` is that attack's peak resident memory.
//!
//! Each attack is bounded in connections and time (`HOLD` at most). While it
//! holds, a probe asks `/healthz` and POSTs one small event every 100 ms,
//! each on a fresh connection, to see whether the service still answers;
//! the probes stop by themselves when the hold is over, even if the attack
//! is cancelled.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

mod payloads;

use fake_dingtalk::grpc_client::send_request as grpc_request;
use payloads::{attributes_message, json_zeros_event, large_text_event};

use crate::procs::{self, Running, SinkSpec};
use fake_dingtalk::process;

/// The longest an attack holds.
const HOLD: Duration = Duration::from_secs(12);

/// How long one probe request may take before it counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The sink's default `max_body_bytes`.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One attack and what the sink did under it.
#[derive(Debug, Clone)]
pub struct Attacked {
    /// What the attack is.
    pub name: String,
    /// The highest resident memory of the sink, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Its resident memory once the attack is over, in KiB.
    pub after_rss_kib: u64,
    /// `/healthz` during the attack.
    pub health: Probed,
    /// Small valid POSTs during the attack.
    pub posts: Probed,
}

/// What a probe saw.
#[derive(Debug, Clone, Default)]
pub struct Probed {
    /// Requests sent.
    pub asked: usize,
    /// Answered 200.
    pub ok: usize,
    /// Answered 503 (refused for capacity).
    pub refused: usize,
    /// Latencies of the answered ones, sorted.
    pub latencies: Vec<Duration>,
}

impl Probed {
    /// Sent, but no answer within the probe timeout (or another status).
    pub fn unanswered(&self) -> usize {
        self.asked - self.ok - self.refused
    }

    /// The median latency of the answered requests.
    pub fn p50(&self) -> Option<Duration> {
        self.latencies.get(self.latencies.len() / 2).copied()
    }

    /// The slowest answer.
    pub fn max(&self) -> Option<Duration> {
        self.latencies.last().copied()
    }
}

/// The attacks, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Attack {
    /// 1,000 POSTs declaring 1,000 bytes, sending one, then nothing.
    StalledBodies,
    /// 2,000 connections each sending 400 KB of an unfinished header.
    PartialHeaders,
    /// 5,000 keep-alive connections after one request each, and 20 silent ones.
    IdleConnections,
    /// 250 POSTs of 4 MiB - 1 byte, all sent but the last byte, held.
    HeldBodies,
    /// 2 gRPC connections × 50 streams each holding a partial 4 MB message.
    HeldGrpcStreams,
    /// 1,000 gRPC streams opened on one connection, none finished.
    ManyGrpcStreams,
    /// 50 clients sending 3.9 MB events back to back.
    LargeBodyFlood,
    /// 16 clients sending 4 MiB events whose data is a JSON array of zeros.
    JsonExpansion,
    /// 16 gRPC clients sending one event with 4 MB of one-letter attributes.
    AttributeExpansion,
}

impl Attack {
    /// Every attack.
    pub const ALL: [Attack; 9] = [
        Attack::StalledBodies,
        Attack::PartialHeaders,
        Attack::IdleConnections,
        Attack::HeldBodies,
        Attack::HeldGrpcStreams,
        Attack::ManyGrpcStreams,
        Attack::LargeBodyFlood,
        Attack::JsonExpansion,
        Attack::AttributeExpansion,
    ];

    /// What it is, for the report.
    pub fn describe(self) -> String {
        let hold = HOLD.as_secs();
        let what = match self {
            Attack::StalledBodies => {
                "1,000 POSTs declaring `Content-Length: 1000`, one byte sent, then nothing"
            }
            Attack::PartialHeaders => {
                "2,000 connections each sending 400 KB of one unfinished header"
            }
            Attack::IdleConnections => {
                "5,000 keep-alive connections idle after one request each, and 20 that send nothing"
            }
            Attack::HeldBodies => "250 POSTs of 4 MiB - 1 byte, all but the last byte sent, held",
            Attack::HeldGrpcStreams => {
                "2 gRPC connections × 50 streams, each holding a partial 4 MB message"
            }
            Attack::ManyGrpcStreams => "1,000 gRPC streams opened on one connection, none finished",
            Attack::LargeBodyFlood => "50 clients sending 3.9 MB events back to back",
            Attack::JsonExpansion => {
                "16 clients sending 4 MiB events whose data is a JSON array of 2 million zeros"
            }
            Attack::AttributeExpansion => {
                "16 gRPC clients sending one event with 4 MB of tiny attributes (about 300,000)"
            }
        };
        match self {
            Attack::LargeBodyFlood | Attack::JsonExpansion | Attack::AttributeExpansion => {
                format!("{what}, for {hold} s")
            }
            _ => what.to_owned(),
        }
    }
}

/// Runs `attack` against a fresh sink and reports what it did.
pub async fn run(attack: Attack, spec: &SinkSpec<'_>) -> Result<Attacked, String> {
    let running = procs::start_sink(spec).await?;
    let http = running.target.http;
    let grpc = running
        .target
        .grpc
        .ok_or("the sink was started without gRPC")?;
    let started = Instant::now();
    let health = tokio::spawn(probe(http, Probe::Health, started + HOLD));
    let posts = tokio::spawn(probe(http, Probe::Post, started + HOLD));

    let attackers = match attack {
        Attack::StalledBodies => stalled_bodies(http).await,
        Attack::PartialHeaders => partial_headers(http).await,
        Attack::IdleConnections => idle_connections(http).await,
        Attack::HeldBodies => held_bodies(http).await,
        Attack::HeldGrpcStreams => held_grpc_streams(grpc, 2, 50, 4_000_000).await,
        Attack::ManyGrpcStreams => held_grpc_streams(grpc, 1, 1_000, 1_000).await,
        Attack::LargeBodyFlood => flood(http, 50, large_text_event()).await,
        Attack::JsonExpansion => flood(http, 16, json_zeros_event()).await,
        Attack::AttributeExpansion => grpc_flood(grpc, 16, attributes_message()).await,
    };
    tokio::time::sleep(HOLD.saturating_sub(started.elapsed())).await;
    drop(attackers); // aborts every attacking task: their sockets close
    let health = health.await.map_err(|err| err.to_string())?;
    let posts = posts.await.map_err(|err| err.to_string())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let memory = memory(&running)?;
    Ok(Attacked {
        name: attack.describe(),
        peak_rss_kib: memory.peak_kib,
        after_rss_kib: memory.rss_kib,
        health,
        posts,
    })
}

fn memory(running: &Running) -> Result<process::Memory, String> {
    let pid = running.target.pid.ok_or("no pid")?;
    process::memory(pid).map_err(|err| format!("cannot read the memory of pid {pid}: {err}"))
}

#[derive(Debug, Clone, Copy)]
enum Probe {
    Health,
    Post,
}

/// Asks every 100 ms until `deadline`, each time on a fresh connection.
async fn probe(addr: SocketAddr, probe: Probe, deadline: Instant) -> Probed {
    let mut probed = Probed::default();
    let mut seq = 0;
    while Instant::now() < deadline {
        seq += 1;
        let request = match probe {
            Probe::Health => {
                "GET /healthz HTTP/1.1\r\nHost: sink\r\nConnection: close\r\n\r\n".to_owned()
            }
            Probe::Post => {
                let body = format!(
                    r#"{{"specversion":"1.0","id":"probe-{seq}","source":"bench","type":"probe","datacontenttype":"text/plain","data":"still there?"}}"#
                );
                format!(
                    "POST / HTTP/1.1\r\nHost: sink\r\nConnection: close\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        probed.asked += 1;
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, exchange(addr, request.as_bytes())).await;
        if let Ok(Some(status)) = answer {
            probed.latencies.push(started.elapsed());
            match status {
                200 => probed.ok += 1,
                503 => probed.refused += 1,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    probed.latencies.sort();
    probed
}

/// Sends `request` on a fresh connection; the answer's status.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(request).await.ok()?;
    let mut head = Vec::new();
    let mut chunk = [0_u8; 1024];
    while head.len() < 12 {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Opens `count` connections, `batch` at a time, each running `each`.
async fn connections<F, Fut>(addr: SocketAddr, count: usize, each: F) -> JoinSet<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..count {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            set.spawn(each(stream));
        }
    }
    set
}

/// Holds a connection open until the server closes it (or the task is aborted).
async fn hold(mut stream: TcpStream) {
    let mut chunk = [0_u8; 1024];
    while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
}

/// Sends `parts` and then holds the connection (never shutting down its
/// write side) until the server closes it. The server may stop reading
/// before the last part, so the answer is read while writing. Both halves
/// live in this one future: aborting its task closes the socket.
async fn send_and_hold(mut stream: TcpStream, parts: [Bytes; 2]) {
    let (mut read, mut write) = stream.split();
    let send = async {
        for part in parts {
            if write.write_all(&part).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let drain = async {
        let mut chunk = [0_u8; 1024];
        while matches!(read.read(&mut chunk).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = send => {}
        () = drain => {}
    }
}

async fn stalled_bodies(addr: SocketAddr) -> JoinSet<()> {
    connections(addr, 1_000, |mut stream| async move {
        let head = b"POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{";
        if stream.write_all(head).await.is_ok() {
            hold(stream).await;
        }
    })
    .await
}

async fn partial_headers(addr: SocketAddr) -> JoinSet<()> {
    let header = Bytes::from(
        [
            b"POST / HTTP/1.1\r\nHost: sink\r\nX-Padding: ".as_slice(),
            &vec![b'a'; 400_000],
        ]
        .concat(),
    );
    connections(addr, 2_000, move |mut stream| {
        let header = header.clone();
        async move {
            let _ = stream.write_all(&header).await;
            hold(stream).await;
        }
    })
    .await
}

async fn idle_connections(addr: SocketAddr) -> JoinSet<()> {
    let mut set = connections(addr, 5_000, |mut stream| async move {
        let request = b"GET /healthz HTTP/1.1\r\nHost: sink\r\n\r\n";
        if stream.write_all(request).await.is_ok() {
            hold(stream).await;
        }
    })
    .await;
    let silent = connections(addr, 20, hold).await;
    set.spawn(async move {
        silent.join_all().await;
    });
    set
}

async fn held_bodies(addr: SocketAddr) -> JoinSet<()> {
    let length = MAX_BODY - 1;
    let body = Bytes::from(vec![b'x'; length - 1]);
    connections(addr, 250, move |stream| {
        let body = body.clone();
        let head = Bytes::from(format!(
            "POST / HTTP/1.1\r\nHost: sink\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {length}\r\n\r\n"
        ));
        send_and_hold(stream, [head, body])
    })
    .await
}

/// `per_connection` streams on each of `connections` HTTP/2 connections,
/// each declaring a message of `message` bytes and sending all but 100 KB
/// of it (or just the prefix, when it is smaller), then holding.
async fn held_grpc_streams(
    addr: SocketAddr,
    connections: usize,
    per_connection: usize,
    message: usize,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let mut prefix = vec![0_u8];
    prefix.extend_from_slice(&u32::try_from(message).unwrap_or(u32::MAX).to_be_bytes());
    let prefix = Bytes::from(prefix);
    let partial = Bytes::from(vec![0_u8; message.saturating_sub(100_000)]);
    for _ in 0..connections {
        let Ok(stream) = TcpStream::connect(addr).await else {
            continue;
        };
        let Ok((client, connection)) = h2::client::handshake(stream).await else {
            continue;
        };
        set.spawn(async move {
            let _ = connection.await;
        });
        for _ in 0..per_connection {
            let client = client.clone();
            let (prefix, partial) = (prefix.clone(), partial.clone());
            set.spawn(async move {
                let Ok(mut client) = client.ready().await else {
                    return;
                };
                let Ok((answer, mut stream)) = client.send_request(grpc_request(), false) else {
                    return;
                };
                let _ = stream.send_data(prefix, false);
                if !partial.is_empty() {
                    let _ = stream.send_data(partial, false);
                }
                let _ = answer.await;
                std::future::pending::<()>().await;
                drop(stream);
            });
        }
    }
    set
}

/// `clients` connections sending `event` back to back, reconnecting when
/// the server closes one.
async fn flood(addr: SocketAddr, clients: usize, event: Bytes) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let event = event.clone();
        let head = Bytes::from(format!(
            "POST / HTTP/1.1\r\nHost: sink\r\nConnection: close\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n",
            event.len()
        ));
        set.spawn(async move {
            loop {
                let Ok(stream) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                send_and_hold(stream, [head.clone(), event.clone()]).await;
            }
        });
    }
    set
}

/// `clients` gRPC calls at a time, each sending `message` (already framed),
/// one after another on one HTTP/2 connection.
async fn grpc_flood(addr: SocketAddr, clients: usize, message: Bytes) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let Ok(stream) = TcpStream::connect(addr).await else {
        return set;
    };
    let Ok((client, connection)) = h2::client::handshake(stream).await else {
        return set;
    };
    set.spawn(async move {
        let _ = connection.await;
    });
    for _ in 0..clients {
        let (client, message) = (client.clone(), message.clone());
        set.spawn(async move {
            loop {
                let Ok(mut ready) = client.clone().ready().await else {
                    return;
                };
                let Ok((answer, mut stream)) = ready.send_request(grpc_request(), false) else {
                    return;
                };
                let _ = stream.send_data(message.clone(), true);
                if let Ok(answer) = answer.await {
                    let mut body = answer.into_body();
                    while let Some(Ok(_)) = body.data().await {}
                }
            }
        });
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Ending an attack aborts its tasks, and that must close their sockets:
    /// the sink's memory "after the attackers hung up" is read next.
    #[tokio::test]
    async fn aborting_a_sending_attacker_closes_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let attackers = connections(addr, 1, |stream| {
            send_and_hold(
                stream,
                [Bytes::from_static(b"head"), Bytes::from_static(b"body")],
            )
        })
        .await;
        let (mut server, _) = listener.accept().await.unwrap();
        let mut sent = [0_u8; 8];
        server.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"headbody");

        drop(attackers);
        let mut more = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), server.read(&mut more))
            .await
            .expect("the attacker's socket stays open after its task was aborted");
        assert_eq!(read.unwrap(), 0, "end of stream");
    }

    /// A probe stops at its deadline by itself, even against a server that
    /// never answers (an attack cancelled by the bench's cell timeout must
    /// not leave its probes running).
    #[tokio::test]
    async fn a_probe_stops_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        let probed = tokio::time::timeout(
            Duration::from_secs(10),
            probe(addr, Probe::Health, deadline),
        )
        .await
        .expect("the probe stopped by itself");
        assert!(probed.asked >= 1);
        assert_eq!(probed.unanswered(), probed.asked);
        drop(listener);
    }
}
