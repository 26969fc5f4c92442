//! # sink-dingtalk
//!
//! A Vanus Connect sink that delivers CloudEvents to DingTalk group chats
//! through custom robots: text, link, markdown, actionCard and feedCard
//! messages, signed, routed by the `xvchatgroup` extension, typed by
//! `xvmsgtype`, paced to DingTalk's 20 messages a minute per robot.
//!
//! The data flows one way: `sink` routes an event, `message` builds the
//! body, `pacing` waits for a send slot, `robot` signs and posts it and
//! classifies DingTalk's answer, and the outcome goes back to the runtime.

pub mod cli;
pub mod config;
pub mod message;
pub mod pacing;
pub mod robot;
pub mod secret;
pub mod sink;
pub mod telemetry;
pub mod template;

pub use config::DingTalkConfig;
pub use sink::DingTalkSink;
