//! Why an event cannot become a DingTalk message: one error type shared by
//! building, validation and mentions, each variant saying what to fix.

use super::{MAX_BODY_BYTES, MsgType};

/// Why an event cannot become a DingTalk message. Each says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// `xvmsgtype` names no DingTalk type.
    #[error("xvmsgtype `{0}` is not supported; use text, link, markdown, actionCard or feedCard")]
    UnknownType(String),
    /// The event carries no data.
    #[error("the event has no data; a {0} message is built from the event data")]
    NoData(MsgType),
    /// The data has the wrong form for the type.
    #[error("{0}")]
    BadData(String),
    /// A required field is missing or empty.
    #[error("{0} is required")]
    Missing(String),
    /// A field has the wrong form.
    #[error("{field} {problem}")]
    Invalid {
        /// The field's path, e.g. `link.messageUrl`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The body exceeds DingTalk's limit and has no text to shorten.
    #[error(
        "the message body is {0} bytes and cannot be shortened to DingTalk's limit of {MAX_BODY_BYTES}; send fewer or shorter items"
    )]
    TooLarge(usize),
    /// More mentions than any body within DingTalk's limit can hold.
    #[error(
        "the message mentions {0} mobiles and user ids, more than fit in DingTalk's body limit of {MAX_BODY_BYTES} bytes; mention fewer"
    )]
    TooManyMentions(usize),
}
