//! Which chat groups an event goes to: the ones its `xvchatgroup` extension
//! names (one, or several comma-separated: fan-out), else the default; one
//! that is not configured is the sender's mistake (a 400 that lists the
//! configured ones). And which answer an event sent to several gets.

use std::borrow::Cow;

use connector_sdk::cloudevents::Event;
use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::{Outcome, shorten};

/// The extension naming the chat group.
pub const CHAT_GROUP_EXTENSION: &str = "xvchatgroup";

/// How much of a name from the sender a reason quotes.
const QUOTED_BYTES: usize = 128;

/// The chat group `event` names in `xvchatgroup`, if any.
pub fn asked_group(event: &Event) -> Option<Cow<'_, str>> {
    match event.extension(CHAT_GROUP_EXTENSION)? {
        ExtensionValue::String(group) => Some(Cow::Borrowed(group.as_str())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// The chat groups `asked` (an `xvchatgroup` value) names, in order, each
/// once: the value itself when it is a configured name (`is_configured`),
/// so a name with a comma in it keeps working; else its comma-separated
/// names, trimmed, empty ones skipped.
pub fn fan_out(asked: &str, is_configured: impl Fn(&str) -> bool) -> Vec<&str> {
    if is_configured(asked) {
        return vec![asked];
    }
    let mut groups: Vec<&str> = Vec::new();
    for group in asked.split(',').map(str::trim) {
        if !group.is_empty() && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

/// The routed chat groups `asked` names (see [`fan_out`]), each by
/// `routed`, or why the event can be sent to none of them: one that is not
/// routed (a 400 listing the `configured` ones), and nothing is sent.
pub fn chat_groups<'a, G, I: Iterator<Item = &'a str>>(
    asked: &str,
    routed: impl Fn(&str) -> Option<G>,
    configured: impl Fn() -> I,
) -> Result<Vec<G>, String> {
    let names = fan_out(asked, |name| routed(name).is_some());
    if names.is_empty() {
        return Err(not_configured(asked, configured()));
    }
    names
        .into_iter()
        .map(|name| routed(name).ok_or_else(|| not_configured(name, configured())))
        .collect()
}

/// True when `later` should replace `earlier` as the answer for an event
/// of several parcels (chat groups, or one-to-one calls): the most
/// retry-worthy wins, 503 (and every unavailable) over 429 over 400 over
/// `queued` over `delivered`. A 400 beside a delivery is a 400: retrying
/// cannot help the group that refused, and the groups that got it are
/// remembered, so a replay from the dead letter posts only to the others.
pub fn more_retry_worthy(later: &Outcome, earlier: &Outcome) -> bool {
    fn rank(outcome: &Outcome) -> u8 {
        match outcome {
            Outcome::Delivered => 0,
            Outcome::Queued => 1,
            Outcome::Rejected { .. } => 2,
            Outcome::Throttled { .. } => 3,
            Outcome::Unavailable { .. } => 4,
        }
    }
    rank(later) > rank(earlier)
}

/// Why an event asking for chat group `asked` cannot be sent.
pub fn not_configured<'a>(asked: &str, configured: impl Iterator<Item = &'a str>) -> String {
    let mut known: Vec<&str> = configured.collect();
    known.sort_unstable();
    format!(
        "xvchatgroup `{}` is not configured; configured chat groups: {}",
        shorten(asked, QUOTED_BYTES),
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use connector_sdk::Unavailable;

    use super::*;

    #[test]
    fn a_list_is_split_trimmed_and_each_group_named_once() {
        let none = |_: &str| false;
        assert_eq!(
            fan_out(" oncall, db-team ,oncall,,", none),
            ["oncall", "db-team"]
        );
        assert_eq!(fan_out("ops", none), ["ops"]);
        assert!(fan_out(" , ", none).is_empty());
        // A configured name with a comma in it is that one group.
        assert_eq!(fan_out("a,b", |g| g == "a,b"), ["a,b"]);
    }

    #[test]
    fn every_group_must_be_routed_and_an_empty_list_is_none() {
        let routed = |name: &str| ["a", "b"].contains(&name).then(|| name.to_owned());
        let configured = || ["b", "a"].into_iter();
        assert_eq!(
            chat_groups("b, a", routed, configured),
            Ok(vec!["b".into(), "a".into()])
        );
        let unknown = chat_groups("a,zz", routed, configured).unwrap_err();
        assert_eq!(
            unknown,
            "xvchatgroup `zz` is not configured; configured chat groups: a, b"
        );
        let empty = chat_groups("", routed, configured).unwrap_err();
        assert!(
            empty.starts_with("xvchatgroup `` is not configured"),
            "{empty}"
        );
    }

    #[test]
    fn unavailable_beats_throttled_beats_rejected_beats_accepted() {
        let order = [
            Outcome::Delivered,
            Outcome::Queued,
            Outcome::rejected("no"),
            Outcome::throttled(Duration::from_secs(1), "slow"),
            Outcome::unavailable(Unavailable::ServiceUnavailable, "down"),
        ];
        for (i, earlier) in order.iter().enumerate() {
            for (j, later) in order.iter().enumerate() {
                assert_eq!(
                    more_retry_worthy(later, earlier),
                    j > i,
                    "{later:?} after {earlier:?}"
                );
            }
        }
    }
}
