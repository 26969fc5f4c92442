//! gRPC ingest: `vanus.core.cloudevents.CloudEvents/Send`, the call a Vanus
//! trigger makes. Decodes the batch, hands it to the sink, and maps the
//! outcome with `status.rs`.

use std::sync::Arc;

use crate::codec;
use crate::metrics::RequestTimer;
use crate::proto::BatchEvent;
use crate::proto::cloud_events_server::{CloudEvents, CloudEventsServer};
use crate::sink::{Outcome, Sink};
use crate::status;

struct GrpcIngest<S> {
    sink: Arc<S>,
}

/// The tonic service for `sink`.
pub(crate) fn service<S: Sink>(sink: Arc<S>) -> CloudEventsServer<impl CloudEvents> {
    CloudEventsServer::new(GrpcIngest { sink })
}

#[tonic::async_trait]
impl<S: Sink> CloudEvents for GrpcIngest<S> {
    async fn send(
        &self,
        request: tonic::Request<BatchEvent>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        let timer = RequestTimer::start("grpc");
        let outcome = match codec::decode_batch(request.into_inner()) {
            Ok(events) => {
                timer.received("protobuf", events.len());
                self.sink.arrived(events).await
            }
            Err(err) => {
                tracing::debug!(%err, "rejected an undecodable gRPC batch");
                Outcome::rejected(err.to_string())
            }
        };
        timer.finish(&outcome);
        status::grpc_result(&outcome)
    }
}
