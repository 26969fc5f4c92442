//! # connector-sdk
//!
//! Write a [Vanus Connect](https://github.com/vanus-labs) sink in Rust: implement
//! one trait, [`Sink`], and call one function, [`run`].
//!
//! The runtime loads the YAML config (`$CONNECTOR_CONFIG`, default
//! `/vanus-connect/config/config.yml`), serves CloudEvents over HTTP
//! (structured, binary and batch mode on `POST /`) and over gRPC
//! (`vanus.core.cloudevents.CloudEvents/Send`, what Vanus triggers push),
//! turns each [`Outcome`] into the status code a sender acts on, answers
//! `/healthz`, `/readyz`, `/metrics` and `/status`, and shuts down gracefully
//! on SIGTERM. It bounds what any client may hold of it ([`config::Limits`]:
//! connections, time, request and header sizes, one memory budget for the
//! bodies and what they decode into), and validates every event by one
//! rule, whichever way it came, before a sink sees it.
//!
//! | Outcome | HTTP | gRPC | A Vanus trigger… |
//! |---|---|---|---|
//! | [`Outcome::Delivered`] | 200 `delivered` | OK | is done |
//! | [`Outcome::Queued`] | 200 `queued` | OK | is done (durably queued, sent later) |
//! | [`Outcome::Rejected`] | 400 | InvalidArgument | dead-letters the event |
//! | [`Outcome::Throttled`] | 429 + `Retry-After` | ResourceExhausted | retries with backoff |
//! | [`Outcome::Unavailable`] | 502 / 503 / 504 | Unavailable / DeadlineExceeded | retries with backoff |
//!
//! ## Write a sink
//!
//! 1. Declare the sink's own config: a serde type for the keys it adds to the
//!    config file, implementing [`SinkConfig`] (override
//!    [`SinkConfig::validate`] for checks serde cannot make). The runtime's
//!    keys (`port`, `grpc_port`, ...) are not part of it. Use [`NoConfig`]
//!    for none.
//! 2. Implement [`Sink`]: [`Sink::initialize`] builds the sink from that
//!    config and a [`Context`] (the store), [`Sink::arrived`] handles each
//!    request's events and answers with an [`Outcome`] per event,
//!    [`Sink::destroy`] cleans up after the last request.
//! 3. Call [`run`] from `main`.
//!
//! ```no_run
//! use connector_sdk::{BoxError, Context, Event, Outcome, Sink, SinkConfig, async_trait};
//!
//! /// `greeting: hello` in config.yml.
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     greeting: String,
//! }
//!
//! impl SinkConfig for Config {}
//!
//! struct PrintSink {
//!     greeting: String,
//! }
//!
//! #[async_trait]
//! impl Sink for PrintSink {
//!     type Config = Config;
//!
//!     fn name() -> &'static str {
//!         "sink-print"
//!     }
//!
//!     async fn initialize(config: Config, _: Context) -> Result<Self, BoxError> {
//!         Ok(PrintSink { greeting: config.greeting })
//!     }
//!
//!     async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
//!         for event in &events {
//!             println!("{}: {event}", self.greeting);
//!         }
//!         Outcome::Delivered.for_each(events.len())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     connector_sdk::run::<PrintSink>()
//! }
//! ```
//!
//! Run it with `CONNECTOR_CONFIG=config.yml` pointing at a file holding
//! `greeting: hello` (and `grpc_port: 8081` to turn gRPC on).
//!
//! ## Redeliveries and state
//!
//! A Vanus trigger redelivers whole batches. The runtime keeps a
//! delivered-ledger: every event a sink answered [`Outcome::Delivered`] or
//! [`Outcome::Queued`] is remembered by its `source` and `id` for
//! `ledger_ttl_secs` (a day by default), and a redelivery of it is answered
//! 200 without calling the sink again. So a sink sees each event at most
//! once, and `Delivered` must mean "it reached its destination", `Queued`
//! "it is durably queued for it".
//!
//! The ledger lives in the connector's [`store`] (`store.path`, an embedded
//! database), and the sink gets its own part of the same store in
//! [`Context::store`]: records with expiry, durable bounded queues, and
//! send gates (an atomic "may I send now?" over a sliding window) that
//! survive restarts. `examples/jsonl_sink.rs` paces its writes with a gate.
//!
//! ## Test a sink
//!
//! With the `testing` feature (enable it on the dev-dependency), the
//! `connector_sdk::testing` module runs a sink on the real runtime on free
//! loopback ports inside a test and sends it events over HTTP and gRPC, one
//! call each, returning the status code a sender would see. The crate's
//! `examples/jsonl_sink.rs` is a complete sink with such a test.
//!
//! ```toml
//! [dev-dependencies]
//! connector-sdk = { version = "0.1", features = ["testing"] }
//! ```

#![warn(missing_docs)]

pub mod config;
mod connection;
pub mod deliver;
mod dispatch;
mod ingest;
mod ledger;
mod logging;
mod metrics;
mod proto;
mod reload;
mod runtime;
mod shutdown;
mod sink;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod text;

/// `#[async_trait]`, for `impl Sink for ...`: its methods are async.
pub use async_trait::async_trait;
/// The CloudEvents SDK the events come in: attribute readers
/// (`AttributesReader`), `Data`, extension values, event builders.
pub use cloudevents;
/// One CloudEvent, as [`Sink::arrived`] gets it.
pub use cloudevents::Event;
/// Why the config file was refused: every problem, with its key path.
pub use config::ConfigError;
/// One problem with a config value, at its key path.
pub use config::ConfigProblem;
/// The config of a sink that has no keys of its own.
pub use config::NoConfig;
/// The trait of a sink's own config type.
pub use config::SinkConfig;
/// Whether a `datacontenttype` says the data is JSON.
pub use ingest::is_json_content_type;
/// Logging as [`run`] sets it up (`LOG_LEVEL`), for a sink's own command-line tools.
pub use logging::init as init_logging;
/// A metric's handles by label values, registered once: for a sink's
/// per-event metrics.
pub use metrics::Memo;
/// Runs the connector process: what a sink's `main` calls.
pub use runtime::run;
/// What [`Sink::initialize`] may fail with.
pub use sink::BoxError;
/// What the runtime hands a sink at start-up, beside its config.
pub use sink::Context;
/// What happened to one event: the sink's answer, which becomes the status code.
pub use sink::Outcome;
/// The trait a sink implements.
pub use sink::Sink;
/// The kinds of [`Outcome::Unavailable`], named after their status codes.
pub use sink::Unavailable;
/// The sink's namespace of the connector's store.
pub use store::Store;
/// Why a store operation failed: the sink answers "retry later".
pub use store::StoreError;
/// Text shortened to echo safely in an answer or a log line.
pub use text::shorten;
/// Cancelled when the connector shuts down: see [`Context::shutdown`].
pub use tokio_util::sync::CancellationToken;
/// Where a sink spawns its background tasks: see [`Context::tasks`].
pub use tokio_util::task::TaskTracker;
