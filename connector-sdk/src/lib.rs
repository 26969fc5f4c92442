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
//! `/healthz` and `/readyz`, and shuts down gracefully on SIGTERM.
//!
//! | Outcome | HTTP | gRPC | A Vanus trigger… |
//! |---|---|---|---|
//! | [`Outcome::Delivered`] | 200 | OK | is done |
//! | [`Outcome::Rejected`] | 400 | InvalidArgument | dead-letters the event |
//! | [`Outcome::Throttled`] | 429 + `Retry-After` | ResourceExhausted | retries with backoff |
//! | [`Outcome::Unavailable`] | 502 / 503 / 504 | Unavailable / DeadlineExceeded | retries with backoff |

mod codec;
pub mod config;
mod grpc;
mod http;
mod logging;
pub mod metrics;
mod runtime;
mod shutdown;
mod sink;
mod status;

/// The Vanus CloudEvents protobuf types and the generated gRPC client and server.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("vanus.core.cloudevents");
}

pub use async_trait::async_trait;
pub use cloudevents;
pub use cloudevents::Event;
pub use codec::{DecodeError, decode_batch, decode_event, encode_event};
pub use config::{ConfigError, ConfigProblem, RuntimeConfig, SinkConfig};
pub use http::BATCH_CONTENT_TYPE;
pub use logging::init as init_logging;
pub use runtime::{ServeOptions, Server, StartError, run, run_with_config};
pub use shutdown::signal;
pub use sink::{BoxError, Outcome, Sink, Unavailable};

/// A sink with no configuration of its own.
impl SinkConfig for () {}
