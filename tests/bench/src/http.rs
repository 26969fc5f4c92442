//! The small HTTP/1.1 plumbing the benchmark is built from, on plain hyper:
//! a server loop (one task per connection) and a client connection that
//! sends requests one after another and reconnects when it breaks.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// A response body.
pub type Body = Full<Bytes>;

/// The longest one request may take, answer read: past the sink's own
/// longest wait on a client (its 30 s idle timeout), so only a hung server
/// hits it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

/// Serves `handler` on every connection `listener` accepts, forever.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, most likely: back off, keep serving.
                eprintln!("bench: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            // A client that hangs up mid-request is not our concern here.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handler))
                .await;
        });
    }
}

/// A response with `status`, a content type and a static body.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A `POST /` with `headers` and `body`, for a [`Connection`].
pub fn post(headers: &[(&'static str, String)], body: Bytes) -> Result<Request<Body>, String> {
    let mut request = Request::builder().method(Method::POST).uri("/");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    request
        .body(Full::new(body))
        .map_err(|err| format!("cannot build a request: {err}"))
}

/// One client connection to `addr`: requests go one at a time, keep-alive.
pub struct Connection {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Body>>,
}

impl Connection {
    /// A connection to `addr`, opened on first use.
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Self {
            addr,
            host,
            sender: None,
        }
    }

    /// Sends `request`, reads the whole answer, and returns its status; an
    /// error past [`REQUEST_TIMEOUT`] (the connection is then dropped).
    pub async fn send(&mut self, mut request: Request<Body>) -> Result<StatusCode, String> {
        request.headers_mut().insert(HOST, self.host.clone());
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(connect(self.addr).await?),
        };
        let exchange = async {
            sender.ready().await.map_err(|err| err.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|err| err.to_string())?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|err| err.to_string())?;
            Ok(status)
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, String> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("cannot connect to {addr} within {REQUEST_TIMEOUT:?}"))?
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake with {addr} failed: {err}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// `GET /readyz` once; the status, or why there is none.
pub async fn get_readyz(addr: SocketAddr) -> Result<StatusCode, String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/readyz")
        .body(Full::new(Bytes::new()))
        .map_err(|err| err.to_string())?;
    Connection::new(addr).send(request).await
}
