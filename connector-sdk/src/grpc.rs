//! gRPC ingest: `vanus.core.cloudevents.CloudEvents/Send`, the call a Vanus
//! trigger makes. A thin door like HTTP's: admit, decode, hand the batch to
//! the dispatch (the delivered-ledger, then the sink), map the outcome with
//! `status.rs`.
//!
//! Admission comes before decoding ([`Admit`]): the message's length prefix
//! is checked and reserved in the memory budget, the whole message read
//! within the body read timeout, and what it will decode into reserved too,
//! before tonic decodes a byte. A request that
//! is not a valid `BatchEvent` (random bytes, invalid UTF-8 in a string) is
//! `InvalidArgument`, like any other request that can never succeed
//! ([`ProtoCodec`]).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::admission::{Admission, Refusal};
use crate::dispatch::Dispatch;
use crate::metrics::RequestTimer;
use crate::proto::BatchEvent;
use crate::proto::cloud_events_server::{CloudEvents, CloudEventsServer};
use crate::sink::{Outcome, Sink};
use crate::status;
use crate::text::{REASON_BYTES, shorten};
use crate::{codec, decoded};

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
        status::grpc_result(&outcome)
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
                    return Ok(status::grpc_refusal(&refusal).into_http());
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

/// The protobuf codec of the generated service (`build.rs` names it):
/// prost's, except that a message that does not decode is the client's
/// error, `InvalidArgument`, where tonic says `Internal`.
#[derive(Debug)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

/// Decodes one protobuf message; see [`ProtoCodec`].
#[derive(Debug)]
pub struct ProtoDecoder<U>(PhantomData<U>);

impl<U: prost::Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, tonic::Status> {
        decode_message(buf).map(Some)
    }
}

fn decode_message<U: prost::Message + Default>(buf: impl bytes::Buf) -> Result<U, tonic::Status> {
    U::decode(buf).map_err(|err| {
        let reason = format!("the request is not a valid protobuf message: {err}");
        tonic::Status::invalid_argument(shorten(&reason, REASON_BYTES))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<BatchEvent>, tonic::Status> {
        decode_message(bytes).map(Some)
    }

    #[test]
    fn undecodable_bytes_are_invalid_argument() {
        // Field 1 (eventbus_name) as a string that is not UTF-8.
        let err = decode(&[0x0a, 0x02, 0xff, 0xfe]).expect_err("invalid UTF-8");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("not a valid protobuf"), "{err:?}");
        let err = decode(&[0xff; 16]).expect_err("garbage");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_valid_batch_decodes() {
        use prost::Message;
        let batch = BatchEvent {
            eventbus_name: "bus".into(),
            ..BatchEvent::default()
        };
        let decoded = decode(&batch.encode_to_vec()).expect("valid");
        assert_eq!(decoded, Some(batch));
    }
}
