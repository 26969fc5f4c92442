//! CloudEvents for a test to send: `event("1").data(..).build()`, with the
//! attributes a test cares about and valid defaults for the rest.

use cloudevents::event::ExtensionValue;
use cloudevents::{Data, Event, EventBuilder, EventBuilderV10};

/// Starts a CloudEvent with `id`, source `connector-sdk-test` and type
/// `test`: `event("1").data("text/plain", "hi").extension("x", "y").build()`.
pub fn event(id: impl Into<String>) -> TestEvent {
    TestEvent(
        EventBuilderV10::new()
            .id(id)
            .source("connector-sdk-test")
            .ty("test"),
    )
}

/// A CloudEvent being built for a test; see [`event`]. For attributes it
/// does not cover, use [`EventBuilderV10`] itself.
#[derive(Debug, Clone)]
pub struct TestEvent(EventBuilderV10);

impl TestEvent {
    /// Sets `source` (a URI reference).
    pub fn source(self, source: impl Into<String>) -> Self {
        Self(self.0.source(source))
    }

    /// Sets `type`.
    pub fn ty(self, ty: impl Into<String>) -> Self {
        Self(self.0.ty(ty))
    }

    /// Sets `subject`.
    pub fn subject(self, subject: impl Into<String>) -> Self {
        Self(self.0.subject(subject))
    }

    /// Sets the data and its `datacontenttype`: a `&str` or `String` is
    /// text, a `serde_json::Value` JSON, a `Vec<u8>` bytes.
    pub fn data(self, content_type: impl Into<String>, data: impl Into<Data>) -> Self {
        Self(self.0.data(content_type, data))
    }

    /// Adds an extension attribute (string, bool or i64).
    pub fn extension(self, name: &str, value: impl Into<ExtensionValue>) -> Self {
        Self(self.0.extension(name, value))
    }

    /// The event.
    ///
    /// # Panics
    ///
    /// When an attribute is invalid (an empty source).
    pub fn build(self) -> Event {
        self.0
            .build()
            .unwrap_or_else(|err| panic!("invalid test event: {err}"))
    }
}
