//! The `templates:` section as written in the config file: one rule per
//! entry, read as is; [`super::Templates::compile`] checks and compiles it.
//!
//! ```yaml
//! templates_timezone: Asia/Shanghai            # optional; for the datetime filter
//! templates:
//!   - name: alertmanager                       # optional; events pick it with xvtemplate
//!     match: { type: "com.example.alertmanager.*" }  # globs on type, source, chat_group
//!     msgtype: markdown
//!     undefined: strict                        # optional; or lenient
//!     group_by: "{{ data.commonLabels.alertname }}"  # optional; its events' group in a digest
//!     users: "{{ data.commonLabels.oncall }}"  # optional; an app robot's one-to-one recipients
//!     message:                                 # DingTalk's fields of msgtype; every string is a template
//!       title: "{{ data.commonLabels.alertname }} {{ data.status }}"
//!       text: "..."
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

/// The time zone the `datetime` filter uses unless told otherwise: most
/// DingTalk users read Beijing time.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";

/// `templates[]`: which events one template applies to, and the message it
/// makes of them.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateRule {
    /// A name an event can pick the rule by, with the `xvtemplate` extension.
    #[serde(default)]
    pub name: Option<String>,
    /// The events the rule applies to when no `xvtemplate` names one.
    #[serde(default, rename = "match")]
    pub matches: Option<MatchRule>,
    /// The DingTalk message type: text, link, markdown, actionCard, feedCard.
    pub msgtype: String,
    /// What an undefined value in the template does.
    #[serde(default)]
    pub undefined: Undefined,
    /// DingTalk's fields of `msgtype` (`at` allowed); every string in it,
    /// however deeply nested, is a template.
    pub message: Map<String, Value>,
    /// A template whose value groups this rule's events in a digest (in
    /// place of `digest.group_by`, and of the masked headline).
    #[serde(default)]
    pub group_by: Option<String>,
    /// A template whose value is the people (comma-separated user ids) a
    /// chat group of an app robot sends this rule's events to one-to-one,
    /// when the event has no `xvusers`; empty: the group.
    #[serde(default)]
    pub users: Option<String>,
}

/// `templates[].match`: globs (`*`, `?`, `[abc]`) that must all match.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MatchRule {
    /// A glob on the event's `type`.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// A glob on the event's `source`.
    #[serde(default)]
    pub source: Option<String>,
    /// A glob on the chat group the event goes to (`xvchatgroup`, or the default).
    #[serde(default)]
    pub chat_group: Option<String>,
}

/// What using a value the event does not have does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Undefined {
    /// Printing, iterating or filtering it is an error (the event is answered
    /// 400, naming the template and line); `{% if x %}`, `x is defined` and
    /// `x | default(..)` still work.
    #[default]
    Strict,
    /// It prints as nothing, iterates as empty, and so do its attributes.
    Lenient,
}
