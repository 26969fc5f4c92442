//! gRPC ingest: `vanus.core.cloudevents.CloudEvents/Send`, the call a Vanus
//! trigger makes. A thin door like HTTP's: admit, decode (`codec.rs`), hand
//! the batch to the dispatch (the delivered-ledger, then the sink), map the
//! outcome with `answer.rs`.
//!
//! Admission comes before decoding ([`Admit`]): the message's length prefix
//! is checked and reserved in the memory budget, the whole message read
//! within the body read timeout, and what it will decode into reserved too,
//! before tonic decodes a byte. A request that
//! is not a valid `BatchEvent` (random bytes, invalid UTF-8 in a string) is
//! `InvalidArgument`, like any other request that can never succeed (the
//! service's codec, `proto/codec.rs`, says so).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::admission::Admission;
use super::refusal::Refusal;
use super::{answer, codec, decoded};
use crate::dispatch::Dispatch;
use crate::metrics::RequestTimer;
use crate::proto::BatchEvent;
use crate::proto::cloud_events_server::{CloudEvents, CloudEventsServer};
use crate::sink::{Outcome, Sink};
use crate::text::{REASON_BYTES, shorten};

struct GrpcIngest<S> {
    dispatch: Arc<Dispatch<S>>,
}

/// The gRPC routes for the sink behind `dispatch`, behind admission: what
/// the gRPC port serves.
pub(crate) fn service<S: Sink>(
    dispatch: Arc<Dispatch<S>>,
    admission: Admission,
    max_message_bytes: usize,
) -> Admit<tonic::service::Routes> {
    let server = CloudEventsServer::new(GrpcIngest { dispatch })
        // A backstop: `Admit` has already refused anything larger.
        .max_decoding_message_size(max_message_bytes.saturating_add(5));
    Admit {
        inner: tonic::service::Routes::new(server),
        admission,
    }
}

#[tonic::async_trait]
impl<S: Sink> CloudEvents for GrpcIngest<S> {
    async fn send(
        &self,
        mut request: tonic::Request<BatchEvent>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        // `Admit` started it when the call arrived (taken, not cloned); a
        // call that did not come through `Admit` is timed from here.
        let timer = request
            .extensions_mut()
            .remove::<RequestTimer>()
            .unwrap_or_else(|| RequestTimer::start("grpc"));
        let outcome = match codec::decode_batch(request.into_inner()) {
            Ok(events) => {
                timer.received("protobuf", events.len());
                self.dispatch.deliver(events).await
            }
            Err(err) => {
                let reason = err.to_string();
                tracing::debug!(reason = %shorten(&reason, REASON_BYTES), "rejected an invalid gRPC batch");
                Outcome::rejected(reason)
            }
        };
        timer.finish(&outcome);
        answer::grpc_result(&outcome)
    }
}

/// Admission in front of the gRPC routes: a slot, the message's length in
/// the memory budget, the whole message within the body read timeout; or a
/// refusal, before anything is decoded. The slot and the memory are held
/// until the call is answered.
#[derive(Debug, Clone)]
pub(crate) struct Admit<S> {
    inner: S,
    admission: Admission,
}

impl<S> tower_service::Service<Request<Incoming>> for Admit<S>
where
    S: tower_service::Service<
            Request<tonic::body::Body>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is decided per call, by admission.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let admission = self.admission.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let timer = RequestTimer::start("grpc");
            let (mut parts, body) = request.into_parts();
            let admitted = async {
                let mut ticket = admission.admit(None)?;
                let message = admission.read_grpc_message(&mut ticket, body).await?;
                // What prost and the codec will make of it, before they do.
                let unframed = message.get(5..).unwrap_or_default();
                ticket.charge_decoded(decoded::batch(unframed).unwrap_or(message.len()))?;
                Ok::<_, Refusal>((ticket, message))
            };
            let (ticket, message) = match admitted.await {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    timer.refused(&refusal);
                    return Ok(answer::grpc_refusal(&refusal).into_http());
                }
            };
            parts.extensions.insert(timer);
            let request = Request::from_parts(parts, tonic::body::Body::new(Full::new(message)));
            let answer = tower_service::Service::call(&mut inner, request).await;
            drop(ticket);
            answer
        })
    }
}
