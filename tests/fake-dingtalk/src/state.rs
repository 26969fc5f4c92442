//! The fake's bookkeeping and its request-handling rules, free of HTTP.
//!
//! [`State::handle`] applies DingTalk's checks in this order: token,
//! rate-limit block, signature, Content-Type, body size, JSON, message
//! shape, `msgUuid` de-duplication, then the per-minute limit. It never
//! awaits, so the server calls it under a `std::sync::Mutex`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::time::SystemTime;

use serde_json::Value;
use tokio::time::Instant;

use crate::limits::RateLimiter;
use crate::model::{Accepted, Event, Failure, MAX_BODY_BYTES, RobotSpec, errcode};
use crate::{shape, sign};

/// One request to `/robot/send`, as far as the rules care.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Incoming<'a> {
    /// `access_token` query parameter.
    pub token: Option<&'a str>,
    /// `timestamp` query parameter.
    pub timestamp: Option<&'a str>,
    /// `sign` query parameter, percent-decoded.
    pub sign: Option<&'a str>,
    /// `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// Raw body.
    pub body: &'a [u8],
}

/// What to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// HTTP 200 with `{"errcode": .., "errmsg": ..}`.
    Json { errcode: i64, errmsg: String },
    /// This HTTP status and a short text body.
    Http(u16),
}

impl Reply {
    fn ok() -> Self {
        Reply::Json {
            errcode: errcode::OK,
            errmsg: "ok".into(),
        }
    }
}

/// One configured robot and its live state.
#[derive(Debug)]
struct Robot {
    spec: RobotSpec,
    limiter: RateLimiter,
    seen_uuids: HashSet<String>,
}

/// One request naming a token, as it arrived.
#[derive(Debug)]
struct Post {
    /// The fake's wall-clock time of arrival.
    at: SystemTime,
    body: Vec<u8>,
}

/// Everything the fake remembers.
#[derive(Debug, Default)]
pub(crate) struct State {
    robots: HashMap<String, Robot>,
    accepted: Vec<Accepted>,
    /// Every request, by token, whatever its answer: their count is the
    /// request count.
    posts: HashMap<String, Vec<Post>>,
    duplicates: HashMap<String, usize>,
    rejections: Vec<(String, i64, String)>,
    failures: HashMap<String, VecDeque<(Failure, usize)>>,
}

impl State {
    /// State for these robots; refuses two robots with the same token.
    pub fn new(robots: Vec<RobotSpec>) -> io::Result<Self> {
        let mut state = State::default();
        for spec in robots {
            if state.robots.contains_key(&spec.token) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("robot token {:?} configured twice", spec.token),
                ));
            }
            let robot = Robot {
                limiter: RateLimiter::new(spec.per_minute, spec.block_for),
                seen_uuids: HashSet::new(),
                spec,
            };
            state.robots.insert(robot.spec.token.clone(), robot);
        }
        Ok(state)
    }

    /// Records a request naming `token`, arrived at wall-clock time `wall`,
    /// and takes the next injected failure queued for it, if any.
    pub fn begin(&mut self, token: &str, body: &[u8], wall: SystemTime) -> Option<Failure> {
        self.posts.entry(token.to_owned()).or_default().push(Post {
            at: wall,
            body: body.to_vec(),
        });
        let queue = self.failures.get_mut(token)?;
        let (failure, left) = queue.front_mut()?;
        let failure = failure.clone();
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        Some(failure)
    }

    /// Queues `failure` for the next `times` requests naming `token`.
    pub fn fail_next(&mut self, token: &str, failure: Failure, times: usize) {
        if times > 0 {
            self.failures
                .entry(token.to_owned())
                .or_default()
                .push_back((failure, times));
        }
    }

    /// Answers a request: with the injected failure taken by [`State::begin`],
    /// if any, else by DingTalk's rules. A delay has already been slept by
    /// the caller (the state is behind a lock), so it gets the rules too.
    pub fn answer(
        &mut self,
        req: &Incoming<'_>,
        failure: Option<Failure>,
        now: Instant,
        wall: SystemTime,
    ) -> (Reply, Option<Event>) {
        let token = req.token.unwrap_or("");
        match failure {
            // The server slept the delays already.
            None | Some(Failure::Delay(_) | Failure::After(..)) => self.handle(req, now, wall),
            Some(Failure::Http(status)) => (
                Reply::Http(status),
                Some(Event::HttpFailure {
                    token: token.to_owned(),
                    status,
                }),
            ),
            Some(Failure::ErrCode(code, msg)) if code == errcode::OK => (
                Reply::Json {
                    errcode: code,
                    errmsg: msg,
                },
                None,
            ),
            Some(Failure::ErrCode(code, msg)) => self.reject(token, code, msg),
        }
    }

    /// Applies DingTalk's rules to one request, at tokio time `now` and
    /// wall-clock time `wall`, recording the outcome.
    fn handle(
        &mut self,
        req: &Incoming<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> (Reply, Option<Event>) {
        let token = req.token.unwrap_or("");
        match self.check(req, now, wall) {
            Ok(Checked::Accept { msgtype, body }) => {
                let accepted = Accepted {
                    token: token.to_owned(),
                    msgtype,
                    body,
                    at: wall,
                };
                self.accepted.push(accepted.clone());
                (Reply::ok(), Some(Event::Accepted(accepted)))
            }
            Ok(Checked::Duplicate(msg_uuid)) => {
                *self.duplicates.entry(token.to_owned()).or_default() += 1;
                (
                    Reply::ok(),
                    Some(Event::Duplicate {
                        token: token.to_owned(),
                        msg_uuid,
                    }),
                )
            }
            Err((code, msg)) => self.reject(token, code, msg),
        }
    }

    fn check(
        &mut self,
        req: &Incoming<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Checked, (i64, String)> {
        let robot = req
            .token
            .and_then(|t| self.robots.get_mut(t))
            .ok_or_else(|| (errcode::TOKEN_NOT_EXIST, "token is not exist".to_owned()))?;
        let too_fast = |robot: &Robot| {
            (
                errcode::TOO_FAST,
                format!(
                    "send too fast, exceed {} times per minute",
                    robot.spec.per_minute
                ),
            )
        };
        if robot.limiter.check_blocked(now).is_err() {
            return Err(too_fast(robot));
        }
        if let Some(secret) = &robot.spec.secret {
            sign::verify(secret, req.timestamp, req.sign, wall)
                .map_err(|e| (errcode::SIGN, e.to_string()))?;
        }
        if !is_json_content_type(req.content_type) {
            return Err((
                errcode::CONTENT_TYPE,
                "无效的HTTP HEADER Content-Type".to_owned(),
            ));
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err((
                errcode::TOO_LONG,
                format!("message too long, exceed {MAX_BODY_BYTES} bytes"),
            ));
        }
        let body: Value = serde_json::from_slice(req.body)
            .map_err(|_| (errcode::MISSING_PARAM, "缺少参数 json".to_owned()))?;
        let valid = shape::validate(&body).map_err(|e| (errcode::MISSING_PARAM, e.to_string()))?;
        if !robot.spec.keywords.is_empty()
            && !shape::shown_texts(&body).iter().any(|text| {
                robot
                    .spec
                    .keywords
                    .iter()
                    .any(|k| text.contains(k.as_str()))
            })
        {
            return Err((
                errcode::SIGN,
                "keywords not in content, more: [https://open.dingtalk.com/document/robots/customize-robot-security-settings]".to_owned(),
            ));
        }
        let msg_uuid = valid.msg_uuid.filter(|_| robot.spec.honours_msg_uuid);
        if let Some(uuid) = &msg_uuid
            && robot.seen_uuids.contains(uuid)
        {
            return Ok(Checked::Duplicate(uuid.clone()));
        }
        if robot.limiter.try_acquire(now).is_err() {
            return Err(too_fast(robot));
        }
        if let Some(uuid) = msg_uuid {
            robot.seen_uuids.insert(uuid);
        }
        Ok(Checked::Accept {
            msgtype: valid.msgtype,
            body,
        })
    }

    fn reject(&mut self, token: &str, code: i64, msg: String) -> (Reply, Option<Event>) {
        self.rejections.push((token.to_owned(), code, msg.clone()));
        (
            Reply::Json {
                errcode: code,
                errmsg: msg.clone(),
            },
            Some(Event::Rejected {
                token: token.to_owned(),
                errcode: code,
                errmsg: msg,
            }),
        )
    }

    /// The secret of the robot with `token`, if it is configured and signed.
    #[cfg(test)]
    pub fn secret_for(&self, token: &str) -> Option<&str> {
        self.robots.get(token)?.spec.secret.as_deref()
    }

    /// All accepted messages, in arrival order.
    pub fn accepted(&self) -> &[Accepted] {
        &self.accepted
    }

    /// Requests that named `token`.
    pub fn requests_for(&self, token: &str) -> usize {
        self.posts.get(token).map_or(0, Vec::len)
    }

    /// The body of every request naming `token`, in arrival order, whatever
    /// the answer (injected failures included).
    pub fn bodies_for(&self, token: &str) -> Vec<Vec<u8>> {
        self.posts_for(token).map(|p| p.body.clone()).collect()
    }

    /// When each request naming `token` arrived, in arrival order, whatever
    /// the answer (injected failures included).
    pub fn posted_at(&self, token: &str) -> Vec<SystemTime> {
        self.posts_for(token).map(|p| p.at).collect()
    }

    fn posts_for(&self, token: &str) -> impl Iterator<Item = &Post> {
        self.posts.get(token).into_iter().flatten()
    }

    /// Requests naming `token` answered 410100.
    pub fn throttled_for(&self, token: &str) -> usize {
        self.rejections
            .iter()
            .filter(|(t, code, _)| t == token && *code == errcode::TOO_FAST)
            .count()
    }

    /// Duplicate `msgUuid`s answered for `token`.
    pub fn duplicates_for(&self, token: &str) -> usize {
        self.duplicates.get(token).copied().unwrap_or(0)
    }

    /// Every non-zero errcode answered, in order.
    pub fn rejections(&self) -> &[(String, i64, String)] {
        &self.rejections
    }
}

/// Outcome of a request that passed every check.
enum Checked {
    Accept { msgtype: String, body: Value },
    Duplicate(String),
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json_content_type(ct: Option<&str>) -> bool {
    ct.and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests;
