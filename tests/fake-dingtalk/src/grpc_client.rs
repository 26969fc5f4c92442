//! What a raw gRPC client (over h2, no tonic) needs to speak to the
//! connector's `CloudEvents/Send`: the request head. Shared by the hostile
//! tests and the bench's attacks, which send what tonic never would.

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
