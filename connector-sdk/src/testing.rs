//! A testing kit for sink authors (feature `testing`): run a sink on the real
//! runtime, on free loopback ports, inside a test; send it events the way
//! senders do (HTTP structured, binary and batch mode, gRPC) with one call
//! each; read back the status code a sender would act on.
//!
//! ```
//! use connector_sdk::testing::{TestServer, event};
//! use connector_sdk::{BoxError, Context, Event, NoConfig, Outcome, Sink, async_trait};
//!
//! struct Refuser;
//!
//! #[async_trait]
//! impl Sink for Refuser {
//!     type Config = NoConfig;
//!     fn name() -> &'static str { "refuser" }
//!     async fn initialize(_: NoConfig, _: Context) -> Result<Self, BoxError> { Ok(Refuser) }
//!     async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
//!         let count = events.len();
//!         Outcome::rejected(format!("{count} events refused")).for_each(count)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = TestServer::start(Refuser).await;
//! let one = event("1").data("text/plain", "hi").build();
//! assert_eq!(server.send_structured(&one).await.status, 400);
//! let reply = server.send_grpc(&[one, event("2").build()]).await;
//! assert_eq!((reply.status, reply.body.as_str()), (400, "2 events refused"));
//! server.shutdown().await;
//! # }
//! ```
//!
//! Each server has its own store in a fresh temporary directory (removed
//! when the server is dropped), unless the YAML names a `store.path`: a test
//! of a restart starts a second server on the first one's path, after
//! [`TestServer::shutdown`] closed it. With `store.redis.url` (a
//! [`RedisServer`] started by the test), several servers share one store, as
//! replicas do.
//!
//! This is test support: where a test cannot go on (the servers do not start,
//! the sink does not answer) the kit panics with a message saying why, as an
//! `assert!` would. It uses real sockets and real time, so it does not suit
//! tests with a paused tokio clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::transport::{Channel, Endpoint};

use crate::config::{self, RuntimeConfig};
use crate::proto::cloud_events_client::CloudEventsClient;
use crate::proto::{BatchEvent, CloudEventBatch};
use crate::store::{Clock, Store, StoreConfig, SystemClock};
use crate::{
    BATCH_CONTENT_TYPE, Context, SINK_SCOPE, STRUCTURED_CONTENT_TYPE, ServeOptions, Server, Sink,
    encode_event,
};

/// How long a request may take before the test fails: far beyond the 5 s a
/// Vanus trigger waits, so only a hung sink reaches it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a sender got back: the status code it acts on, and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code. gRPC answers are mapped back: OK 200,
    /// `InvalidArgument` 400, `ResourceExhausted` 429, `Unavailable` 503
    /// (gRPC does not tell 502 from 503), `DeadlineExceeded` 504, any other
    /// code 500.
    pub status: u16,
    /// `Retry-After` in seconds (the HTTP header, or the gRPC metadata of
    /// the same name), when the sink is throttled.
    pub retry_after: Option<u64>,
    /// The body as sent over HTTP (the outcome's reason and a newline), or
    /// the gRPC status message (empty on success).
    pub body: String,
}

/// A sink running on the real runtime, HTTP and gRPC on free loopback ports,
/// with a client for each.
///
/// Every sender panics when the sink gives no answer at all (connection
/// refused, nothing within 30 s); any answer, success or not, is a [`Reply`].
pub struct TestServer<S> {
    sink: Arc<S>,
    store: Store,
    /// The temporary directory of the store, when the YAML named none.
    _store_dir: Option<tempfile::TempDir>,
    server: Mutex<Option<Server>>,
    /// The context [`TestServer::from_yaml`] handed the sink: its tasks are
    /// stopped at shutdown.
    context: Option<Context>,
    http_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    grace: Duration,
    http: Client<HttpConnector, Full<Bytes>>,
    grpc: Option<Channel>,
}

impl<S: Sink> TestServer<S> {
    /// Serves `sink` with HTTP and gRPC on free loopback ports
    /// ([`ServeOptions::loopback`]).
    ///
    /// # Panics
    ///
    /// When the servers cannot start.
    pub async fn start(sink: S) -> Self {
        Self::start_with(sink, ServeOptions::loopback()).await
    }

    /// Serves `sink` with the given options (port 0 picks a free port;
    /// `grpc: None` turns gRPC off).
    ///
    /// # Panics
    ///
    /// When the servers cannot start.
    pub async fn start_with(sink: S, options: ServeOptions) -> Self {
        let grace = RuntimeConfig::default().shutdown_timeout();
        let (store, dir) = open_store(&StoreConfig::default(), Arc::new(SystemClock), S::name());
        Self::serve(Arc::new(sink), (store, dir), None, &options, grace).await
    }

    /// Does what the connector process does at start-up, from config text:
    /// loads `S::Config` from `yaml` (with the environment's `CONNECTOR_*`
    /// overrides), validates it, opens the store and calls
    /// [`Sink::initialize`]. The servers listen on free loopback ports
    /// whatever `port` and `grpc_port` say; the store is a fresh temporary
    /// one unless `store.path` (or `store.redis`) is set; every other
    /// runtime key (the limits, `drain_delay_ms`, `shutdown_timeout_secs`,
    /// `ledger_ttl_secs`) applies.
    ///
    /// # Panics
    ///
    /// When the config is invalid, the sink fails to initialize or the
    /// servers cannot start; the message says which. To test a config
    /// error, call [`config::load_from_str`] yourself.
    pub async fn from_yaml(yaml: &str) -> Self {
        Self::from_yaml_with_clock(yaml, Arc::new(SystemClock)).await
    }

    /// [`TestServer::from_yaml`], with the store reading the time from
    /// `clock`: a [`ShiftedClock`](crate::store::ShiftedClock) lets a test move the store's gates and
    /// expiries a minute on without waiting for it.
    ///
    /// # Panics
    ///
    /// As [`TestServer::from_yaml`].
    pub async fn from_yaml_with_clock(yaml: &str, clock: Arc<dyn Clock>) -> Self {
        let loaded = config::load_from_str::<S::Config>(yaml, "the test's YAML")
            .unwrap_or_else(|err| panic!("{err}"));
        let (store, dir) = open_store(&loaded.runtime.store, clock, S::name());
        // As at start-up: the sink's `initialize` may register metrics.
        crate::metrics::install();
        let context = Context::new(store.scope(SINK_SCOPE));
        let sink = S::initialize(loaded.sink, context.clone())
            .await
            .unwrap_or_else(|err| panic!("{} could not initialize: {err}", S::name()));
        // Every runtime key applies, except the ports: free loopback ones.
        let loopback = ServeOptions::loopback();
        let options = ServeOptions {
            http: loopback.http,
            grpc: loopback.grpc,
            ..ServeOptions::from(&loaded.runtime)
        };
        Self::serve(
            Arc::new(sink),
            (store, dir),
            Some(context),
            &options,
            loaded.runtime.shutdown_timeout(),
        )
        .await
    }

    async fn serve(
        sink: Arc<S>,
        (store, store_dir): (Store, Option<tempfile::TempDir>),
        context: Option<Context>,
        options: &ServeOptions,
        grace: Duration,
    ) -> Self {
        let server = Server::start(Arc::clone(&sink), &store, options)
            .await
            .unwrap_or_else(|err| panic!("{} cannot be served: {err}", S::name()));
        let grpc_addr = server.grpc_addr();
        let grpc = grpc_addr.map(|addr| {
            let uri = format!("http://{addr}");
            Endpoint::from_shared(uri)
                .unwrap_or_else(|err| panic!("gRPC address {addr}: {err}"))
                .connect_lazy()
        });
        Self {
            sink,
            store,
            _store_dir: store_dir,
            http_addr: server.http_addr(),
            grpc_addr,
            server: Mutex::new(Some(server)),
            context,
            grace,
            http: Client::builder(TokioExecutor::new()).build_http(),
            grpc,
        }
    }

    /// The sink being served, to look at its state.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The store the sink was given (its own namespace of the server's
    /// store), to look at what it keeps.
    pub fn store(&self) -> Store {
        self.store.scope(SINK_SCOPE)
    }

    /// Where HTTP listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where gRPC listens, if it is on.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// POSTs `event` in HTTP structured mode (`application/cloudevents+json`).
    pub async fn send_structured(&self, event: &Event) -> Reply {
        let body = serde_json::to_vec(event)
            .unwrap_or_else(|err| panic!("event {} is not JSON: {err}", event.id()));
        self.post_raw(STRUCTURED_CONTENT_TYPE, body, &[]).await
    }

    /// POSTs `event` in HTTP binary mode: attributes as `ce-*` headers, the
    /// data as the body with its content type. Headers carry no types, so the
    /// sink gets extensions as strings and the data as bytes.
    pub async fn send_binary(&self, event: &Event) -> Reply {
        // cloudevents-sdk's binary-mode serializer writes the ce-* headers and
        // body onto a response; the same headers and body make the request.
        let encoded = cloudevents::binding::http::builder::adapter::to_response(event.clone())
            .unwrap_or_else(|err| panic!("event {} has no binary form: {err}", event.id()));
        let (parts, body) = encoded.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let mut request = self.request(Method::POST, "/", Full::new(body));
        *request.headers_mut() = parts.headers;
        self.exchange(request).await
    }

    /// POSTs `events` in HTTP batch mode
    /// (`application/cloudevents-batch+json`).
    pub async fn send_batch(&self, events: &[Event]) -> Reply {
        let body =
            serde_json::to_vec(events).unwrap_or_else(|err| panic!("the batch is not JSON: {err}"));
        self.post_raw(BATCH_CONTENT_TYPE, body, &[]).await
    }

    /// Sends `events` in one gRPC `CloudEvents/Send`, as a Vanus trigger
    /// does, and maps the answer to a [`Reply`].
    ///
    /// # Panics
    ///
    /// When gRPC is off, or the sink does not answer.
    pub async fn send_grpc(&self, events: &[Event]) -> Reply {
        let batch = BatchEvent {
            events: Some(CloudEventBatch {
                events: events.iter().map(encode_event).collect(),
            }),
            ..BatchEvent::default()
        };
        match self.send_grpc_raw(batch).await {
            Ok(()) => Reply {
                status: 200,
                retry_after: None,
                body: String::new(),
            },
            Err(status) => grpc_reply(&status),
        }
    }

    /// Sends a `BatchEvent` exactly as given (to test what senders put on
    /// the wire, malformed events included) and returns tonic's answer.
    ///
    /// # Panics
    ///
    /// When gRPC is off, or the sink does not answer.
    pub async fn send_grpc_raw(&self, batch: BatchEvent) -> Result<(), tonic::Status> {
        let Some(channel) = self.grpc.clone() else {
            panic!("gRPC is off: start the TestServer with ServeOptions whose `grpc` is set")
        };
        let mut client = CloudEventsClient::new(channel);
        tokio::time::timeout(ANSWER_TIMEOUT, client.send(batch))
            .await
            .unwrap_or_else(|_| panic!("no gRPC answer within {ANSWER_TIMEOUT:?}"))
            .map(|_| ())
    }

    /// POSTs `body` to `/` with a content type and extra headers, as any
    /// client might (e.g. binary mode written by hand, or malformed input).
    pub async fn post_raw(
        &self,
        content_type: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.request(Method::POST, "/", Full::new(body.into()));
        let content_type = [(header::CONTENT_TYPE.as_str(), content_type)];
        for (name, value) in content_type.iter().chain(headers) {
            let name = header::HeaderName::try_from(*name)
                .unwrap_or_else(|err| panic!("header name {name:?}: {err}"));
            let value = header::HeaderValue::try_from(*value)
                .unwrap_or_else(|err| panic!("header {name} value {value:?}: {err}"));
            request.headers_mut().append(name, value);
        }
        self.exchange(request).await
    }

    /// GETs a path such as `/readyz`, `/metrics` or `/status`.
    pub async fn get(&self, path: &str) -> Reply {
        self.exchange(self.request(Method::GET, path, Full::default()))
            .await
    }

    /// The value of the Prometheus sample `name` on `/metrics`, summed over
    /// the series whose labels include all of `labels`; 0 when there is none.
    /// Metrics are process-wide: compare before and after, with labels that
    /// only this test uses, when tests run in parallel.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").await.body;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(series, _)| {
                let (series_name, series_labels) = series.split_once('{').unwrap_or((series, "}"));
                // Whole labels only: `group="x"` must not match `chat_group="x"`.
                let series_labels: Vec<&str> =
                    series_labels.trim_end_matches('}').split(',').collect();
                series_name == name
                    && labels
                        .iter()
                        .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"").as_str()))
            })
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum()
    }

    /// Shuts down as the connector process does on SIGTERM: `/readyz` turns
    /// 503 for the drain delay, the servers stop accepting, in-flight
    /// requests finish (within the shutdown timeout, 10 s unless the YAML
    /// says otherwise), the sink's background tasks stop (a sink started by
    /// [`TestServer::from_yaml`]), then [`Sink::destroy`] runs and the store
    /// closes. Returns false when requests had to be cut off. Later calls do
    /// nothing and return true.
    ///
    /// It borrows, so a test can keep sending while it drains (with
    /// `tokio::join!`) and look at [`TestServer::sink`] afterwards. A
    /// `TestServer` dropped without it keeps serving until the test ends,
    /// and `destroy` never runs.
    pub async fn shutdown(&self) -> bool {
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(server) = server else { return true };
        let drained = server.shutdown(self.grace).await;
        if let Some(context) = &self.context {
            context.stop_tasks(self.grace).await;
        }
        self.sink.destroy().await;
        self.store.close().await;
        drained
    }

    fn request(&self, method: Method, path: &str, body: Full<Bytes>) -> Request<Full<Bytes>> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = format!("http://{}{path}", self.http_addr)
            .parse()
            .unwrap_or_else(|err| panic!("path {path:?}: {err}"));
        request
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Reply {
        let what = format!("{} {}", request.method(), request.uri());
        let response = tokio::time::timeout(ANSWER_TIMEOUT, self.http.request(request))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_TIMEOUT:?}"))
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|err| panic!("{what}: the body broke off: {err}"))
            .to_bytes();
        Reply {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// A real `redis-server` on a free loopback port, for tests of a store
/// shared through Redis: started in its own temporary directory, killed
/// when dropped.
///
/// # Panics
///
/// When `redis-server` is not installed (the message says how to install
/// it), or it does not answer `PING` within 10 s.
pub struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    durable: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A Redis keeping nothing on disk.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A Redis with an append-only file fsynced on every write
    /// (`appendfsync always`), so a [`RedisServer::restart`] keeps its data.
    pub fn start_durable() -> Self {
        Self::launch(true)
    }

    fn launch(durable: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|err| panic!("cannot find a free port: {err}"));
        let dir = tempfile::tempdir()
            .unwrap_or_else(|err| panic!("cannot create a directory for redis-server: {err}"));
        let mut server = Self {
            child: None,
            port,
            durable,
            dir,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL), as a crash or a network cut would look.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (with its data, when
    /// durable), and waits for `PING`.
    pub fn restart(&mut self) {
        self.stop();
        let binary = redis_server_binary();
        let mut command = std::process::Command::new(&binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        self.child = Some(child);
        let started = std::time::Instant::now();
        while !redis_answers_ping(self.port) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_server_binary() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(Into::into))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is not installed; the tests of the Redis store start their own on a \
                 free loopback port. Install it: `sudo apt-get install -y redis-server` (Debian, \
                 Ubuntu) or `brew install redis` (macOS); `.ci/run` does this by itself"
            )
        })
}

fn redis_answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// The store `config` names (as the runtime opens it), or a fresh
/// temporary one when it names the default path (which a test must never
/// touch). With `store.redis` set, that Redis (whose own `TIME` the gates
/// follow, whatever `clock` says).
fn open_store(
    config: &StoreConfig,
    clock: Arc<dyn Clock>,
    prefix: &str,
) -> (Store, Option<tempfile::TempDir>) {
    let mut config = config.clone();
    let dir = (config.redis.is_none() && config.path == StoreConfig::default().path).then(|| {
        tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a temporary store: {err}"))
    });
    if let Some(dir) = &dir {
        config.path = dir.path().to_owned();
    }
    let store = crate::runtime::open_store_with_clock(&config, prefix, clock)
        .unwrap_or_else(|err| panic!("{err}"));
    (store, dir)
}

fn grpc_reply(status: &tonic::Status) -> Reply {
    use tonic::Code;
    let code = match status.code() {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
    };
    Reply {
        status: code,
        retry_after: status
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        body: status.message().to_owned(),
    }
}

/// Starts a CloudEvent with `id`, source `connector-sdk-test` and type
/// `test`: `event("1").data("text/plain", "hi").extension("x", "y").build()`.
pub fn event(id: impl Into<String>) -> TestEvent {
    TestEvent(
        EventBuilderV10::new()
            .id(id)
            .source("connector-sdk-test")
            .ty("test"),
    )
}

/// A CloudEvent being built for a test; see [`event`]. For attributes it
/// does not cover, use [`EventBuilderV10`] itself.
#[derive(Debug, Clone)]
pub struct TestEvent(EventBuilderV10);

impl TestEvent {
    /// Sets `source` (a URI reference).
    pub fn source(self, source: impl Into<String>) -> Self {
        Self(self.0.source(source))
    }

    /// Sets `type`.
    pub fn ty(self, ty: impl Into<String>) -> Self {
        Self(self.0.ty(ty))
    }

    /// Sets `subject`.
    pub fn subject(self, subject: impl Into<String>) -> Self {
        Self(self.0.subject(subject))
    }

    /// Sets the data and its `datacontenttype`: a `&str` or `String` is
    /// text, a `serde_json::Value` JSON, a `Vec<u8>` bytes.
    pub fn data(self, content_type: impl Into<String>, data: impl Into<Data>) -> Self {
        Self(self.0.data(content_type, data))
    }

    /// Adds an extension attribute (string, bool or i64).
    pub fn extension(self, name: &str, value: impl Into<ExtensionValue>) -> Self {
        Self(self.0.extension(name, value))
    }

    /// The event.
    ///
    /// # Panics
    ///
    /// When an attribute is invalid (an empty source).
    pub fn build(self) -> Event {
        self.0
            .build()
            .unwrap_or_else(|err| panic!("invalid test event: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxError, NoConfig, Outcome, Unavailable};
    use cloudevents::AttributesReader;

    /// Keeps what arrives and answers with what `answer` makes of the
    /// number of events.
    struct Recorder {
        answer: Box<dyn Fn(usize) -> Vec<Outcome> + Send + Sync>,
        arrived: Mutex<Vec<Event>>,
    }

    #[async_trait::async_trait]
    impl Sink for Recorder {
        type Config = NoConfig;
        fn name() -> &'static str {
            "recorder"
        }
        async fn initialize(_: NoConfig, _: Context) -> Result<Self, BoxError> {
            Ok(Self::answering(Outcome::Delivered))
        }
        async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
            let count = events.len();
            self.arrived.lock().expect("lock").extend(events);
            (self.answer)(count)
        }
    }

    impl Recorder {
        /// Answers `answer` for every event.
        fn answering(answer: Outcome) -> Self {
            Self::answering_with(move |count| answer.clone().for_each(count))
        }

        fn answering_with(answer: impl Fn(usize) -> Vec<Outcome> + Send + Sync + 'static) -> Self {
            Self {
                answer: Box::new(answer),
                arrived: Mutex::default(),
            }
        }

        fn ids(&self) -> Vec<String> {
            let arrived = self.arrived.lock().expect("lock");
            arrived.iter().map(|e| e.id().to_owned()).collect()
        }
    }

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
    async fn batches_keep_their_order() {
        let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
        let events = [event("a").build(), event("b").build()];
        let more = [event("c").build(), event("d").build()];
        assert_eq!(server.send_batch(&events).await.status, 200);
        assert_eq!(server.send_grpc(&more).await.status, 200);
        assert_eq!(server.sink().ids(), ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn a_redelivered_event_reaches_the_sink_once_whichever_door() {
        let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
        let batch = [event("a").build(), event("b").build(), event("a").build()];
        assert_eq!(server.send_grpc(&batch).await.status, 200);
        assert_eq!(server.send_batch(&batch).await.status, 200);
        assert_eq!(server.send_structured(&batch[1]).await.status, 200);
        assert_eq!(server.sink().ids(), ["a", "b"], "a repeat in one batch too");
        // Another source makes another event, even with the same id.
        let other = event("a").source("elsewhere").build();
        assert_eq!(server.send_binary(&other).await.status, 200);
        assert_eq!(server.sink().ids(), ["a", "b", "a"]);
    }

    #[tokio::test]
    async fn an_event_not_accepted_reaches_the_sink_again() {
        let server = TestServer::start(Recorder::answering(Outcome::rejected("no"))).await;
        let one = event("1").build();
        assert_eq!(server.send_structured(&one).await.status, 400);
        assert_eq!(server.send_structured(&one).await.status, 400);
        assert_eq!(server.sink().ids(), ["1", "1"]);
    }

    #[tokio::test]
    async fn an_outcome_the_sink_never_gave_is_not_a_delivery() {
        // Forgets to report outcomes: answers one for the first event only.
        let forgetful = Recorder::answering_with(|_| vec![Outcome::Delivered]);
        let server = TestServer::start(forgetful).await;
        let batch = [event("a").build(), event("b").build()];
        let reply = server.send_grpc(&batch).await;
        assert_eq!(reply.status, 503, "fail closed: {reply:?}");
        // The sender retries; only the event without an outcome comes back.
        assert_eq!(server.send_grpc(&batch).await.status, 200);
        assert_eq!(server.sink().ids(), ["a", "b", "b"]);
    }

    #[tokio::test]
    async fn a_sink_that_panicked_gets_the_redelivery() {
        let panicked = std::sync::atomic::AtomicBool::new(false);
        let panics_once = Recorder::answering_with(move |count| {
            let first = !panicked.swap(true, std::sync::atomic::Ordering::SeqCst);
            assert!(!first, "the test sink panics on its first batch");
            Outcome::Delivered.for_each(count)
        });
        let server = TestServer::start(panics_once).await;
        let one = event("1").build();
        let reply = server.send_structured(&one).await;
        assert_eq!(reply.status, 503, "not delivered: {reply:?}");
        // Its claim was released: the sink answers, not "being handled".
        let reply = server.send_structured(&one).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(server.sink().ids(), ["1", "1"]);
    }

    /// Takes a while over each batch, and says when it starts and ends.
    #[derive(Default)]
    struct Slow {
        started: tokio::sync::Notify,
        finished: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Sink for Slow {
        type Config = NoConfig;
        fn name() -> &'static str {
            "slow"
        }
        async fn initialize(_: NoConfig, _: Context) -> Result<Self, BoxError> {
            Ok(Self::default())
        }
        async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
            self.started.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.finished
                .fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
            Outcome::Delivered.for_each(events.len())
        }
    }

    #[tokio::test]
    async fn shutdown_waits_for_a_delivery_whose_sender_hung_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = format!("store:\n  path: {}\n", dir.path().display());
        let server = TestServer::<Slow>::from_yaml(&yaml).await;
        let one = event("1").build();
        tokio::select! {
            reply = server.send_grpc(std::slice::from_ref(&one)) => panic!("answered before the sink was done: {reply:?}"),
            () = server.sink().started.notified() => {}
        }
        // The call is cancelled; the sink goes on posting the event.
        assert!(server.shutdown().await);
        let finished = server
            .sink()
            .finished
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(finished, 1, "the sink finished before the store closed");

        // Its acceptance was recorded: the redelivery does not reach the sink.
        let restarted = TestServer::<Slow>::from_yaml(&yaml).await;
        assert_eq!(restarted.send_grpc(&[one]).await.status, 200);
        let finished = restarted
            .sink()
            .finished
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(finished, 0, "answered from the ledger");
        assert!(restarted.shutdown().await);
    }

    #[tokio::test]
    async fn a_store_failure_is_retry_later_without_its_detail() {
        let server = TestServer::start(Recorder::answering(Outcome::Delivered)).await;
        // A closed store fails every operation, as one out of reach does.
        server.store().close().await;
        let reply = server.send_structured(&event("1").build()).await;
        let store_error = crate::store::StoreError::Closed.to_string();
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(!reply.body.contains(&store_error), "{reply:?}");
        assert_eq!(
            reply.body,
            "the connector's store is unavailable; retry later\n"
        );
        assert!(server.sink().ids().is_empty());
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
}
