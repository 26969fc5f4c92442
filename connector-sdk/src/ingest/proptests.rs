//! Property tests for the decoders, the code that meets untrusted bytes
//! first: HTTP structured, binary and batch mode, and the protobuf codec.
//!
//! - Arbitrary bytes, and arbitrary (often invalid) events, never panic a
//!   decoder: they decode or are refused with a reason. Nor do they panic
//!   the estimate of what a gRPC message decodes into (`decoded::batch`),
//!   which reads the bytes before prost does.
//! - A valid event encoded for a door and decoded by it is the same event.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use chrono::{DateTime, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{Data, Event, EventBuilder, EventBuilderV10};
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use prost::Message;

use super::codec::{decode_batch, decode_event, encode_event};
use super::decoded;
use super::http::{self, BATCH_CONTENT_TYPE, Encoding, STRUCTURED_CONTENT_TYPE};
use crate::proto::cloud_event::cloud_event_attribute_value::Attr;
use crate::proto::cloud_event::{CloudEventAttributeValue, Data as ProtoData};
use crate::proto::{BatchEvent, CloudEvent, CloudEventBatch};

/// Attribute names an extension must not take.
const RESERVED: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

fn headers(content_type: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        map.insert(header::CONTENT_TYPE, value);
    }
    map
}

/// JSON data of any shape but a bare `null` (which is "no data") and
/// floats (whose text form is not this test's concern).
fn json_data() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            hash_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    });
    tree.prop_filter("null is no data", |value| !value.is_null())
}

/// Data and the content type that says what it is.
fn data() -> impl Strategy<Value = Option<(&'static str, Data)>> {
    prop_oneof![
        Just(None),
        ".{0,40}".prop_map(|text| Some(("text/plain", Data::String(text)))),
        json_data().prop_map(|json| Some(("application/json", Data::Json(json)))),
        vec(any::<u8>(), 0..64)
            .prop_map(|bytes| Some(("application/octet-stream", Data::Binary(bytes)))),
    ]
}

/// Extension values both doors carry as they are (gRPC integers are 32-bit).
fn extension_value() -> impl Strategy<Value = ExtensionValue> {
    prop_oneof![
        ".{0,20}".prop_map(ExtensionValue::String),
        any::<bool>().prop_map(ExtensionValue::Boolean),
        any::<i32>().prop_map(|i| ExtensionValue::Integer(i64::from(i))),
    ]
}

prop_compose! {
    /// A valid CloudEvent 1.0, of any shape the doors promise to carry.
    fn valid_event()(
        id in ".{1,16}",
        source in "[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}",
        ty in ".{1,16}",
        subject in proptest::option::of(".{0,16}"),
        time in proptest::option::of((0_i64..253_402_300_799, 0_u32..1_000_000_000)),
        schema in proptest::option::of("[a-z]{1,8}"),
        extensions in hash_map("[a-z][a-z0-9]{0,9}", extension_value(), 0..4),
        data in data(),
    ) -> Event {
        let mut builder = EventBuilderV10::new().id(id).source(source).ty(ty);
        if let Some(subject) = subject {
            builder = builder.subject(subject);
        }
        if let Some((seconds, nanos)) = time {
            let time: DateTime<Utc> = DateTime::from_timestamp(seconds, nanos).unwrap_or_default();
            builder = builder.time(time);
        }
        if let Some(schema) = schema {
            builder = builder.data_with_schema(
                "application/json",
                format!("https://example.com/{schema}").as_str(),
                serde_json::json!({}),
            );
        }
        for (name, value) in extensions {
            if !RESERVED.contains(&name.as_str()) {
                builder = builder.extension(&name, value);
            }
        }
        let mut event = builder.build().unwrap_or_else(|err| panic!("the strategy builds valid events: {err}"));
        if let Some((content_type, data)) = data {
            event.set_data(content_type, data);
        }
        event
    }
}

fn attr() -> impl Strategy<Value = Option<Attr>> {
    proptest::option::of(prop_oneof![
        any::<bool>().prop_map(Attr::CeBoolean),
        any::<i32>().prop_map(Attr::CeInteger),
        ".{0,16}".prop_map(Attr::CeString),
        vec(any::<u8>(), 0..16).prop_map(Attr::CeBytes),
        ".{0,16}".prop_map(Attr::CeUri),
        ".{0,16}".prop_map(Attr::CeUriRef),
        (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Attr::CeTimestamp(
            prost_types::Timestamp { seconds, nanos }
        )),
    ])
}

prop_compose! {
    /// A protobuf event as anyone might send it: empty or odd attributes,
    /// reserved names among the extensions, any data.
    fn any_proto_event()(
        id in ".{0,8}",
        source in ".{0,8}",
        spec_version in prop_oneof![Just("1.0".to_owned()), Just(String::new()), ".{0,4}"],
        ty in ".{0,8}",
        attributes in hash_map(
            prop_oneof![".{0,8}", proptest::sample::select(RESERVED).prop_map(str::to_owned)],
            attr(),
            0..6,
        ),
        data in proptest::option::of(prop_oneof![
            vec(any::<u8>(), 0..32).prop_map(ProtoData::BinaryData),
            ".{0,32}".prop_map(ProtoData::TextData),
            vec(any::<u8>(), 0..8).prop_map(|value| ProtoData::ProtoData(prost_types::Any { type_url: "x".into(), value })),
        ]),
    ) -> CloudEvent {
        let attributes: HashMap<String, CloudEventAttributeValue> = attributes
            .into_iter()
            .map(|(name, attr)| (name, CloudEventAttributeValue { attr }))
            .collect();
        CloudEvent { id, source, spec_version, r#type: ty, attributes, data }
    }
}

/// A JSON object as anyone might send it in structured mode.
fn any_json_event() -> impl Strategy<Value = serde_json::Value> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::json!({"nested": [1, "two"]})),
        Just(serde_json::Value::from("1.0")),
        Just(serde_json::Value::from("application/json")),
        Just(serde_json::Value::from("2026-11-21T10:00:00Z")),
        Just(serde_json::Value::from("aGVsbG8=")),
    ];
    let name = prop_oneof![
        proptest::sample::select(RESERVED).prop_map(str::to_owned),
        "[a-z]{1,6}",
    ];
    hash_map(name, value, 0..8).prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
}

/// `bytes` as the length-delimited protobuf field `field`.
fn wrapped(field: u32, bytes: &[u8]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut message = Vec::with_capacity(bytes.len() + 8);
    encode_key(field, WireType::LengthDelimited, &mut message);
    encode_varint(bytes.len() as u64, &mut message);
    message.extend_from_slice(bytes);
    message
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoded_size_estimate(
        bytes in vec(any::<u8>(), 0..512),
        nested in any::<bool>(),
    ) {
        // Nested in BatchEvent.events (2) and CloudEventBatch.events (1),
        // the bytes reach the walker of one event, and of its data.
        let message = if nested { wrapped(2, &wrapped(1, &bytes)) } else { bytes };
        if let Some(cost) = decoded::batch(&message) {
            prop_assert!(cost >= message.len(), "{cost} < {}", message.len());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_an_http_decoder(
        body in vec(any::<u8>(), 0..512),
        content_type in prop_oneof![
            Just(STRUCTURED_CONTENT_TYPE.to_owned()),
            Just(BATCH_CONTENT_TYPE.to_owned()),
            Just("application/json".to_owned()),
            ".{0,24}",
        ],
    ) {
        let headers = headers(&content_type);
        for encoding in [Encoding::Structured, Encoding::Batch, Encoding::Binary] {
            let _ = http::decode(encoding, &headers, Bytes::from(body.clone()));
        }
    }

    #[test]
    fn arbitrary_binary_mode_headers_never_panic(
        ce in hash_map(
            prop_oneof![
                proptest::sample::select(RESERVED).prop_map(|n| format!("ce-{n}")),
                "ce-[a-z]{1,6}",
            ],
            "[ -~]{0,16}",
            0..8,
        ),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in ce {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                headers.insert(name, value);
            }
        }
        let _ = http::decode(Encoding::Binary, &headers, Bytes::from(body));
    }

    #[test]
    fn arbitrary_json_events_never_panic_structured_or_batch_mode(
        events in vec(any_json_event(), 1..4),
    ) {
        let one = serde_json::to_vec(&events[0]).unwrap_or_default();
        let _ = http::decode(Encoding::Structured, &headers(STRUCTURED_CONTENT_TYPE), Bytes::from(one));
        let all = serde_json::to_vec(&events).unwrap_or_default();
        let _ = http::decode(Encoding::Batch, &headers(BATCH_CONTENT_TYPE), Bytes::from(all));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_protobuf_codec(bytes in vec(any::<u8>(), 0..512)) {
        if let Ok(batch) = BatchEvent::decode(&bytes[..]) {
            let _ = decode_batch(batch);
        }
    }

    #[test]
    fn arbitrary_protobuf_events_never_panic_and_valid_ones_pass_the_one_rule(
        events in vec(any_proto_event(), 0..4),
    ) {
        for (index, proto) in events.into_iter().enumerate() {
            let required_present = !proto.id.is_empty() && !proto.source.is_empty() && !proto.r#type.is_empty();
            let version_ok = proto.spec_version.is_empty() || proto.spec_version == "1.0";
            let decoded = decode_event(index, proto);
            if !(required_present && version_ok) {
                prop_assert!(decoded.is_err());
            }
        }
    }

    #[test]
    fn an_event_survives_structured_mode(event in valid_event()) {
        let body = serde_json::to_vec(&event).expect("an event is JSON");
        let decoded = http::decode(Encoding::Structured, &headers(STRUCTURED_CONTENT_TYPE), Bytes::from(body));
        prop_assert_eq!(decoded, Ok(vec![event]));
    }

    #[test]
    fn events_survive_batch_mode(events in vec(valid_event(), 0..4)) {
        let body = serde_json::to_vec(&events).expect("events are JSON");
        let decoded = http::decode(Encoding::Batch, &headers(BATCH_CONTENT_TYPE), Bytes::from(body));
        prop_assert_eq!(decoded, Ok(events));
    }

    #[test]
    fn events_survive_the_protobuf_codec(events in vec(valid_event(), 0..4)) {
        let batch = BatchEvent {
            events: Some(CloudEventBatch { events: events.iter().map(encode_event).collect() }),
            ..BatchEvent::default()
        };
        let wire = batch.encode_to_vec();
        let decoded = BatchEvent::decode(&wire[..]).expect("our own bytes decode");
        prop_assert_eq!(decode_batch(decoded), Ok(events));
    }
}
