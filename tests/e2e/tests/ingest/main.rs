//! Ingest, end to end: the two doors a Vanus trigger uses, HTTP
//! (structured, binary, batch) and gRPC `CloudEvents/Send`, against the fake
//! DingTalk.

#[path = "../common/mod.rs"]
mod common;

mod grpc;
mod http;
