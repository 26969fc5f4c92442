//! A second sink, on the public SDK only: appends each event as one JSON line
//! to the file named by `file.path`, at most `file.per_minute` lines a minute
//! (optional) through a gate in the connector's store.
use std::time::Duration;

use connector_sdk::store::Passage;
use connector_sdk::{BoxError, Context, Event, Outcome, Sink, SinkConfig, Store, Unavailable};
use tokio::{fs::File, io::AsyncWriteExt, sync::Mutex};

#[derive(serde::Deserialize)]
struct Config {
    file: FileConfig,
}
#[derive(serde::Deserialize)]
struct FileConfig {
    path: std::path::PathBuf,
    per_minute: Option<u32>,
}
impl SinkConfig for Config {}

struct JsonlSink {
    file: Mutex<File>,
    store: Store,
    per_minute: Option<u32>,
}

#[connector_sdk::async_trait]
impl Sink for JsonlSink {
    type Config = Config;
    fn name() -> &'static str {
        "sink-jsonl"
    }
    async fn initialize(config: Config, context: Context) -> Result<Self, BoxError> {
        let mut options = File::options();
        let file = options.create(true).append(true).open(config.file.path);
        let (store, per_minute) = (context.store().clone(), config.file.per_minute);
        Ok(Self {
            file: Mutex::new(file.await?),
            store,
            per_minute,
        })
    }
    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
        let mut file = self.file.lock().await;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in &events {
            // Before the gate: an event that cannot be written spends no budget.
            let mut line = match serde_json::to_vec(event) {
                Ok(line) => line,
                Err(err) => {
                    outcomes.push(Outcome::rejected(format!("cannot write as JSON: {err}")));
                    continue;
                }
            };
            if let Some(limit) = self.per_minute {
                // The gate survives restarts: a restart does not reset the budget.
                match self
                    .store
                    .pass("lines", limit, Duration::from_secs(60))
                    .await
                {
                    Ok(Passage::Open { .. }) => {}
                    Ok(Passage::Wait(wait) | Passage::Held(wait)) => {
                        outcomes.push(Outcome::throttled(wait, "over file.per_minute"));
                        continue;
                    }
                    Err(err) => {
                        outcomes.push(Outcome::unavailable(
                            Unavailable::ServiceUnavailable,
                            err.to_string(),
                        ));
                        continue;
                    }
                }
            }
            line.push(b'\n');
            // tokio writes in the background: answer only once the flush is done.
            outcomes.push(match file.write_all(&line).await.and(file.flush().await) {
                Ok(()) => Outcome::Delivered,
                Err(err) => Outcome::unavailable(Unavailable::ServiceUnavailable, err.to_string()),
            });
        }
        outcomes
    }
}

fn main() -> std::process::ExitCode {
    connector_sdk::run::<JsonlSink>()
}

#[cfg(test)]
mod tests {
    use connector_sdk::testing::{TestServer, event};

    fn lines(path: &std::path::Path) -> Vec<super::Event> {
        let text = std::fs::read_to_string(path).expect("the file is written");
        let lines: Result<Vec<super::Event>, _> = text.lines().map(serde_json::from_str).collect();
        lines.expect("one JSON event a line")
    }

    #[tokio::test]
    async fn appends_a_line_per_event_from_http_and_grpc() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.jsonl");
        let yaml = format!("file:\n  path: {}\n", path.display());
        let server = TestServer::<super::JsonlSink>::from_yaml(&yaml).await;
        let events = ["1", "2", "3"].map(|id| event(id).data("text/plain", id).build());
        assert_eq!(server.send_structured(&events[0]).await.status, 200);
        assert_eq!(server.send_grpc(&events[1..]).await.status, 200);
        server.shutdown().await;
        assert_eq!(lines(&path), events);
    }

    #[tokio::test]
    async fn a_redelivered_batch_writes_only_what_was_not_accepted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.jsonl");
        let yaml = format!("file: {{path: {}, per_minute: 2}}\n", path.display());
        let server = TestServer::<super::JsonlSink>::from_yaml(&yaml).await;
        let batch = ["a", "b", "c"].map(|id| event(id).build());
        // Two lines fit the minute; the third is throttled, so the sender
        // redelivers the whole batch, and the runtime's ledger hands the sink
        // only the event it did not accept.
        for _ in 0..2 {
            let reply = server.send_grpc(&batch).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (429, "over file.per_minute")
            );
        }
        assert_eq!(lines(&path), batch[..2]);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_is_503_so_the_sender_retries() {
        let server = TestServer::<super::JsonlSink>::from_yaml("file: {path: /dev/full}").await;
        let reply = server.send_binary(&event("4").build()).await;
        assert_eq!(reply.status, 503, "{reply:?}");
    }
}
