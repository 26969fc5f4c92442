//! The events the end-to-end tests, the sink's process tests and the bench
//! send, and how they find them again in what DingTalk shows: alert `i`
//! carries [`marker`]`(i)`, a text unique even as a substring, so a test
//! counts how often each alert was shown, alone or as a line of a digest.
//!
//! Each caller's alerts differ a little (ids, source, chat group, host):
//! an [`Alerts`] says how, once.
//!
//! ```
//! use fake_dingtalk::events::{Alerts, marker};
//! const STORM: Alerts = Alerts::new("storm-", "alertmanager", "alert").on_hosts(40);
//! assert_eq!(STORM.text(41), format!("{} disk full on host-1", marker(41)));
//! ```

use std::ops::Range;

use connector_sdk::testing::proto::CloudEvent;
use connector_sdk::testing::proto::cloud_event::Data;
use serde_json::Value;

use crate::Accepted;

/// The text that shows alert `i` in the group, unique even as a substring;
/// one word, so that a digest grouping similar alerts lists it whole.
pub fn marker(i: usize) -> String {
    format!("alert#{i:04}")
}

/// The markers of the alerts in `range`.
pub fn markers(range: Range<usize>) -> Vec<String> {
    range.map(marker).collect()
}

/// The alerts below `below` whose [`marker`] `text` holds, in order.
pub fn markers_in(text: &str, below: usize) -> impl Iterator<Item = usize> + '_ {
    text.match_indices("alert#").filter_map(move |(at, found)| {
        let rest = text.get(at + found.len()..)?;
        let digits = rest.get(..4)?;
        // Four digits and no fifth: `alert#12345` is not one of ours.
        if rest[4..].starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|i| *i < below)
    })
}

/// How many times `accepted` shows `marker` (a single message or a line of
/// a digest), every occurrence counted.
pub fn times_shown(accepted: &[Accepted], marker: &str) -> usize {
    accepted
        .iter()
        .map(|a| a.body.to_string().matches(marker).count())
        .sum()
}

/// For each of the alerts `0..alerts`, how many of the messages in
/// `accepted` show it.
pub fn posts_showing(accepted: &[Accepted], alerts: usize) -> Vec<usize> {
    let bodies: Vec<String> = accepted.iter().map(|a| a.body.to_string()).collect();
    (0..alerts)
        .map(|i| {
            let marker = marker(i);
            bodies.iter().filter(|body| body.contains(&marker)).count()
        })
        .collect()
}

/// A structured-mode CloudEvent as JSON text (specversion 1.0), with the
/// extension attributes `extensions`.
pub fn structured(
    id: &str,
    source: &str,
    kind: &str,
    extensions: &[(&str, &str)],
    content_type: &str,
    data: Value,
) -> String {
    let mut event = serde_json::json!({
        "id": id,
        "source": source,
        "specversion": "1.0",
        "type": kind,
        "datacontenttype": content_type,
        "data": data,
    });
    for (name, value) in extensions {
        event[*name] = Value::String((*value).to_owned());
    }
    event.to_string()
}

/// How one caller's alerts look: alert `i` has id `{id_prefix}{i}` and the
/// text `{marker(i)} {problem}`, followed by ` on host-{i % n}` when
/// [`Alerts::on_hosts`] gave `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alerts {
    /// What the id starts with; the alert's number follows.
    pub id_prefix: &'static str,
    /// The `source` attribute.
    pub source: &'static str,
    /// The `type` attribute.
    pub kind: &'static str,
    /// What the text says after the marker.
    pub problem: &'static str,
    /// The `xvchatgroup` extension, if any.
    pub chat_group: Option<&'static str>,
    /// How many hosts the alerts are spread over, if the text names one.
    pub hosts: Option<usize>,
}

impl Alerts {
    /// Alerts with ids `{id_prefix}{i}`, saying "disk full", for the
    /// default chat group, naming no host.
    pub const fn new(id_prefix: &'static str, source: &'static str, kind: &'static str) -> Self {
        Self {
            id_prefix,
            source,
            kind,
            problem: "disk full",
            chat_group: None,
            hosts: None,
        }
    }

    /// What the text says after the marker.
    pub const fn saying(self, problem: &'static str) -> Self {
        Self { problem, ..self }
    }

    /// For chat group `chat_group` (the `xvchatgroup` extension).
    pub const fn for_chat_group(self, chat_group: &'static str) -> Self {
        Self {
            chat_group: Some(chat_group),
            ..self
        }
    }

    /// Alert `i` names host `i % hosts`.
    pub const fn on_hosts(self, hosts: usize) -> Self {
        Self {
            hosts: Some(hosts),
            ..self
        }
    }

    /// The id of alert `i`.
    pub fn id(&self, i: usize) -> String {
        format!("{}{i}", self.id_prefix)
    }

    /// The text of alert `i`, [`marker`] first.
    pub fn text(&self, i: usize) -> String {
        match self.hosts {
            Some(hosts) => format!("{} {} on host-{}", marker(i), self.problem, i % hosts),
            None => format!("{} {}", marker(i), self.problem),
        }
    }

    /// Alert `i` as a structured-mode CloudEvent (JSON text, `text/plain`
    /// data), as Alertmanager's text would come.
    pub fn structured(&self, i: usize) -> String {
        let chat_group: Vec<(&str, &str)> = self
            .chat_group
            .map(|group| ("xvchatgroup", group))
            .into_iter()
            .collect();
        structured(
            &self.id(i),
            self.source,
            self.kind,
            &chat_group,
            "text/plain",
            Value::String(self.text(i)),
        )
    }

    /// Alert `i` as a gRPC CloudEvent (text data), as a Vanus trigger
    /// pushes it; no extension attributes.
    pub fn grpc(&self, i: usize) -> CloudEvent {
        CloudEvent {
            id: self.id(i),
            source: self.source.into(),
            spec_version: "1.0".into(),
            r#type: self.kind.into(),
            attributes: Default::default(),
            data: Some(Data::TextData(self.text(i))),
        }
    }
}

/// The five kinds of a mixed storm (the digest tests' and the bench's): a
/// name and the text alerts of that kind share.
pub const KINDS: [(&str, &str); 5] = [
    ("DiskFull", "/var/lib is 97% full"),
    ("HighLoad", "load average is 12.5"),
    ("PodCrashLooping", "restarted 5 times in 10 minutes"),
    ("CertExpiring", "certificate expires in 3 days"),
    ("ProbeFailed", "HTTP probe answered 503"),
];

/// The host of alert `i` of a mixed storm: `db-0042`, four digits, so
/// unique even as a substring.
pub fn storm_host(i: usize) -> String {
    format!("db-{i:04}")
}

/// The text of alert `i` of kind `kind` (an index into [`KINDS`]).
pub fn kind_text(i: usize, kind: usize) -> String {
    let (name, text) = KINDS[kind];
    format!("[FIRING] {name} on {}: {text}", storm_host(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_in_a_post() {
        let digest = format!(
            r#"{{"markdown":{{"text":"{} disk full\n- {} disk full\nalert#12345 alert#x"}}}}"#,
            marker(7),
            marker(999)
        );
        let found: Vec<usize> = markers_in(&digest, 1_000).collect();
        assert_eq!(found, [7, 999]);
        assert_eq!(
            markers_in(&marker(1_000), 1_000).count(),
            0,
            "not one of ours"
        );
    }

    #[test]
    fn an_alert_says_what_its_caller_asked_for() {
        let e2e = Alerts::new("alert-", "e2e-test", "test")
            .for_chat_group("bot1")
            .on_hosts(7);
        let event: Value = serde_json::from_str(&e2e.structured(9)).expect("json");
        assert_eq!(event["id"], "alert-9");
        assert_eq!(event["source"], "e2e-test");
        assert_eq!(event["type"], "test");
        assert_eq!(event["xvchatgroup"], "bot1");
        assert_eq!(event["datacontenttype"], "text/plain");
        assert_eq!(event["data"], "alert#0009 disk full on host-2");

        let grpc = Alerts::new("grpc-alert-", "prometheus", "alert").saying("cpu high");
        let event = grpc.grpc(3);
        assert_eq!(
            (event.id.as_str(), event.source.as_str()),
            ("grpc-alert-3", "prometheus")
        );
        assert!(event.attributes.is_empty());
        assert_eq!(
            event.data,
            Some(Data::TextData("alert#0003 cpu high".into()))
        );
    }
}
