//! The digests row: what a person in the group gets during a storm, with
//! the default digest rules, against the fake DingTalk with DingTalk's own
//! limits (20 a minute, every POST shown and counted).
//!
//! - **A burst of 30 of one kind**: 30 alerts posted back to back; how
//!   many posts reach the group, when the first and the last alert show.
//! - **1,000 of five kinds over 10 s**: one request each, paced evenly, at
//!   most [`IN_FLIGHT`] in flight; the posts in the first minute, whether
//!   every alert's host shows, when the last shows after the last arrived.
//!
//! Bounded: fixed counts, [`VISIBLE_WITHIN`] on each wait, [`TIMEOUT`] on
//! the row (the caller's).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_dingtalk::events::{KINDS, kind_text, storm_host as host};
use fake_dingtalk::{FakeDingTalk, RobotSpec, most_in_any_minute};
use hyper::body::Bytes;

use crate::http::{Connection, post};
use crate::procs::{self, SinkSpec};

/// Alerts of the burst.
pub const BURST: usize = 30;
/// Alerts of the mixed storm.
pub const MIXED: usize = 1_000;
/// The mixed storm's length.
pub const MIXED_OVER: Duration = Duration::from_secs(10);
/// Requests in flight at most.
const IN_FLIGHT: usize = 16;
/// The longest wait for the last alert of a run to show.
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);
/// The longest the whole row may take.
pub const TIMEOUT: Duration = Duration::from_secs(2 * VISIBLE_WITHIN.as_secs() + 30);

/// What one run of alerts measured.
#[derive(Debug, Clone)]
pub struct Seen {
    /// POSTs DingTalk accepted.
    pub posts: usize,
    /// The most POSTs in any 60 s.
    pub most_in_a_minute: usize,
    /// From the first alert sent to the first post showing an alert.
    pub first_visible: Option<Duration>,
    /// From the last alert sent to the last one showing.
    pub last_visible: Option<Duration>,
    /// Alerts whose host shows in the posts.
    pub hosts_shown: usize,
    /// The largest post, bytes.
    pub largest_post: usize,
    /// POSTs refused as too fast.
    pub throttled: usize,
    /// Answers other than 200.
    pub refused: usize,
}

/// The row: both runs, each on a fresh sink and fake.
#[derive(Debug, Clone)]
pub struct Digests {
    /// The burst of [`BURST`] of one kind.
    pub burst: Seen,
    /// [`MIXED`] of five kinds over [`MIXED_OVER`].
    pub mixed: Seen,
    /// Firing alerts, and firing alerts with their resolutions.
    pub resolutions: Resolutions,
}

/// Runs both.
pub async fn measure(binary: &Path, work: &Path) -> Result<Digests, String> {
    let burst = run(binary, work, BURST, 1, Duration::ZERO).await?;
    let mixed = run(binary, work, MIXED, KINDS.len(), MIXED_OVER).await?;
    let resolutions = resolutions(binary, work).await?;
    Ok(Digests {
        burst,
        mixed,
        resolutions,
    })
}

/// A fake DingTalk with DingTalk's limits, and the release sink on its
/// robot, keeping its budget, with `extra_yaml`.
async fn start(
    binary: &Path,
    work: &Path,
    extra_yaml: &str,
) -> Result<(FakeDingTalk, procs::Running), String> {
    let fake = FakeDingTalk::start(vec![RobotSpec::new("digests")])
        .await
        .map_err(|err| format!("cannot start the fake DingTalk: {err}"))?;
    let url = fake.webhook_url("digests");
    let spec = SinkSpec {
        binary,
        dir: work,
        webhook_url: &url,
        log_level: "warn",
        paced: true,
        extra_yaml,
    };
    let running = procs::start_sink(&spec).await?;
    Ok((fake, running))
}

async fn run(
    binary: &Path,
    work: &Path,
    alerts: usize,
    kinds: usize,
    over: Duration,
) -> Result<Seen, String> {
    let (fake, running) = start(binary, work, "").await?;
    let first = Instant::now();
    // Sending and watching at once: the first alert shows while the rest
    // are still being sent.
    let sending = async {
        let refused = send(
            running.target.http,
            Arc::new(kind_bodies(alerts, kinds)),
            over,
        )
        .await;
        (refused, Instant::now())
    };
    let ((refused, last_sent), watched) = tokio::join!(sending, watch(&fake, alerts, first, over));
    let last_visible = watched
        .all_at
        .map(|at| at.saturating_duration_since(last_sent));
    drop(running);
    let accepted = fake.accepted_for("digests");
    Ok(Seen {
        posts: accepted.len(),
        most_in_a_minute: most_in_any_minute(&fake.posted_at("digests")),
        first_visible: watched.first_visible,
        last_visible,
        hosts_shown: watched.shown,
        largest_post: accepted
            .iter()
            .map(|a| a.body.to_string().len())
            .max()
            .unwrap_or(0),
        throttled: fake.throttled_for("digests"),
        refused,
    })
}

/// What the group saw of a run.
struct Watched {
    /// From the first alert sent to the first post showing an alert.
    first_visible: Option<Duration>,
    /// When every alert's host had shown.
    all_at: Option<Instant>,
    /// Alerts whose host showed.
    shown: usize,
}

/// Watches the posts until every alert's host shows, or [`VISIBLE_WITHIN`]
/// after the run's length has passed since `first`.
async fn watch(fake: &FakeDingTalk, alerts: usize, first: Instant, over: Duration) -> Watched {
    let mut first_visible = None;
    let mut shown = vec![false; alerts];
    let mut read = 0;
    let mut all_at = None;
    while first.elapsed() < VISIBLE_WITHIN + over {
        let accepted = fake.accepted_for("digests");
        for post in accepted.get(read..).unwrap_or_default() {
            let body = post.body.to_string();
            for (i, seen) in shown.iter_mut().enumerate() {
                *seen |= body.contains(&host(i));
            }
        }
        read = accepted.len();
        if first_visible.is_none() && read > 0 {
            first_visible = Some(first.elapsed());
        }
        if shown.iter().all(|s| *s) {
            all_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Watched {
        first_visible,
        all_at,
        shown: shown.iter().filter(|s| **s).count(),
    }
}

/// Sends `alerts` of `kinds` kinds, alert `i` at `i * over / alerts` from
/// the start, from [`IN_FLIGHT`] connections; the count not answered 200.
async fn send(http: SocketAddr, bodies: Arc<Vec<String>>, over: Duration) -> usize {
    let start = tokio::time::Instant::now();
    let alerts = bodies.len();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|worker| {
            let bodies = Arc::clone(&bodies);
            tokio::spawn(async move {
                let mut connection = Connection::new(http);
                let mut refused = 0;
                for i in (worker..alerts).step_by(IN_FLIGHT) {
                    let offset = over.mul_f64(i as f64 / alerts as f64);
                    tokio::time::sleep_until(start + offset).await;
                    let headers = [("content-type", "application/cloudevents+json".to_owned())];
                    let ok = match post(&headers, Bytes::from(bodies[i].clone())) {
                        Ok(request) => connection
                            .send(request)
                            .await
                            .is_ok_and(|s| s.as_u16() == 200),
                        Err(_) => false,
                    };
                    if !ok {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for worker in workers {
        refused += worker.await.unwrap_or(0);
    }
    refused
}

/// Alerts `0..alerts` of `kinds` kinds, as plain text events.
fn kind_bodies(alerts: usize, kinds: usize) -> Vec<String> {
    (0..alerts)
        .map(|i| {
            format!(
                r#"{{"specversion":"1.0","id":"digest-{i}","source":"alertmanager","type":"alert","datacontenttype":"text/plain","data":"{}"}}"#,
                kind_text(i, i % kinds)
            )
        })
        .collect()
}

/// A rule that makes the resolutions run's Alertmanager-like events
/// (`status`, `host`, one alert with a fingerprint) markdown: the digest's
/// defaults then know their status and identity.
const ALERT_RULE: &str = "templates:\n  - name: disk\n    match: { type: \"disk\" }\n    msgtype: markdown\n    message:\n      title: \"[{{ data.status | upper }}] DiskFull on {{ data.host }}\"\n      text: \"{{ data.host }}: /var/lib is 97% full\"\n";

/// Alert `i` firing or resolved, as the resolutions run sends it.
fn status_body(i: usize, status: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"disk-{status}-{i}","source":"alertmanager","type":"disk","datacontenttype":"application/json","data":{{"status":"{status}","host":"{}","alerts":[{{"status":"{status}","fingerprint":"fp{i:04}"}}]}}}}"#,
        host(i)
    )
}

/// What the resolutions run measured.
#[derive(Debug, Clone)]
pub struct Resolutions {
    /// Posts for [`RESOLVED`] alerts firing alone.
    pub firing_posts: usize,
    /// Posts for the same firing and, within the storm, their resolutions.
    pub both_posts: usize,
    /// Alerts whose last line read in the group says resolved.
    pub final_state_shown: usize,
    /// POSTs refused as too fast, over both runs.
    pub throttled: usize,
}

/// Alerts of the resolutions run.
pub const RESOLVED: usize = 200;

/// [`RESOLVED`] alerts firing over a second, alone; then on a fresh sink the
/// same and their resolutions over the next second.
async fn resolutions(binary: &Path, work: &Path) -> Result<Resolutions, String> {
    let firing: Vec<String> = (0..RESOLVED).map(|i| status_body(i, "firing")).collect();
    let resolved: Vec<String> = (0..RESOLVED).map(|i| status_body(i, "resolved")).collect();
    let alone = posts_for(binary, work, firing.clone(), |_| true).await?;
    let both: Vec<String> = firing.into_iter().chain(resolved).collect();
    let with = posts_for(binary, work, both, |line| line.contains("RESOLVED")).await?;
    Ok(Resolutions {
        firing_posts: alone.0,
        both_posts: with.0,
        final_state_shown: with.1,
        throttled: alone.2 + with.2,
    })
}

/// Sends `bodies` over a second per [`RESOLVED`], waits until the last line
/// naming each host passes `done` (or [`VISIBLE_WITHIN`]): the posts, the
/// hosts whose last line passes, the throttled.
async fn posts_for(
    binary: &Path,
    work: &Path,
    bodies: Vec<String>,
    done: impl Fn(&str) -> bool,
) -> Result<(usize, usize, usize), String> {
    let (fake, running) = start(binary, work, ALERT_RULE).await?;
    let over = Duration::from_secs((bodies.len() / RESOLVED) as u64);
    send(running.target.http, Arc::new(bodies), over).await;
    let started = Instant::now();
    let mut shown = 0;
    while started.elapsed() < VISIBLE_WITHIN {
        let texts: Vec<String> = fake
            .accepted_for("digests")
            .iter()
            .map(|a| {
                a.body["markdown"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        shown = (0..RESOLVED)
            .filter(|i| {
                let host = host(*i);
                texts
                    .iter()
                    .rev()
                    .find_map(|t| t.split("\n\n").find(|line| line.contains(&host)))
                    .is_some_and(&done)
            })
            .count();
        if shown == RESOLVED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(running);
    Ok((
        fake.accepted_for("digests").len(),
        shown,
        fake.throttled_for("digests"),
    ))
}

/// The digests section of BENCHMARKS.md.
pub fn markdown(md: &mut String, row: &Digests) {
    use std::fmt::Write;
    let secs = |d: Option<Duration>| {
        d.map_or("not within the wait".to_owned(), |d| {
            format!("{:.2} s", d.as_secs_f64())
        })
    };
    let _ = writeln!(md, "## Digests: what the group reads in a storm\n");
    let _ = writeln!(
        md,
        "The default digest rules (a burst past 3 events within the linger waits for the digest; \
         similar alerts one section), one robot keeping DingTalk's 20 a minute, against the fake \
         DingTalk with DingTalk's limits. A burst of {BURST} alerts of one kind posted back to back; \
         then {MIXED} alerts of five kinds evenly over {} s.\n",
        MIXED_OVER.as_secs()
    );
    let _ = writeln!(
        md,
        "| measure | {BURST} of one kind | {MIXED} of five kinds over {} s |\n|:--|--:|--:|",
        MIXED_OVER.as_secs()
    );
    let (b, m) = (&row.burst, &row.mixed);
    let rows: [(&str, String, String); 8] = [
        ("posts", b.posts.to_string(), m.posts.to_string()),
        (
            "most posts in any 60 s",
            b.most_in_a_minute.to_string(),
            m.most_in_a_minute.to_string(),
        ),
        (
            "the first alert visible after",
            secs(b.first_visible),
            secs(m.first_visible),
        ),
        (
            "the last visible, after the last sent",
            secs(b.last_visible),
            secs(m.last_visible),
        ),
        (
            "alerts whose host shows",
            format!("{} of {BURST}", b.hosts_shown),
            format!("{} of {MIXED}", m.hosts_shown),
        ),
        (
            "largest post, bytes",
            b.largest_post.to_string(),
            m.largest_post.to_string(),
        ),
        (
            "throttled by DingTalk",
            b.throttled.to_string(),
            m.throttled.to_string(),
        ),
        (
            "alerts not answered 200",
            b.refused.to_string(),
            m.refused.to_string(),
        ),
    ];
    for (name, burst, mixed) in rows {
        let _ = writeln!(md, "| {name} | {burst} | {mixed} |");
    }
    let _ = writeln!(md);
    let r = &row.resolutions;
    let _ = writeln!(
        md,
        "Then {RESOLVED} alerts firing over a second, alone; and on a fresh sink the same {RESOLVED} \
         and, over the next second, their resolutions (Alertmanager-like events through a template: \
         their status and fingerprint are the digest's defaults).\n"
    );
    let _ = writeln!(md, "| measure | value |\n|:--|--:|");
    let _ = writeln!(md, "| posts for the firing alone | {} |", r.firing_posts);
    let _ = writeln!(
        md,
        "| posts for the firing and their resolutions | {} |",
        r.both_posts
    );
    let _ = writeln!(
        md,
        "| alerts whose last line read says resolved | {} of {RESOLVED} |",
        r.final_state_shown
    );
    let _ = writeln!(md, "| throttled by DingTalk | {} |\n", r.throttled);
}
