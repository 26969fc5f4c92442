//! What a template sees of a CloudEvent: its attributes (`id`, `source`,
//! `specversion`, `type`, and when present `subject`, `time`,
//! `datacontenttype`, `dataschema`), its extensions at the top level beside
//! them (as a Vanus transformer's model has them), and `data`: the parsed
//! JSON when the data is JSON, else the text.
//!
//! Attributes the event does not have are left undefined, so
//! `{{ subject | default("-") }}` and `{% if subject %}` work.

use std::borrow::Cow;

use chrono::SecondsFormat;
use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::cloudevents::{AttributesReader, Data, Event};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value as Json;

/// The model of `event`, ready to render templates with.
pub fn of(event: &Event) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(Model {
        event,
        data: data_of(event),
    }))
}

/// The event, seen as one map. Serialized straight into the template
/// engine's values: the data is not copied first.
struct Model<'a> {
    event: &'a Event,
    data: Option<Cow<'a, Json>>,
}

impl Serialize for Model<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.event;
        let mut map = serializer.serialize_map(None)?;
        // Extensions first: no extension may share an attribute's name, and
        // should a sender try, the attribute comes later and wins.
        for (name, value) in event.iter_extensions() {
            match value {
                ExtensionValue::String(s) => map.serialize_entry(name, s)?,
                ExtensionValue::Boolean(b) => map.serialize_entry(name, b)?,
                ExtensionValue::Integer(i) => map.serialize_entry(name, i)?,
            }
        }
        map.serialize_entry("id", event.id())?;
        map.serialize_entry("source", event.source().as_str())?;
        map.serialize_entry("specversion", event.specversion().as_str())?;
        map.serialize_entry("type", event.ty())?;
        if let Some(subject) = event.subject() {
            map.serialize_entry("subject", subject)?;
        }
        if let Some(time) = event.time() {
            map.serialize_entry("time", &time.to_rfc3339_opts(SecondsFormat::AutoSi, true))?;
        }
        if let Some(content_type) = event.datacontenttype() {
            map.serialize_entry("datacontenttype", content_type)?;
        }
        if let Some(schema) = event.dataschema() {
            map.serialize_entry("dataschema", schema.as_str())?;
        }
        if let Some(data) = &self.data {
            map.serialize_entry("data", data.as_ref())?;
        }
        map.end()
    }
}

/// The event's data as JSON, when it is JSON.
pub fn data_json(event: &Event) -> Option<Cow<'_, Json>> {
    data_of(event).filter(|data| !data.is_string())
}

/// The data as JSON when it is JSON (by its content type, or when there is
/// none, by parsing), else as text.
fn data_of(event: &Event) -> Option<Cow<'_, Json>> {
    let json_expected = event
        .datacontenttype()
        .is_none_or(connector_sdk::is_json_content_type);
    let text = match event.data()? {
        Data::Json(json) => return Some(Cow::Borrowed(json)),
        Data::String(text) => Cow::Borrowed(text.as_str()),
        Data::Binary(bytes) => String::from_utf8_lossy(bytes),
    };
    if json_expected && let Ok(json) = serde_json::from_str::<Json>(&text) {
        return Some(Cow::Owned(json));
    }
    Some(Cow::Owned(Json::String(text.into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::cloudevents::{EventBuilder, EventBuilderV10};
    use serde_json::json;

    fn render(event: &Event, template: &str) -> String {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        env.render_str(template, of(event)).expect("renders")
    }

    fn builder() -> EventBuilderV10 {
        EventBuilderV10::new()
            .id("e1")
            .source("https://alerts.example.com/am")
            .ty("com.example.alert")
    }

    #[test]
    fn attributes_and_extensions_sit_at_the_top() {
        let time = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:30:00.250Z")
            .expect("time")
            .to_utc();
        let event = builder()
            .subject("disk")
            .time(time)
            .extension("xvchatgroup", "ops")
            .extension("priority", 3)
            .extension("paged", true)
            .data("application/json", json!({"a": 1}))
            .build()
            .expect("event");
        assert_eq!(
            render(
                &event,
                "{{ id }}|{{ source }}|{{ type }}|{{ specversion }}|{{ subject }}|{{ time }}|{{ datacontenttype }}|{{ xvchatgroup }}|{{ priority + 1 }}|{{ paged }}"
            ),
            "e1|https://alerts.example.com/am|com.example.alert|1.0|disk|2024-05-01T10:30:00.250Z|application/json|ops|4|True"
        );
    }

    #[test]
    fn missing_attributes_are_undefined_not_empty() {
        let event = builder().build().expect("event");
        assert_eq!(
            render(
                &event,
                "{{ subject | default('-') }} {{ data is defined }} {% if time %}t{% else %}no time{% endif %}"
            ),
            "- False no time"
        );
    }

    #[test]
    fn json_data_is_parsed_whatever_form_it_arrived_in() {
        let as_json = builder()
            .data("application/json", json!({"alerts": [{"n": 1}, {"n": 2}]}))
            .build()
            .expect("event");
        let as_bytes = builder()
            .data(
                "application/json; charset=utf-8",
                br#"{"alerts": [{"n": 1}, {"n": 2}]}"#.to_vec(),
            )
            .build()
            .expect("event");
        let as_text = builder()
            .data(
                "application/vnd.example+json",
                r#"{"alerts": [{"n": 1}, {"n": 2}]}"#.to_owned(),
            )
            .build()
            .expect("event");
        for event in [as_json, as_bytes, as_text] {
            assert_eq!(
                render(&event, "{{ data.alerts | map(attribute='n') | join(',') }}"),
                "1,2"
            );
        }
    }

    #[test]
    fn other_data_is_text() {
        let plain = builder()
            .data("text/plain", r#"{"looks": "like json"}"#.to_owned())
            .build()
            .expect("event");
        assert_eq!(render(&plain, "{{ data }}"), r#"{"looks": "like json"}"#);
        let not_json = builder()
            .data("application/json", b"not json".to_vec())
            .build()
            .expect("event");
        assert_eq!(render(&not_json, "{{ data | upper }}"), "NOT JSON");
    }
}
