//! A second sink, on the public SDK only: appends each event as one JSON line
//! to the file named by `file.path` in the config.
use connector_sdk::{BoxError, Event, Outcome, Sink, SinkConfig, Unavailable, async_trait};
use tokio::{fs::File, io::AsyncWriteExt, sync::Mutex};

#[derive(serde::Deserialize)]
struct Config {
    file: FileConfig,
}
#[derive(serde::Deserialize)]
struct FileConfig {
    path: std::path::PathBuf,
}
impl SinkConfig for Config {}

struct JsonlSink(Mutex<File>);

#[async_trait]
impl Sink for JsonlSink {
    type Config = Config;
    fn name() -> &'static str {
        "sink-jsonl"
    }
    async fn initialize(config: Config) -> Result<Self, BoxError> {
        let mut options = File::options();
        let file = options.create(true).append(true).open(config.file.path);
        Ok(Self(Mutex::new(file.await?)))
    }
    async fn arrived(&self, events: Vec<Event>) -> Outcome {
        let mut lines = Vec::new();
        for event in &events {
            if let Err(err) = serde_json::to_writer(&mut lines, event) {
                return Outcome::rejected(format!("an event is not JSON: {err}"));
            }
            lines.push(b'\n');
        }
        // tokio writes in the background: answer only once the flush is done.
        let mut file = self.0.lock().await;
        match file.write_all(&lines).await.and(file.flush().await) {
            Ok(()) => Outcome::Delivered,
            Err(err) => Outcome::unavailable(Unavailable::ServiceUnavailable, err.to_string()),
        }
    }
}

fn main() -> std::process::ExitCode {
    connector_sdk::run::<JsonlSink>()
}

#[cfg(test)]
mod tests {
    use connector_sdk::testing::{TestServer, event};

    #[tokio::test]
    async fn appends_a_line_per_event_from_http_and_grpc() {
        let path = std::env::temp_dir().join(format!("jsonl-sink-{}.jsonl", std::process::id()));
        let yaml = format!("file:\n  path: {}\n", path.display());
        let server = TestServer::<super::JsonlSink>::from_yaml(&yaml).await;
        let events = ["1", "2", "3"].map(|id| event(id).data("text/plain", id).build());
        assert_eq!(server.send_structured(&events[0]).await.status, 200);
        assert_eq!(server.send_grpc(&events[1..]).await.status, 200);
        server.shutdown().await;
        let text = std::fs::read_to_string(&path).expect("the file is written");
        std::fs::remove_file(path).expect("cleaned up");
        let lines: Result<Vec<super::Event>, _> = text.lines().map(serde_json::from_str).collect();
        assert_eq!(lines.expect("one JSON event a line"), events);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_is_503_so_the_sender_retries() {
        let server = TestServer::<super::JsonlSink>::from_yaml("file: {path: /dev/full}").await;
        let reply = server.send_binary(&event("4").build()).await;
        assert_eq!(reply.status, 503, "{reply:?}");
    }
}
