//! What a raw gRPC client (over h2, no tonic) needs to speak to the
//! connector's `CloudEvents/Send`: the request head. For tests that send
//! what tonic never would (the SDK's hostile tests, the DingTalk bench's
//! attacks): a message declared and never finished, bytes that are no
//! protobuf.

use axum::http::Request;

/// The head of a `vanus.core.cloudevents.CloudEvents/Send` call.
pub fn send_request() -> Request<()> {
    Request::builder()
        .method("POST")
        .uri("http://sink/vanus.core.cloudevents.CloudEvents/Send")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        // Every part above is a valid constant: the builder cannot fail.
        .unwrap_or_default()
}
