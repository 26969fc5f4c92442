//! Starts the HTTP and gRPC servers for a sink, and runs a connector process
//! from start-up to a graceful exit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::config::{self, Limits, RuntimeConfig};
use crate::connection::{self, Gate, Protocol, Settings};
use crate::dispatch::Dispatch;
use crate::ingest::{self, Admission};
use crate::ledger::Ledger;
use crate::logging;
use crate::reload::{self, Reloader};
use crate::shutdown::{self, Readiness, Trigger};
use crate::sink::{Context, Sink};
use crate::store::{self, Opened, StoreHealth};

/// The store namespace of the runtime's delivered-ledger (the sink's is
/// [`Opened::sink`]).
const LEDGER_SCOPE: &str = "ledger";

/// Where and how the servers listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// HTTP listen address; port 0 picks a free port.
    pub http: SocketAddr,
    /// gRPC listen address, or `None` for no gRPC; port 0 picks a free port.
    pub grpc: Option<SocketAddr>,
    /// What a client may hold of the servers, and for how long.
    pub limits: Limits,
    /// How long `/readyz` answers 503 before shutdown stops accepting.
    pub drain_delay: Duration,
    /// How long the delivered-ledger remembers an accepted event.
    pub ledger_ttl: Duration,
    /// How long the store may be down before `/healthz` fails too; `None`:
    /// never (`store.unhealthy_after_secs`).
    pub store_unhealthy_after: Option<Duration>,
}

impl ServeOptions {
    /// Both servers on free loopback ports, default limits: what tests want.
    #[cfg(feature = "testing")]
    pub fn loopback() -> Self {
        let any_port = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        Self {
            http: any_port,
            grpc: Some(any_port),
            limits: Limits::default(),
            drain_delay: Duration::ZERO,
            ledger_ttl: RuntimeConfig::default().ledger_ttl(),
            store_unhealthy_after: RuntimeConfig::default().store.unhealthy_after(),
        }
    }
}

impl From<&RuntimeConfig> for ServeOptions {
    fn from(config: &RuntimeConfig) -> Self {
        Self {
            http: config.http_addr(),
            grpc: config.grpc_addr(),
            limits: config.limits(),
            drain_delay: Duration::from_millis(config.drain_delay_ms),
            ledger_ttl: config.ledger_ttl(),
            store_unhealthy_after: config.store.unhealthy_after(),
        }
    }
}

/// A server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {protocol} on {addr}: {source}; is another process using the port?")]
pub(crate) struct StartError {
    protocol: &'static str,
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// The running HTTP and gRPC servers of one sink.
#[derive(Debug)]
pub(crate) struct Server {
    http_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    readiness: Readiness,
    trigger: Trigger,
    drain_delay: Duration,
    tasks: Vec<JoinHandle<()>>,
    /// The dispatch's delivery tasks (see [`Dispatch`]).
    deliveries: TaskTracker,
    ledger: Arc<Ledger>,
    /// The store's health probe.
    watch: tokio::task::AbortHandle,
    /// The metrics' upkeep (see [`crate::metrics::spawn_upkeep`]).
    upkeep: Option<tokio::task::AbortHandle>,
}

impl Server {
    /// Binds the listeners and starts serving `sink`, with the runtime's
    /// delivered-ledger kept in `store` (the runtime's own namespace in it:
    /// hand the sink [`Opened::sink`], as [`run`] does), and `store`'s
    /// health probed for `/readyz` and `/status`. Returns once both servers
    /// accept connections.
    pub(crate) async fn start<S: Sink>(
        sink: Arc<S>,
        store: &Opened,
        options: &ServeOptions,
        reload: Option<Arc<Reloader<S>>>,
    ) -> Result<Self, StartError> {
        let (http_listener, http_addr) = bind("HTTP", options.http).await?;
        let grpc_listener = match options.grpc {
            Some(addr) => Some(bind("gRPC", addr).await?),
            None => None,
        };
        // After the binds: a start that fails leaves no task behind.
        let upkeep = crate::metrics::spawn_upkeep();

        let limits = &options.limits;
        let readiness = Readiness::default();
        let trigger = Trigger::new();
        // One connection limit and one admission for both servers.
        let gate = Gate::new(limits.max_connections);
        let admission = Admission::new(limits);
        let mut tasks = Vec::with_capacity(2);

        let health = StoreHealth::default();
        let ledger = Arc::new(Ledger::new(
            store.scope(LEDGER_SCOPE),
            options.ledger_ttl,
            health.clone(),
        ));
        let deliveries = TaskTracker::new();
        let dispatch = Arc::new(Dispatch::new(sink, Arc::clone(&ledger), deliveries.clone()));
        let watch = health.watch(store.clone());
        let store_status = ingest::StoreStatus {
            backend: store.backend_name(),
            health,
            unhealthy_after: options.store_unhealthy_after,
        };
        let router = ingest::http_router(
            Arc::clone(&dispatch),
            readiness.clone(),
            store_status,
            admission.clone(),
            reload,
        );
        tasks.push(tokio::spawn(connection::serve(
            http_listener,
            router,
            Settings::new(Protocol::Http1, limits),
            gate.clone(),
            trigger.clone(),
        )));

        let grpc_addr = grpc_listener.map(|(listener, addr)| {
            let service = ingest::grpc_service(dispatch, admission, limits.max_body_bytes);
            tasks.push(tokio::spawn(connection::serve(
                listener,
                service,
                Settings::new(Protocol::Http2, limits),
                gate,
                trigger.clone(),
            )));
            addr
        });

        readiness.set(true);
        let server = Self {
            http_addr,
            grpc_addr,
            readiness,
            trigger,
            drain_delay: options.drain_delay,
            tasks,
            deliveries,
            ledger,
            watch: watch.abort_handle(),
            upkeep,
        };
        tracing::info!(http = %server.http_addr, grpc = ?server.grpc_addr, "listening");
        Ok(server)
    }

    /// The address HTTP listens on (with the real port when 0 was asked).
    #[cfg(feature = "testing")]
    pub(crate) fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address gRPC listens on, if it is on.
    #[cfg(feature = "testing")]
    pub(crate) fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Turns `/readyz` to 503, keeps serving for the drain delay, then stops
    /// accepting and waits up to `grace` for in-flight requests to finish,
    /// and for the deliveries of senders that hung up (the sink is still
    /// posting them). Returns false when some had to be cut off.
    pub(crate) async fn shutdown(self, grace: Duration) -> bool {
        self.readiness.set(false);
        tokio::time::sleep(self.drain_delay).await;
        self.trigger.fire();
        let deadline = Instant::now() + grace;
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        let drained = tokio::time::timeout_at(deadline, futures_join(self.tasks))
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                ?grace,
                "in-flight requests did not finish in time; cutting them off"
            );
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
        // A delivery settles its events in the ledger when the sink is done:
        // the sink and the store must outlive it, or an event posted now is
        // posted again after the restart.
        self.deliveries.close();
        let delivered = tokio::time::timeout_at(deadline, self.deliveries.wait())
            .await
            .is_ok();
        if !delivered {
            tracing::warn!(
                ?grace,
                deliveries = self.deliveries.len(),
                "deliveries to the sink did not finish in time; their events may be delivered again after a restart"
            );
        }
        self.ledger.flush().await;
        self.watch.abort();
        if let Some(upkeep) = &self.upkeep {
            upkeep.abort();
        }
        drained && delivered
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        // A panicked or aborted server task has nothing left to drain.
        let _ = task.await;
    }
}

async fn bind(
    protocol: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let error = |source| StartError {
        protocol,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

/// Runs the connector process for sink `S`: loads and validates the config
/// (`$CONNECTOR_CONFIG`), opens the store (`store.path`, or `store.redis`),
/// initializes the sink, serves until SIGTERM or SIGINT, drains, calls
/// [`Sink::destroy`], closes the store and exits 0. Any start-up problem is
/// printed and the exit code is 1.
///
/// The exit code is also 1 when the drain had to cut requests off (they
/// did not finish within `shutdown_timeout_secs`), and when a second
/// SIGTERM or SIGINT arrives during the drain: the process then exits at
/// once, without waiting and without [`Sink::destroy`].
///
/// ```no_run
/// # struct MySink;
/// # #[connector_sdk::async_trait]
/// # impl connector_sdk::Sink for MySink {
/// #     type Config = connector_sdk::NoConfig;
/// #     fn name() -> &'static str { "my-sink" }
/// #     async fn initialize(_: connector_sdk::NoConfig, _: connector_sdk::Context) -> Result<Self, connector_sdk::BoxError> { Ok(MySink) }
/// #     async fn arrived(&self, events: Vec<connector_sdk::Event>) -> Vec<connector_sdk::Outcome> { connector_sdk::Outcome::Delivered.for_each(events.len()) }
/// # }
/// fn main() -> std::process::ExitCode {
///     connector_sdk::run::<MySink>()
/// }
/// ```
pub fn run<S: Sink>() -> ExitCode {
    run_with_config::<S>(&config::config_path())
}

/// [`run`], with the config file given explicitly.
fn run_with_config<S: Sink>(path: &Path) -> ExitCode {
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve_until_signal::<S>(path))
}

async fn serve_until_signal<S: Sink>(path: &Path) -> ExitCode {
    let hangup = reload::hangup();
    let (loaded, text) = match config::load_with_text::<S::Config>(path) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let store = match store::open(&loaded.runtime.store, S::name()) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Before the sink: its `initialize` may describe and register metrics.
    crate::metrics::install();
    let context = Context::new(store.sink());
    let grace = loaded.runtime.shutdown_timeout();
    let sink = match S::initialize(loaded.sink, context.clone()).await {
        Ok(sink) => Arc::new(sink),
        Err(err) => {
            eprintln!("error: {} could not start: {err}", S::name());
            context.stop_tasks(grace).await;
            store.close().await;
            return ExitCode::FAILURE;
        }
    };
    let options = ServeOptions::from(&loaded.runtime);
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&sink),
        path.to_path_buf(),
        loaded.runtime.clone(),
        &text,
    ));
    let server = match Server::start(
        Arc::clone(&sink),
        &store,
        &options,
        Some(Arc::clone(&reloader)),
    )
    .await
    {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
            context.stop_tasks(grace).await;
            sink.destroy().await;
            store.close().await;
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(sink = S::name(), store = store.backend_name(), "ready");
    let watch = tokio::spawn(reload::watch(reloader, hangup));
    shutdown::signal().await;
    // No reload once the drain starts.
    watch.abort();
    let drain = async {
        let drained = server.shutdown(grace).await;
        if !context.stop_tasks(grace).await {
            tracing::warn!(
                ?grace,
                tasks = context.tasks().len(),
                "the sink's background tasks did not stop in time; what they were sending may be sent again after a restart"
            );
        }
        sink.destroy().await;
        store.close().await;
        drained
    };
    tokio::select! {
        drained = drain => {
            if drained {
                tracing::info!(sink = S::name(), "stopped");
                ExitCode::SUCCESS
            } else {
                tracing::error!(sink = S::name(), "stopped, but requests in flight were cut off at the shutdown timeout (shutdown_timeout_secs)");
                ExitCode::FAILURE
            }
        }
        () = shutdown::signal() => {
            // What the store committed stays; only the work in flight is cut.
            tracing::error!(sink = S::name(), "second signal during the drain: exiting now, cutting off requests in flight");
            ExitCode::FAILURE
        }
    }
}
