//! The one place where an [`Outcome`] becomes a status code, for HTTP and for
//! gRPC. A Vanus trigger retries 429 and 5xx, dead-letters other 4xx, and
//! retries every gRPC error; the mapping below keeps that promise.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::sink::{Outcome, Unavailable};

/// The HTTP status code for an outcome.
pub fn http_status(outcome: &Outcome) -> StatusCode {
    match outcome {
        Outcome::Delivered => StatusCode::OK,
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
pub fn http_response(outcome: &Outcome) -> Response {
    if let Outcome::Delivered = outcome {
        // The common answer: a static body, nothing to format.
        return (StatusCode::OK, "delivered\n").into_response();
    }
    let mut response = (http_status(outcome), format!("{}\n", outcome.reason())).into_response();
    if let Outcome::Throttled { retry_after, .. } = outcome {
        let seconds = retry_after_seconds(*retry_after);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The gRPC answer for an outcome.
pub fn grpc_result(outcome: &Outcome) -> Result<tonic::Response<()>, tonic::Status> {
    let reason = outcome.reason();
    match outcome {
        Outcome::Delivered => Ok(tonic::Response::new(())),
        Outcome::Rejected { .. } => Err(tonic::Status::invalid_argument(reason)),
        Outcome::Throttled { retry_after, .. } => {
            let mut status = tonic::Status::resource_exhausted(reason);
            // gRPC has no standard Retry-After; expose it as metadata too.
            status.metadata_mut().insert(
                "retry-after",
                tonic::metadata::MetadataValue::from(retry_after_seconds(*retry_after)),
            );
            Err(status)
        }
        Outcome::Unavailable { kind, .. } => Err(match kind {
            Unavailable::GatewayTimeout => tonic::Status::deadline_exceeded(reason),
            Unavailable::BadGateway | Unavailable::ServiceUnavailable => {
                tonic::Status::unavailable(reason)
            }
        }),
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
    fn grpc_codes_match_the_outcome() {
        use tonic::Code;
        let code = |o: Outcome| grpc_result(&o).err().map(|s| s.code());
        assert_eq!(code(Outcome::Delivered), None);
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
