//! # sink-dingtalk
//!
//! A Vanus Connect sink that delivers CloudEvents to DingTalk group chats
//! through custom robots: text, link, markdown, actionCard and feedCard
//! messages, signed, routed by the `xvchatgroup` extension, typed by
//! `xvmsgtype`, paced to DingTalk's 20 messages a minute per robot.
//!
//! The data flows one way: `route` picks an event's chat group, `template`
//! and `message` build its body, and the connector SDK's delivery kit
//! (`connector_sdk::deliver`) sends it through the group's robots while
//! their budget lasts, or queues it for a digest; `robot` is DingTalk's
//! side of that: signing, the POST, and what its answers mean. `plan` reads
//! the config once into all of that. `app` is the second kind of DingTalk
//! robot, an organisation's app robot (DingTalk's OpenAPI: groups and
//! one-to-one messages); `destination` puts both kinds behind one type;
//! `wire` turns a plan into the kit's routes, at start and on a live reload.
//! `zone` holds the IANA time zones that digests and templates show times in.

pub mod app;
pub mod cli;
pub mod config;
pub mod destination;
pub mod message;
pub mod metrics;
pub mod plan;
pub mod post;
pub mod robot;
pub mod route;
pub mod secret;
pub mod sink;
pub mod template;
mod wire;
pub mod zone;

pub use config::DingTalkConfig;
pub use sink::DingTalkSink;
