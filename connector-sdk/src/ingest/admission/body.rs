//! Reading a request's body within admission's limits: the whole body of
//! an HTTP request, or the one length-prefixed message of a unary gRPC
//! call; at most `max_body_bytes`, within `body_read_timeout`, each byte
//! reserved in the memory budget (on the request's [`Ticket`]) before it is
//! kept. A gRPC message's length is reserved from its prefix, before the
//! message itself is read.

use std::pin::{Pin, pin};

use axum::body::Bytes;
use bytes::BytesMut;
use http_body::Body;
use http_body_util::BodyExt;

use super::{Admission, Ticket};
use crate::ingest::refusal::Refusal;

/// The length of a gRPC message prefix: a compression flag and a 4-byte length.
const GRPC_PREFIX: usize = 5;

impl Admission {
    /// Reads a whole body, at most `max_body_bytes`, within the body read
    /// timeout, growing `ticket`'s reservation for what was not declared.
    pub(crate) async fn read_body<B>(&self, ticket: &mut Ticket, body: B) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let limit = self.0.max_body_bytes;
        let read = async {
            let mut body = pin!(body);
            let mut buffer = BytesMut::with_capacity(ticket.reserved);
            while let Some(data) = next_data(&mut body).await? {
                let total = buffer.len() + data.len();
                if total > limit {
                    return Err(Refusal::TooLarge { limit });
                }
                ticket.cover(total)?;
                buffer.extend_from_slice(&data);
            }
            Ok(buffer.freeze())
        };
        self.within_read_timeout(read).await
    }

    /// Reads the one length-prefixed message of a unary gRPC request body:
    /// the length in its prefix is checked and reserved before the message
    /// is read, so decoding never starts on a request that cannot be
    /// admitted. Returns the prefix and the message, as tonic reads them.
    pub(crate) async fn read_grpc_message<B>(
        &self,
        ticket: &mut Ticket,
        body: B,
    ) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let limit = self.0.max_body_bytes;
        let read = async {
            let mut body = pin!(body);
            let mut buffer = BytesMut::with_capacity(GRPC_PREFIX);
            let mut whole: Option<usize> = None;
            while let Some(data) = next_data(&mut body).await? {
                let total = buffer.len() + data.len();
                if whole.is_none() && total >= GRPC_PREFIX {
                    let prefix: Vec<u8> = buffer
                        .iter()
                        .chain(&data)
                        .take(GRPC_PREFIX)
                        .copied()
                        .collect();
                    let length = GRPC_PREFIX + grpc_message_length(&prefix, limit)?;
                    ticket.cover(length)?;
                    buffer.reserve(length.saturating_sub(buffer.len()));
                    whole = Some(length);
                }
                match whole {
                    Some(whole) if total > whole => {
                        return Err(malformed(format!(
                            "more than one message, or bytes after it ({total} bytes sent for a {whole}-byte message)"
                        )));
                    }
                    Some(_) => {}
                    None => ticket.cover(total)?,
                }
                buffer.extend_from_slice(&data);
                if whole == Some(buffer.len()) {
                    // The whole message: a unary call carries no more.
                    return Ok(buffer.freeze());
                }
            }
            Err(malformed(match whole {
                None if buffer.is_empty() => "the request has no message".to_owned(),
                None => "the request ended inside the 5-byte message prefix".to_owned(),
                Some(whole) => format!(
                    "the request ended after {} of the message's {whole} bytes",
                    buffer.len()
                ),
            }))
        };
        self.within_read_timeout(read).await
    }

    async fn within_read_timeout(
        &self,
        read: impl Future<Output = Result<Bytes, Refusal>>,
    ) -> Result<Bytes, Refusal> {
        let timeout = self.0.body_read_timeout;
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(Refusal::SlowBody { timeout }))
    }
}

/// The next data frame of a body (trailers skipped); `None` at its end.
async fn next_data<B>(body: &mut Pin<&mut B>) -> Result<Option<Bytes>, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| broken(&err))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The length a gRPC message prefix declares, when the message may be read.
fn grpc_message_length(prefix: &[u8], limit: usize) -> Result<usize, Refusal> {
    let [flag, a, b, c, d] = prefix else {
        return Err(malformed("a message prefix is 5 bytes".to_owned()));
    };
    if *flag > 1 {
        return Err(malformed(format!(
            "the compression flag is {flag}; it must be 0 or 1"
        )));
    }
    let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if length > limit {
        return Err(Refusal::TooLarge { limit });
    }
    Ok(length)
}

fn broken(err: &impl std::fmt::Display) -> Refusal {
    Refusal::BrokenBody {
        reason: err.to_string(),
    }
}

fn malformed(reason: String) -> Refusal {
    Refusal::Malformed { reason }
}
