//! Converts the Vanus protobuf `CloudEvent` into a `cloudevents::Event`.
//!
//! The converted event passes the same validation as one that came over
//! HTTP (`validate.rs`), and an invalid one is reported as HTTP reports it
//! (`error.rs`), with its position in the batch. Decoding never rejects an event for an extension:
//! every attribute type converts. The CloudEvents SDK holds only string, boolean and integer
//! extensions, so bytes become base64, timestamps RFC 3339 and URIs strings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesWriter, Data, Event, EventBuilder, EventBuilderV10};

use super::error::{DecodeError, EventProblem};
use super::validate;
use crate::proto::cloud_event::Data as ProtoData;
use crate::proto::cloud_event::cloud_event_attribute_value::Attr;
use crate::proto::{BatchEvent, CloudEvent};
use crate::text::{QUOTE_BYTES, shorten};

/// Decodes every event of a gRPC `BatchEvent`, in order.
pub(crate) fn decode_batch(batch: BatchEvent) -> Result<Vec<Event>, DecodeError> {
    batch
        .events
        .map(|b| b.events)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, event)| decode_event(index, event))
        .collect()
}

/// Decodes one protobuf event and validates it; `index` names it in errors.
pub(crate) fn decode_event(index: usize, proto: CloudEvent) -> Result<Event, DecodeError> {
    let invalid = |problem| DecodeError::in_batch(index, problem);
    validate::spec_version(&proto.spec_version).map_err(invalid)?;
    validate::required("id", &proto.id).map_err(invalid)?;
    validate::required("source", &proto.source).map_err(invalid)?;
    validate::required("type", &proto.r#type).map_err(invalid)?;

    let mut event = EventBuilderV10::new()
        .id(proto.id)
        .source(proto.source)
        .ty(proto.r#type)
        .build()
        .map_err(|err| {
            invalid(EventProblem::Invalid {
                attribute: "source".into(),
                reason: err.to_string(),
            })
        })?;

    let mut content_type = None;
    for (name, value) in proto.attributes {
        let Some(attr) = value.attr else { continue };
        let bad_attribute = |reason: String| {
            invalid(EventProblem::Invalid {
                attribute: shorten(&name, QUOTE_BYTES).into_owned(),
                reason,
            })
        };
        match name.as_str() {
            "datacontenttype" => content_type = Some(attr_to_string(attr)),
            "subject" => {
                event.set_subject(Some(attr_to_string(attr)));
            }
            "time" => {
                let time = match attr {
                    Attr::CeTimestamp(ts) => timestamp(&ts),
                    other => DateTime::parse_from_rfc3339(&attr_to_string(other))
                        .map(|t| t.with_timezone(&Utc))
                        .ok(),
                };
                event.set_time(Some(
                    time.ok_or_else(|| bad_attribute("not an RFC 3339 time".into()))?,
                ));
            }
            "dataschema" => {
                let url = url::Url::parse(&attr_to_string(attr))
                    .map_err(|e| bad_attribute(e.to_string()))?;
                event.set_dataschema(Some(url));
            }
            _ => event.set_extension(&name, attr_to_extension(attr)),
        }
    }

    if let Some(data) = proto.data {
        set_data(&mut event, content_type, data);
    } else if let Some(content_type) = content_type {
        event.set_datacontenttype(Some(content_type));
    }
    validate::event(&mut event).map_err(invalid)?;
    Ok(event)
}

/// Vanus sends JSON data as bytes: keep it as JSON when the content type says
/// JSON (or says nothing) and it parses, so sinks see one shape whichever
/// transport carried the event.
fn set_data(event: &mut Event, content_type: Option<String>, data: ProtoData) {
    // Parsed only where the content type allows JSON: most payloads are not.
    let says_json = content_type.as_deref().is_some_and(is_json_content_type);
    let says_nothing = content_type.is_none();
    let data = match data {
        ProtoData::BinaryData(bytes) if says_json || says_nothing => {
            match serde_json::from_slice(&bytes) {
                Ok(json) => Data::Json(json),
                Err(_) => Data::Binary(bytes),
            }
        }
        ProtoData::BinaryData(bytes) => Data::Binary(bytes),
        ProtoData::TextData(text) if says_json => match serde_json::from_str(&text) {
            Ok(json) => Data::Json(json),
            Err(_) => Data::String(text),
        },
        ProtoData::TextData(text) => Data::String(text),
        ProtoData::ProtoData(any) => Data::Binary(any.value),
    };
    match content_type {
        Some(content_type) => {
            event.set_data(content_type, data);
        }
        None => {
            event.set_data_unchecked(data);
        }
    }
}

/// True when a `datacontenttype` says the data is JSON: `application/json`,
/// `text/json` or any `+json` type, parameters ignored, in any case (media
/// types are case-insensitive).
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let suffix = essence.len().saturating_sub("+json".len());
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || essence
            .get(suffix..)
            .is_some_and(|end| end.eq_ignore_ascii_case("+json"))
}

fn attr_to_extension(attr: Attr) -> ExtensionValue {
    match attr {
        Attr::CeBoolean(b) => ExtensionValue::Boolean(b),
        Attr::CeInteger(i) => ExtensionValue::Integer(i64::from(i)),
        other => ExtensionValue::String(attr_to_string(other)),
    }
}

fn attr_to_string(attr: Attr) -> String {
    match attr {
        Attr::CeBoolean(b) => b.to_string(),
        Attr::CeInteger(i) => i.to_string(),
        Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => s,
        Attr::CeBytes(bytes) => BASE64.encode(bytes),
        Attr::CeTimestamp(ts) => timestamp(&ts)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| format!("{}s{}ns", ts.seconds, ts.nanos)),
    }
}

fn timestamp(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// Encodes a CloudEvent as the protobuf a Vanus trigger would send: the
/// inverse of [`decode_event`], for tests (the testing kit's gRPC sender).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn encode_event(event: &Event) -> CloudEvent {
    use crate::proto::cloud_event::CloudEventAttributeValue;
    use cloudevents::AttributesReader;
    use cloudevents::event::AttributeValue;

    let mut attributes = std::collections::HashMap::new();
    let string = |s: String| CloudEventAttributeValue {
        attr: Some(Attr::CeString(s)),
    };
    for (name, value) in event.iter_attributes() {
        let attr = match value {
            AttributeValue::Time(t) => Attr::CeTimestamp(prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
            }),
            AttributeValue::URI(u) => Attr::CeUri(u.to_string()),
            other => Attr::CeString(other.to_string()),
        };
        if !matches!(name, "id" | "source" | "specversion" | "type") {
            attributes.insert(
                name.to_owned(),
                CloudEventAttributeValue { attr: Some(attr) },
            );
        }
    }
    for (name, value) in event.iter_extensions() {
        let value = match value {
            ExtensionValue::Boolean(b) => CloudEventAttributeValue {
                attr: Some(Attr::CeBoolean(*b)),
            },
            ExtensionValue::Integer(i) => match i32::try_from(*i) {
                Ok(i) => CloudEventAttributeValue {
                    attr: Some(Attr::CeInteger(i)),
                },
                Err(_) => string(i.to_string()),
            },
            ExtensionValue::String(s) => string(s.clone()),
        };
        attributes.insert(name.to_owned(), value);
    }
    let data = event.data().map(|data| match data {
        Data::Binary(bytes) => ProtoData::BinaryData(bytes.clone()),
        Data::String(text) => ProtoData::TextData(text.clone()),
        Data::Json(json) => ProtoData::BinaryData(json.to_string().into_bytes()),
    });
    CloudEvent {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        spec_version: event.specversion().to_string(),
        r#type: event.ty().to_owned(),
        attributes,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_in_any_case_with_parameters() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/cloudevents+json",
            "application/vnd.api+JSON",
        ] {
            assert!(is_json_content_type(json), "{json}");
        }
        for not_json in ["text/plain", "application/jsonl", "json", "", "+jso"] {
            assert!(!is_json_content_type(not_json), "{not_json}");
        }
    }
    use crate::proto::CloudEventBatch;
    use crate::proto::cloud_event::CloudEventAttributeValue;
    use cloudevents::AttributesReader;
    use std::collections::HashMap;

    fn attr(attr: Attr) -> CloudEventAttributeValue {
        CloudEventAttributeValue { attr: Some(attr) }
    }

    fn proto_event(
        attributes: HashMap<String, CloudEventAttributeValue>,
        data: Option<ProtoData>,
    ) -> CloudEvent {
        CloudEvent {
            id: "id-1".into(),
            source: "vanus/test".into(),
            spec_version: "1.0".into(),
            r#type: "demo".into(),
            attributes,
            data,
        }
    }

    #[test]
    fn every_attribute_type_converts() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        };
        let attributes = HashMap::from([
            ("xvanusretryattempts".to_owned(), attr(Attr::CeInteger(3))),
            ("xvanusdeliverytime".to_owned(), attr(Attr::CeTimestamp(ts))),
            ("flag".to_owned(), attr(Attr::CeBoolean(true))),
            ("blob".to_owned(), attr(Attr::CeBytes(vec![1, 2, 3]))),
            (
                "link".to_owned(),
                attr(Attr::CeUri("https://example.com/x".into())),
            ),
            ("rel".to_owned(), attr(Attr::CeUriRef("/x".into()))),
            ("subject".to_owned(), attr(Attr::CeString("subj".into()))),
            ("time".to_owned(), attr(Attr::CeTimestamp(ts))),
            (
                "dataschema".to_owned(),
                attr(Attr::CeUri("https://example.com/schema".into())),
            ),
            (
                "datacontenttype".to_owned(),
                attr(Attr::CeString("application/json".into())),
            ),
        ]);
        let event = decode_event(
            0,
            proto_event(
                attributes,
                Some(ProtoData::BinaryData(br#"{"a":1}"#.to_vec())),
            ),
        )
        .expect("decodes");

        assert_eq!(
            event.extension("xvanusretryattempts"),
            Some(&ExtensionValue::Integer(3))
        );
        assert_eq!(
            event.extension("xvanusdeliverytime"),
            Some(&ExtensionValue::String("2023-11-14T22:13:20.005Z".into()))
        );
        assert_eq!(
            event.extension("flag"),
            Some(&ExtensionValue::Boolean(true))
        );
        assert_eq!(
            event.extension("blob"),
            Some(&ExtensionValue::String("AQID".into()))
        );
        assert_eq!(
            event.extension("link"),
            Some(&ExtensionValue::String("https://example.com/x".into()))
        );
        assert_eq!(
            event.extension("rel"),
            Some(&ExtensionValue::String("/x".into()))
        );
        assert_eq!(event.subject(), Some("subj"));
        assert_eq!(event.time().map(|t| t.timestamp()), Some(1_700_000_000));
        assert_eq!(
            event.dataschema().map(|u| u.as_str()),
            Some("https://example.com/schema")
        );
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(event.data(), Some(&Data::Json(serde_json::json!({"a": 1}))));
        assert!(
            event.extension("subject").is_none(),
            "subject is an attribute, not an extension"
        );
    }

    #[test]
    fn each_data_kind_becomes_event_data() {
        let text = decode_event(
            0,
            proto_event(HashMap::new(), Some(ProtoData::TextData("hello".into()))),
        )
        .expect("text");
        assert_eq!(text.data(), Some(&Data::String("hello".into())));

        let plain = HashMap::from([(
            "datacontenttype".to_owned(),
            attr(Attr::CeString("text/plain".into())),
        )]);
        let binary = decode_event(
            0,
            proto_event(plain, Some(ProtoData::BinaryData(b"\"quoted\"".to_vec()))),
        )
        .expect("binary");
        assert_eq!(
            binary.data(),
            Some(&Data::Binary(b"\"quoted\"".to_vec())),
            "text/plain stays bytes"
        );

        let any = prost_types::Any {
            type_url: "type.googleapis.com/x".into(),
            value: vec![8, 1],
        };
        let proto = decode_event(
            0,
            proto_event(HashMap::new(), Some(ProtoData::ProtoData(any))),
        )
        .expect("proto");
        assert_eq!(proto.data(), Some(&Data::Binary(vec![8, 1])));

        let none = decode_event(0, proto_event(HashMap::new(), None)).expect("no data");
        assert_eq!(none.data(), None);
    }

    #[test]
    fn missing_required_attributes_are_named() {
        let mut event = proto_event(HashMap::new(), None);
        event.id.clear();
        assert_eq!(
            decode_event(4, event),
            Err(DecodeError::InvalidEvent {
                index: Some(4),
                problem: EventProblem::Missing { attribute: "id" }
            })
        );
        let mut event = proto_event(HashMap::new(), None);
        event.spec_version = "0.2".into();
        assert!(decode_event(0, event).is_err());
    }

    #[test]
    fn a_bad_time_is_reported_not_ignored() {
        let attributes =
            HashMap::from([("time".to_owned(), attr(Attr::CeString("yesterday".into())))]);
        let err = decode_event(0, proto_event(attributes, None)).expect_err("invalid time");
        assert!(err.to_string().contains("time"), "{err}");
    }

    #[test]
    fn a_batch_decodes_in_order_whichever_bus_field_is_set() {
        let batch = BatchEvent {
            eventbus_name: String::new(),
            eventbus_id: 42,
            events: Some(CloudEventBatch {
                events: vec![proto_event(HashMap::new(), None), {
                    let mut second = proto_event(HashMap::new(), None);
                    second.id = "id-2".into();
                    second
                }],
            }),
        };
        let events = decode_batch(batch).expect("decodes");
        let ids: Vec<_> = events.iter().map(|e| e.id().to_owned()).collect();
        assert_eq!(ids, ["id-1", "id-2"]);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let original = EventBuilderV10::new()
            .id("e1")
            .source("test/src")
            .ty("t")
            .subject("s")
            .extension("xvchatgroup", "ops")
            .extension("count", 7_i64)
            .data("application/json", serde_json::json!({"k": "v"}))
            .build()
            .expect("valid event");
        let decoded = decode_event(0, encode_event(&original)).expect("decodes");
        assert_eq!(decoded, original);
    }
}
