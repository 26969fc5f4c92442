//! The storm row: what the sink does past a robot's budget.
//!
//! - **Into the outbox**: a robot keeping DingTalk's budget, against the
//!   blackhole, fed structured events at 16 in flight. After the first few
//!   every event is appended to the robot's outbox (durably: answered 200
//!   only once committed), so events/s here is the rate of durable appends.
//! - **1,000 alerts**: the same sink against the fake DingTalk with
//!   DingTalk's own limits (20 a minute, a 10-minute block past it, every
//!   POST shown): 1,000 alerts at 16 in flight, then how long until the last
//!   is visible in the group, how many posts that took, and how many
//!   DingTalk refused (it must be none).
//!
//! Bounded: fixed counts, a deadline on the wait for visibility, and
//! [`TIMEOUT`] on the whole row (the caller's).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_dingtalk::events::{self, Alerts};
use fake_dingtalk::{Accepted, FakeDingTalk, RobotSpec, most_in_any_minute};

use hyper::body::Bytes;

use crate::http::{Connection, post};
use crate::load::{self, Measured, Plan, Scenario};
use crate::procs::{self, SinkSpec};

/// Alerts in the visibility run.
pub const ALERTS: usize = 1_000;
/// Requests in flight.
pub const IN_FLIGHT: usize = 16;
/// The longest wait for the last alert to show.
pub(super) const VISIBLE_WITHIN: Duration = Duration::from_secs(240);
/// The longest the whole row may take: that wait, and a minute for the
/// outbox run and the start-ups.
pub const TIMEOUT: Duration = Duration::from_secs(VISIBLE_WITHIN.as_secs() + 60);
/// How the storm's alerts look: from Alertmanager, "disk full on host-{i % 40}".
const STORM_ALERTS: Alerts = Alerts::new("storm-", "alertmanager", "alert").on_hosts(40);
/// The outbox run: an outbox that never fills, a flusher that waits.
const OUTBOX_YAML: &str = "digest:\n  max_queued: 1000000\n  linger_ms: 60000\n";

/// What one storm run measured.
#[derive(Debug, Clone)]
pub struct Storm {
    /// Appending to the outbox at [`IN_FLIGHT`] in flight.
    pub into_outbox: Measured,
    /// The sink's peak RSS in that run, KiB.
    pub outbox_peak_rss_kib: u64,
    /// From the first alert sent to the last one visible.
    pub last_visible: Duration,
    /// Alerts visible at the end (all of them, unless the wait ran out).
    pub visible: usize,
    /// POSTs DingTalk accepted.
    pub posts: usize,
    /// Of those, digests.
    pub digests: usize,
    /// The most POSTs in any 60 s (accepted or not: all count toward the limit).
    pub most_in_a_minute: usize,
    /// POSTs DingTalk refused as too fast.
    pub throttled: usize,
    /// Answers other than 200.
    pub refused: usize,
}

/// Runs both parts.
pub async fn measure(binary: &Path, work: &Path, blackhole_url: &str) -> Result<Storm, String> {
    let spec = SinkSpec {
        binary,
        dir: work,
        webhook_url: blackhole_url,
        log_level: "warn",
        paced: true,
        extra_yaml: OUTBOX_YAML,
    };
    let running = procs::start_sink(&spec).await?;
    let plan = Plan::new(Scenario::Structured, IN_FLIGHT, 20_000, 500);
    let into_outbox = load::run(Scenario::Structured, running.target, plan).await?;
    let outbox_peak_rss_kib = running.peak_rss_kib()?;
    drop(running);

    let fake = FakeDingTalk::start(vec![RobotSpec::new("storm")])
        .await
        .map_err(|err| format!("cannot start the fake DingTalk: {err}"))?;
    let url = fake.webhook_url("storm");
    let spec = SinkSpec {
        webhook_url: &url,
        extra_yaml: "",
        ..spec
    };
    let running = procs::start_sink(&spec).await?;
    let first = Instant::now();
    let refused = send_alerts(running.target.http).await;
    let (visible, last_visible) = wait_visible(&fake, &["storm"], first).await;
    drop(running);
    let accepted = fake.accepted_for("storm");
    Ok(Storm {
        into_outbox,
        outbox_peak_rss_kib,
        last_visible,
        visible,
        posts: accepted.len(),
        digests: digests_in(&accepted),
        most_in_a_minute: most_in_any_minute(&fake.posted_at("storm")),
        throttled: fake.throttled_for("storm"),
        refused,
    })
}

/// Waits until all [`ALERTS`] show in what `robots` accepted, or
/// [`VISIBLE_WITHIN`] has passed since `first`: how many showed, and when
/// the wait ended (from `first`).
pub(super) async fn wait_visible(
    fake: &FakeDingTalk,
    robots: &[&str],
    first: Instant,
) -> (usize, Duration) {
    // Each post is read once, when it first shows: the poll must cost little
    // next to the sink it measures.
    let mut shown = HashSet::new();
    let mut read = vec![0; robots.len()];
    while first.elapsed() < VISIBLE_WITHIN {
        for (robot, read) in robots.iter().zip(&mut read) {
            let accepted = fake.accepted_for(robot);
            for post in accepted.get(*read..).unwrap_or_default() {
                shown.extend(events::markers_in(&post.body.to_string(), ALERTS));
            }
            *read = accepted.len();
        }
        if shown.len() == ALERTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (shown.len(), first.elapsed())
}

/// How many of `accepted` are digests (their title counts events).
pub(super) fn digests_in(accepted: &[Accepted]) -> usize {
    accepted
        .iter()
        .filter(|a| {
            a.body["markdown"]["title"]
                .as_str()
                .is_some_and(|t| t.contains(" events, "))
        })
        .count()
}

/// Sends the alerts from [`IN_FLIGHT`] connections; the count not answered 200.
pub(super) async fn send_alerts(http: SocketAddr) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (next, refused) = (Arc::clone(&next), Arc::clone(&refused));
            tokio::spawn(async move {
                let mut connection = Connection::new(http);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ALERTS {
                        break;
                    }
                    let body = STORM_ALERTS.structured(i);
                    let headers = [("content-type", "application/cloudevents+json".to_owned())];
                    let ok = match post(&headers, Bytes::from(body)) {
                        Ok(request) => connection
                            .send(request)
                            .await
                            .is_ok_and(|s| s.as_u16() == 200),
                        Err(_) => false,
                    };
                    if !ok {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    refused.load(Ordering::Relaxed)
}

/// The storm section of BENCHMARKS.md.
pub fn markdown(md: &mut String, storm: &Storm, relay_at_16: Option<f64>) {
    use std::fmt::Write;
    let m = &storm.into_outbox;
    let _ = writeln!(md, "## Storm: past a robot's budget\n");
    let _ = writeln!(
        md,
        "A robot keeping DingTalk's budget of 20 a minute, fed HTTP structured events at {IN_FLIGHT} \
         in flight: after the first 16 every event is appended to its outbox in the store, \
         durably (the 200 leaves once the append is committed). Then {ALERTS} alerts at {IN_FLIGHT} \
         in flight against the fake DingTalk with DingTalk's limits (every POST shown and counted): \
         how long until the last one is visible in the group, and what that cost.\n"
    );
    let _ = writeln!(md, "| measure | value |\n|:--|--:|");
    let _ = writeln!(
        md,
        "| accepted into the outbox, events/s | {} |",
        crate::format::thousands(m.events_per_sec())
    );
    if let Some(relay) = relay_at_16 {
        let _ = writeln!(
            md,
            "| ... vs the bare relay at {IN_FLIGHT} in flight | {:.0}% |",
            m.events_per_sec() / relay * 100.0
        );
    }
    let _ = writeln!(
        md,
        "| p50 / p99 answer | {} / {} |",
        crate::format::ms(m.percentile(0.5)),
        crate::format::ms(m.percentile(0.99))
    );
    let _ = writeln!(
        md,
        "| peak RSS | {} |",
        crate::format::mib(storm.outbox_peak_rss_kib)
    );
    let _ = writeln!(
        md,
        "| {ALERTS} alerts: the last visible after | {:.1} s |",
        storm.last_visible.as_secs_f64()
    );
    let _ = writeln!(md, "| alerts visible | {} of {ALERTS} |", storm.visible);
    let _ = writeln!(
        md,
        "| posts used (digests among them) | {} ({}) |",
        storm.posts, storm.digests
    );
    let _ = writeln!(
        md,
        "| most posts in any 60 s | {} |",
        storm.most_in_a_minute
    );
    let _ = writeln!(md, "| throttled by DingTalk | {} |", storm.throttled);
    let _ = writeln!(md, "| alerts not answered 200 | {} |\n", storm.refused);
}
