//! A faithful fake of the DingTalk custom-robot webhook, served over real
//! HTTP on loopback, for end-to-end tests and demos.
//!
//! It checks what DingTalk checks — access token, signature and timestamp,
//! Content-Type, body size, JSON, message shape, the 20-per-minute limit
//! with its 10-minute block — and answers with DingTalk's errcodes. Like
//! DingTalk's documentation, it shows and counts every POST, `msgUuid` or
//! not; [`RobotSpec::honour_msg_uuid`] makes it drop repeats instead. It records what it accepted and refused, and can be
//! told to fail the next requests on purpose.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_dingtalk::{FakeDingTalk, RobotSpec};
//! let fake = FakeDingTalk::start(vec![RobotSpec::signed("bot-1", "SECabc")]).await?;
//! let url = fake.webhook_url("bot-1");
//! // ... point the code under test at `url` ...
//! let got = fake.wait_for_accepted(1, std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod events;
mod limits;
mod model;
mod openapi;
pub mod proxy;
mod server;
mod shape;
mod sign;
mod state;

pub use model::{
    Accepted, DEFAULT_BLOCK_FOR, DEFAULT_PER_MINUTE, Event, Failure, MAX_BODY_BYTES, RobotSpec,
    errcode, most_in_any_minute,
};
pub use openapi::{AppMessage, AppSpec, AppTarget, MAX_MSG_PARAM_BYTES, MAX_USER_IDS};
pub use server::FakeDingTalk;

/// The raw gRPC request head and the reading of a process's memory live in
/// the SDK's testing kit (its own hostile tests use them, and the SDK cannot
/// depend on this crate); here for the end-to-end tests and the bench, one
/// copy.
pub use connector_sdk::testing::{grpc_client, process};
