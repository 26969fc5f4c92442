//! # sink-dingtalk
//!
//! A Vanus Connect sink that delivers CloudEvents to DingTalk group chats
//! through custom robots: text, link, markdown, actionCard and feedCard
//! messages, signed, routed by the `xvchatgroup` extension, typed by
//! `xvmsgtype`, paced to DingTalk's 20 messages a minute per robot.
//!
//! The data flows one way: `delivery` routes an event to its robot,
//! `message` builds the body, the robot's budget (a gate in the connector's
//! store) says whether it may go now or must join the robot's outbox,
//! `robot` signs and posts it and classifies DingTalk's answer, and the
//! outcome goes back to the runtime. A flusher per robot empties the outbox,
//! merging what is queued into markdown digests.

pub mod cli;
pub mod config;
pub mod delivery;
pub mod message;
pub mod robot;
pub mod secret;
pub mod sink;
pub mod telemetry;
pub mod template;
pub mod webhook;

pub use config::DingTalkConfig;
pub use sink::DingTalkSink;
