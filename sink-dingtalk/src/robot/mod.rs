//! DingTalk's custom (webhook) robot, as a destination of the delivery kit:
//! its protocol and nothing else.
//!
//! - `webhook`: the robot's URL, parsed once, which knows the robot's
//!   identity and prints with its token masked;
//! - `sign`: the request signature of a robot secured by a secret;
//! - `client`: sign, POST, read the answer;
//! - `answer`: what DingTalk's answers mean, one table of errcodes, and
//!   the verdict each becomes;
//! - `mask`: what of an answer may be quoted, secrets masked.
//!
//! [`Robot`] puts them together for the kit: its budget is DingTalk's 20
//! messages a minute (counted over [`WINDOW`]), and its digest is the
//! markdown of [`crate::message::digest`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use connector_sdk::async_trait;
use connector_sdk::deliver::{Answer, Destination, Digest, Verdict};
use connector_sdk::store::Window;
use serde_json::json;

pub mod answer;
pub mod client;
pub mod mask;
pub mod proxy;
pub mod sign;
mod tls;
pub mod webhook;

pub use crate::post::Post;
pub use answer::{SendError, is_known_errcode};
pub use client::http_client;
pub use webhook::{RobotId, Webhook, WebhookUrl};

use crate::message::digest::{self, Summary};
use crate::message::keywords;
use crate::metrics;
use crate::secret::Secret;
use crate::zone::Zone;

/// DingTalk allows this many messages a minute per robot.
pub const DINGTALK_PER_MINUTE: u32 = 20;

/// DingTalk's minute, plus the longest a POST may take to arrive (a send is
/// recorded when it starts, and the first of a window may be slow to land
/// while a later one is quick), plus a second for the network's jitter.
pub const WINDOW: Duration = Duration::from_secs(66);

/// One webhook robot.
#[derive(Debug, Clone)]
pub struct Robot {
    name: String,
    webhook: Webhook,
    /// Swapped by a live reload ([`Destination::adopt`]): shared by every
    /// clone, so what is queued is signed with the new secret too.
    secret: Arc<RwLock<Option<Secret>>>,
    client: reqwest::Client,
    key: String,
    windows: [Window; 1],
    paced: bool,
    /// The time zone of the times a digest shows.
    timezone: Zone,
    /// Its security keywords: a message without any gets the first.
    keywords: Arc<[String]>,
}

impl Robot {
    /// Robot `name`, posting to `webhook`, signing with `secret` when given,
    /// at most `per_minute` messages a minute (unless not `paced`); digests
    /// show times in `timezone`.
    pub fn new(
        name: String,
        webhook: Webhook,
        secret: Option<Secret>,
        client: reqwest::Client,
        per_minute: u32,
        paced: bool,
        timezone: Zone,
    ) -> Self {
        Self {
            name,
            key: webhook.robot().key(),
            webhook,
            secret: Arc::new(RwLock::new(secret)),
            client,
            windows: [Window::new(per_minute, WINDOW)],
            paced,
            timezone,
            keywords: Arc::from(Vec::new()),
        }
    }

    /// The same robot, secured by `keywords`: a message that contains none
    /// of them gets the first added ([`keywords::ensure`]).
    pub fn with_keywords(mut self, keywords: Vec<String>) -> Self {
        self.keywords = Arc::from(keywords);
        self
    }

    /// The webhook, which prints with its token masked.
    pub fn webhook(&self) -> &Webhook {
        &self.webhook
    }

    /// Whether requests carry a signature.
    pub fn is_signed(&self) -> bool {
        self.secret().is_some()
    }

    /// Posts one message body, signed afresh, and waits at most `timeout`.
    pub async fn post(&self, body: Bytes, timeout: Duration) -> Result<(), SendError> {
        let secret = self.secret();
        client::post(&self.client, &self.webhook, secret.as_ref(), body, timeout).await
    }

    fn secret(&self) -> Option<Secret> {
        self.secret
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes the signing secret of `newer`, the same robot as a live reload
    /// configured it.
    pub fn adopt(&self, newer: &Robot) {
        *self
            .secret
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = newer.secret();
    }
}

#[async_trait]
impl Destination for Robot {
    type Payload = Post;

    fn key(&self) -> &str {
        &self.key
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn windows(&self) -> &[Window] {
        &self.windows
    }

    fn paced(&self) -> bool {
        self.paced
    }

    async fn send(&self, post: &Post, timeout: Duration) -> Answer {
        let body =
            keywords::ensure(&post.body, &self.keywords).unwrap_or_else(|| post.body.clone());
        let result = self.post(body, timeout).await;
        let answer = match result {
            Ok(()) => Answer {
                verdict: Verdict::Delivered,
                code: Some(0),
            },
            Err(err) => err.answer(),
        };
        metrics::errcode(answer.code);
        answer
    }

    fn digest(&self, queued: &[&Post], seed: &str) -> Option<Digest<Post>> {
        let summaries: Vec<Summary> = queued.iter().map(|post| post.summary()).collect();
        let room = keywords::room(&self.keywords);
        let packed = digest::pack_within(&summaries, self.timezone, seed, room)?;
        Some(Digest {
            payload: Post {
                msgtype: "markdown".to_owned(),
                body: packed.body,
                at_ms: summaries.first().map_or(0, |s| s.at_ms),
                summary: None,
                to: None,
            },
            count: packed.count,
        })
    }

    fn describe(&self) -> serde_json::Value {
        json!({
            "url": self.webhook.masked(),
            "signed": self.is_signed(),
            "keywords": &*self.keywords,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `i` in letters: `12` is `bc`.
    fn letters(i: usize) -> String {
        i.to_string()
            .bytes()
            .map(|digit| char::from(b'a' + (digit - b'0')))
            .collect()
    }

    #[test]
    fn a_full_digest_leaves_room_for_the_keyword() {
        let client =
            http_client(Duration::from_secs(1), &proxy::ProxyPlan::default()).expect("a client");
        let webhook = Webhook::parse("https://x.test/robot/send?access_token=t").expect("url");
        let robot = Robot::new("k".into(), webhook, None, client, 20, true, Zone::UTC)
            .with_keywords(vec!["[ops]".into()]);
        let posts: Vec<Post> = (0..400)
            .map(|i| Post {
                msgtype: "text".into(),
                body: Bytes::from(
                    // Words without digits: every alert is a section of its own.
                    json!({"msgtype": "text", "text": {"content": format!("alert {} {}", letters(i), "x".repeat(200))}})
                        .to_string(),
                ),
                at_ms: 1_700_000_000_000,
                summary: None,
                to: None,
            })
            .collect();
        let queued: Vec<&Post> = posts.iter().collect();
        let digest = robot.digest(&queued, "seed").expect("a digest");
        assert!(digest.count < 400, "packed to the limit");
        let sent = keywords::ensure(&digest.payload.body, &robot.keywords).expect("added");
        assert!(
            sent.len() <= crate::message::MAX_BODY_BYTES,
            "{}",
            sent.len()
        );
        let body: serde_json::Value = serde_json::from_slice(&sent).expect("json");
        let text = body["markdown"]["text"].as_str().expect("text");
        assert!(
            text.ends_with("\n\n[ops]") && !text.contains("truncated"),
            "{}",
            &text[text.len() - 40..]
        );
    }
}
