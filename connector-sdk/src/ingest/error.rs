//! Why a request's events cannot be handed to the sink: one error for both
//! doors and every encoding. The sender is answered 400 (gRPC
//! `InvalidArgument`) with its text, since sending the same bytes again can
//! never help.
//!
//! An invalid event carries its position in the request as data: shown as
//! `event 1: ...` for an event of a batch (HTTP batch mode, every gRPC
//! request), and not at all for the one event of an HTTP structured or
//! binary request, where a position would say nothing.

/// Why a request does not decode into valid CloudEvents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// HTTP structured or binary mode: the request is not a CloudEvent.
    #[error("invalid CloudEvent: {reason}")]
    NotAnEvent {
        /// What the CloudEvents SDK said, on one line.
        reason: String,
    },
    /// HTTP batch mode: the body is not a JSON array of CloudEvents.
    #[error("invalid CloudEvents batch: {reason}")]
    NotABatch {
        /// What the JSON parser said, on one line.
        reason: String,
    },
    /// An event decoded, but breaks the rule of `validate.rs`.
    #[error("{}{problem}", position(*.index))]
    InvalidEvent {
        /// Its position in the request's batch; `None` for the one event
        /// of an HTTP structured or binary request.
        index: Option<usize>,
        /// What is wrong with it.
        problem: EventProblem,
    },
}

impl DecodeError {
    /// The event at `index` of a batch is invalid.
    pub(crate) fn in_batch(index: usize, problem: EventProblem) -> Self {
        DecodeError::InvalidEvent {
            index: Some(index),
            problem,
        }
    }

    /// The one event of a request is invalid.
    pub(crate) fn alone(problem: EventProblem) -> Self {
        DecodeError::InvalidEvent {
            index: None,
            problem,
        }
    }
}

fn position(index: Option<usize>) -> String {
    index.map(|i| format!("event {i}: ")).unwrap_or_default()
}

/// What makes one event invalid, wherever it is in its request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EventProblem {
    /// A required attribute is missing or empty.
    #[error("required attribute `{attribute}` is missing or empty")]
    Missing {
        /// The attribute's name.
        attribute: &'static str,
    },
    /// Only CloudEvents 1.0 is accepted.
    #[error("specversion `{found}` is not supported; send 1.0")]
    SpecVersion {
        /// The version sent (shortened when long).
        found: String,
    },
    /// An attribute with a fixed meaning has a value of the wrong form.
    #[error("attribute `{attribute}` is invalid: {reason}")]
    Invalid {
        /// The attribute's name (shortened when long).
        attribute: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_a_batch_is_named_by_its_position_and_one_alone_is_not() {
        let problem = EventProblem::Missing { attribute: "id" };
        assert_eq!(
            DecodeError::in_batch(2, problem.clone()).to_string(),
            "event 2: required attribute `id` is missing or empty"
        );
        assert_eq!(
            DecodeError::alone(problem).to_string(),
            "required attribute `id` is missing or empty"
        );
    }
}
