//! Many queued messages as one markdown digest: what DingTalk's own guidance
//! says to do when a robot has more to say than 20 messages a minute.
//!
//! Each queued message keeps a short [`Summary`], worked out when it
//! arrived: its title or first lines, its link, who it mentions, when it
//! happened, and what the digest rules say of it (its group, identity,
//! status, severity). [`pack`] merges as many as fit in one body under
//! DingTalk's 20,000 bytes, oldest first, and says how many it took; the
//! rest wait for the next send slot, and the digest says how many follow.
//!
//! Similar messages are one section (see [`super::group`]): `27 × [FIRING]
//! DiskFull on …: /var/lib is 97% full — db-4, db-5, … (09:14:04–09:14:30)`,
//! the worst severity first, then the largest. A firing and its resolved
//! both in the digest are one line, "resolved after 2m 10s"; a resolved
//! whose firing went out before is shown as resolved. The mentions of
//! every message in a digest are merged, each `@` token written once, so
//! queued alerts still notify.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use std::collections::HashMap;

use super::group;
use super::mention::Mentions;
use super::truncate::json_len;
use super::{MAX_BODY_BYTES, msg_uuid};
use crate::zone::Zone;

/// Characters of a headline at most.
const HEADLINE_CHARS: usize = 120;
/// Characters of each further line at most.
const LINE_CHARS: usize = 160;
/// Further lines per message at most.
const MAX_LINES: usize = 2;

/// What a digest shows of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Its title, else its first line.
    pub headline: String,
    /// A few more lines of its text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// Where its link points, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Who it mentions.
    #[serde(default)]
    pub mentions: Mentions,
    /// When it happened (the event's time, else when it was queued), in
    /// milliseconds since the epoch.
    pub at_ms: i64,
    /// Its group key, when an expression set it; else its headline masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What stays the same from its firing to its resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `firing`, `resolved`, ..., lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Its severity, lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl Summary {
    /// The summary of a built message body, at `at_ms`.
    pub fn of(body: &[u8], at_ms: i64) -> Summary {
        let body: Value = serde_json::from_slice(body).unwrap_or_default();
        Self::of_json(&body, at_ms)
    }

    /// [`Summary::of`] the body as JSON ([`crate::message::Message::json`]),
    /// without parsing it again.
    pub fn of_json(body: &Value, at_ms: i64) -> Summary {
        let msgtype = body["msgtype"].as_str().unwrap_or_default();
        let fields = &body[msgtype];
        let str_of = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let (title, text, link) = match msgtype {
            "text" => (String::new(), str_of(&fields["content"]), None),
            "link" => (
                str_of(&fields["title"]),
                str_of(&fields["text"]),
                fields["messageUrl"].as_str().map(str::to_owned),
            ),
            "actionCard" => (
                str_of(&fields["title"]),
                str_of(&fields["text"]),
                fields["singleURL"]
                    .as_str()
                    .or_else(|| fields["btns"][0]["actionURL"].as_str())
                    .map(str::to_owned),
            ),
            "feedCard" => {
                let links = fields["links"].as_array().cloned().unwrap_or_default();
                let titles: Vec<String> = links.iter().map(|l| str_of(&l["title"])).collect();
                (
                    titles.first().cloned().unwrap_or_default(),
                    titles.get(1..).unwrap_or_default().join("\n"),
                    links
                        .first()
                        .and_then(|l| l["messageURL"].as_str())
                        .map(str::to_owned),
                )
            }
            // markdown, and anything newer DingTalk may add.
            _ => (str_of(&fields["title"]), str_of(&fields["text"]), None),
        };
        let mut lines = text
            .lines()
            .map(|line| line.trim().trim_start_matches('#').trim())
            .filter(|line| !line.is_empty())
            .map(|line| shorten(line, LINE_CHARS));
        let headline = if title.trim().is_empty() {
            lines.next().unwrap_or_default()
        } else {
            shorten(title.trim(), HEADLINE_CHARS)
        };
        Summary {
            headline: shorten(&headline, HEADLINE_CHARS),
            lines: lines.take(MAX_LINES).collect(),
            link,
            mentions: Mentions::from_at(&body["at"]),
            at_ms,
            ..Summary::default()
        }
    }
}

/// A digest ready to send: its body and how many summaries it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The markdown message's JSON body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
    /// The summaries it holds: the first `count` of those given.
    pub count: usize,
}

impl Summary {
    /// The same summary, with what the digest rules say of its event.
    pub fn with(mut self, meta: crate::template::Meta) -> Summary {
        self.group = meta.group;
        self.identity = meta.identity;
        self.status = meta.status;
        self.severity = meta.severity;
        self
    }

    fn is_resolved(&self) -> bool {
        self.status.as_deref() == Some("resolved")
    }
}

/// Merges the oldest of `summaries` into one markdown message, as many as
/// fit under DingTalk's limit, similar ones grouped; times shown in
/// `timezone`. `None` when not even one fits with a digest's frame (send
/// that message on its own). When some do not fit, the digest says how
/// many follow in the next.
pub fn pack(summaries: &[Summary], timezone: Zone, uuid_seed: &str) -> Option<Digest> {
    pack_within(summaries, timezone, uuid_seed, 0)
}

/// [`pack`], leaving `room` bytes of DingTalk's limit free (for a keyword
/// to be added, say).
pub fn pack_within(
    summaries: &[Summary],
    timezone: Zone,
    uuid_seed: &str,
    room: usize,
) -> Option<Digest> {
    let limit = MAX_BODY_BYTES.saturating_sub(room);
    // The most that fit: adding events only ever lengthens a digest (but
    // for a few bytes of the counts), so a binary search finds it, each
    // candidate checked whole.
    let (mut lo, mut hi) = (0, summaries.len());
    let mut best: Option<Vec<u8>> = None;
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        match body(
            &summaries[..mid],
            summaries.len() - mid,
            timezone,
            uuid_seed,
            limit,
        ) {
            Some(bytes) => {
                lo = mid;
                best = Some(bytes);
            }
            None => hi = mid - 1,
        }
    }
    if lo == 0 {
        return None;
    }
    let body = match best {
        Some(bytes) => bytes,
        None => body(
            &summaries[..lo],
            summaries.len() - lo,
            timezone,
            uuid_seed,
            limit,
        )?,
    };
    Some(Digest {
        body: Bytes::from(body),
        count: lo,
    })
}

/// The body of a digest of `taken`, saying `more` follow; `None` when over
/// `limit` bytes.
fn body(
    taken: &[Summary],
    more: usize,
    timezone: Zone,
    uuid_seed: &str,
    limit: usize,
) -> Option<Vec<u8>> {
    let (title, mut text) = render(taken, more, timezone);
    let mentions = taken
        .iter()
        .fold(Mentions::default(), |all, s| all.merged(&s.mentions));
    text.push_str(&mentions.missing_tokens(&text, false));
    if body_len(&title, &text, &mentions) > limit {
        return None;
    }
    let uuid = msg_uuid("sink-dingtalk/digest", uuid_seed, "", text.as_bytes());
    let mut body = skeleton(&title, &text, &mentions);
    body.insert("msgUuid".into(), json!(uuid));
    serde_json::to_vec(&body).ok()
}

/// One line of a digest: an event, or a firing and its resolved.
struct Item<'a> {
    /// What it shows: its latest state (a pair's resolved).
    shown: &'a Summary,
    /// When it began (a pair's firing).
    from_ms: i64,
    /// For a firing and its resolved, the time between them.
    resolved_after_ms: Option<i64>,
}

/// The events as lines: each resolved whose firing is among them joins it.
fn items(summaries: &[Summary]) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> = Vec::with_capacity(summaries.len());
    let mut firing: HashMap<&str, usize> = HashMap::new();
    for summary in summaries {
        if let Some(identity) = summary.identity.as_deref() {
            match summary.status.as_deref() {
                Some("resolved") => {
                    if let Some(at) = firing.remove(identity) {
                        let item = &mut items[at];
                        item.resolved_after_ms = Some((summary.at_ms - item.from_ms).max(0));
                        item.shown = summary;
                        continue;
                    }
                }
                Some("firing") => {
                    firing.insert(identity, items.len());
                }
                _ => {}
            }
        }
        items.push(Item {
            shown: summary,
            from_ms: summary.at_ms,
            resolved_after_ms: None,
        });
    }
    items
}

/// A digest's title and text.
fn render(taken: &[Summary], more: usize, timezone: Zone) -> (String, String) {
    let items = items(taken);
    // One section per group: pairs apart from the rest of their group.
    let mut sections: Vec<(String, Vec<&Item<'_>>)> = Vec::new();
    let mut at_key: HashMap<String, usize> = HashMap::new();
    for item in &items {
        let key = item
            .shown
            .group
            .clone()
            .unwrap_or_else(|| group::mask(&item.shown.headline));
        let key = format!(
            "{}{key}",
            if item.resolved_after_ms.is_some() {
                "+"
            } else {
                "-"
            }
        );
        match at_key.get(&key) {
            Some(&at) => sections[at].1.push(item),
            None => {
                at_key.insert(key.clone(), sections.len());
                sections.push((key, vec![item]));
            }
        }
    }
    let rank_of = |items: &[&Item<'_>]| {
        items
            .iter()
            .map(|i| group::rank(i.shown.severity.as_deref()))
            .max()
            .unwrap_or(0)
    };
    // Worst first, then the largest; otherwise in order of arrival.
    sections.sort_by_key(|(_, items)| {
        (
            std::cmp::Reverse(rank_of(items)),
            std::cmp::Reverse(items.len()),
        )
    });
    let (first, last) = taken.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| {
        (lo.min(s.at_ms), hi.max(s.at_ms))
    });
    let title = title(taken.len(), first, last, timezone);
    let mut text = format!("#### {title}");
    for (_, items) in &sections {
        text.push_str(&section(items, timezone));
    }
    if more > 0 {
        let noun = if more == 1 {
            "event follows"
        } else {
            "events follow"
        };
        text.push_str(&format!("\n\n{more} more {noun} in the next digest."));
    }
    (title, text)
}

/// One group's section: an event on its own as it was, led by its time;
/// several as their count, their shared text once and each one's part.
fn section(items: &[&Item<'_>], timezone: Zone) -> String {
    let [item] = items else {
        return group_section(items, timezone);
    };
    let summary = item.shown;
    let mut section = format!(
        "\n\n**{}** {}{}",
        clock(item.from_ms, timezone),
        if item.resolved_after_ms.is_some() {
            ""
        } else {
            state_tag(summary)
        },
        summary.headline
    );
    if let Some(after) = item.resolved_after_ms {
        section.push_str(&format!(" — resolved after {}", duration(after)));
    }
    for line in &summary.lines {
        section.push_str("\n> ");
        section.push_str(line);
    }
    if let Some(link) = &summary.link {
        section.push_str(&format!("\n[{}]({link})", shorten(link, 60)));
    }
    section
}

fn group_section(items: &[&Item<'_>], timezone: Zone) -> String {
    let shown: Vec<&Summary> = items.iter().map(|i| i.shown).collect();
    let headlines: Vec<&str> = shown.iter().map(|s| s.headline.as_str()).collect();
    let (shared, mut parts) = match group::differ(&headlines) {
        Some(found) => found,
        None if headlines.iter().all(|h| *h == headlines[0]) => {
            // The same headline: what differs may be in the next line.
            let firsts: Vec<&str> = shown
                .iter()
                .map(|s| s.lines.first().map_or("", String::as_str))
                .collect();
            let parts = group::differ(&firsts)
                .map(|(_, parts)| parts)
                .unwrap_or_default();
            (headlines[0].to_owned(), parts)
        }
        // Grouped by an expression, worded differently: each in full.
        None => (
            shown[0].group.clone().unwrap_or_default(),
            headlines.iter().map(|h| (*h).to_owned()).collect(),
        ),
    };
    let afters: Vec<i64> = items.iter().filter_map(|i| i.resolved_after_ms).collect();
    let mut note = String::new();
    if let Some(&after) = afters.first() {
        if afters.iter().all(|a| duration(*a) == duration(after)) {
            note = format!(", fired and resolved after {}", duration(after));
        } else {
            note = ", fired and resolved".to_owned();
            if parts.len() == items.len() {
                for (part, item) in parts.iter_mut().zip(items) {
                    if let Some(after) = item.resolved_after_ms {
                        part.push_str(&format!(" (after {})", duration(after)));
                    }
                }
            }
        }
    }
    let severity = items
        .iter()
        .max_by_key(|i| group::rank(i.shown.severity.as_deref()))
        .and_then(|i| i.shown.severity.as_deref())
        .filter(|sev| !shared.to_lowercase().contains(sev))
        .map(|sev| format!("[{sev}] "))
        .unwrap_or_default();
    let state = if afters.is_empty() {
        state_tag(shown[0])
    } else {
        ""
    };
    let (from, to) = items.iter().fold((i64::MAX, i64::MIN), |(lo, hi), i| {
        (lo.min(i.from_ms), hi.max(i.shown.at_ms))
    });
    let (from, to) = (clock(from, timezone), clock(to, timezone));
    let times = if from == to {
        from
    } else {
        format!("{from}–{to}")
    };
    let parts = if parts.iter().all(String::is_empty) {
        String::new()
    } else {
        format!(" — {}", parts.join(", "))
    };
    format!(
        "\n\n**{} ×** {severity}{state}{shared}{note}{parts} ({times})",
        items.len()
    )
}

/// `[resolved] ` for a resolved event whose headline does not say so.
fn state_tag(summary: &Summary) -> &'static str {
    if summary.is_resolved() && !summary.headline.to_lowercase().contains("resolved") {
        "[resolved] "
    } else {
        ""
    }
}

/// `2m 10s`, `45s`, `1h 5m`.
fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1_000;
    match (secs / 3_600, secs % 3_600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// The body without its `msgUuid`.
fn skeleton(title: &str, text: &str, mentions: &Mentions) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("msgtype".into(), json!("markdown"));
    body.insert("markdown".into(), json!({"title": title, "text": text}));
    if !mentions.is_empty() {
        body.insert("at".into(), mentions.to_at());
    }
    body
}

/// The serialized size of the body, `msgUuid` included.
fn body_len(title: &str, text: &str, mentions: &Mentions) -> usize {
    let frame = serde_json::to_vec(&skeleton("", "", mentions)).map_or(0, |b| b.len());
    // `,"msgUuid":"<36 characters>"`
    const UUID_FIELD: usize = 49;
    frame + json_len(title) + json_len(text) + UUID_FIELD
}

fn title(count: usize, first: i64, last: i64, timezone: Zone) -> String {
    let (from, to) = (clock(first, timezone), clock(last, timezone));
    let noun = if count == 1 { "event" } else { "events" };
    if from == to {
        format!("{count} {noun}, {from}")
    } else {
        format!("{count} {noun}, {from}-{to}")
    }
}

/// `HH:MM:SS` in `timezone`.
fn clock(at_ms: i64, timezone: Zone) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .with_timezone(&timezone)
        .format("%H:%M:%S")
        .to_string()
}

/// `text` cut to `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-21 09:14:02 in Shanghai.
    const T0: i64 = 1_795_223_642_000;

    fn summary(headline: &str, at_ms: i64) -> Summary {
        Summary {
            headline: headline.to_owned(),
            at_ms,
            ..Summary::default()
        }
    }

    fn unpack(digest: &Digest) -> Value {
        serde_json::from_slice(&digest.body).expect("json")
    }

    #[test]
    fn a_summary_takes_each_types_title_lines_and_link() {
        let cases = [
            (
                json!({"msgtype": "text", "text": {"content": "Disk full\n\non host-1\nsince 09:10\nmore"}}),
                ("Disk full", vec!["on host-1", "since 09:10"], None),
            ),
            (
                json!({"msgtype": "markdown", "markdown": {"title": "Deploy", "text": "### Deploy\n- checkout 1.4"}}),
                ("Deploy", vec!["Deploy", "- checkout 1.4"], None),
            ),
            (
                json!({"msgtype": "link", "link": {"title": "PR", "text": "merged", "messageUrl": "https://x.test/pr"}}),
                ("PR", vec!["merged"], Some("https://x.test/pr")),
            ),
            (
                json!({"msgtype": "actionCard", "actionCard": {"title": "Vote", "text": "yes?", "btns": [{"title": "y", "actionURL": "https://x.test/y"}]}}),
                ("Vote", vec!["yes?"], Some("https://x.test/y")),
            ),
            (
                json!({"msgtype": "feedCard", "feedCard": {"links": [{"title": "a", "messageURL": "https://x.test/a", "picURL": "https://x.test/p"}, {"title": "b", "messageURL": "https://x.test/b", "picURL": "https://x.test/p"}]}}),
                ("a", vec!["b"], Some("https://x.test/a")),
            ),
        ];
        for (body, (headline, lines, link)) in cases {
            let s = Summary::of(body.to_string().as_bytes(), T0);
            assert_eq!(s.headline, headline, "{body}");
            assert_eq!(s.lines, lines, "{body}");
            assert_eq!(s.link.as_deref(), link, "{body}");
        }
    }

    #[test]
    fn a_digest_is_a_titled_markdown_message_with_a_section_each() {
        let summaries = [
            summary("Disk full on host-1", T0),
            Summary {
                lines: vec!["at 97%".into()],
                link: Some("https://grafana.test/d/1".into()),
                ..summary("Backup failed on host-2", T0 + 38_000)
            },
        ];
        let digest = pack(&summaries, Zone::shanghai(), "seed").expect("packs");
        assert_eq!(digest.count, 2);
        let body = unpack(&digest);
        assert_eq!(body["msgtype"], "markdown");
        assert_eq!(body["markdown"]["title"], "2 events, 09:14:02-09:14:40");
        let text = body["markdown"]["text"].as_str().expect("text");
        assert!(
            text.starts_with("#### 2 events, 09:14:02-09:14:40"),
            "{text}"
        );
        assert!(text.contains("**09:14:02** Disk full on host-1"), "{text}");
        assert!(
            text.contains(
                "\n\n**09:14:40** Backup failed on host-2\n> at 97%\n[https://grafana.test/d/1](https://grafana.test/d/1)"
            ),
            "{text}"
        );
        assert!(body["msgUuid"].is_string() && body.get("at").is_none());
    }

    #[test]
    fn mentions_merge_and_each_token_appears_once() {
        let mention = |mobiles: &[&str], all: bool| Mentions {
            mobiles: mobiles.iter().map(|m| (*m).to_owned()).collect(),
            all,
            ..Mentions::default()
        };
        let summaries = [
            Summary {
                mentions: mention(&["138"], false),
                ..summary("a", T0)
            },
            Summary {
                mentions: mention(&["138", "139"], true),
                ..summary("b @139", T0)
            },
        ];
        let body = unpack(&pack(&summaries, Zone::shanghai(), "seed").expect("packs"));
        assert_eq!(
            body["at"],
            json!({"atMobiles": ["138", "139"], "atUserIds": [], "isAtAll": true})
        );
        let text = body["markdown"]["text"].as_str().expect("text");
        assert_eq!(text.matches("@138").count(), 1, "{text}");
        assert_eq!(text.matches("@139").count(), 1, "{text}");
    }

    #[test]
    fn packing_stops_under_the_limit_and_leaves_the_rest() {
        let long = "告警".repeat(50);
        // Each its own group: every one a section of its own.
        let summaries: Vec<Summary> = (0..500)
            .map(|i| Summary {
                lines: vec![long.clone(), long.clone()],
                group: Some(format!("group {i}")),
                ..summary(&format!("alert {i} {long}"), T0 + i * 1_000)
            })
            .collect();
        let digest = pack(&summaries, Zone::shanghai(), "seed").expect("packs");
        assert!(digest.count > 10 && digest.count < 500, "{}", digest.count);
        assert!(digest.body.len() <= MAX_BODY_BYTES, "{}", digest.body.len());
        assert!(digest.body.len() > MAX_BODY_BYTES - 1_000, "packed tight");
        let text = unpack(&digest)["markdown"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(text.contains(&format!("alert {} ", digest.count - 1)));
        assert!(!text.contains(&format!("alert {} ", digest.count)));
        assert!(
            text.ends_with(&format!(
                "{} more events follow in the next digest.",
                500 - digest.count
            )),
            "{text}"
        );
    }

    #[test]
    fn long_fields_are_shortened() {
        let s = Summary::of(
            json!({"msgtype": "text", "text": {"content": "x".repeat(1_000)}})
                .to_string()
                .as_bytes(),
            T0,
        );
        assert_eq!(s.headline.chars().count(), HEADLINE_CHARS + 1);
        assert!(s.headline.ends_with('…'));
    }

    fn alert(kind: &str, host: &str, at_ms: i64) -> Summary {
        Summary::of(
            json!({"msgtype": "text", "text": {"content": format!("[FIRING] {kind} on {host}: /var/lib is 97% full")}})
                .to_string()
                .as_bytes(),
            at_ms,
        )
    }

    #[test]
    fn a_thousand_alerts_of_five_kinds_fit_one_digest_with_every_host() {
        let kinds = [
            "DiskFull",
            "CpuHigh",
            "MemoryLow",
            "NodeDown",
            "SlowQueries",
        ];
        let offered = connector_sdk::deliver::MAX_PER_DIGEST;
        let summaries: Vec<Summary> = (0..offered)
            .map(|i| {
                alert(
                    kinds[i % 5],
                    &format!("db-{i}"),
                    T0 + i64::try_from(i).unwrap(),
                )
            })
            .collect();
        let digest = pack(&summaries, Zone::UTC, "seed").expect("packs");
        assert_eq!(digest.count, offered, "all in one digest");
        let text = unpack(&digest)["markdown"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            text.contains(
                "\n\n**200 ×** [FIRING] DiskFull on …: /var/lib is 97% full — db-0, db-5, db-10, "
            ),
            "{text}"
        );
        for i in 0..offered {
            assert!(
                text.contains(&format!(" db-{i},")) || text.contains(&format!(" db-{i} (")),
                "db-{i}"
            );
        }
    }

    #[test]
    fn a_firing_and_its_resolved_are_one_line_and_a_late_resolved_says_so() {
        let state = |s: Summary, identity: &str, status: &str| Summary {
            identity: Some(identity.into()),
            status: Some(status.into()),
            ..s
        };
        let summaries = [
            state(summary("DiskFull db-1", T0), "a", "firing"),
            state(summary("DiskFull db-1", T0 + 130_000), "a", "resolved"),
            state(summary("DiskFull db-2", T0 + 1_000), "b", "resolved"),
        ];
        let digest = pack(&summaries, Zone::shanghai(), "seed").expect("packs");
        assert_eq!(digest.count, 3);
        let text = unpack(&digest)["markdown"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            text.contains("**09:14:02** DiskFull db-1 — resolved after 2m 10s"),
            "{text}"
        );
        assert!(
            text.contains("**09:14:03** [resolved] DiskFull db-2"),
            "{text}"
        );
        assert_eq!(text.matches("db-1").count(), 1, "{text}");
    }

    #[test]
    fn the_worst_severity_comes_first_then_the_largest() {
        let with = |s: Summary, severity: &str| Summary {
            severity: Some(severity.into()),
            ..s
        };
        let mut summaries: Vec<Summary> = (0..5)
            .map(|i| with(alert("CpuHigh", &format!("web-{i}"), T0), "warning"))
            .collect();
        summaries.extend((0..3).map(|i| alert("Chatty", &format!("app-{i}"), T0)));
        summaries
            .extend((0..2).map(|i| with(alert("NodeDown", &format!("db-{i}"), T0), "critical")));
        let digest = pack(&summaries, Zone::shanghai(), "seed").expect("packs");
        let text = unpack(&digest)["markdown"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {text}"))
        };
        assert!(
            at("**2 ×** [critical] [FIRING] NodeDown") < at("**5 ×** [warning] [FIRING] CpuHigh")
        );
        assert!(at("**5 ×** [warning]") < at("**3 ×** [FIRING] Chatty"));
    }
}
