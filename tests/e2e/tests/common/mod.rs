//! The harness every end-to-end test uses: a fake DingTalk on loopback, and
//! the DingTalk sink on the real connector runtime through the SDK's testing
//! kit (HTTP and gRPC on free ports, clients that talk to it the way a user
//! and a Vanus trigger do).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::sync::Arc;
use std::time::Duration;

pub use connector_sdk::testing::Reply;
use connector_sdk::testing::ShiftedClock;
use connector_sdk::testing::TestServer;
use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::{BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
// The shared event builders; each test binary uses a different part.
#[allow(unused_imports)]
pub use fake_dingtalk::events::{self, Alerts, marker, markers, times_shown};
use fake_dingtalk::{FakeDingTalk, RobotSpec};
use serde_json::Value;
use sink_dingtalk::DingTalkSink;

/// The signed robot of chat group `bot1`.
pub const TOKEN_1: &str = "token-bot1";
/// Its secret.
pub const SECRET_1: &str = "SECbot1secret";
/// The unsigned (keyword-secured) robot of chat group `bot2`.
pub const TOKEN_2: &str = "token-bot2";

/// A running fake DingTalk and sink.
pub struct Harness {
    pub fake: FakeDingTalk,
    /// The sink, served; also a client for its probes, metrics and status.
    pub sink: TestServer<DingTalkSink>,
}

/// POSTs a structured-mode CloudEvent to `sink` (JSON text, as curl would).
pub async fn post_structured(sink: &TestServer<DingTalkSink>, body: &str) -> Reply {
    sink.post_raw(STRUCTURED_CONTENT_TYPE, body.to_owned(), &[])
        .await
}

/// How the alerts of these tests look: for chat group `bot1`, "disk full on
/// host-{i % 7}", as Alertmanager's text would come.
pub const ALERTS: Alerts = Alerts::new("alert-", "e2e-test", "test")
    .for_chat_group("bot1")
    .on_hosts(7);

/// How the alerts a Vanus trigger pushes over gRPC look: "cpu high".
pub const GRPC_ALERTS: Alerts =
    Alerts::new("grpc-alert-", "prometheus", "alert").saying("cpu high");

/// Alert `i` for chat group `bot1`, structured mode.
pub fn alert(i: usize) -> String {
    ALERTS.structured(i)
}

/// Alert `i` as a gRPC CloudEvent, as a Vanus trigger pushes it.
pub fn grpc_alert(i: usize) -> CloudEvent {
    GRPC_ALERTS.grpc(i)
}

/// Two chat groups, `bot1` (signed, the default) and `bot2` (unsigned).
pub fn two_groups(fake: &FakeDingTalk) -> String {
    format!(
        r#"
bot:
  default: bot1
  webhooks:
    - chat_group: bot1
      url: "{}"
      signature: {SECRET_1}
    - chat_group: bot2
      url: "{}"
"#,
        fake.webhook_url(TOKEN_1),
        fake.webhook_url(TOKEN_2)
    )
}

/// The two standard robots.
pub fn two_robots() -> Vec<RobotSpec> {
    vec![
        RobotSpec::signed(TOKEN_1, SECRET_1),
        RobotSpec::new(TOKEN_2),
    ]
}

impl Harness {
    /// The standard setup: two groups on two robots.
    pub async fn start() -> Harness {
        Self::with(two_robots(), two_groups).await
    }

    /// A fake with `robots` and a sink configured by `config(&fake)` (YAML,
    /// runtime keys such as `drain_delay_ms` included).
    pub async fn with(
        robots: Vec<RobotSpec>,
        config: impl FnOnce(&FakeDingTalk) -> String,
    ) -> Harness {
        let fake = FakeDingTalk::start(robots)
            .await
            .expect("fake DingTalk starts");
        let sink = TestServer::from_yaml(&config(&fake)).await;
        Harness { fake, sink }
    }

    /// POSTs a structured-mode CloudEvent (JSON text, as curl would).
    pub async fn post_structured(&self, body: &str) -> Reply {
        post_structured(&self.sink, body).await
    }

    /// POSTs a structured-mode CloudEvent and checks it is refused for good
    /// (400, which a trigger does not retry), the answer saying `why`.
    pub async fn assert_refused(&self, body: &str, why: &str) {
        let reply = self.post_structured(body).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(reply.body.contains(why), "{}", reply.body);
    }

    /// POSTs a batch-mode request.
    pub async fn post_batch(&self, body: &str) -> Reply {
        self.sink
            .post_raw(BATCH_CONTENT_TYPE, body.to_owned(), &[])
            .await
    }

    /// Sends a gRPC `Send` as a Vanus trigger does.
    pub async fn grpc_send(&self, events: Vec<CloudEvent>) -> Result<(), tonic::Status> {
        self.sink.send_grpc_events(events).await
    }

    /// A fake and a sink whose rate-limit clocks are `clock`: moving it on
    /// skips a minute window for both.
    pub async fn with_clock(
        robots: Vec<RobotSpec>,
        config: impl FnOnce(&FakeDingTalk) -> String,
        clock: Arc<ShiftedClock>,
    ) -> Harness {
        let fake = FakeDingTalk::start_with_clock(robots, Arc::clone(&clock))
            .await
            .expect("fake DingTalk starts");
        let sink = TestServer::from_yaml_with_clock(&config(&fake), clock).await;
        Harness { fake, sink }
    }

    /// Sends a gRPC batch as a Vanus trigger does: on any error the whole
    /// batch again, after 1 s, 5 s, 10 s, 30 s..., at most `attempts` times.
    /// Returns the number of attempts it took, or `None` if none succeeded.
    pub async fn trigger_grpc(&self, events: Vec<CloudEvent>, attempts: usize) -> Option<usize> {
        let backoff = [1, 5, 10, 30, 60, 120];
        for attempt in 0..attempts {
            match self.grpc_send(events.clone()).await {
                Ok(()) => return Some(attempt + 1),
                Err(status) => {
                    let wait = backoff[attempt.min(backoff.len() - 1)];
                    tracing::debug!(attempt, %status, wait, "the trigger retries the whole batch");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            }
        }
        None
    }

    /// Waits until every marker shows in what the robot with `token`
    /// accepted, at most `timeout`; returns how many show.
    pub async fn wait_visible(&self, token: &str, markers: &[String], timeout: Duration) -> usize {
        wait_visible(&self.fake, token, markers, timeout).await
    }

    /// The bodies DingTalk accepted for a robot, without their msgUuid.
    pub fn received(&self, token: &str) -> Vec<Value> {
        self.fake
            .accepted_for(token)
            .into_iter()
            .map(|a| without_uuid(a.body))
            .collect()
    }
}

/// A body with `msgUuid` removed, for comparing content.
pub fn without_uuid(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.remove("msgUuid");
    }
    body
}

/// A structured-mode event from these tests (source `e2e-test`, type
/// `test`) as JSON text.
pub fn structured(
    id: &str,
    extensions: &[(&str, &str)],
    content_type: &str,
    data: Value,
) -> String {
    events::structured(id, "e2e-test", "test", extensions, content_type, data)
}

/// Waits until every marker shows in what `fake`'s robot `token` accepted,
/// at most `timeout`; returns how many show.
pub async fn wait_visible(
    fake: &FakeDingTalk,
    token: &str,
    markers: &[String],
    timeout: Duration,
) -> usize {
    let started = tokio::time::Instant::now();
    loop {
        let accepted = fake.accepted_for(token);
        let shown = markers
            .iter()
            .filter(|m| times_shown(&accepted, m) > 0)
            .count();
        if shown == markers.len() || started.elapsed() >= timeout {
            return shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
