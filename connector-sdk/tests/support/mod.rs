//! What the SDK's integration tests share: a sink that records what
//! arrives and answers as it is told.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::sync::Mutex;

use connector_sdk::cloudevents::AttributesReader;
use connector_sdk::{BoxError, Context, Event, NoConfig, Outcome, Sink, async_trait};

/// Keeps what arrives and answers with what `answer` makes of the
/// number of events.
pub struct Recorder {
    answer: Box<dyn Fn(usize) -> Vec<Outcome> + Send + Sync>,
    pub arrived: Mutex<Vec<Event>>,
}

#[async_trait]
impl Sink for Recorder {
    type Config = NoConfig;
    fn name() -> &'static str {
        "recorder"
    }
    async fn initialize(_: NoConfig, _: Context) -> Result<Self, BoxError> {
        Ok(Self::answering(Outcome::Delivered))
    }
    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
        let count = events.len();
        self.arrived.lock().expect("lock").extend(events);
        (self.answer)(count)
    }
}

impl Recorder {
    /// Answers `answer` for every event.
    pub fn answering(answer: Outcome) -> Self {
        Self::answering_with(move |count| answer.clone().for_each(count))
    }

    pub fn answering_with(answer: impl Fn(usize) -> Vec<Outcome> + Send + Sync + 'static) -> Self {
        Self {
            answer: Box::new(answer),
            arrived: Mutex::default(),
        }
    }

    pub fn ids(&self) -> Vec<String> {
        let arrived = self.arrived.lock().expect("lock");
        arrived.iter().map(|e| e.id().to_owned()).collect()
    }
}
