//! Many queued messages as one markdown digest: what DingTalk's own guidance
//! says to do when a robot has more to say than 20 messages a minute.
//!
//! Each queued message keeps a short [`Summary`]: its title or first lines,
//! its link, who it mentions, when it happened. [`pack`] merges as many as
//! fit in one body under DingTalk's 20,000 bytes, oldest first, and says how
//! many it took; the rest wait for the next send slot. The mentions of every
//! message in a digest are merged, each `@` token written once, so queued
//! alerts still notify.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::mention::Mentions;
use super::truncate::json_len;
use super::{MAX_BODY_BYTES, msg_uuid};

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
}

impl Summary {
    /// The summary of a built message body, at `at_ms`.
    pub fn of(body: &[u8], at_ms: i64) -> Summary {
        let body: Value = serde_json::from_slice(body).unwrap_or_default();
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

/// Merges the oldest of `summaries` into one markdown message, as many as
/// fit under DingTalk's limit; times shown in `timezone`. `None` when not
/// even one fits with a digest's frame (send that message on its own).
pub fn pack(summaries: &[Summary], timezone: Tz, uuid_seed: &str) -> Option<Digest> {
    pack_within(summaries, timezone, uuid_seed, 0)
}

/// [`pack`], leaving `room` bytes of DingTalk's limit free (for a keyword
/// to be added, say).
pub fn pack_within(
    summaries: &[Summary],
    timezone: Tz,
    uuid_seed: &str,
    room: usize,
) -> Option<Digest> {
    let limit = MAX_BODY_BYTES.saturating_sub(room);
    let mut sections = String::new();
    let mut mentions = Mentions::default();
    let mut taken: Option<(String, String, Mentions)> = None;
    let mut count = 0;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for summary in summaries {
        let section = section(summary, timezone);
        let merged = mentions.merged(&summary.mentions);
        let (lo, hi) = (first.min(summary.at_ms), last.max(summary.at_ms));
        let title = title(count + 1, lo, hi, timezone);
        let mut text = format!("#### {title}{sections}{section}");
        text.push_str(&merged.missing_tokens(&text, false));
        if body_len(&title, &text, &merged) > limit {
            break;
        }
        sections.push_str(&section);
        (mentions, first, last) = (merged, lo, hi);
        count += 1;
        taken = Some((title, text, mentions.clone()));
    }
    let (title, text, mentions) = taken?;
    let uuid = msg_uuid("sink-dingtalk/digest", uuid_seed, "", text.as_bytes());
    let mut body = skeleton(&title, &text, &mentions);
    body.insert("msgUuid".into(), json!(uuid));
    let body = serde_json::to_vec(&body).ok()?;
    Some(Digest {
        body: Bytes::from(body),
        count,
    })
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

fn title(count: usize, first: i64, last: i64, timezone: Tz) -> String {
    let (from, to) = (clock(first, timezone), clock(last, timezone));
    let noun = if count == 1 { "event" } else { "events" };
    if from == to {
        format!("{count} {noun}, {from}")
    } else {
        format!("{count} {noun}, {from}-{to}")
    }
}

/// One message in a digest: a paragraph led by its time in bold, its
/// further lines quoted, its link last.
fn section(summary: &Summary, timezone: Tz) -> String {
    let mut section = format!(
        "\n\n**{}** {}",
        clock(summary.at_ms, timezone),
        summary.headline
    );
    for line in &summary.lines {
        section.push_str("\n> ");
        section.push_str(line);
    }
    if let Some(link) = &summary.link {
        section.push_str(&format!("\n[{}]({link})", shorten(link, 60)));
    }
    section
}

/// `HH:MM:SS` in `timezone`.
fn clock(at_ms: i64, timezone: Tz) -> String {
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

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;
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
                ..summary("Disk full on host-2", T0 + 38_000)
            },
        ];
        let digest = pack(&summaries, SHANGHAI, "seed").expect("packs");
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
                "\n\n**09:14:40** Disk full on host-2\n> at 97%\n[https://grafana.test/d/1](https://grafana.test/d/1)"
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
        let body = unpack(&pack(&summaries, SHANGHAI, "seed").expect("packs"));
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
        let summaries: Vec<Summary> = (0..500)
            .map(|i| Summary {
                lines: vec![long.clone(), long.clone()],
                ..summary(&format!("alert {i} {long}"), T0 + i * 1_000)
            })
            .collect();
        let digest = pack(&summaries, SHANGHAI, "seed").expect("packs");
        assert!(digest.count > 10 && digest.count < 500, "{}", digest.count);
        assert!(digest.body.len() <= MAX_BODY_BYTES, "{}", digest.body.len());
        assert!(digest.body.len() > MAX_BODY_BYTES - 1_000, "packed tight");
        let text = unpack(&digest)["markdown"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(text.contains(&format!("alert {} ", digest.count - 1)));
        assert!(!text.contains(&format!("alert {} ", digest.count)));
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

    #[test]
    fn a_digest_of_typical_alerts_is_bounded_by_its_bytes_not_by_what_is_looked_at() {
        // A storm has 4 digest slots a window; if fewer alerts were offered
        // to a digest than fit, its tail would wait a whole window.
        let body = br#"{"msgtype":"text","text":{"content":"[FIRING] DiskFull on db-17: /var/lib is 97% full"}}"#;
        let offered = connector_sdk::deliver::MAX_PER_DIGEST;
        let summaries: Vec<Summary> = (0..offered)
            .map(|i| Summary::of(body, T0 + i64::try_from(i).unwrap()))
            .collect();
        let digest = pack(&summaries, chrono_tz::Tz::UTC, "seed").expect("packs");
        assert!(
            digest.count > 250 && digest.count < offered,
            "{} in one digest",
            digest.count
        );
    }
}
