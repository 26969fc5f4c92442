//! A small HTTP forward proxy on loopback, for tests of a client that must
//! reach DingTalk through a company proxy: it takes plain-HTTP requests in
//! absolute form (`POST http://127.0.0.1:PORT/robot/send?... HTTP/1.1`),
//! counts them, and forwards each to its target, one request a connection.
//! It notes the `Proxy-Authorization` each request carried. Bounded: a head
//! of at most 16 KiB, a body of at most 1 MiB, 5 s for each read.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One request the proxy forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The request line's target, as sent (absolute form).
    pub target: String,
    /// Its `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A running forward proxy; stops when dropped.
#[derive(Debug)]
pub struct ForwardProxy {
    addr: SocketAddr,
    forwarded: Arc<Mutex<Vec<Forwarded>>>,
    task: JoinHandle<()>,
}

impl ForwardProxy {
    /// Starts one on `127.0.0.1`, a free port.
    pub async fn start() -> std::io::Result<ForwardProxy> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&forwarded);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    if let Err(err) = relay(client, &seen).await {
                        tracing::debug!(%err, "the test proxy dropped a request");
                    }
                });
            }
        });
        Ok(ForwardProxy {
            addr,
            forwarded,
            task,
        })
    }

    /// Its URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it forwarded, in order.
    pub fn forwarded(&self) -> Vec<Forwarded> {
        self.forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

async fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    tokio::time::timeout(READ_TIMEOUT, stream.read(buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))?
}

async fn relay(mut client: TcpStream, seen: &Mutex<Vec<Forwarded>>) -> std::io::Result<()> {
    let mut data = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() > MAX_HEAD {
            return Err(invalid("head too large"));
        }
        let n = read_some(&mut client, &mut chunk).await?;
        if n == 0 {
            return Err(invalid("closed before the head"));
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let rest = target
        .strip_prefix("http://")
        .ok_or_else(|| invalid("not an absolute http:// target"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut length = 0_usize;
    let mut authorization = None;
    let mut headers = String::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "content-length" => {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("content-length"))?;
            }
            "proxy-authorization" => authorization = Some(value.trim().to_owned()),
            "connection" | "proxy-connection" | "keep-alive" => {}
            _ => {}
        }
        if !lower.starts_with("proxy-") && lower != "connection" && lower != "keep-alive" {
            headers.push_str(line);
            headers.push_str("\r\n");
        }
    }
    if length > MAX_BODY {
        return Err(invalid("body too large"));
    }
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = read_some(&mut client, &mut chunk).await?;
        if n == 0 {
            return Err(invalid("closed before the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Forwarded {
            target: target.to_owned(),
            authorization,
        });

    let mut upstream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(authority))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let forward = format!("{method} {path} {version}\r\n{headers}Connection: close\r\n\r\n");
    upstream.write_all(forward.as_bytes()).await?;
    upstream.write_all(&body[..length.min(body.len())]).await?;
    let mut answer = Vec::new();
    loop {
        let n = read_some(&mut upstream, &mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > MAX_BODY {
            return Err(invalid("answer too large"));
        }
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}
