//! The protobuf codec of the generated gRPC service (`build.rs` names it):
//! prost's, except that a request that does not decode is the client's
//! error, `InvalidArgument`, where tonic would say `Internal`. A Vanus
//! trigger retries every gRPC error; a message that can never decode must
//! not be retried for a day.

use std::marker::PhantomData;

use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::text::{REASON_BYTES, shorten};

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
    use crate::proto::BatchEvent;

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
