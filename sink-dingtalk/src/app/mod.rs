//! DingTalk's app robots (an organisation's internal app, with an AppKey and
//! AppSecret) as destinations of the delivery kit, beside the webhook
//! robots of [`crate::robot`]: same routing, templates, outbox, digests,
//! ledger and budgets; a different protocol.
//!
//! - `config`: `bot.apps[]`, and the chat groups that name an app;
//! - `token`: the app's access token, cached, refreshed, one fetch at a time;
//! - `api`: POST JSON to the OpenAPI, read its answer;
//! - `message`: a message's `msgKey` and `msgParam`;
//! - the answers' meanings are in the one table of
//!   [`crate::robot::answer`].
//!
//! An app serves two kinds of destination: each of its chat groups (one
//! conversation, `groupMessages/send`, its own budget), and its one-to-one
//! messages (`oToMessages/batchSend`, at most 20 users a call, one budget
//! for the app's one-to-one calls), which events reach through the
//! `xvusers` extension. A one-to-one send records, per event, who got it, so
//! a retry (after DingTalk held some users back for flow control, or a
//! redelivery) never posts twice to one who got it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use connector_sdk::deliver::{Answer, Blame, Digest, Retry, SharedBudget, Verdict};
use connector_sdk::store::Window;
use connector_sdk::{Store, Unavailable, shorten};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

pub mod api;
pub mod config;
pub mod message;
pub mod plan;
pub mod token;

use crate::message::digest::{self, Summary};
pub use crate::post::People;
use crate::post::Post;
use crate::robot::{SendError, WINDOW};
use crate::secret::Secret;
use crate::zone::Zone;
use api::Api;
use plan::AppPlan;
use token::Tokens;

/// Group messages.
pub const GROUP_PATH: &str = "/v1.0/robot/groupMessages/send";

/// One-to-one messages.
pub const ONE_TO_ONE_PATH: &str = "/v1.0/robot/oToMessages/batchSend";

/// The most user ids of one one-to-one call.
pub const MAX_USERS_PER_CALL: usize = 20;

/// How long who got a one-to-one message is remembered: as long as a
/// Vanus trigger redelivers.
const REMEMBERED: Duration = Duration::from_secs(86_400);

/// How much of a list of user ids a log line quotes.
const QUOTED_BYTES: usize = 256;

/// One app, shared by its destinations.
#[derive(Debug)]
pub struct App {
    name: String,
    app_key: String,
    robot_code: String,
    app_secret: Secret,
    api: Api,
    tokens: Tokens,
    per_minute: u32,
    app_per_minute: u32,
}

impl App {
    /// The app of `plan`, over `client`, its token shared through `store`.
    pub fn new(plan: &AppPlan, client: reqwest::Client, store: &Store) -> Self {
        let api = Api::new(client, plan.api_base.clone());
        Self {
            name: plan.name.clone(),
            app_key: plan.app_key.clone(),
            robot_code: plan.robot_code.clone(),
            app_secret: plan.app_secret.clone(),
            tokens: Tokens::new(
                plan.name.clone(),
                plan.app_key.clone(),
                plan.app_secret.clone(),
                api.clone(),
                store.clone(),
            ),
            api,
            per_minute: plan.per_minute,
            app_per_minute: plan.app_per_minute,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetches its token ahead of the first event, saying loudly when its key
    /// or secret is refused.
    pub async fn warm_up(&self, timeout: Duration) {
        if let Err(err) = self.tokens.get(Instant::now() + timeout).await {
            tracing::error!(app = %self.name, %err, "cannot get the app's access token; its chat groups and one-to-one messages refuse events until it works");
        }
    }

    /// POSTs `body` to `path` with the app's token, fetched first when
    /// needed, fetched anew once when DingTalk says it is invalid; all
    /// within `timeout`.
    async fn call(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value, SendError> {
        let until = Instant::now() + timeout;
        let token = self.tokens.get(until).await?;
        match self.post(path, &token, body, until).await {
            Err(err) if err.is_token_invalid() => {
                tracing::info!(app = %self.name, "DingTalk refused the app's access token; fetching a new one");
                let fresh = self.tokens.refresh(&token, until).await?;
                self.post(path, &fresh, body, until).await
            }
            other => other,
        }
    }

    async fn post(
        &self,
        path: &str,
        token: &Secret,
        body: &Value,
        until: Instant,
    ) -> Result<Value, SendError> {
        let timeout = until.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(SendError::Timeout(timeout));
        }
        self.api
            .post(path, Some(token), body, timeout, &[token, &self.app_secret])
            .await
            .map_err(SendError::from)
    }

    /// A store key part naming this app's robot and `what`.
    fn key(&self, what: &str) -> String {
        let mut hasher = Sha256::new();
        for part in [self.app_key.as_str(), &self.robot_code, what] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        format!("app-{}", hex::encode(&hasher.finalize()[..12]))
    }
}

/// What an app destination sends to.
#[derive(Debug, Clone)]
enum Kind {
    /// One group.
    Group { conversation: String },
    /// People, one to one; who got each message recorded in `ledger`.
    Users { ledger: Store },
}

/// One destination of an app: one of its groups, or its one-to-one
/// messages.
#[derive(Debug, Clone)]
pub struct AppBot {
    app: Arc<App>,
    kind: Kind,
    name: String,
    key: String,
    windows: [Window; 1],
    timezone: Zone,
}

impl AppBot {
    /// Chat group `name` of `app`, the conversation `conversation`.
    pub fn group(app: Arc<App>, name: String, conversation: String, timezone: Zone) -> Self {
        Self {
            key: app.key(&format!("group\n{conversation}")),
            windows: [Window::new(app.per_minute, WINDOW)],
            kind: Kind::Group { conversation },
            name,
            app,
            timezone,
        }
    }

    /// The one-to-one messages of `app`, who got each recorded in `store`.
    pub fn users(app: Arc<App>, name: String, store: &Store, timezone: Zone) -> Self {
        Self {
            key: app.key("one-to-one"),
            windows: [Window::new(app.per_minute, WINDOW)],
            kind: Kind::Users {
                ledger: store.scope("one-to-one"),
            },
            name,
            app,
            timezone,
        }
    }

    /// Its key in the store.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Its name in logs and `/status`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its budget.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The budget of its app, shared by all the app's destinations.
    pub fn shared_budget(&self) -> SharedBudget {
        SharedBudget {
            key: self.app.key("app"),
            windows: vec![Window::new(self.app.app_per_minute, WINDOW)],
        }
    }

    /// Sends one message, within `timeout`.
    pub async fn send(&self, post: &Post, timeout: Duration) -> Answer {
        let message = match message::of(post) {
            Ok(message) => message,
            Err(err) => return err.answer(),
        };
        let conversation = match &self.kind {
            Kind::Group { conversation } => conversation,
            Kind::Users { ledger } => {
                return self.send_users(post, &message, ledger, timeout).await;
            }
        };
        let body = json!({
            "robotCode": self.app.robot_code,
            "openConversationId": conversation,
            "msgKey": message.msg_key,
            "msgParam": message.msg_param,
        });
        match self.app.call(GROUP_PATH, &body, timeout).await {
            Ok(_) => Answer::from(Verdict::Delivered),
            Err(err) => err.answer(),
        }
    }

    /// Sends a one-to-one message to those of its users who do not have it
    /// yet; retries those DingTalk held back, reports those it does not
    /// know.
    async fn send_users(
        &self,
        post: &Post,
        message: &message::AppMessage,
        ledger: &Store,
        timeout: Duration,
    ) -> Answer {
        let Some(people) = &post.to else {
            return Answer::from(Verdict::Refused {
                blame: Blame::Message,
                reason: "a one-to-one message names no user".to_owned(),
            });
        };
        let key = format!("sent/{}", people.ledger);
        let mut got: BTreeSet<String> = match ledger.get(&key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => BTreeSet::new(),
            Err(err) => {
                return Answer::from(Verdict::Failed {
                    kind: Unavailable::ServiceUnavailable,
                    retry: Retry::Soon,
                    reached: false,
                    reason: format!("cannot read who got the message already: {err}"),
                });
            }
        };
        let pending: Vec<&String> = people.users.iter().filter(|u| !got.contains(*u)).collect();
        if pending.is_empty() {
            return Answer::from(Verdict::Delivered);
        }
        let body = json!({
            "robotCode": self.app.robot_code,
            "userIds": pending,
            "msgKey": message.msg_key,
            "msgParam": message.msg_param,
        });
        let answer = match self.app.call(ONE_TO_ONE_PATH, &body, timeout).await {
            Ok(answer) => answer,
            Err(err) => return err.answer(),
        };
        let listed = |name: &str| -> HashSet<String> {
            answer[name]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|user| user.as_str().map(str::to_owned))
                .collect()
        };
        let invalid = listed("invalidStaffIdList");
        let held = listed("flowControlledStaffIdList");
        let reached: Vec<String> = pending
            .iter()
            .filter(|u| !invalid.contains(u.as_str()) && !held.contains(u.as_str()))
            .map(|u| (*u).clone())
            .collect();
        if !reached.is_empty() {
            got.extend(reached.iter().cloned());
            let recorded = serde_json::to_vec(&got).unwrap_or_default();
            if let Err(err) = ledger.put(&key, recorded, REMEMBERED).await {
                tracing::error!(app = %self.app.name, %err, "cannot record who got a one-to-one message; a retry may send it to them again");
            }
        }
        let names = |users: &HashSet<String>| {
            let mut users: Vec<&str> = users.iter().map(String::as_str).collect();
            users.sort_unstable();
            shorten(&users.join(","), QUOTED_BYTES).into_owned()
        };
        if !invalid.is_empty() {
            tracing::warn!(app = %self.app.name, users = %names(&invalid), "DingTalk does not know these user ids; they get nothing");
        }
        if !held.is_empty() {
            return Answer::from(Verdict::Failed {
                kind: Unavailable::ServiceUnavailable,
                retry: Retry::Soon,
                reached: true,
                reason: format!(
                    "DingTalk held back {} of {} users for flow control ({}); they are sent to again, the others are not",
                    held.len(),
                    pending.len(),
                    names(&held)
                ),
            });
        }
        if reached.is_empty() && !invalid.is_empty() {
            return Answer::from(Verdict::Refused {
                blame: Blame::Message,
                reason: format!(
                    "DingTalk does not know the user ids {}: nobody got the message",
                    names(&invalid)
                ),
            });
        }
        Answer::from(Verdict::Delivered)
    }

    /// A markdown digest of queued group messages whose msgParam fits;
    /// none for one-to-one messages (each goes to its own people).
    pub fn digest(&self, queued: &[&Post], seed: &str) -> Option<Digest<Post>> {
        if matches!(self.kind, Kind::Users { .. }) {
            return None;
        }
        let summaries: Vec<Summary> = queued.iter().map(|post| post.summary()).collect();
        // The webhook's limit is 20,000 bytes of body, the msgParam's 15,000
        // of its own JSON: pack for less, and less again if it still does not
        // fit (the rest waits for the next digest, which says so).
        let mut room = crate::message::MAX_BODY_BYTES.saturating_sub(message::MAX_MSG_PARAM_BYTES);
        for _ in 0..4 {
            let packed = digest::pack_within(&summaries, self.timezone, seed, room)?;
            let post = Post {
                msgtype: "markdown".to_owned(),
                body: packed.body,
                at_ms: summaries.first().map_or(0, |s| s.at_ms),
                summary: None,
                to: None,
            };
            if message::of(&post).is_ok() {
                return Some(Digest {
                    payload: post,
                    count: packed.count,
                });
            }
            room += 1_000;
        }
        None
    }

    /// What `/status` shows of it: no token, no secret.
    pub fn describe(&self) -> Value {
        let (kind, conversation) = match &self.kind {
            Kind::Group { conversation } => ("group", Some(conversation.as_str())),
            Kind::Users { .. } => ("one_to_one", None),
        };
        json!({
            "app": self.app.name,
            "kind": kind,
            "open_conversation_id": conversation,
            "api_base": self.app.api.base().as_str(),
        })
    }
}

/// The extension naming the people of a one-to-one message.
pub const USERS_EXTENSION: &str = "xvusers";

/// The most people one event may name.
pub const MAX_USERS_PER_EVENT: usize = 1_000;

/// The longest user id accepted.
pub const MAX_USER_ID_BYTES: usize = 64;

/// The user ids `event` names in `xvusers` (comma-separated, each once, in
/// order), `None` without it, or why they cannot be used.
pub fn users_of(event: &connector_sdk::cloudevents::Event) -> Result<Option<Vec<String>>, String> {
    let Some(value) = event.extension(USERS_EXTENSION) else {
        return Ok(None);
    };
    parse_users(&value.to_string(), USERS_EXTENSION).map(Some)
}

/// The user ids of `text` (comma-separated, trimmed, each once), given by
/// `what` (`xvusers`, a rule's `users`), checked.
pub fn parse_users(text: &str, what: &str) -> Result<Vec<String>, String> {
    let mut users: Vec<String> = Vec::new();
    for user in text.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        if user.len() > MAX_USER_ID_BYTES {
            return Err(format!(
                "{what} holds a user id over {MAX_USER_ID_BYTES} bytes (`{}`)",
                shorten(user, MAX_USER_ID_BYTES)
            ));
        }
        if !users.iter().any(|u| u == user) {
            users.push(user.to_owned());
        }
        if users.len() > MAX_USERS_PER_EVENT {
            return Err(format!(
                "{what} names over {MAX_USERS_PER_EVENT} users; split the event"
            ));
        }
    }
    if users.is_empty() {
        return Err(format!("{what} names no user id"));
    }
    Ok(users)
}
