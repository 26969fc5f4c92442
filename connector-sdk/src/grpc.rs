//! gRPC ingest: `vanus.core.cloudevents.CloudEvents/Send`, the call a Vanus
//! trigger makes. Decodes the batch, hands it to the dispatch (the
//! delivered-ledger, then the sink), and maps the
//! outcome with `status.rs`.

use std::sync::Arc;

use crate::admission::Admission;
use crate::codec;
use crate::dispatch::Dispatch;
use crate::metrics::RequestTimer;
use crate::proto::BatchEvent;
use crate::proto::cloud_events_server::{CloudEvents, CloudEventsServer};
use crate::sink::{Outcome, Sink};
use crate::status;

struct GrpcIngest<S> {
    dispatch: Arc<Dispatch<S>>,
    admission: Admission,
}

/// The tonic service for `sink`; requests past `admission`'s bound are
/// answered `Unavailable` at once.
pub(crate) fn service<S: Sink>(
    dispatch: Arc<Dispatch<S>>,
    admission: Admission,
) -> CloudEventsServer<impl CloudEvents> {
    CloudEventsServer::new(GrpcIngest {
        dispatch,
        admission,
    })
}

#[tonic::async_trait]
impl<S: Sink> CloudEvents for GrpcIngest<S> {
    async fn send(
        &self,
        request: tonic::Request<BatchEvent>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        let timer = RequestTimer::start("grpc");
        let _permit = match self.admission.admit() {
            Ok(permit) => permit,
            Err(outcome) => {
                timer.finish(&outcome);
                return status::grpc_result(&outcome);
            }
        };
        let outcome = match codec::decode_batch(request.into_inner()) {
            Ok(events) => {
                timer.received("protobuf", events.len());
                self.dispatch.deliver(events).await
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
