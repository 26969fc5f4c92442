//! Which chat group an event goes to: the one its `xvchatgroup` extension
//! names, else the default; one that is not configured is the sender's
//! mistake (a 400 that lists the configured ones).

use std::borrow::Cow;

use connector_sdk::cloudevents::Event;
use connector_sdk::cloudevents::event::ExtensionValue;
use connector_sdk::shorten;

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
