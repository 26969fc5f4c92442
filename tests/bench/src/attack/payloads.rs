//! What the attacks send: the bodies built to expand (attributes, a large
//! text, JSON zeros).

use hyper::body::Bytes;

use super::MAX_BODY;

/// One framed `BatchEvent` of about 4 MB: one event with as many
/// one-letter-ish boolean attributes as fit.
pub(super) fn attributes_message() -> Bytes {
    use connector_sdk::testing::proto::cloud_event::CloudEventAttributeValue;
    use connector_sdk::testing::proto::cloud_event::cloud_event_attribute_value::Attr;
    use connector_sdk::testing::proto::{BatchEvent, CloudEvent, CloudEventBatch};
    use prost::Message;
    let attributes = (0..300_000)
        .map(|i| {
            let value = CloudEventAttributeValue {
                attr: Some(Attr::CeBoolean(true)),
            };
            (format!("{i:x}"), value)
        })
        .collect();
    let event = CloudEvent {
        id: "attributes".into(),
        source: "bench".into(),
        spec_version: "1.0".into(),
        r#type: "attributes".into(),
        attributes,
        data: None,
    };
    let message = BatchEvent {
        events: Some(CloudEventBatch {
            events: vec![event],
        }),
        ..BatchEvent::default()
    }
    .encode_to_vec();
    let mut framed = vec![0_u8];
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

/// A text event of 3.9 MB.
pub(super) fn large_text_event() -> Bytes {
    let data = "x".repeat(3_900_000);
    Bytes::from(format!(
        r#"{{"specversion":"1.0","id":"flood","source":"bench","type":"flood","datacontenttype":"text/plain","data":"{data}"}}"#
    ))
}

/// An event of 4 MiB whose data is a JSON array of zeros: what costs the
/// most memory per byte once parsed.
pub(super) fn json_zeros_event() -> Bytes {
    let head = r#"{"specversion":"1.0","id":"zeros","source":"bench","type":"zeros","datacontenttype":"application/json","data":["#;
    let tail = "]}";
    let zeros = (MAX_BODY - head.len() - tail.len()) / 2;
    let mut event = String::with_capacity(MAX_BODY);
    event.push_str(head);
    for i in 0..zeros {
        event.push_str(if i == 0 { "0" } else { ",0" });
    }
    event.push_str(tail);
    Bytes::from(event)
}
