//! The one place where an [`Outcome`] (or a request refused before it was
//! handled, a [`Refusal`]) becomes a status code, for HTTP and for gRPC. A
//! Vanus trigger retries 429 and 5xx, dead-letters other 4xx, and retries
//! every gRPC error; the mapping below keeps that promise.
//!
//! Every answer carries its reason, at most `REASON_BYTES` of it: a reason
//! quoting a huge value must not become a huge body or gRPC trailer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::refusal::Refusal;
use crate::sink::{Outcome, Unavailable};
use crate::text::{REASON_BYTES, shorten};

/// The HTTP status code for an outcome.
pub(crate) fn http_status(outcome: &Outcome) -> StatusCode {
    match outcome {
        Outcome::Delivered | Outcome::Queued => StatusCode::OK,
        Outcome::Rejected { .. } => StatusCode::BAD_REQUEST,
        Outcome::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        Outcome::Unavailable { kind, .. } => match kind {
            Unavailable::BadGateway => StatusCode::BAD_GATEWAY,
            Unavailable::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Unavailable::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        },
    }
}

/// The full HTTP answer: status, a one-line plain-text reason, and
/// `Retry-After` (whole seconds, rounded up) when throttled.
pub(crate) fn http_response(outcome: &Outcome) -> Response {
    // The common answers: a static body, nothing to format.
    match outcome {
        Outcome::Delivered => return (StatusCode::OK, "delivered\n").into_response(),
        Outcome::Queued => return (StatusCode::OK, "queued\n").into_response(),
        _ => {}
    }
    let reason = shorten(outcome.reason(), REASON_BYTES);
    let mut response = (http_status(outcome), format!("{reason}\n")).into_response();
    if let Outcome::Throttled { retry_after, .. } = outcome {
        let seconds = retry_after_seconds(*retry_after);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The gRPC answer for an outcome.
pub(crate) fn grpc_result(outcome: &Outcome) -> Result<tonic::Response<()>, tonic::Status> {
    // Only a failure carries a reason: success allocates nothing.
    let reason = || shorten(outcome.reason(), REASON_BYTES).into_owned();
    match outcome {
        Outcome::Delivered | Outcome::Queued => Ok(tonic::Response::new(())),
        Outcome::Rejected { .. } => Err(tonic::Status::invalid_argument(reason())),
        Outcome::Throttled { retry_after, .. } => {
            let mut status = tonic::Status::resource_exhausted(reason());
            // gRPC has no standard Retry-After; expose it as metadata too.
            status.metadata_mut().insert(
                "retry-after",
                tonic::metadata::MetadataValue::from(retry_after_seconds(*retry_after)),
            );
            Err(status)
        }
        Outcome::Unavailable { kind, .. } => Err(match kind {
            Unavailable::GatewayTimeout => tonic::Status::deadline_exceeded(reason()),
            Unavailable::BadGateway | Unavailable::ServiceUnavailable => {
                tonic::Status::unavailable(reason())
            }
        }),
    }
}

/// The HTTP answer to a refused request: 413 for a body that is too large,
/// 408 for one that was too slow (both close the connection: the rest of
/// the body is not read), 503 when there is no room, 400 for a broken body.
pub(crate) fn http_refusal(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::TooLarge { .. } | Refusal::TooLargeDecoded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
        Refusal::OverCapacity { .. } | Refusal::OverBudget { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Refusal::BrokenBody { .. } | Refusal::Malformed { .. } => StatusCode::BAD_REQUEST,
    };
    let mut response = (status, format!("{}\n", refusal.reason())).into_response();
    if matches!(
        refusal,
        Refusal::TooLarge { .. } | Refusal::SlowBody { .. } | Refusal::BrokenBody { .. }
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The gRPC answer to a refused call: `Unavailable` when there is no room
/// (retry later), `DeadlineExceeded` for a message too slow to arrive,
/// `InvalidArgument` for one that is too large or not one message.
pub(crate) fn grpc_refusal(refusal: &Refusal) -> tonic::Status {
    let reason = refusal.reason();
    match refusal {
        Refusal::OverCapacity { .. } | Refusal::OverBudget { .. } => {
            tonic::Status::unavailable(reason)
        }
        Refusal::SlowBody { .. } => tonic::Status::deadline_exceeded(reason),
        Refusal::TooLarge { .. }
        | Refusal::TooLargeDecoded { .. }
        | Refusal::BrokenBody { .. }
        | Refusal::Malformed { .. } => tonic::Status::invalid_argument(reason),
    }
}

/// Seconds for `Retry-After`: rounded up, at least 1, so a client never
/// retries immediately into the same wall.
fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_outcome_has_its_http_status() {
        assert_eq!(http_status(&Outcome::Delivered), StatusCode::OK);
        assert_eq!(http_status(&Outcome::Queued), StatusCode::OK);
        assert_eq!(
            http_status(&Outcome::rejected("x")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(&Outcome::throttled(Duration::from_secs(1), "x")),
            StatusCode::TOO_MANY_REQUESTS
        );
        for (kind, code) in [
            (Unavailable::BadGateway, StatusCode::BAD_GATEWAY),
            (
                Unavailable::ServiceUnavailable,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (Unavailable::GatewayTimeout, StatusCode::GATEWAY_TIMEOUT),
        ] {
            assert_eq!(http_status(&Outcome::unavailable(kind, "x")), code);
        }
    }

    #[test]
    fn throttled_answer_carries_retry_after_rounded_up() {
        let response = http_response(&Outcome::throttled(Duration::from_millis(2_100), "slow"));
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let response = http_response(&Outcome::throttled(Duration::ZERO, "slow"));
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_huge_reason_is_shortened_in_every_answer() {
        let huge = Outcome::rejected(format!(
            "xvmsgtype `{}` is not supported",
            "x".repeat(1_000_000)
        ));
        let response = http_response(&huge);
        let length = http_body::Body::size_hint(response.body()).exact();
        assert!(
            length.is_some_and(|n| n <= REASON_BYTES as u64 + 64),
            "{length:?}"
        );
        let status = grpc_result(&huge).expect_err("rejected");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() <= REASON_BYTES + 64);
        assert!(status.message().ends_with("more bytes)"), "says it was cut");
    }

    #[test]
    fn refusals_have_their_codes() {
        use std::time::Duration;
        let cases = [
            (
                Refusal::TooLarge { limit: 1 },
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::InvalidArgument,
            ),
            (
                Refusal::SlowBody {
                    timeout: Duration::from_secs(1),
                },
                StatusCode::REQUEST_TIMEOUT,
                tonic::Code::DeadlineExceeded,
            ),
            (
                Refusal::OverCapacity { max_in_flight: 1 },
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
            ),
            (
                Refusal::OverBudget { budget: 1 },
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
            ),
            (
                Refusal::Malformed { reason: "x".into() },
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
            ),
        ];
        for (refusal, http, grpc) in cases {
            assert_eq!(http_refusal(&refusal).status(), http, "{refusal:?}");
            assert_eq!(grpc_refusal(&refusal).code(), grpc, "{refusal:?}");
        }
        let slow = http_refusal(&Refusal::SlowBody {
            timeout: Duration::from_secs(1),
        });
        assert_eq!(slow.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn grpc_codes_match_the_outcome() {
        use tonic::Code;
        let code = |o: Outcome| grpc_result(&o).err().map(|s| s.code());
        assert_eq!(code(Outcome::Delivered), None);
        assert_eq!(code(Outcome::Queued), None);
        assert_eq!(code(Outcome::rejected("x")), Some(Code::InvalidArgument));
        assert_eq!(
            code(Outcome::throttled(Duration::from_secs(1), "x")),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(
            code(Outcome::unavailable(Unavailable::ServiceUnavailable, "x")),
            Some(Code::Unavailable)
        );
        assert_eq!(
            code(Outcome::unavailable(Unavailable::GatewayTimeout, "x")),
            Some(Code::DeadlineExceeded)
        );
    }
}
