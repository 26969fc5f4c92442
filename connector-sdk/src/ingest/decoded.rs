//! How much memory a request will take once decoded, estimated from its
//! bytes before it is decoded, so the memory budget (`admission/`) can
//! refuse a request whose decoded form would not fit.
//!
//! Decoding multiplies: 4 MiB of `[0,0,0,…]` is 2 million JSON values of 32
//! bytes each, 4 MiB of one-letter protobuf attributes is a million map
//! entries. So the estimate counts what decoding allocates (JSON values and
//! object entries, CloudEvents, attributes) beside the bytes it copies,
//! without allocating anything itself. It is deliberately generous: an
//! over-estimate costs some concurrency, an under-estimate memory.

use std::fmt;
use std::mem::size_of;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// One decoded JSON value, with the slack of the vector or map holding it.
const JSON_VALUE: usize = 2 * size_of::<serde_json::Value>();

/// One JSON object entry beyond its value and key bytes (map node share).
const JSON_ENTRY: usize = 64;

/// One CloudEvent beside its attributes' text: the protobuf struct and the
/// `cloudevents::Event` it becomes.
const EVENT: usize = 1024;

/// One protobuf attribute beside its text: a map entry in the protobuf
/// event and again in the `cloudevents::Event`.
const ATTRIBUTE: usize = 256;

/// The decoded size of a JSON document, or `None` when it is not JSON (it
/// will not decode as such, and costs no more than its bytes).
pub(crate) fn json(bytes: &[u8]) -> Option<usize> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let cost = JsonCost.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(cost)
}

/// The decoded size of bytes that may be JSON: their JSON estimate when
/// they parse, else a copy of them.
pub(crate) fn maybe_json(bytes: &[u8]) -> usize {
    json(bytes).unwrap_or(bytes.len())
}

/// The decoded size of a `BatchEvent` message (without its gRPC prefix):
/// its events, their attributes, the text copied out of it, and JSON data
/// decoded. `None` when it is not a well-formed protobuf message (it will
/// not decode either).
pub(crate) fn batch(message: &[u8]) -> Option<usize> {
    let mut cost = message.len();
    for (field, value) in Fields::new(message) {
        // BatchEvent.events (2): a CloudEventBatch.
        if let (2, Value::Bytes(batch)) = (field, value?) {
            for (field, value) in Fields::new(batch) {
                // CloudEventBatch.events (1): a CloudEvent.
                if let (1, Value::Bytes(event)) = (field, value?) {
                    cost += EVENT + event_cost(event)?;
                }
            }
        }
    }
    Some(cost)
}

fn event_cost(event: &[u8]) -> Option<usize> {
    let mut cost = 0;
    for (field, value) in Fields::new(event) {
        match (field, value?) {
            // attributes (5): one map entry.
            (5, Value::Bytes(_)) => cost += ATTRIBUTE,
            // binary_data (6) and text_data (7): JSON is decoded.
            (6 | 7, Value::Bytes(data)) => cost += maybe_json(data),
            _ => {}
        }
    }
    Some(cost)
}

/// A protobuf field's value, as far as the estimate cares.
enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The fields of a protobuf message, in wire order; an item is `None` (and
/// the last) where the bytes stop being a well-formed message.
struct Fields<'a> {
    rest: &'a [u8],
    broken: bool,
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Self {
        Self {
            rest: message,
            broken: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Scalar)?,
            1 => self.take(8).map(|_| Value::Scalar)?,
            2 => {
                let length = usize::try_from(self.varint()?).ok()?;
                Value::Bytes(self.take(length)?)
            }
            5 => self.take(4).map(|_| Value::Scalar)?,
            _ => return None, // groups and unknown wire types: not ours
        };
        Some((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Option<Value<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.broken || self.rest.is_empty() {
            return None;
        }
        match self.field() {
            Some((field, value)) => Some((field, Some(value))),
            None => {
                self.broken = true;
                Some((0, None))
            }
        }
    }
}

/// Walks a JSON document, adding up what decoding it would allocate.
struct JsonCost;

impl<'de> DeserializeSeed<'de> for JsonCost {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonCost {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
        Ok(JSON_VALUE)
    }

    fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
        Ok(JSON_VALUE)
    }

    fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
        Ok(JSON_VALUE)
    }

    fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
        Ok(JSON_VALUE)
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(JSON_VALUE)
    }

    fn visit_str<E>(self, text: &str) -> Result<usize, E> {
        Ok(JSON_VALUE + text.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut cost = JSON_VALUE;
        while let Some(element) = seq.next_element_seed(JsonCost)? {
            cost += element;
        }
        Ok(cost)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut cost = JSON_VALUE;
        while let Some(key) = map.next_key_seed(JsonCost)? {
            // The key was costed as a value; an entry costs a little more.
            cost += key + JSON_ENTRY + map.next_value_seed(JsonCost)?;
        }
        Ok(cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn many_small_json_values_cost_far_more_than_their_bytes() {
        let zeros = format!("[{}]", vec!["0"; 100_000].join(","));
        let cost = json(zeros.as_bytes()).expect("JSON");
        assert!(cost > 25 * zeros.len(), "{cost} for {} bytes", zeros.len());
        let text = format!("\"{}\"", "x".repeat(100_000));
        let cost = json(text.as_bytes()).expect("JSON");
        assert!(
            cost < 2 * text.len(),
            "a string costs about its length: {cost}"
        );
    }

    #[test]
    fn what_is_not_json_costs_its_bytes() {
        assert_eq!(json(b"not json"), None);
        assert_eq!(json(b"[1, 2"), None);
        assert_eq!(json(b"{} trailing"), None);
        assert_eq!(maybe_json(b"plain text"), 10);
    }

    #[test]
    fn deep_json_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(json(deep.as_bytes()), None);
    }

    #[test]
    fn a_batch_costs_its_events_attributes_and_json_data() {
        use crate::proto::cloud_event::cloud_event_attribute_value::Attr;
        use crate::proto::cloud_event::{CloudEventAttributeValue, Data};
        use crate::proto::{BatchEvent, CloudEvent, CloudEventBatch};
        let event = |attributes: usize, data: Option<Data>| CloudEvent {
            id: "1".into(),
            source: "s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            attributes: (0..attributes)
                .map(|i| {
                    let value = CloudEventAttributeValue {
                        attr: Some(Attr::CeBoolean(true)),
                    };
                    (format!("a{i}"), value)
                })
                .collect(),
            data,
        };
        let encode = |events: Vec<CloudEvent>| {
            BatchEvent {
                events: Some(CloudEventBatch { events }),
                ..BatchEvent::default()
            }
            .encode_to_vec()
        };
        let one = encode(vec![event(0, None)]);
        assert!(batch(&one).is_some_and(|c| c >= EVENT));
        let attributes = encode(vec![event(10_000, None)]);
        let cost = batch(&attributes).expect("well formed");
        assert!(cost > 10_000 * ATTRIBUTE, "{cost}");
        let zeros = format!("[{}]", vec!["0"; 10_000].join(","));
        let json_data = encode(vec![event(0, Some(Data::BinaryData(zeros.into_bytes())))]);
        let cost = batch(&json_data).expect("well formed");
        assert!(cost > 10_000 * JSON_VALUE, "{cost}");
        assert_eq!(batch(&[0x12, 0x05, 0x0a]), None, "truncated");
    }
}
