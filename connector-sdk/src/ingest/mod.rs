//! The two doors into a sink: HTTP (`POST /`, structured, binary and batch
//! mode) and gRPC (`CloudEvents/Send`, what a Vanus trigger calls). Both are
//! thin and take the same steps, in the same order:
//!
//! 1. admit the request and read its body within the limits
//!    (`admission/`), reserving what it will decode into (`decoded.rs`);
//!    or refuse it at once (`refusal.rs`);
//! 2. decode it (`http.rs` for the HTTP encodings, `codec.rs` for
//!    protobuf) and hold every event to one rule (`validate.rs`); or
//!    reject it with a `DecodeError` (`error.rs`);
//! 3. hand the events to the dispatch (the delivered-ledger, then
//!    `Sink::arrived`);
//! 4. answer: the outcome (or the refusal) becomes a status code in one
//!    place (`answer.rs`).
//!
//! Nothing here knows what the sink does with the events. The HTTP port
//! also answers the probes (`/healthz`, `/readyz`, `/metrics`, `/status`),
//! in `http.rs` beside `POST /`.

mod admission;
mod answer;
mod codec;
mod decoded;
mod error;
mod grpc;
mod http;
#[cfg(test)]
mod proptests;
mod refusal;
mod validate;

pub(crate) use admission::Admission;
pub use codec::is_json_content_type;
#[cfg(feature = "testing")]
pub(crate) use codec::{decode_batch, encode_event};
pub(crate) use grpc::service as grpc_service;
#[cfg(feature = "testing")]
pub use http::{BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
pub(crate) use http::{Peer, StoreStatus, router as http_router};
pub(crate) use refusal::Refusal;
