//! The Vanus CloudEvents protobuf types (`proto/cloudevents.proto`, compiled
//! by `build.rs`), the gRPC client and server generated from them, and the
//! codec the server decodes requests with (`codec.rs`).
//!
//! The server is the gRPC door's (`ingest/grpc.rs`). The types and the
//! client are also what tests and the bench send with, as
//! `connector_sdk::testing::proto`.

mod codec;

pub(crate) use codec::ProtoCodec;
pub use generated::*;

/// What `tonic-prost-build` generates, as it generates it. The client has
/// no user in the runtime: tests and the bench (feature `testing`) call it.
#[allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("vanus.core.cloudevents");
}
