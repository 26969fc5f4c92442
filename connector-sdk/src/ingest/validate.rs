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

use super::error::{DecodeError, EventProblem};
use crate::text::{QUOTE_BYTES, shorten};

/// Checks one event and normalizes it (null data is removed).
pub(crate) fn event(event: &mut Event) -> Result<(), EventProblem> {
    if event.specversion() != SpecVersion::V10 {
        return Err(spec_version_error(event.specversion().as_str()));
    }
    required("id", event.id())?;
    required("source", event.source())?;
    required("type", event.ty())?;
    drop_null_data(event);
    Ok(())
}

/// The one event of a request (HTTP structured or binary mode).
pub(crate) fn one(mut alone: Event) -> Result<Event, DecodeError> {
    event(&mut alone).map_err(DecodeError::alone)?;
    Ok(alone)
}

/// Every event of a batch, in order; the first invalid one is reported with
/// its position.
pub(crate) fn events(mut events: Vec<Event>) -> Result<Vec<Event>, DecodeError> {
    for (index, each) in events.iter_mut().enumerate() {
        event(each).map_err(|problem| DecodeError::in_batch(index, problem))?;
    }
    Ok(events)
}

/// The specversion a protobuf event declares: 1.0, or empty for 1.0.
pub(crate) fn spec_version(found: &str) -> Result<(), EventProblem> {
    if found.is_empty() || found == "1.0" {
        Ok(())
    } else {
        Err(spec_version_error(found))
    }
}

/// A required attribute must be there and not empty.
pub(crate) fn required(attribute: &'static str, value: &str) -> Result<(), EventProblem> {
    if value.is_empty() {
        Err(EventProblem::Missing { attribute })
    } else {
        Ok(())
    }
}

fn spec_version_error(found: &str) -> EventProblem {
    EventProblem::SpecVersion {
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
        assert_eq!(super::event(&mut event), Ok(()));
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
            // The fourth of a batch: reported with its position.
            assert_eq!(
                events(vec![valid(), valid(), valid(), event]),
                Err(DecodeError::InvalidEvent {
                    index: Some(3),
                    problem: EventProblem::Missing { attribute }
                })
            );
        }
    }

    #[test]
    fn only_specversion_1_0_is_accepted() {
        let old = EventBuilderV03::new()
            .id("1")
            .source("s")
            .ty("t")
            .build()
            .expect("valid 0.3");
        let err = events(vec![old.clone()]).expect_err("0.3 refused");
        assert_eq!(
            err.to_string(),
            "event 0: specversion `0.3` is not supported; send 1.0"
        );
        let err = one(old).expect_err("0.3 refused");
        assert_eq!(
            err.to_string(),
            "specversion `0.3` is not supported; send 1.0",
            "one event alone has no position"
        );
        assert!(spec_version("").is_ok() && spec_version("1.0").is_ok());
        let huge = "9".repeat(1_000_000);
        let err = spec_version(&huge).expect_err("refused");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn null_data_is_no_data_and_keeps_the_content_type() {
        let mut event = valid();
        event.set_data("application/json", serde_json::Value::Null);
        super::event(&mut event).expect("valid");
        assert_eq!(event.data(), None);
        assert_eq!(event.datacontenttype(), Some("application/json"));

        let mut text = valid();
        text.set_data("text/plain", "null");
        super::event(&mut text).expect("valid");
        assert_eq!(
            text.data(),
            Some(&Data::String("null".into())),
            "text stays"
        );
    }
}
