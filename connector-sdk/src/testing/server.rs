//! The test server: a sink on the real runtime, HTTP and gRPC on free
//! loopback ports, its own store, and a client for each door that returns
//! what a sender would see ([`Reply`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use cloudevents::{AttributesReader, Event};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::transport::{Channel, Endpoint};

use crate::config::{self, RuntimeConfig};
use crate::ingest::{BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE, encode_event};
use crate::proto::cloud_events_client::CloudEventsClient;
use crate::proto::{BatchEvent, CloudEventBatch};
use crate::runtime::{ServeOptions, Server};
use crate::sink::{Context, Sink};
use crate::store::{self, Clock, Opened, Store, StoreConfig, SystemClock};

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
    store: Opened,
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
    /// `clock`: a [`ShiftedClock`](super::ShiftedClock) lets a test move the store's gates and
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
        let context = Context::new(store.sink());
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
        (store, store_dir): (Opened, Option<tempfile::TempDir>),
        context: Option<Context>,
        options: &ServeOptions,
        grace: Duration,
    ) -> Self {
        let server = Server::start(Arc::clone(&sink), &store, options, None)
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
        self.store.sink()
    }

    /// Closes the server's store while the server goes on serving: every
    /// store operation fails from then on, as with a store out of reach, so
    /// a test sees what senders are answered then.
    pub async fn close_store(&self) {
        self.store.close().await;
    }

    /// Makes every write of the server's embedded store fail, as on a full
    /// disk, while `failing` (reads go on): the store fails its next write,
    /// closes its database and reopens it by itself once writes work again.
    ///
    /// # Panics
    ///
    /// When the store is not the embedded one (`store.redis` is set).
    pub fn fail_store_writes(&self, failing: bool) {
        assert!(
            self.store.fail_writes(failing),
            "only the embedded store's writes can be made to fail"
        );
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

    /// Sends protobuf `events` in one `CloudEvents/Send` as a Vanus trigger
    /// does (its eventbus id set), and returns tonic's answer.
    ///
    /// # Panics
    ///
    /// When gRPC is off, or the sink does not answer.
    pub async fn send_grpc_events(
        &self,
        events: Vec<crate::proto::CloudEvent>,
    ) -> Result<(), tonic::Status> {
        let batch = BatchEvent {
            eventbus_name: String::new(),
            eventbus_id: 7,
            events: Some(CloudEventBatch { events }),
        };
        self.send_grpc_raw(batch).await
    }

    /// GETs `path` until it answers `status`, a bounded number of times
    /// (300, 50 ms apart): whether it did, and the last answer's body (or
    /// the whole last reply when it never did).
    pub async fn wait_for_status(&self, path: &str, status: u16) -> (bool, String) {
        let mut last = String::new();
        for _ in 0..300 {
            let reply = self.get(path).await;
            if reply.status == status {
                return (true, reply.body);
            }
            last = format!("{reply:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (false, last)
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

/// The store `config` names (as the runtime opens it), or a fresh
/// temporary one when it names the default path (which a test must never
/// touch). With `store.redis` set, that Redis (whose own `TIME` the gates
/// follow, whatever `clock` says).
fn open_store(
    config: &StoreConfig,
    clock: Arc<dyn Clock>,
    prefix: &str,
) -> (Opened, Option<tempfile::TempDir>) {
    let mut config = config.clone();
    let dir = (config.redis.is_none() && config.path == StoreConfig::default().path).then(|| {
        tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a temporary store: {err}"))
    });
    if let Some(dir) = &dir {
        config.path = dir.path().to_owned();
    }
    let store =
        store::open_with_clock(&config, prefix, clock).unwrap_or_else(|err| panic!("{err}"));
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
