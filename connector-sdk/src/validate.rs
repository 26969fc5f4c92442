//! One rule for what counts as a valid CloudEvent, whichever door it came
//! through (HTTP structured, binary or batch mode, or gRPC): the sink never
//! sees an event one door would refuse and the other accept.
//!
//! - `specversion` is 1.0 (a gRPC event may leave it empty: proto3 cannot
//!   tell empty from unset);
//! - `id`, `source` and `type` are present and non-empty, as the
//!   CloudEvents spec requires;
//! - `"data": null` is no data, as if `data` were absent.
//!
//! Reasons quote an offending value shortened (see `text.rs`).

use cloudevents::event::SpecVersion;
use cloudevents::{AttributesReader, AttributesWriter, Data, Event};

use crate::codec::DecodeError;
use crate::text::{QUOTE_BYTES, shorten};

/// Checks the event at `index` of a request and normalizes it (null data
/// is removed).
pub(crate) fn event(index: usize, event: &mut Event) -> Result<(), DecodeError> {
    if event.specversion() != SpecVersion::V10 {
        return Err(spec_version_error(index, event.specversion().as_str()));
    }
    required(index, "id", event.id())?;
    required(index, "source", event.source())?;
    required(index, "type", event.ty())?;
    drop_null_data(event);
    Ok(())
}

/// Every event of a request, in order; the first invalid one is reported.
pub(crate) fn events(mut events: Vec<Event>) -> Result<Vec<Event>, DecodeError> {
    for (index, each) in events.iter_mut().enumerate() {
        event(index, each)?;
    }
    Ok(events)
}

/// The specversion a protobuf event declares: 1.0, or empty for 1.0.
pub(crate) fn spec_version(index: usize, found: &str) -> Result<(), DecodeError> {
    if found.is_empty() || found == "1.0" {
        Ok(())
    } else {
        Err(spec_version_error(index, found))
    }
}

/// A required attribute must be there and not empty.
pub(crate) fn required(
    index: usize,
    attribute: &'static str,
    value: &str,
) -> Result<(), DecodeError> {
    if value.is_empty() {
        Err(DecodeError::Missing { index, attribute })
    } else {
        Ok(())
    }
}

fn spec_version_error(index: usize, found: &str) -> DecodeError {
    DecodeError::SpecVersion {
        index,
        found: shorten(found, QUOTE_BYTES).into_owned(),
    }
}

/// JSON `null` as the data means "no data": the sink sees `data()` None,
/// as it would for an event without `data`, not the text `null`.
fn drop_null_data(event: &mut Event) {
    if !matches!(event.data(), Some(Data::Json(serde_json::Value::Null))) {
        return;
    }
    let (content_type, schema, _null) = event.take_data();
    event.set_datacontenttype(content_type);
    event.set_dataschema(schema);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV03, EventBuilderV10};

    fn valid() -> Event {
        EventBuilderV10::new()
            .id("1")
            .source("s")
            .ty("t")
            .build()
            .expect("valid")
    }

    #[test]
    fn a_complete_event_passes() {
        let mut event = valid();
        assert_eq!(super::event(0, &mut event), Ok(()));
    }

    #[test]
    fn empty_required_attributes_are_named() {
        for (attribute, set) in [
            (
                "id",
                (|e: &mut Event| e.set_id("")) as fn(&mut Event) -> String,
            ),
            ("source", |e| e.set_source("")),
            ("type", |e| e.set_type("")),
        ] {
            let mut event = valid();
            set(&mut event);
            assert_eq!(
                super::event(3, &mut event),
                Err(DecodeError::Missing {
                    index: 3,
                    attribute
                })
            );
        }
    }

    #[test]
    fn only_specversion_1_0_is_accepted() {
        let mut old = EventBuilderV03::new()
            .id("1")
            .source("s")
            .ty("t")
            .build()
            .expect("valid 0.3");
        let err = super::event(0, &mut old).expect_err("0.3 refused");
        assert_eq!(
            err.to_string(),
            "event 0: specversion `0.3` is not supported; send 1.0"
        );
        assert!(spec_version(0, "").is_ok() && spec_version(0, "1.0").is_ok());
        let huge = "9".repeat(1_000_000);
        let err = spec_version(0, &huge).expect_err("refused");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn null_data_is_no_data_and_keeps_the_content_type() {
        let mut event = valid();
        event.set_data("application/json", serde_json::Value::Null);
        super::event(0, &mut event).expect("valid");
        assert_eq!(event.data(), None);
        assert_eq!(event.datacontenttype(), Some("application/json"));

        let mut text = valid();
        text.set_data("text/plain", "null");
        super::event(0, &mut text).expect("valid");
        assert_eq!(
            text.data(),
            Some(&Data::String("null".into())),
            "text stays"
        );
    }
}
