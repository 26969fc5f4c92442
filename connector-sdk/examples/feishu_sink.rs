//! A sink for Feishu/Lark custom bots, on the SDK's delivery kit: the kit
//! paces, queues, merges digests, retries, holds and reports; this file is
//! only Feishu: its config, what an event becomes, the request signature,
//! and what Feishu's answers mean.
//!
//! ```yaml
//! bots:
//!   - target: ops        # what an event's `xvtarget` names; the first bot's is the default
//!     url: https://open.feishu.cn/open-apis/bot/v2/hook/<token>
//!     secret: <secret>   # only when the bot checks signatures
//! ```
//!
//! Bots of one target form a pool, each with its own budget. Text data
//! becomes a `text` message; JSON data with a `title` a `post` (rich text,
//! a row per line of its `text`); any other data is sent as text. Past a
//! bot's budget events are queued and go out as `post` digests under Feishu's
//! body limit; an event whose body would be over it is refused (400).

use std::error::Error as _;
use std::time::Duration;

use base64::Engine as _;
use connector_sdk::cloudevents::{AttributesReader, Data};
use connector_sdk::deliver::{Answer, Blame, Delivery, Destination, Digest, Parcel, Route};
use connector_sdk::deliver::{Settings, Verdict};
use connector_sdk::store::Window;
use connector_sdk::{BoxError, Context, Event, Outcome, Sink, SinkConfig, async_trait, shorten};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt as _, Collected, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The extension that names an event's target.
const TARGET_EXTENSION: &str = "xvtarget";
/// Feishu's body limit, "20 KB", read as the smaller 20,000 bytes.
const MAX_BODY: usize = 20_000;
/// What `timestamp` and `sign` add to a signed body, at most.
const SIGN_ROOM: usize = 100;
/// Feishu's limits per bot, 100 a minute and 5 a second, each with a margin:
/// the kit counts a send when it starts, Feishu when it arrives, and a slow
/// send followed by a quick one arrive closer together than they started.
const WINDOWS: [Window; 2] = [
    Window::new(100, Duration::from_secs(66)),
    Window::new(5, Duration::from_millis(1_250)),
];
/// How long a bot is held after "too fast" (11232, or HTTP 429): its minute.
const HOLD: Option<Duration> = Some(Duration::from_secs(60));
/// The most of an answer that is read (Feishu's is tens of bytes).
const MAX_ANSWER: usize = 64 * 1024;
/// How much of what others wrote (Feishu's `msg`, an event's id) is quoted.
const QUOTED: usize = 200;

#[derive(Deserialize)]
struct Config {
    bots: Vec<BotConfig>,
}

impl SinkConfig for Config {}

#[derive(Deserialize)]
struct BotConfig {
    target: String,
    #[serde(deserialize_with = "webhook")]
    url: url::Url,
    secret: Option<Secret>,
}

/// A bot's signing secret. Neither `Debug` nor `Display`: it cannot be logged.
#[derive(Deserialize)]
struct Secret(String);

/// A webhook URL, parsed once; the error never quotes it (it holds the token).
fn webhook<'de, D: serde::Deserializer<'de>>(text: D) -> Result<url::Url, D::Error> {
    let url = url::Url::parse(&String::deserialize(text)?).ok();
    let url = url.filter(|url| matches!(url.scheme(), "http" | "https"));
    url.ok_or_else(|| serde::de::Error::custom("not an http(s) URL: copy the bot's webhook"))
}

/// What one event becomes: Feishu's `text`, or a `post` (its title, its rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Message {
    Text(String),
    Post(String, Vec<String>),
}

impl Message {
    /// What `event` becomes, or why it cannot be sent.
    fn of(event: &Event) -> Result<Self, String> {
        let json: Value = match event.data() {
            None => return Err("it has no data: send the text to show as its data".into()),
            Some(Data::Json(json)) => json.clone(),
            Some(Data::String(text)) => text.as_str().into(),
            Some(Data::Binary(bytes)) => serde_json::from_slice(bytes)
                .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into()),
        };
        let rows = json["text"].as_str().unwrap_or_default().lines();
        let message = match json["title"].as_str() {
            Some(title) => Message::Post(title.into(), rows.map(Into::into).collect()),
            None => Message::Text(json.as_str().map_or_else(|| json.to_string(), Into::into)),
        };
        let size = message.size();
        if size > MAX_BODY {
            return Err(format!(
                "its body, {size} bytes, is over Feishu's {MAX_BODY}"
            ));
        }
        Ok(message)
    }

    /// Its JSON body, unsigned.
    fn body(&self) -> Value {
        match self {
            Message::Text(text) => json!({"msg_type": "text", "content": {"text": text}}),
            Message::Post(title, rows) => {
                let rows: Vec<Value> = rows.iter().map(|row| text_row(row)).collect();
                let post = json!({"zh_cn": {"title": title, "content": rows}});
                json!({"msg_type": "post", "content": {"post": post}})
            }
        }
    }

    /// Its body's length in bytes once signed, at most.
    fn size(&self) -> usize {
        self.body().to_string().len() + SIGN_ROOM
    }

    /// What a digest shows of it: one row.
    fn row(&self) -> String {
        match self {
            Message::Text(text) => text.clone(),
            Message::Post(title, rows) => [vec![title.clone()], rows.clone()].concat().join("\n"),
        }
    }
}

/// A row of a `post`: one text element.
fn text_row(text: &str) -> Value {
    json!([{"tag": "text", "text": text}])
}

/// One custom bot: a destination of the kit.
struct Bot {
    config: BotConfig,
    http: reqwest::Client,
    key: String,
}

impl Bot {
    /// The body for `message`, signed afresh when the bot has a secret.
    fn body(&self, message: &Message) -> Value {
        let mut body = message.body();
        if let Some(Secret(secret)) = &self.config.secret {
            let timestamp = chrono::Utc::now().timestamp().to_string();
            body["sign"] = sign(&timestamp, secret).into();
            body["timestamp"] = timestamp.into();
        }
        body
    }
}

/// Feishu's signature: base64 of HMAC-SHA256 keyed with `timestamp + "\n" +
/// secret`, over an empty message.
fn sign(timestamp: &str, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What Feishu's answer code means, `reason` saying what happened: one table,
/// whose fault and what to check.
fn verdict(code: i64, reason: String) -> Verdict {
    let (blame, hint) = match code {
        0 => return Verdict::Delivered,
        11232 => return Verdict::Throttled { hold: HOLD, reason },
        9499 => (Blame::Message, "Feishu cannot read it; fix the event"),
        19021 => (Blame::Destination, "check the bot's secret and the clock"),
        19022 => (Blame::Destination, "allow this host's IP for the bot"),
        19024 => (Blame::Message, "it lacks the keywords the bot wants"),
        // Maybe the bot's settings: a queued event waits for the operator.
        _ => (Blame::Destination, "a code this sink does not know"),
    };
    let reason = format!("{reason}; {hint}");
    Verdict::Refused { blame, reason }
}

/// The one HTTP client every bot shares: it follows no redirect (a webhook
/// never redirects; following one would post the token elsewhere).
fn http_client() -> reqwest::Result<reqwest::Client> {
    // reqwest is built without a TLS provider: install ring (again is a no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2));
    http.redirect(reqwest::redirect::Policy::none()).build()
}

/// A request that got no answer, told without its URL (it holds the token).
fn no_answer(err: reqwest::Error) -> Verdict {
    let (connected, timed_out) = (!err.is_connect(), err.is_timeout());
    let err = err.without_url();
    let causes = std::iter::successors(err.source(), |&cause| cause.source());
    let causes: String = causes.map(|cause| format!(": {cause}")).collect();
    let reason = format!("the request to Feishu failed: {err}{causes}");
    Verdict::no_answer(connected, timed_out, reason)
}

#[async_trait]
impl Destination for Bot {
    type Payload = Message;

    fn key(&self) -> &str {
        &self.key
    }

    fn windows(&self) -> &[Window] {
        &WINDOWS
    }

    async fn send(&self, message: &Message, timeout: Duration) -> Answer {
        if message.size() > MAX_BODY {
            // Never sent (a digest or an entry queued by another version).
            let reason = format!("not sent: its body is over {MAX_BODY} bytes");
            return verdict(9499, reason).into();
        }
        let request = self.http.post(self.config.url.clone()).timeout(timeout);
        let response = match request.json(&self.body(message)).send().await {
            Ok(response) => response,
            Err(err) => return no_answer(err).into(),
        };
        let status = response.status();
        let answer = Limited::new(reqwest::Body::from(response), MAX_ANSWER);
        let answer = answer.collect().await.map(Collected::to_bytes);
        let reply: Value = serde_json::from_slice(&answer.unwrap_or_default()).unwrap_or_default();
        let Some(code) = reply["code"].as_i64() else {
            let reason = format!("Feishu answered HTTP {status} without its JSON answer");
            return Verdict::of_http_status(status.as_u16(), HOLD, reason).into();
        };
        let msg = shorten(reply["msg"].as_str().unwrap_or_default(), QUOTED);
        let reason = format!("Feishu answered {code} ({msg})");
        let (verdict, code) = (verdict(code, reason), Some(code));
        Answer { verdict, code }
    }

    /// The oldest queued messages as one `post`, a row each, as many as fit.
    fn digest(&self, queued: &[&Message], _seed: &str) -> Option<Digest<Message>> {
        let title = |count: usize| format!("{count} events at once (the bot's limit was reached)");
        // Each row adds its JSON and a comma to the post without rows.
        let mut size = Message::Post(title(queued.len()), Vec::new()).size();
        let rows: Vec<String> = (queued.iter().map(|message| message.row()))
            .take_while(|row| {
                size += text_row(row).to_string().len() + 1;
                size <= MAX_BODY
            })
            .collect();
        let count = rows.len();
        let payload = Message::Post(title(count), rows);
        (count > 1).then_some(Digest { payload, count })
    }

    /// Its URL with the token (the last path segment) masked, and whether it
    /// signs.
    fn describe(&self) -> Value {
        let url = &self.config.url;
        let path = url.path().trim_end_matches('/');
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let masked = format!("{}{dir}/***", url.origin().ascii_serialization());
        json!({"url": masked, "signed": self.config.secret.is_some()})
    }
}

/// The Feishu sink: each event routed to its target and handed to the kit.
struct FeishuSink {
    delivery: Delivery<Bot>,
    /// The first bot's target.
    default: String,
}

impl FeishuSink {
    /// The parcel `event` becomes, or why it can never be sent.
    fn parcel(&self, event: &Event) -> Result<Parcel<Message>, Outcome> {
        let id = shorten(event.id(), QUOTED);
        let refuse = |why: String| Outcome::rejected(format!("event {id}: {why}"));
        let asked = event.extension(TARGET_EXTENSION).map(ToString::to_string);
        let asked = asked.as_deref().unwrap_or(&self.default);
        let target = self.delivery.route(asked);
        let target = target.map_err(|why| refuse(format!("{TARGET_EXTENSION} {why}")))?;
        let message = Message::of(event).map_err(refuse)?;
        let source = event.source().as_str();
        Ok(Parcel::new(target, event.id(), source, message))
    }
}

#[async_trait]
impl Sink for FeishuSink {
    type Config = Config;

    fn name() -> &'static str {
        "sink-feishu"
    }

    async fn initialize(config: Config, context: Context) -> Result<Self, BoxError> {
        let http = http_client()?;
        let first = config.bots.first().map(|bot| bot.target.clone());
        let default = first.ok_or("bots is empty: name at least one bot")?;
        let mut routes: Vec<Route<Bot>> = Vec::new();
        for config in config.bots {
            let hash = Sha256::digest(config.url.as_str());
            let key = format!("feishu-{}", hex::encode(&hash[..12]));
            let (target, http) = (config.target.clone(), http.clone());
            let bot = Bot { config, http, key };
            tracing::info!(target = %target, bot = %bot.describe(), "bot configured");
            // Bots of one target form its pool.
            match routes.iter_mut().find(|route| route.target == target) {
                Some(route) => route.destinations.push(bot),
                None => routes.push(Route::new(target, vec![bot])),
            }
        }
        let delivery = Delivery::new(context.store().clone(), Settings::default(), routes).await?;
        delivery.start(&context);
        Ok(Self { delivery, default })
    }

    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
        let prepared = events.iter().map(|event| self.parcel(event)).collect();
        let deadline = self.delivery.settings().deadline();
        let receipts = self.delivery.deliver_each(prepared, deadline).await;
        receipts.into_iter().map(|r| r.outcome).collect()
    }

    async fn status(&self) -> Option<Value> {
        serde_json::to_value(self.delivery.status().await).ok()
    }
}

fn main() -> std::process::ExitCode {
    connector_sdk::run::<FeishuSink>()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use base64::Engine as _;
    use connector_sdk::Unavailable;
    use connector_sdk::deliver::{Blame, Destination, Verdict};
    use connector_sdk::testing::{TestEvent, TestServer, event};
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::{Value, json};
    use sha2::Sha256;

    use super::{Bot, BotConfig, FeishuSink, MAX_BODY, Message, sign, verdict};

    const SECRET: &str = "feishu-test-secret";
    /// The token of the bot that checks signatures (target `ops`), and of
    /// the one that does not (target `dev`).
    const SIGNED: &str = "t0ken-signed-0123";
    const OPEN: &str = "t0ken-open-4567";
    const SECOND: Duration = Duration::from_secs(1);
    const MINUTE: Duration = Duration::from_secs(60);

    /// A Feishu custom bot on loopback that checks what Feishu checks (the
    /// size, the signature and its timestamp, the shape; 5 a second and 100
    /// a minute per bot, else 11232) and keeps what it showed.
    #[derive(Default)]
    struct Feishu(Mutex<Seen>);

    #[derive(Default)]
    struct Seen {
        /// Per bot, when each request that passed the checks arrived.
        arrivals: HashMap<String, Vec<Instant>>,
        /// Per bot, the texts of each message shown, in order.
        shown: HashMap<String, Vec<Vec<String>>>,
        throttled: usize,
        oversized: usize,
        badly_signed: usize,
        malformed: usize,
        largest: usize,
        /// While set, a message showing this word is answered HTTP 403 (a
        /// proxy in the way), and not shown.
        blocked_word: Option<String>,
    }

    impl Feishu {
        async fn start() -> (Arc<Self>, String) {
            let feishu = Arc::new(Self::default());
            let app = Router::new()
                .route("/open-apis/bot/v2/hook/{token}", post(hook))
                .with_state(Arc::clone(&feishu));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let addr = listener.local_addr().expect("its address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            (feishu, format!("http://{addr}/open-apis/bot/v2/hook"))
        }

        fn seen(&self) -> MutexGuard<'_, Seen> {
            self.0.lock().expect("the stand-in's lock")
        }

        /// How often each alert was shown by the bot of `token`.
        fn alerts(&self, token: &str) -> HashMap<String, usize> {
            let mut counts = HashMap::new();
            for message in self.seen().shown.get(token).into_iter().flatten() {
                for alert in alerts(message) {
                    *counts.entry(alert).or_default() += 1;
                }
            }
            counts
        }
    }

    async fn hook(
        State(feishu): State<Arc<Feishu>>,
        Path(token): Path<String>,
        body: Bytes,
    ) -> Response {
        let answer = |code: i64, msg: &str| {
            axum::Json(json!({"code": code, "msg": msg, "data": {}})).into_response()
        };
        let mut seen = feishu.seen();
        seen.largest = seen.largest.max(body.len());
        if body.len() > MAX_BODY {
            seen.oversized += 1;
            return answer(9499, "Bad Request");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            seen.malformed += 1;
            return answer(9499, "Bad Request");
        };
        if token == SIGNED && !signed_within_the_hour(&body) {
            seen.badly_signed += 1;
            return answer(19021, "sign match fail or timestamp is not within one hour");
        }
        let Some(texts) = texts(&body) else {
            seen.malformed += 1;
            return answer(9499, "Bad Request");
        };
        let now = Instant::now();
        let arrivals = seen.arrivals.entry(token.clone()).or_default();
        arrivals.push(now);
        let within = |per| arrivals.iter().filter(|at| now - **at < per).count();
        if within(SECOND) > 5 || within(MINUTE) > 100 {
            seen.throttled += 1;
            return answer(11232, "frequency limited");
        }
        let blocked = seen.blocked_word.as_deref();
        if blocked.is_some_and(|word| words(&texts).any(|w| w == word)) {
            return (StatusCode::FORBIDDEN, "blocked by a proxy").into_response();
        }
        seen.shown.entry(token).or_default().push(texts);
        answer(0, "success")
    }

    /// Written from Feishu's documentation, not from the sink's `sign`.
    fn signed_within_the_hour(body: &Value) -> bool {
        let (Some(timestamp), Some(sign)) = (body["timestamp"].as_str(), body["sign"].as_str())
        else {
            return false;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        let fresh = timestamp
            .parse::<u64>()
            .is_ok_and(|at| at.abs_diff(now.as_secs()) <= 3_600);
        let key = format!("{timestamp}\n{SECRET}");
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("a key");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        fresh && sign == expected
    }

    /// The texts of a well-formed `text` or `post` message: its title first.
    fn texts(body: &Value) -> Option<Vec<String>> {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        match body["msg_type"].as_str()? {
            "text" => Some(vec![text(&body["content"]["text"])?]),
            "post" => {
                let post = &body["content"]["post"]["zh_cn"];
                let mut texts = vec![text(&post["title"])?];
                for row in post["content"].as_array()? {
                    for element in row.as_array()? {
                        (element["tag"] == "text").then_some(())?;
                        texts.push(text(&element["text"])?);
                    }
                }
                Some(texts)
            }
            _ => None,
        }
    }

    fn words(texts: &[String]) -> impl Iterator<Item = &str> {
        texts.iter().flat_map(|text| text.split_whitespace())
    }

    /// The alerts a message shows: one alone, several in a digest.
    fn alerts(texts: &[String]) -> Vec<String> {
        let alerts = words(texts).filter(|word| word.starts_with("alert-"));
        alerts.map(str::to_owned).collect()
    }

    /// The most requests that arrived within any `per`.
    fn most_within(arrivals: &[Instant], per: Duration) -> usize {
        (0..arrivals.len())
            .map(|i| {
                let rest = arrivals[i..].iter();
                rest.take_while(|at| **at - arrivals[i] < per).count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Alert `n`: text when even, a JSON `post` when odd.
    fn alert(n: usize) -> TestEvent {
        let event = event(format!("e{n}"));
        if n.is_multiple_of(2) {
            event.data("text/plain", format!("alert-{n} disk full on host-{n}"))
        } else {
            let data =
                json!({"title": format!("alert-{n}"), "text": format!("disk full\nhost-{n}")});
            event.data("application/json", data)
        }
    }

    fn yaml(base: &str, secret: &str) -> String {
        format!(
            "bots:\n  - {{target: ops, url: '{base}/{SIGNED}', secret: {secret}}}\n  \
             - {{target: dev, url: '{base}/{OPEN}'}}\n"
        )
    }

    async fn sink(base: &str) -> TestServer<FeishuSink> {
        TestServer::from_yaml(&yaml(base, SECRET)).await
    }

    /// Polls `done` every 50 ms for at most `limit`; true once it holds.
    async fn within(limit: Duration, done: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while !done() {
            if started.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_hundred_events_in_ten_seconds_are_all_shown_within_feishus_limits() {
        let (feishu, base) = Feishu::start().await;
        let server = sink(&base).await;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        // 100 rounds of 3: one over HTTP, two in a gRPC batch.
        for round in 0..100 {
            tick.tick().await;
            let [a, b, c] = [0, 1, 2].map(|k| alert(3 * round + k).build());
            let pair = [b, c];
            let (http, grpc) = tokio::join!(server.send_structured(&a), server.send_grpc(&pair));
            assert_eq!((http.status, grpc.status), (200, 200), "{http:?} {grpc:?}");
        }
        let sent = started.elapsed();
        let all = within(Duration::from_secs(40), || {
            feishu.alerts(SIGNED).len() == 300
        })
        .await;
        let shown = feishu.alerts(SIGNED);
        let throttled = feishu.seen().throttled;
        assert!(
            all,
            "{} of 300 shown; {throttled} answered 11232",
            shown.len()
        );
        assert!(shown.values().all(|&n| n == 1), "each shown once");
        let seen = feishu.seen();
        let arrivals = &seen.arrivals[SIGNED];
        assert!(most_within(arrivals, SECOND) <= 5, "never over 5 a second");
        assert!(
            most_within(arrivals, MINUTE) <= 100,
            "never over 100 a minute"
        );
        let counts = (
            seen.throttled,
            seen.oversized,
            seen.badly_signed,
            seen.malformed,
        );
        assert_eq!(
            counts,
            (0, 0, 0, 0),
            "throttled, oversized, badly signed, malformed"
        );
        let messages = &seen.shown[SIGNED];
        let digests = messages.iter().filter(|m| alerts(m).len() > 1).count();
        let singles = messages.len() - digests;
        assert!(
            singles > 0 && digests > 0,
            "{singles} singles, {digests} digests"
        );
        eprintln!(
            "300 events sent in {sent:.1?}, all shown {:.1?} after the first: {} posts \
             ({singles} single, {digests} digests), at most {} in a second",
            started.elapsed(),
            messages.len(),
            most_within(arrivals, SECOND),
        );
    }

    #[tokio::test]
    async fn a_grpc_batch_redelivered_whole_is_shown_once() {
        let (feishu, base) = Feishu::start().await;
        let server = sink(&base).await;
        // The second event fails (a proxy answers 403), so the sender gets
        // 503 and sends the whole batch again, as a Vanus trigger does.
        let batch: Vec<_> = (0..3).map(|n| alert(n).build()).collect();
        feishu.seen().blocked_word = Some("alert-1".into());
        let first = server.send_grpc(&batch).await;
        assert_eq!(first.status, 503, "{first:?}");
        assert!(first.body.contains("HTTP 403"), "{first:?}");
        assert_eq!(
            feishu.alerts(SIGNED),
            HashMap::from([("alert-0".into(), 1)])
        );
        feishu.seen().blocked_word = None;
        for _ in 0..2 {
            assert_eq!(server.send_grpc(&batch).await.status, 200);
        }
        let once: HashMap<String, usize> = (0..3).map(|n| (format!("alert-{n}"), 1)).collect();
        assert_eq!(
            feishu.alerts(SIGNED),
            once,
            "each once; the last send was answered by the ledger"
        );

        // A batch past the bot's 5 a second: partly queued, all answered 200.
        let storm: Vec<_> = (10..22).map(|n| alert(n).build()).collect();
        for _ in 0..2 {
            assert_eq!(server.send_grpc(&storm).await.status, 200);
        }
        let all = within(Duration::from_secs(20), || {
            feishu.alerts(SIGNED).len() == 15
        })
        .await;
        assert!(all, "{:?}", feishu.alerts(SIGNED));
        assert!(feishu.alerts(SIGNED).values().all(|&n| n == 1));
    }

    #[tokio::test]
    async fn a_body_over_20_kb_never_leaves() {
        let (feishu, base) = Feishu::start().await;
        let server = sink(&base).await;
        // 21,000 bytes in 7,000 characters: the limit is in bytes.
        let big = event("big").data("text/plain", "告".repeat(7_000)).build();
        let reply = server.send_structured(&big).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(reply.body.contains("over Feishu's 20000"), "{reply:?}");
        let long_post = json!({"title": "alert-big", "text": "x".repeat(MAX_BODY)});
        let long_post = event("big-post")
            .data("application/json", long_post)
            .build();
        let reply = server.send_grpc(&[alert(0).build(), long_post]).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        let just_under = format!("alert-1 {}", "y".repeat(MAX_BODY - 200));
        let just_under = event("e1").data("text/plain", just_under).build();
        assert_eq!(server.send_binary(&just_under).await.status, 200);
        // Large events past the budget: digests hold as many as fit.
        let large = |n: usize| {
            let text = format!("alert-{n} {}", "z".repeat(6_000));
            event(format!("e{n}")).data("text/plain", text).build()
        };
        let batch: Vec<_> = (2..12).map(large).collect();
        assert_eq!(server.send_grpc(&batch).await.status, 200);
        let all = within(Duration::from_secs(20), || {
            feishu.alerts(SIGNED).len() == 12
        })
        .await;
        assert!(all, "{:?}", feishu.alerts(SIGNED));
        let seen = feishu.seen();
        assert_eq!((seen.oversized, seen.malformed), (0, 0));
        assert!(
            seen.largest <= MAX_BODY && seen.largest > MAX_BODY - 300,
            "{}",
            seen.largest
        );
        let digests = seen.shown[SIGNED]
            .iter()
            .filter(|m| alerts(m).len() > 1)
            .count();
        assert!(digests > 0, "some of the large ones went together");
    }

    #[tokio::test]
    async fn events_go_to_the_bot_of_their_target_and_status_shows_no_secret() {
        let (feishu, base) = Feishu::start().await;
        let server = sink(&base).await;
        let to_dev = alert(0).extension("xvtarget", "dev").build();
        assert_eq!(server.send_structured(&to_dev).await.status, 200);
        assert_eq!(server.send_structured(&alert(1).build()).await.status, 200);
        let nowhere = alert(2).extension("xvtarget", "nope").build();
        let reply = server.send_structured(&nowhere).await;
        assert_eq!(reply.status, 400);
        let reason = "xvtarget `nope` is not configured; configured: dev, ops";
        assert!(reply.body.contains(reason), "{reply:?}");
        let no_data = server.send_structured(&event("e3").build()).await;
        assert_eq!(no_data.status, 400, "{no_data:?}");
        assert_eq!(feishu.alerts(OPEN), HashMap::from([("alert-0".into(), 1)]));
        assert_eq!(
            feishu.alerts(SIGNED),
            HashMap::from([("alert-1".into(), 1)])
        );

        let status = server.get("/status").await;
        assert_eq!(status.status, 200);
        assert!(
            status.body.contains("/open-apis/bot/v2/hook/***"),
            "{status:?}"
        );
        for secret in [SIGNED, OPEN, SECRET] {
            assert!(!status.body.contains(secret), "{status:?}");
        }
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_and_status_says_so() {
        let (feishu, base) = Feishu::start().await;
        let server = TestServer::<FeishuSink>::from_yaml(&yaml(&base, "not-the-secret")).await;
        let reply = server.send_structured(&alert(0).build()).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(
            reply.body.contains("19021") && reply.body.contains("secret"),
            "{reply:?}"
        );
        assert_eq!(feishu.seen().badly_signed, 1);
        let status = server.get("/status").await;
        assert!(status.body.contains("19021"), "{status:?}");
        assert!(!status.body.contains("not-the-secret"), "{status:?}");
    }

    #[test]
    fn the_signature_matches_a_reference_computed_apart() {
        // Python: base64(hmac.new(b"1700000000\nfeishu-test-secret", b"", sha256)).
        let reference = "e3MJ8Q5llVxGJ8pVkGPBhexDAgjvYqpjPP1GkY9XceI=";
        assert_eq!(sign("1700000000", SECRET), reference);
    }

    #[test]
    fn each_answer_code_has_its_verdict() {
        assert_eq!(verdict(0, "success".into()), Verdict::Delivered);
        assert!(matches!(
            verdict(11232, "frequency limited".into()),
            Verdict::Throttled { hold, .. } if hold == super::HOLD
        ));
        let blame = |code: i64| match verdict(code, format!("code {code}")) {
            Verdict::Refused { blame, reason } if reason.starts_with("code") => blame,
            other => panic!("{code}: {other:?}"),
        };
        assert_eq!(blame(9499), Blame::Message);
        assert_eq!(blame(19021), Blame::Destination);
        assert_eq!(blame(19022), Blame::Destination);
        assert_eq!(blame(19024), Blame::Message);
        assert_eq!(
            blame(12345),
            Blame::Destination,
            "unknown: queued events wait"
        );
    }

    #[test]
    fn events_become_text_or_post_and_a_digest_holds_as_many_as_fit() {
        let text = event("1").data("text/plain", "disk full").build();
        assert_eq!(Message::of(&text), Ok(Message::Text("disk full".into())));
        let titled = json!({"title": "Disk", "text": "a: 97%\nb: 99%"});
        let titled = event("2").data("application/json", titled).build();
        let rows = vec!["a: 97%".to_owned(), "b: 99%".to_owned()];
        assert_eq!(Message::of(&titled), Ok(Message::Post("Disk".into(), rows)));
        let plain = event("3").data("application/json", json!({"n": 1})).build();
        assert_eq!(Message::of(&plain), Ok(Message::Text(r#"{"n":1}"#.into())));

        let bot = bot("http://127.0.0.1:9/open-apis/bot/v2/hook/token");
        let large: Vec<Message> = (0..10)
            .map(|n| Message::Text(format!("{n:06000}")))
            .collect();
        let queued: Vec<&Message> = large.iter().collect();
        let digest = bot.digest(&queued, "seed").expect("a digest");
        assert_eq!(digest.count, 3, "three of 6,000 bytes fit under 20,000");
        assert!(digest.payload.size() <= MAX_BODY);
        let Message::Post(title, mut rows) = digest.payload else {
            panic!("a digest is a post")
        };
        rows.push(large[3].row());
        assert!(
            Message::Post(title, rows).size() > MAX_BODY,
            "a fourth would not fit"
        );
        assert!(
            bot.digest(&queued[..1], "seed").is_none(),
            "one is sent alone"
        );
    }

    #[tokio::test]
    async fn a_bot_that_cannot_be_reached_spends_nothing() {
        // Port 9 (discard) on loopback: nothing listens.
        let bot = bot("http://127.0.0.1:9/open-apis/bot/v2/hook/token");
        let answer = bot.send(&Message::Text("hi".into()), SECOND).await;
        assert!(
            matches!(
                &answer.verdict,
                Verdict::Failed { kind: Unavailable::ServiceUnavailable, reached: false, reason, .. }
                    if !reason.contains("token")
            ),
            "{answer:?}"
        );
        let masked = "http://127.0.0.1:9/open-apis/bot/v2/hook/***";
        assert_eq!(bot.describe(), json!({"url": masked, "signed": false}));
    }

    fn bot(url: &str) -> Bot {
        let config = BotConfig {
            target: "ops".into(),
            url: url.parse().expect("a URL"),
            secret: None,
        };
        let http = super::http_client().expect("a client");
        let key = "test".into();
        Bot { config, http, key }
    }
}
