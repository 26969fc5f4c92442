//! The harness every end-to-end test uses: a fake DingTalk on loopback, and
//! the DingTalk sink on the real connector runtime through the SDK's testing
//! kit (HTTP and gRPC on free ports, clients that talk to it the way a user
//! and a Vanus trigger do).

#![allow(dead_code)] // each test binary uses a different part of the harness

use connector_sdk::proto::{BatchEvent, CloudEvent, CloudEventBatch};
pub use connector_sdk::testing::Reply;
use connector_sdk::testing::TestServer;
use connector_sdk::{BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
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
        self.sink
            .post_raw(STRUCTURED_CONTENT_TYPE, body.to_owned(), &[])
            .await
    }

    /// POSTs a batch-mode request.
    pub async fn post_batch(&self, body: &str) -> Reply {
        self.sink
            .post_raw(BATCH_CONTENT_TYPE, body.to_owned(), &[])
            .await
    }

    /// Sends a gRPC `Send` as a Vanus trigger does.
    pub async fn grpc_send(&self, events: Vec<CloudEvent>) -> Result<(), tonic::Status> {
        let batch = BatchEvent {
            eventbus_name: String::new(),
            eventbus_id: 7,
            events: Some(CloudEventBatch { events }),
        };
        self.sink.send_grpc_raw(batch).await
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

/// A structured-mode event as JSON text.
pub fn structured(
    id: &str,
    extensions: &[(&str, &str)],
    content_type: &str,
    data: Value,
) -> String {
    let mut event = serde_json::json!({
        "id": id,
        "source": "e2e-test",
        "specversion": "1.0",
        "type": "test",
        "datacontenttype": content_type,
        "data": data,
    });
    for (name, value) in extensions {
        event[*name] = Value::String((*value).to_owned());
    }
    event.to_string()
}
