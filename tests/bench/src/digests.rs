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
use std::time::{Duration, Instant};

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

/// The five kinds of the mixed storm: a name and the text they share.
const KINDS: [(&str, &str); 5] = [
    ("DiskFull", "/var/lib is 97% full"),
    ("HighLoad", "load average is 12.5"),
    ("PodCrashLooping", "restarted 5 times in 10 minutes"),
    ("CertExpiring", "certificate expires in 3 days"),
    ("ProbeFailed", "HTTP probe answered 503"),
];

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
}

/// Runs both.
pub async fn measure(binary: &Path, work: &Path) -> Result<Digests, String> {
    let burst = run(binary, work, BURST, 1, Duration::ZERO).await?;
    let mixed = run(binary, work, MIXED, KINDS.len(), MIXED_OVER).await?;
    Ok(Digests { burst, mixed })
}

/// The host of alert `i`: four digits, unique even as a substring.
fn host(i: usize) -> String {
    format!("db-{i:04}")
}

async fn run(
    binary: &Path,
    work: &Path,
    alerts: usize,
    kinds: usize,
    over: Duration,
) -> Result<Seen, String> {
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
        extra_yaml: "",
    };
    let running = procs::start_sink(&spec).await?;
    let first = Instant::now();
    // Sending and watching at once: the first alert shows while the rest
    // are still being sent.
    let sending = async {
        let refused = send(running.target.http, alerts, kinds, over).await;
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
async fn send(http: SocketAddr, alerts: usize, kinds: usize, over: Duration) -> usize {
    let start = tokio::time::Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|worker| {
            tokio::spawn(async move {
                let mut connection = Connection::new(http);
                let mut refused = 0;
                for i in (worker..alerts).step_by(IN_FLIGHT) {
                    let offset = over.mul_f64(i as f64 / alerts as f64);
                    tokio::time::sleep_until(start + offset).await;
                    let (name, text) = KINDS[i % kinds];
                    let body = format!(
                        r#"{{"specversion":"1.0","id":"digest-{i}","source":"alertmanager","type":"alert","datacontenttype":"text/plain","data":"[FIRING] {name} on {}: {text}"}}"#,
                        host(i)
                    );
                    let headers = [("content-type", "application/cloudevents+json".to_owned())];
                    let ok = match post(&headers, Bytes::from(body)) {
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
}
