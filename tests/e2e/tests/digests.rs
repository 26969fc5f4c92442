//! Storm digests as a person in the group reads them: similar alerts are
//! one section (the count, the shared text once, every host listed), a
//! firing and its resolved are one line, and a storm's start pings the
//! group a few times, not once an alert. Against the fake DingTalk with its
//! own limits (20 a minute, every POST shown and counted).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use fake_dingtalk::events::{KINDS, kind_text, storm_host as host};
use fake_dingtalk::{Accepted, most_in_any_minute};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The longest the tests wait for what an outbox sends: a ceiling.
const FLUSHED: Duration = Duration::from_secs(30);

/// Alert `i` of kind `kind` on host `db-<i>` (four digits: unique even as
/// a substring), structured mode, for chat group bot1.
fn kind_alert(i: usize, kind: usize) -> String {
    structured(
        &format!("kind-alert-{i}"),
        &[("xvchatgroup", "bot1")],
        "text/plain",
        json!(kind_text(i, kind)),
    )
}

/// The hosts of `0..n` not found in any accepted post.
fn hosts_missing(accepted: &[Accepted], n: usize) -> Vec<String> {
    let bodies: Vec<String> = accepted.iter().map(|a| a.body.to_string()).collect();
    (0..n)
        .map(host)
        .filter(|h| !bodies.iter().any(|b| b.contains(h.as_str())))
        .collect()
}

/// Waits until every host of `0..n` shows, at most `timeout` (a ceiling,
/// never a measurement: `bench digests` measures how soon).
async fn wait_hosts(h: &Harness, n: usize, timeout: Duration) {
    let started = Instant::now();
    while started.elapsed() < timeout && !hosts_missing(&h.fake.accepted_for(TOKEN_1), n).is_empty()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_burst_of_thirty_of_one_kind_is_a_few_posts_and_one_section() {
    let h = Harness::start().await;
    let mut answers = Vec::new();
    for i in 0..30 {
        let answer = h.post_structured(&kind_alert(i, 0)).await;
        assert_eq!(answer.status, 200);
        answers.push(answer.body);
    }
    // The first goes at once, inside its request: a quiet robot's event is
    // not held (how soon each shows is the bench's to measure).
    assert!(answers[0].contains("delivered"), "{answers:?}");
    assert!(
        h.fake.accepted_for(TOKEN_1)[0]
            .body
            .to_string()
            .contains(&host(0)),
        "the first post is the first alert"
    );
    assert!(
        answers[29].contains("queued"),
        "the burst's end waits: {answers:?}"
    );
    wait_hosts(&h, 30, FLUSHED).await;
    let accepted = h.fake.accepted_for(TOKEN_1);
    assert_eq!(
        hosts_missing(&accepted, 30),
        Vec::<String>::new(),
        "all within 10 s"
    );
    assert!(
        accepted.len() <= 4,
        "{} posts: {accepted:#?}",
        accepted.len()
    );
    assert_eq!(h.fake.throttled_for(TOKEN_1), 0);

    // The digest: one section, the shared text once, the hosts listed.
    let digest = accepted.last().expect("a digest");
    let text = digest.body["markdown"]["text"].as_str().unwrap_or_default();
    assert_eq!(
        text.matches("/var/lib is 97% full").count(),
        1,
        "the shared text once: {text}"
    );
    assert!(
        text.contains("[FIRING] DiskFull on …: /var/lib is 97% full — "),
        "{text}"
    );
    let queued = 30 - (accepted.len() - 1);
    assert!(
        text.contains(&format!("**{queued} ×**")),
        "the count: {text}"
    );
    assert!(
        text.contains("db-0029") && text.contains("db-0028, db-0029"),
        "every host written out, comma-separated: {text}"
    );
}

#[tokio::test]
async fn a_thousand_alerts_of_five_kinds_over_ten_seconds_are_a_handful_of_posts() {
    let h = Harness::start().await;
    let first = Instant::now();
    // 1,000 alerts in 10 s, one request each, from 4 senders.
    const ALERTS: usize = 1_000;
    let senders = 4;
    let answers = futures_util::future::join_all((0..senders).map(|s| {
        let h = &h;
        async move {
            let mut refused = Vec::new();
            for i in (s..ALERTS).step_by(senders) {
                let at = first + Duration::from_millis(10 * i as u64);
                tokio::time::sleep_until(at).await;
                let answer = h.post_structured(&kind_alert(i, i % KINDS.len())).await;
                if answer.status != 200 {
                    refused.push(answer);
                }
            }
            refused
        }
    }))
    .await;
    let refused: Vec<_> = answers.into_iter().flatten().collect();
    assert!(refused.is_empty(), "every alert accepted: {refused:?}");

    wait_hosts(&h, ALERTS, FLUSHED).await;
    let accepted = h.fake.accepted_for(TOKEN_1);
    assert_eq!(
        hosts_missing(&accepted, ALERTS),
        Vec::<String>::new(),
        "every host shown"
    );
    let posts = most_in_any_minute(&h.fake.posted_at(TOKEN_1));
    assert!(posts <= 6, "{posts} posts in the first minute");
    assert_eq!(h.fake.throttled_for(TOKEN_1), 0);
    // Each digest is sections by kind, not a line an alert.
    for digest in accepted.iter().filter(|a| a.msgtype == "markdown") {
        let text = digest.body["markdown"]["text"].as_str().unwrap_or_default();
        assert!(
            text.lines().count() <= 2 * KINDS.len() + 4,
            "a section a kind: {text}"
        );
        assert!(digest.body.to_string().len() <= 20_000);
    }
}

/// The Alertmanager sample of the ready rules (two alerts firing), and the
/// same alerts resolved two minutes later.
fn firing_and_resolved() -> (Value, Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
    let firing: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("samples/alertmanager.json")).expect("the sample"),
    )
    .expect("JSON");
    let mut resolved = firing.clone();
    resolved["id"] = json!("resolved-1");
    resolved["time"] = json!("2024-05-01T10:33:15.112Z");
    resolved["data"]["status"] = json!("resolved");
    for alert in resolved["data"]["alerts"].as_array_mut().expect("alerts") {
        alert["status"] = json!("resolved");
        alert["endsAt"] = json!("2024-05-01T10:33:15Z");
    }
    (firing, resolved)
}

#[tokio::test]
async fn a_firing_and_its_resolved_in_one_digest_are_one_line() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/templates");
    let ready = std::fs::read_to_string(dir.join("alertmanager.yml")).expect("the ready rule");
    let h = Harness::with(two_robots(), |fake| {
        // One send a minute on its own, the rest kept for digests.
        format!(
            "{}{ready}digest:\n  reserved: 19\n  linger_ms: 300\n",
            two_groups(fake)
        )
    })
    .await;
    let (mut firing, mut resolved) = firing_and_resolved();
    for event in [&mut firing, &mut resolved] {
        event["xvchatgroup"] = json!("bot1");
    }
    // The first takes the one free slot; the firing and its resolved queue.
    assert_eq!(h.post_structured(&kind_alert(0, 0)).await.status, 200);
    assert_eq!(h.post_structured(&firing.to_string()).await.status, 200);
    assert_eq!(h.post_structured(&resolved.to_string()).await.status, 200);
    let started = Instant::now();
    while h.fake.accepted_for(TOKEN_1).len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = h.fake.accepted_for(TOKEN_1);
    assert_eq!(accepted.len(), 2, "one single, one digest: {accepted:#?}");
    let text = accepted[1].body["markdown"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("resolved after 2m 10s"), "{text}");
    assert_eq!(
        text.matches("] HighErrorRate").count(),
        1,
        "one line: {text}"
    );
    assert!(
        !text.contains("[FIRING"),
        "the firing is not shown apart: {text}"
    );
}

/// A rule that makes Alertmanager-like events (`status`, `host`, one alert
/// with a fingerprint) readable markdown: the digest's defaults then know
/// their status and identity.
const ALERT_RULE: &str = r#"
templates:
  - name: disk
    match: { type: "disk" }
    msgtype: markdown
    message:
      title: "[{{ data.status | upper }}] DiskFull on {{ data.host }}"
      text: "{{ data.host }}: /var/lib is 97% full"
"#;

/// Alert `i`, firing or resolved, on host `db-<i>`, for chat group bot1.
fn disk_alert(i: usize, status: &str) -> String {
    let mut event: Value = serde_json::from_str(&structured(
        &format!("disk-{status}-{i}"),
        &[("xvchatgroup", "bot1")],
        "application/json",
        json!({
            "status": status,
            "host": host(i),
            "alerts": [{"status": status, "fingerprint": format!("fp{i:04}")}],
        }),
    ))
    .expect("JSON");
    event["type"] = json!("disk");
    event.to_string()
}

/// Sends `events` evenly over `over`, one request each; all must be 200.
async fn send_over(h: &Harness, events: &[String], over: Duration) {
    let start = Instant::now();
    for (i, event) in events.iter().enumerate() {
        tokio::time::sleep_until(start + over.mul_f64(i as f64 / events.len() as f64)).await;
        let answer = h.post_structured(event).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
}

/// The last post's line that names each host of `0..n`, if any.
fn last_lines(accepted: &[Accepted], n: usize) -> Vec<Option<String>> {
    let texts: Vec<String> = accepted
        .iter()
        .map(|a| {
            let body = &a.body;
            body["markdown"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
                + "\n"
                + body["markdown"]["text"].as_str().unwrap_or_default()
        })
        .collect();
    (0..n)
        .map(|i| {
            let host = host(i);
            texts.iter().rev().find_map(|text| {
                text.split("\n\n")
                    .find(|line| line.contains(&host))
                    .map(str::to_owned)
            })
        })
        .collect()
}

/// Waits until `done` holds for what bot1 was sent, at most `timeout`.
async fn wait_for(h: &Harness, timeout: Duration, done: impl Fn(&[Accepted]) -> bool) {
    let started = Instant::now();
    while started.elapsed() < timeout && !done(&h.fake.accepted_for(TOKEN_1)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_hundred_firing_and_their_resolutions_cost_no_more_posts_than_the_firing() {
    const ALERTS: usize = 200;
    let over = Duration::from_secs(1);
    let config = |fake: &fake_dingtalk::FakeDingTalk| format!("{}{ALERT_RULE}", two_groups(fake));
    let firing: Vec<String> = (0..ALERTS).map(|i| disk_alert(i, "firing")).collect();
    let resolved: Vec<String> = (0..ALERTS).map(|i| disk_alert(i, "resolved")).collect();

    // The firing alone.
    let alone = Harness::with(two_robots(), config).await;
    send_over(&alone, &firing, over).await;
    wait_for(&alone, Duration::from_secs(20), |a| {
        last_lines(a, ALERTS).iter().all(Option::is_some)
    })
    .await;
    let firing_posts = alone.fake.accepted_for(TOKEN_1).len();
    assert!(
        last_lines(&alone.fake.accepted_for(TOKEN_1), ALERTS)
            .iter()
            .all(Option::is_some),
        "every firing alert shown"
    );

    // The firing, then within the storm their resolutions.
    let both = Harness::with(two_robots(), config).await;
    send_over(&both, &firing, over).await;
    send_over(&both, &resolved, over).await;
    let final_state_shown = |a: &[Accepted]| {
        last_lines(a, ALERTS)
            .iter()
            .all(|line| line.as_deref().is_some_and(|l| l.contains("RESOLVED")))
    };
    wait_for(&both, Duration::from_secs(30), final_state_shown).await;
    let accepted = both.fake.accepted_for(TOKEN_1);
    let missing: Vec<_> = last_lines(&accepted, ALERTS)
        .into_iter()
        .enumerate()
        .filter(|(_, line)| !line.as_deref().is_some_and(|l| l.contains("RESOLVED")))
        .collect();
    assert!(
        missing.is_empty(),
        "every alert's final state (resolved) is what the group last read of it: {missing:?}"
    );
    assert!(
        accepted.len() <= firing_posts,
        "{} posts for the firing and their resolutions, {firing_posts} for the firing alone",
        accepted.len()
    );
    assert_eq!(both.fake.throttled_for(TOKEN_1), 0);
}
