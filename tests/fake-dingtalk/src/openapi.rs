//! The fake's DingTalk OpenAPI for app robots (an organisation's internal
//! app, with an AppKey and AppSecret), free of HTTP:
//!
//! - `POST /v1.0/oauth2/accessToken` `{"appKey","appSecret"}` answers
//!   `{"accessToken","expireIn"}`; a wrong key or secret is a 400;
//! - `POST /v1.0/robot/groupMessages/send` (header
//!   `x-acs-dingtalk-access-token`) `{"robotCode","openConversationId",
//!   "msgKey","msgParam"}` answers `{"processQueryKey"}`;
//! - `POST /v1.0/robot/oToMessages/batchSend` `{"robotCode","userIds",
//!   "msgKey","msgParam"}` (at most 20 user ids) answers
//!   `{"processQueryKey","invalidStaffIdList","flowControlledStaffIdList"}`.
//!
//! Errors are HTTP 4xx/5xx with `{"code","message"}`: an unknown or expired
//! token is a 401 `InvalidAuthentication`; a `msgParam` that is not a JSON
//! string of the fields its `msgKey` names, or is over 15,000 bytes, a 400
//! `invalidParameter`. Tokens expire on the fake's clock, after
//! [`OpenApi::set_token_ttl`] seconds (7200 by default), or at once with
//! [`OpenApi::expire_tokens`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

/// The most bytes of a `msgParam`.
pub const MAX_MSG_PARAM_BYTES: usize = 15_000;

/// The most user ids of one `oToMessages/batchSend`.
pub const MAX_USER_IDS: usize = 20;

/// An app the fake knows.
#[derive(Clone)]
pub struct AppSpec {
    /// Its AppKey.
    pub app_key: String,
    /// Its AppSecret.
    pub app_secret: String,
    /// Its robot's code.
    pub robot_code: String,
}

impl std::fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSpec")
            .field("app_key", &self.app_key)
            .field("robot_code", &self.robot_code)
            .finish_non_exhaustive()
    }
}

impl AppSpec {
    /// App `app_key` with `app_secret`, its robot's code the app key (as
    /// DingTalk gives a new app's robot).
    pub fn new(app_key: &str, app_secret: &str) -> Self {
        Self {
            app_key: app_key.to_owned(),
            app_secret: app_secret.to_owned(),
            robot_code: app_key.to_owned(),
        }
    }
}

/// Where an accepted app-robot message went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppTarget {
    /// A group, by its `openConversationId`.
    Group(String),
    /// People, one to one: the user ids it reached (neither invalid nor
    /// held back for flow control).
    Users(Vec<String>),
}

/// A message the fake's OpenAPI accepted.
#[derive(Clone, Debug)]
pub struct AppMessage {
    /// The app whose token sent it.
    pub app_key: String,
    /// The `robotCode`.
    pub robot_code: String,
    /// Where it went.
    pub target: AppTarget,
    /// The `msgKey`.
    pub msg_key: String,
    /// The `msgParam`, parsed.
    pub msg_param: Value,
}

/// An injected OpenAPI failure: answer this status and code.
#[derive(Clone, Debug)]
pub struct AppFailure {
    /// The HTTP status.
    pub status: u16,
    /// The `code` of the answer.
    pub code: String,
}

/// The fake's OpenAPI state.
#[derive(Debug)]
pub struct OpenApi {
    apps: HashMap<String, AppSpec>,
    /// Every token handed out: its app and when it expires.
    tokens: HashMap<String, (String, Instant)>,
    ttl: Duration,
    issued: u64,
    fetches: HashMap<String, usize>,
    messages: Vec<AppMessage>,
    /// Every message request (group or one-to-one), whatever its answer.
    requests: usize,
    invalid_users: HashSet<String>,
    flow_controlled: HashMap<String, usize>,
    failures: VecDeque<AppFailure>,
}

impl Default for OpenApi {
    fn default() -> Self {
        Self {
            apps: HashMap::new(),
            tokens: HashMap::new(),
            ttl: Duration::from_secs(7200),
            issued: 0,
            fetches: HashMap::new(),
            messages: Vec::new(),
            requests: 0,
            invalid_users: HashSet::new(),
            flow_controlled: HashMap::new(),
            failures: VecDeque::new(),
        }
    }
}

fn error(status: u16, code: &str, message: impl Into<String>) -> (u16, Value) {
    (status, json!({"code": code, "message": message.into()}))
}

/// The fields each `msgKey` takes.
fn fields_of(msg_key: &str) -> Option<&'static [&'static str]> {
    Some(match msg_key {
        "sampleText" => &["content"],
        "sampleMarkdown" => &["title", "text"],
        "sampleLink" => &["text", "title", "picUrl", "messageUrl"],
        "sampleActionCard" => &["title", "text", "singleTitle", "singleURL"],
        _ => return None,
    })
}

impl OpenApi {
    /// Knows `app` from now on.
    pub fn add_app(&mut self, app: AppSpec) {
        self.apps.insert(app.app_key.clone(), app);
    }

    /// Tokens handed out from now on expire after `ttl`.
    pub fn set_token_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// Every token handed out so far expires now.
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Tokens fetched (successfully or not) for `app_key`.
    pub fn token_fetches(&self, app_key: &str) -> usize {
        self.fetches.get(app_key).copied().unwrap_or(0)
    }

    /// Every accepted message, in arrival order.
    pub fn messages(&self) -> &[AppMessage] {
        &self.messages
    }

    /// Message requests, whatever their answer.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// These user ids are not the organisation's: listed as invalid.
    pub fn set_invalid_users(&mut self, users: &[&str]) {
        self.invalid_users = users.iter().map(|u| (*u).to_owned()).collect();
    }

    /// The next `times` one-to-one sends to `user` hold it back for flow
    /// control.
    pub fn flow_control_next(&mut self, user: &str, times: usize) {
        *self.flow_controlled.entry(user.to_owned()).or_default() += times;
    }

    /// The next message request is answered with `failure`.
    pub fn fail_next(&mut self, failure: AppFailure) {
        self.failures.push_back(failure);
    }

    /// Answers one request to `path`, with the token header `token`, at
    /// the fake's time `now`: an HTTP status and a JSON body.
    pub fn handle(
        &mut self,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> (u16, Value) {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return error(400, "invalidParameter", "the body is not JSON");
        };
        match path {
            "/v1.0/oauth2/accessToken" => self.access_token(&body, now),
            "/v1.0/robot/groupMessages/send" => self.send(&body, token, now, false),
            "/v1.0/robot/oToMessages/batchSend" => self.send(&body, token, now, true),
            _ => error(404, "resource.not.found", "no such API"),
        }
    }

    fn access_token(&mut self, body: &Value, now: Instant) -> (u16, Value) {
        let key = body["appKey"].as_str().unwrap_or_default();
        let secret = body["appSecret"].as_str().unwrap_or_default();
        *self.fetches.entry(key.to_owned()).or_default() += 1;
        match self.apps.get(key) {
            Some(app) if app.app_secret == secret => {
                self.issued += 1;
                let token = format!("fake-app-token-{}", self.issued);
                self.tokens
                    .insert(token.clone(), (key.to_owned(), now + self.ttl));
                (
                    200,
                    json!({"accessToken": token, "expireIn": self.ttl.as_secs()}),
                )
            }
            _ => error(
                400,
                "invalidClientIdOrSecret",
                "无效的clientId或者clientSecret",
            ),
        }
    }

    fn send(
        &mut self,
        body: &Value,
        token: Option<&str>,
        now: Instant,
        one_to_one: bool,
    ) -> (u16, Value) {
        self.requests += 1;
        let app_key = match token.and_then(|t| self.tokens.get(t)) {
            Some((app, expires)) if *expires > now => app.clone(),
            _ => {
                return error(
                    401,
                    "InvalidAuthentication",
                    "不合法的access_token (the token is unknown or expired)",
                );
            }
        };
        if let Some(failure) = self.failures.pop_front() {
            return error(failure.status, &failure.code, "injected failure");
        }
        let robot_code = body["robotCode"].as_str().unwrap_or_default();
        if self.apps.get(&app_key).map(|a| a.robot_code.as_str()) != Some(robot_code) {
            return error(
                400,
                "resource.not.found",
                format!("robotCode {robot_code:?} is not this app's robot"),
            );
        }
        let msg_key = body["msgKey"].as_str().unwrap_or_default();
        let msg_param = match check_param(msg_key, &body["msgParam"]) {
            Ok(param) => param,
            Err(reason) => return error(400, "invalidParameter", reason),
        };
        let key = format!("fake-query-{}", self.requests);
        let (target, answer) = if one_to_one {
            let Some(users) = body["userIds"].as_array() else {
                return error(400, "invalidParameter", "userIds is missing");
            };
            let users: Vec<String> = users
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect();
            if users.is_empty() || users.len() > MAX_USER_IDS {
                return error(
                    400,
                    "invalidParameter",
                    format!("userIds must hold 1 to {MAX_USER_IDS} ids"),
                );
            }
            let (mut reached, mut invalid, mut flow) = (Vec::new(), Vec::new(), Vec::new());
            for user in users {
                if self.invalid_users.contains(&user) {
                    invalid.push(user);
                } else if let Some(left) = self.flow_controlled.get_mut(&user)
                    && *left > 0
                {
                    *left -= 1;
                    flow.push(user);
                } else {
                    reached.push(user);
                }
            }
            let answer = json!({
                "processQueryKey": key,
                "invalidStaffIdList": invalid,
                "flowControlledStaffIdList": flow,
            });
            if reached.is_empty() {
                return (200, answer);
            }
            (AppTarget::Users(reached), answer)
        } else {
            let Some(conversation) = body["openConversationId"].as_str() else {
                return error(400, "invalidParameter", "openConversationId is missing");
            };
            (
                AppTarget::Group(conversation.to_owned()),
                json!({"processQueryKey": key}),
            )
        };
        self.messages.push(AppMessage {
            app_key,
            robot_code: robot_code.to_owned(),
            target,
            msg_key: msg_key.to_owned(),
            msg_param,
        });
        (200, answer)
    }
}

/// `msgParam` as DingTalk checks it: a JSON string, at most 15,000 bytes,
/// holding an object of the string fields `msg_key` names.
fn check_param(msg_key: &str, param: &Value) -> Result<Value, String> {
    let Some(fields) = fields_of(msg_key) else {
        return Err(format!("msgKey {msg_key:?} is not a known template"));
    };
    let Some(text) = param.as_str() else {
        return Err("msgParam must be a JSON string".to_owned());
    };
    if text.len() > MAX_MSG_PARAM_BYTES {
        return Err(format!(
            "msgParam is {} bytes, over {MAX_MSG_PARAM_BYTES}",
            text.len()
        ));
    }
    let parsed: Value =
        serde_json::from_str(text).map_err(|err| format!("msgParam is not JSON: {err}"))?;
    for field in fields {
        if !parsed[field].is_string() {
            return Err(format!("msgParam of {msg_key} lacks the string {field}"));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> OpenApi {
        let mut api = OpenApi::default();
        api.add_app(AppSpec::new("key", "secret"));
        api
    }

    fn token(api: &mut OpenApi, now: Instant) -> String {
        let (status, body) = api.handle(
            "/v1.0/oauth2/accessToken",
            None,
            br#"{"appKey":"key","appSecret":"secret"}"#,
            now,
        );
        assert_eq!(status, 200, "{body}");
        body["accessToken"].as_str().expect("token").to_owned()
    }

    fn group(param: &str) -> Vec<u8> {
        json!({"robotCode": "key", "openConversationId": "cid", "msgKey": "sampleText", "msgParam": param})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_token_works_until_it_expires() {
        let mut api = api();
        let now = Instant::now();
        api.set_token_ttl(Duration::from_secs(10));
        let token = token(&mut api, now);
        let send = |api: &mut OpenApi, at| {
            api.handle(
                "/v1.0/robot/groupMessages/send",
                Some(&token),
                &group(r#"{"content":"hi"}"#),
                at,
            )
            .0
        };
        assert_eq!(send(&mut api, now), 200);
        assert_eq!(send(&mut api, now + Duration::from_secs(11)), 401);
        assert_eq!(api.messages().len(), 1);
        assert_eq!(api.token_fetches("key"), 1);
    }

    #[test]
    fn a_wrong_secret_and_a_bad_param_are_400s() {
        let mut api = api();
        let now = Instant::now();
        let (status, body) = api.handle(
            "/v1.0/oauth2/accessToken",
            None,
            br#"{"appKey":"key","appSecret":"nope"}"#,
            now,
        );
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalidClientIdOrSecret"))
        );
        let token = token(&mut api, now);
        for param in [r#"{"text":"hi"}"#, "not json", &"x".repeat(15_001)] {
            let (status, body) = api.handle(
                "/v1.0/robot/groupMessages/send",
                Some(&token),
                &group(param),
                now,
            );
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("invalidParameter"))
            );
        }
    }

    #[test]
    fn one_to_one_lists_invalid_and_flow_controlled_users() {
        let mut api = api();
        let now = Instant::now();
        let token = token(&mut api, now);
        api.set_invalid_users(&["ghost"]);
        api.flow_control_next("busy", 1);
        let body = json!({"robotCode": "key", "userIds": ["a", "ghost", "busy"], "msgKey": "sampleText", "msgParam": "{\"content\":\"hi\"}"});
        let (status, answer) = api.handle(
            "/v1.0/robot/oToMessages/batchSend",
            Some(&token),
            body.to_string().as_bytes(),
            now,
        );
        assert_eq!(status, 200);
        assert_eq!(answer["invalidStaffIdList"], json!(["ghost"]));
        assert_eq!(answer["flowControlledStaffIdList"], json!(["busy"]));
        assert_eq!(api.messages()[0].target, AppTarget::Users(vec!["a".into()]));
        let many: Vec<String> = (0..21).map(|i| format!("u{i}")).collect();
        let body = json!({"robotCode": "key", "userIds": many, "msgKey": "sampleText", "msgParam": "{\"content\":\"hi\"}"});
        let (status, _) = api.handle(
            "/v1.0/robot/oToMessages/batchSend",
            Some(&token),
            body.to_string().as_bytes(),
            now,
        );
        assert_eq!(status, 400);
    }
}
