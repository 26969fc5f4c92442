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
//! replicas do. A [`ShiftedClock`] moves the store's time on
//! ([`TestServer::from_yaml_with_clock`]).
//!
//! The rooms: `server.rs` (the runtime on loopback, and its clients),
//! `event.rs` (events to send), `redis.rs` (a Redis process), `clock.rs`
//! (a store clock a test moves); [`proto`], [`decode_batch`] and
//! [`grpc_client`] for tests that put their own bytes on the wire;
//! [`process`] for tests that read a process's memory.
//!
//! This is test support: where a test cannot go on (the servers do not start,
//! the sink does not answer) the kit panics with a message saying why, as an
//! `assert!` would. It uses real sockets and real time, so it does not suit
//! tests with a paused tokio clock.

mod clock;
mod event;
pub mod grpc_client;
pub mod process;
mod redis;
mod server;

pub use clock::ShiftedClock;
pub use event::{TestEvent, event};
pub use redis::RedisServer;
pub use server::{Reply, TestServer};

pub use crate::ingest::{BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
pub use crate::runtime::ServeOptions;

use cloudevents::Event;

/// The Vanus CloudEvents protobuf types and the generated gRPC client: what
/// a Vanus trigger sends, for tests that build a `BatchEvent` themselves
/// (malformed events included) and send it with
/// [`TestServer::send_grpc_raw`] or their own client.
pub mod proto {
    pub use crate::proto::*;
}

/// What the gRPC door makes of `batch`: its events, decoded and validated as
/// `CloudEvents/Send` would, or the reason it would answer `InvalidArgument`
/// with.
pub fn decode_batch(batch: proto::BatchEvent) -> Result<Vec<Event>, String> {
    crate::ingest::decode_batch(batch).map_err(|err| err.to_string())
}
