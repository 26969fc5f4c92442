//! The DingTalk sink on the connector runtime: [`Sink::initialize`] builds
//! every robot from the configuration and the connector's store and starts
//! the flushers, [`Sink::arrived`] delivers a request's events, `/status`
//! shows each robot, [`Sink::destroy`] stops the flushers (what is queued
//! stays in the store for the next start).

use connector_sdk::cloudevents::Event;
use connector_sdk::{BoxError, Context, Outcome, Sink, Store, async_trait};
use serde_json::Value;

use crate::config::DingTalkConfig;
use crate::delivery::Delivery;
use crate::telemetry;

pub use crate::delivery::CHAT_GROUP_EXTENSION;

/// The DingTalk sink.
#[derive(Debug)]
pub struct DingTalkSink {
    delivery: Delivery,
}

impl DingTalkSink {
    /// Builds the sink from a validated configuration, with its state in
    /// `store`. Nothing runs in the background until it is served.
    pub async fn new(config: DingTalkConfig, store: Store) -> Result<Self, BoxError> {
        Ok(Self {
            delivery: Delivery::new(config, store).await?,
        })
    }

    /// Delivers a batch and reports each event's outcome, in order.
    pub async fn deliver(&self, events: Vec<Event>) -> Vec<Outcome> {
        self.delivery.deliver(events).await
    }

    /// Every robot with its chat groups, budget, outbox and DingTalk's latest
    /// answer; URLs masked.
    pub async fn status_view(&self) -> Value {
        self.delivery.status().await
    }
}

#[async_trait]
impl Sink for DingTalkSink {
    type Config = DingTalkConfig;

    fn name() -> &'static str {
        "sink-dingtalk"
    }

    async fn initialize(config: DingTalkConfig, context: Context) -> Result<Self, BoxError> {
        telemetry::describe();
        let sink = Self::new(config, context.store().clone()).await?;
        sink.delivery.export_metrics_from_the_start();
        sink.delivery.start_flushers();
        Ok(sink)
    }

    async fn arrived(&self, events: Vec<Event>) -> Vec<Outcome> {
        self.deliver(events).await
    }

    async fn destroy(&self) {
        self.delivery.stop_flushers().await;
    }

    async fn status(&self) -> Option<Value> {
        Some(self.status_view().await)
    }
}
