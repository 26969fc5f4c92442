//! The harness every end-to-end test uses: a fake DingTalk on loopback, the
//! DingTalk sink on the real connector runtime (HTTP and gRPC on free
//! ports), and clients that talk to it the way a user and a Vanus trigger do.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::sync::Arc;
use std::time::Duration;

use connector_sdk::proto::cloud_events_client::CloudEventsClient;
use connector_sdk::proto::{BatchEvent, CloudEvent, CloudEventBatch};
use connector_sdk::{ServeOptions, Server};
use fake_dingtalk::{FakeDingTalk, RobotSpec};
use serde_json::Value;
use sink_dingtalk::{DingTalkConfig, DingTalkSink};

/// The signed robot of chat group `bot1`.
pub const TOKEN_1: &str = "token-bot1";
/// Its secret.
pub const SECRET_1: &str = "SECbot1secret";
/// The unsigned (keyword-secured) robot of chat group `bot2`.
pub const TOKEN_2: &str = "token-bot2";

/// A running fake DingTalk and sink.
pub struct Harness {
    pub fake: FakeDingTalk,
    pub server: Server,
    pub http: reqwest::Client,
}

/// An HTTP answer from the sink.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
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

    /// A fake with `robots` and a sink configured by `config(&fake)` (YAML).
    pub async fn with(
        robots: Vec<RobotSpec>,
        config: impl FnOnce(&FakeDingTalk) -> String,
    ) -> Harness {
        Self::with_options(robots, config, ServeOptions::loopback()).await
    }

    /// Like [`Harness::with`], with the servers' options given.
    pub async fn with_options(
        robots: Vec<RobotSpec>,
        config: impl FnOnce(&FakeDingTalk) -> String,
        options: ServeOptions,
    ) -> Harness {
        let fake = FakeDingTalk::start(robots)
            .await
            .expect("fake DingTalk starts");
        let yaml = config(&fake);
        let loaded = connector_sdk::config::load_from_str::<DingTalkConfig>(&yaml, "test config")
            .unwrap_or_else(|err| panic!("test config is valid: {err}"));
        let sink = DingTalkSink::new(loaded.sink).expect("sink initializes");
        let server = Server::start(Arc::new(sink), &options)
            .await
            .expect("servers start");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client builds");
        Harness { fake, server, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.http_addr())
    }

    /// POSTs a structured-mode CloudEvent (JSON text, as curl would).
    pub async fn post_structured(&self, body: &str) -> Answer {
        self.post("application/cloudevents+json", body.to_owned(), &[])
            .await
    }

    /// POSTs a batch-mode request.
    pub async fn post_batch(&self, body: &str) -> Answer {
        self.post("application/cloudevents-batch+json", body.to_owned(), &[])
            .await
    }

    /// POSTs raw bytes with a content type and extra headers (binary mode).
    pub async fn post(&self, content_type: &str, body: String, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http
            .post(self.url("/"))
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("sink answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response.text().await.expect("body");
        Answer {
            status,
            retry_after,
            body,
        }
    }

    /// Sends a gRPC `Send` as a Vanus trigger does.
    pub async fn grpc_send(&self, events: Vec<CloudEvent>) -> Result<(), tonic::Status> {
        let addr = self.server.grpc_addr().expect("gRPC is on");
        let mut client = CloudEventsClient::connect(format!("http://{addr}"))
            .await
            .expect("gRPC connects");
        client
            .send(BatchEvent {
                eventbus_name: String::new(),
                eventbus_id: 7,
                events: Some(CloudEventBatch { events }),
            })
            .await
            .map(|_| ())
    }

    /// GETs a path; status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("sink answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// The value of the Prometheus sample `name` whose labels include all of
    /// `labels`, summed over the matching series; 0 when absent.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(series, _)| {
                series.split('{').next() == Some(name)
                    && labels
                        .iter()
                        .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum()
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
