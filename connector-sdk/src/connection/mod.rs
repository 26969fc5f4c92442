//! Connections, for both servers: the accept loop, the limit on open
//! connections (shared by HTTP and gRPC), and the clock that closes a
//! connection past its time (`clock.rs`).
//!
//! When every connection slot is taken, a new connection evicts the one
//! that has gone longest without a request open (idle, or still sending a
//! head), and takes its slot; only when every connection has a request in
//! flight is a new one closed at once. So idle or slow connections, however
//! many, cannot lock clients out; requests in flight are bounded by
//! `max_in_flight` (below `max_connections` by default) and their read
//! timeouts.
//!
//! The HTTP port speaks HTTP/1.1, the gRPC port HTTP/2; each connection is
//! served by hyper with bounded buffers (`max_header_bytes`), and closed
//! when its headers are too slow (at once) or it has been idle too long
//! (gracefully: an HTTP/2 client gets GOAWAY). On shutdown, connections
//! finish their requests and close; the caller bounds how long that takes.

mod clock;
mod http1_io;

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub(crate) use clock::{ConnectionClock, Expiry, Protocol, Timeouts};
use http1_io::Http1Io;

use crate::config::Limits;
use crate::metrics;
use crate::shutdown::Trigger;

/// How long a connection closed for idleness may take to finish what it
/// was still writing (a client that does not read its answers).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long accepting pauses after the operating system refuses a new
/// socket (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a new connection waits for the slot of the one it evicted
/// (closed at once: only as long as its task takes to notice).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// New connections waiting for an evicted one's slot, at most: past it,
/// more are closed at once.
const MAX_WAITING: usize = 64;

/// The limit on open connections, shared by both servers, and who holds
/// the slots (to evict one when they are all taken).
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    open: Arc<Semaphore>,
    max: usize,
    live: Arc<Mutex<Live>>,
    waiting: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Live {
    next: u64,
    connections: HashMap<u64, Weak<ConnectionClock>>,
}

/// A connection's place in the gate: its slot and its entry among the live.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    live: Arc<Mutex<Live>>,
    key: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.live).connections.remove(&self.key);
    }
}

impl Gate {
    pub(crate) fn new(max_connections: usize) -> Self {
        let max = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            open: Arc::new(Semaphore::new(max)),
            max,
            live: Arc::default(),
            waiting: Arc::default(),
        }
    }

    fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.open).try_acquire_owned().ok()
    }

    /// Registers a connection holding `permit`.
    fn admit(&self, permit: OwnedSemaphorePermit, clock: &Arc<ConnectionClock>) -> Admitted {
        let mut live = lock(&self.live);
        let key = live.next;
        live.next += 1;
        live.connections.insert(key, Arc::downgrade(clock));
        Admitted {
            _permit: permit,
            live: Arc::clone(&self.live),
            key,
        }
    }

    /// Asks the connection longest without a request open to close. False
    /// when every connection has a request in flight.
    fn evict_one(&self) -> bool {
        let live = lock(&self.live);
        let oldest = live
            .connections
            .values()
            .filter_map(Weak::upgrade)
            .filter_map(|clock| Some((clock.evictable_since()?, clock)))
            .min_by_key(|(since, _)| *since);
        drop(live);
        oldest.is_some_and(|(_, clock)| clock.evict())
    }
}

fn lock(live: &Mutex<Live>) -> std::sync::MutexGuard<'_, Live> {
    live.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a server's connections serve: a service of HTTP requests that
/// never fails, cloned for each connection, with answers hyper can write.
/// Every service that fits is one (the HTTP router, gRPC's [`Admit`]).
///
/// [`Admit`]: crate::grpc::Admit
pub(crate) trait Served:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<<Self as Served>::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The body of its answers.
    type Body: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;
}

impl<S, B> Served for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Body = B;
}

/// How each connection of one server is served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) protocol: Protocol,
    /// The metric label: `http` or `grpc`.
    pub(crate) transport: &'static str,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_concurrent_streams: u32,
}

impl Settings {
    pub(crate) fn new(protocol: Protocol, limits: &Limits) -> Self {
        Self {
            protocol,
            transport: match protocol {
                Protocol::Http1 => "http",
                Protocol::Http2 => "grpc",
            },
            timeouts: Timeouts {
                header: limits.header_read_timeout,
                idle: limits.idle_timeout,
            },
            max_header_bytes: limits.max_header_bytes,
            max_concurrent_streams: limits.grpc_max_concurrent_streams,
        }
    }
}

/// Accepts connections on `listener` and serves each with `service` until
/// `stop` fires; then stops accepting, lets every connection finish its
/// requests, and returns. Dropping (aborting) the returned future closes
/// every connection at once.
pub(crate) async fn serve<S: Served>(
    listener: TcpListener,
    service: S,
    settings: Settings,
    gate: Gate,
    stop: Trigger,
) {
    let mut connections = JoinSet::new();
    let mut stopped = pin!(stop.fired());
    loop {
        tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let new = Connection { stream, peer, gate: gate.clone(), service: service.clone(), settings, stop: stop.clone() };
                    if !new.start(&mut connections) {
                        metrics::connection_refused(settings.transport);
                        tracing::debug!(%peer, max_connections = gate.max, "connection refused: max_connections are open, each with a request in flight");
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, transport = settings.transport, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// A connection just accepted, and what serving it takes.
struct Connection<S> {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    gate: Gate,
    service: S,
    settings: Settings,
    stop: Trigger,
}

impl<S: Served> Connection<S> {
    /// Starts serving it in a free slot, or in the slot of the connection
    /// it evicts; false (and it is closed) when there is neither.
    fn start(self, connections: &mut JoinSet<()>) -> bool {
        let gate = self.gate.clone();
        if let Some(permit) = gate.try_enter() {
            connections.spawn(self.serve(permit));
            return true;
        }
        let waiting = gate.waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= MAX_WAITING || !gate.evict_one() {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        connections.spawn(async move {
            let permit =
                tokio::time::timeout(EVICTION_WAIT, Arc::clone(&gate.open).acquire_owned()).await;
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            match permit {
                Ok(Ok(permit)) => self.serve(permit).await,
                _ => metrics::connection_refused(self.settings.transport),
            }
        });
        true
    }

    /// Serves it to its end.
    async fn serve(self, permit: OwnedSemaphorePermit) {
        let Self {
            stream,
            peer,
            gate,
            service,
            settings,
            stop,
        } = self;
        let _open = metrics::OpenConnection::new(settings.transport);
        // Small answers must leave at once, not wait on Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        let clock = ConnectionClock::new(settings.protocol, settings.timeouts);
        let _admitted = gate.admit(permit, &clock);
        let service = count_requests(service, &clock, peer);
        match settings.protocol {
            Protocol::Http1 => {
                let io = Http1Io::new(stream, Arc::clone(&clock), settings.max_header_bytes);
                let connection = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(
                        settings
                            .max_header_bytes
                            .max(crate::config::MIN_HEADER_BYTES),
                    )
                    .serve_connection(TokioIo::new(io), service);
                drive(connection, &clock, &stop, settings).await;
            }
            Protocol::Http2 => {
                let max_header_list = u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX);
                let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(settings.max_concurrent_streams)
                    .max_header_list_size(max_header_list)
                    .serve_connection(TokioIo::new(stream), service);
                drive(connection, &clock, &stop, settings).await;
            }
        }
    }
}

/// `service` as hyper calls it, counting each request open on the
/// connection's clock until it is answered.
fn count_requests<S: Served>(
    service: S,
    clock: &Arc<ConnectionClock>,
    peer: std::net::SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<S::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<S::Body>, Infallible>> + Send + 'static,
> + Clone {
    let clock = Arc::clone(clock);
    let inner = TowerToHyperService::new(service);
    service_fn(move |mut request: Request<Incoming>| {
        // Who asked: `POST /-/reload` takes loopback without a token.
        request.extensions_mut().insert(crate::ingest::Peer(peer));
        let open = clock.request_started();
        let answer = hyper::service::Service::call(&inner, request);
        async move {
            let answer = answer.await;
            drop(open);
            answer
        }
    })
}

/// Runs a connection until it ends, it is past its time, or the server stops.
async fn drive<C>(connection: C, clock: &ConnectionClock, stop: &Trigger, settings: Settings)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            log_end(result);
            return;
        }
        () = stop.fired() => {
            // Finish the requests in flight; the server bounds the wait.
            connection.as_mut().graceful_shutdown();
            log_end(connection.await);
            return;
        }
        why = clock.expired() => {
            metrics::connection_expired(settings.transport, why.as_str());
            tracing::debug!(transport = settings.transport, reason = why.as_str(), "closing a connection past its time");
            // Evicted: it has no request open, and its slot is awaited by
            // a new connection that waits only EVICTION_WAIT, no longer
            // than a graceful close may take (a client that does not answer
            // GOAWAY's ping holds it for CLOSE_GRACE).
            if matches!(why, Expiry::HeaderTimeout | Expiry::Evicted) {
                return; // dropping it closes the socket now
            }
        }
    }
    connection.as_mut().graceful_shutdown();
    if let Ok(result) = tokio::time::timeout(CLOSE_GRACE, connection).await {
        log_end(result);
    }
}

fn log_end<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(err) = result {
        // Clients hang up and send garbage; that is theirs to know.
        tracing::debug!(%err, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn an_evicted_http2_connection_is_closed_without_waiting_for_its_client() {
        let (server_io, mut client_io) = tokio::io::duplex(64 * 1024);
        // A client that opens HTTP/2 (preface, empty SETTINGS) and then
        // never answers: a graceful close would wait on its ping ack.
        client_io
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .expect("written");
        let settings = Settings::new(Protocol::Http2, &Limits::default());
        let clock = ConnectionClock::new(Protocol::Http2, settings.timeouts);
        let answer = service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        });
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(server_io), answer);
        assert!(clock.evict(), "no request open");
        let started = Instant::now();
        drive(connection, &clock, &Trigger::new(), settings).await;
        // Paused clock: time moves only when something waits on it.
        assert!(
            started.elapsed() < EVICTION_WAIT,
            "closed at once, so the newcomer gets its slot: {:?}",
            started.elapsed()
        );
    }
}
