//! Why a door refused a request before handling it (admission's answer):
//! no slot, no room in the memory budget, a body too large, too slow, broken
//! or not one gRPC message. `answer.rs` turns it into the status code, and
//! the metrics count it by [`Refusal::kind`] and [`Refusal::class`].

use std::time::Duration;

/// Why a request was refused before it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The declared or actual body is over `max_body_bytes`.
    TooLarge { limit: usize },
    /// The body and what it decodes into could never fit the memory budget.
    TooLargeDecoded { estimate: usize, budget: usize },
    /// Every slot is taken.
    OverCapacity { max_in_flight: usize },
    /// The memory budget has no room for the body.
    OverBudget { budget: usize },
    /// The body did not arrive in time.
    SlowBody { timeout: Duration },
    /// The body could not be read (the client broke off, bad chunking).
    BrokenBody { reason: String },
    /// A gRPC request body that is not one gRPC message.
    Malformed { reason: String },
}

impl Refusal {
    /// The class of the outcome it stands for, as [`crate::Outcome::class`] names
    /// it for metrics: no room is `unavailable` (retry later), the rest is
    /// `rejected`.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Refusal::OverCapacity { .. } | Refusal::OverBudget { .. } => "unavailable",
            Refusal::TooLarge { .. }
            | Refusal::TooLargeDecoded { .. }
            | Refusal::SlowBody { .. }
            | Refusal::BrokenBody { .. }
            | Refusal::Malformed { .. } => "rejected",
        }
    }

    /// A short name for the metric label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } | Refusal::TooLargeDecoded { .. } => "too_large",
            Refusal::OverCapacity { .. } => "over_capacity",
            Refusal::OverBudget { .. } => "over_budget",
            Refusal::SlowBody { .. } => "slow_body",
            Refusal::BrokenBody { .. } => "broken_body",
            Refusal::Malformed { .. } => "malformed",
        }
    }

    /// One line for the sender: what happened and what to do.
    pub(crate) fn reason(&self) -> String {
        match self {
            Refusal::TooLarge { limit } => format!(
                "the request body is over {limit} bytes (max_body_bytes); send smaller batches"
            ),
            Refusal::TooLargeDecoded { estimate, budget } => format!(
                "the request would take about {estimate} bytes of memory once decoded, more than the memory budget of {budget} bytes (max_buffered_bytes); send fewer or larger values (many small JSON values or attributes cost far more decoded than sent)"
            ),
            Refusal::OverCapacity { max_in_flight } => {
                format!("over capacity: {max_in_flight} requests already in flight; retry later")
            }
            Refusal::OverBudget { budget } => format!(
                "over capacity: the requests being handled already fill the memory budget of {budget} bytes (max_buffered_bytes); retry later"
            ),
            Refusal::SlowBody { timeout } => format!(
                "the request body did not arrive within {} ms (body_read_timeout_ms); send it faster",
                timeout.as_millis()
            ),
            Refusal::BrokenBody { reason } => format!("cannot read the request body: {reason}"),
            Refusal::Malformed { reason } => {
                format!("the request is not one gRPC message: {reason}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_counted_as_the_class_of_its_answer() {
        let refusals = [
            Refusal::TooLarge { limit: 1 },
            Refusal::TooLargeDecoded {
                estimate: 2,
                budget: 1,
            },
            Refusal::OverCapacity { max_in_flight: 1 },
            Refusal::OverBudget { budget: 1 },
            Refusal::SlowBody {
                timeout: Duration::from_secs(1),
            },
            Refusal::BrokenBody { reason: "x".into() },
            Refusal::Malformed { reason: "x".into() },
        ];
        for refusal in refusals {
            let status = crate::ingest::answer::http_refusal(&refusal).status();
            let retry_later = status == axum::http::StatusCode::SERVICE_UNAVAILABLE;
            let expected = if retry_later {
                "unavailable"
            } else {
                "rejected"
            };
            assert_eq!(refusal.class(), expected, "{refusal:?}: {status}");
        }
    }
}
